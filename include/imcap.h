/*
 * imcap.h - the one public header of libimcap, an image caption generator.
 *
 * Conventions (ggml / whisper.cpp / stb style):
 *   - every symbol is prefixed imcap_ / IMCAP_;
 *   - objects are opaque and come in init/free pairs (free(NULL) is a no-op);
 *   - fallible functions return an imcap_status (IMCAP_OK == 0) or NULL; the
 *     message of the last failure on the calling thread is imcap_last_error();
 *   - parameter structs come from *_default_params() and are then edited;
 *   - the library never prints to stdout and never exits; long operations
 *     report through an optional imcap_progress_fn.
 */
#ifndef IMCAP_H
#define IMCAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMCAP_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ core */

typedef enum imcap_status {
    IMCAP_OK = 0,
    IMCAP_E_ARG,         /* invalid argument from the caller */
    IMCAP_E_IO,          /* file missing, unreadable, unwritable */
    IMCAP_E_FORMAT,      /* malformed input file (message names file and place) */
    IMCAP_E_NOMEM,       /* allocation failed or a size would overflow */
    IMCAP_E_UNSUPPORTED, /* valid input using a feature we do not implement */
    IMCAP_E_MISMATCH,    /* inputs that do not belong together (dims, checksums) */
    IMCAP_E_INTERNAL     /* a bug: please report */
} imcap_status;

/* Static name of a status ("ok", "io error", ...). */
const char *imcap_status_str(imcap_status s);

/* Human-readable message of the last failure on this thread ("" if none). */
const char *imcap_last_error(void);

/* Progress callback for long work: done of total units, free-form unit name.
 * Return non-zero to ask the operation to stop early (it then returns
 * IMCAP_E_ARG with a message saying it was interrupted). */
typedef int (*imcap_progress_fn)(void *user, uint64_t done, uint64_t total, const char *what);

/* ---------------------------------------- text: captions, tokenizer, vocab */

/* ------------------------------------------------------- embeddings file */

/* ------------------------------------------------ decoder and training */

/* ------------------------------------------------------------ generation */

/* ------------------------------------------------------------- metrics */

/* -------------------------------------------------------------- images */

/* A decoded image: 8-bit RGB, rows top to bottom, pixels rgb[(y*w + x)*3 + c].
 * A plain value type (not opaque) so callers can read pixels directly;
 * release the pixels with imcap_image_free(). */
typedef struct imcap_image {
    int w, h;
    uint8_t *rgb;
} imcap_image;

typedef enum imcap_image_format {
    IMCAP_IMAGE_UNKNOWN = 0,
    IMCAP_IMAGE_JPEG,
    IMCAP_IMAGE_PNG,
    IMCAP_IMAGE_BMP
} imcap_image_format;

/* Largest image decoded (w*h); larger headers are refused before allocating. */
#define IMCAP_IMAGE_MAX_PIXELS 100000000

/* Format from the first bytes (magic numbers), not from the file name. */
imcap_image_format imcap_image_sniff(const void *data, size_t len);
const char *imcap_image_format_name(imcap_image_format f);

/* Decode a JPEG (baseline/progressive; gray, YCbCr, RGB, CMYK/YCCK incl.
 * Adobe-inverted; EXIF orientation applied), PNG (any type, 1-16 bits,
 * palette, interlaced; alpha composited on white) or BMP (1/4/8-bit palette,
 * 16/24/32-bit, bottom-up or top-down; alpha dropped) to RGB. name is used in
 * error messages. On failure *out is empty (and needs no free). */
imcap_status imcap_image_decode(const void *data, size_t len, const char *name, imcap_image *out);
imcap_status imcap_image_load(const char *path, imcap_image *out);
void imcap_image_free(imcap_image *img);

/* Largest centered square: side = min(w, h); when the difference is odd the
 * extra pixel is cut on the left/top (x0 = dx - dx/2). */
void imcap_image_square_crop(int w, int h, int *x0, int *y0, int *side);

/* Bilinear resize of an interleaved 8-bit image (cn channels, rows
 * src_stride bytes apart) to dw x dh, bit-exact with OpenCV 4.6
 * cv::resize(..., INTER_LINEAR) on x86 (half-pixel centres, clamped edges,
 * OpenCV's 11-bit fixed-point weights and rounding). */
imcap_status imcap_resize_linear_u8(const uint8_t *src, int sw, int sh, size_t src_stride, int cn,
                                    uint8_t *dst, int dw, int dh);

/* The encoders' preprocessing: square center crop, then the resize above to
 * out_w x out_h; out receives [out_h][out_w][3] bytes. */
imcap_status imcap_image_prepare(const imcap_image *img, int out_h, int out_w, uint8_t *out);

/* out[i*3+c] = hwc[i*3+c] / 255 * scale[c] + bias[c] (a model's normalization). */
void imcap_image_to_float(const uint8_t *hwc, size_t n_pixels, const float scale[3], const float bias[3],
                          float *out);


/* ------------------------------------------------------------- encoder */

/* ----------------------------------------------------------- captioner */

/* -------------------------------------------------------------- speech */

/* Text to speech through Debian's libespeak-ng.
 * All calls are serialised internally (espeak-ng has global state), so they
 * may be made from any thread. */
typedef struct imcap_speech_params {
    const char *voice; /* espeak-ng voice name: "en" (default), "en-us", "en-gb", "en+f3", "fr", ... */
    int rate;          /* speaking rate in words per minute, 80..450 (default 175) */
} imcap_speech_params;

imcap_speech_params imcap_speech_default_params(void);

/* Synthesize text into 16-bit signed mono PCM at *sample_rate Hz (22050 for
 * espeak-ng voices). *samples is released with imcap_speech_free(). Fails
 * with IMCAP_E_ARG for empty text, a rate out of range or an unknown voice. */
imcap_status imcap_speech_synth(const char *text, const imcap_speech_params *p, int16_t **samples,
                                size_t *n_samples, int *sample_rate);
void imcap_speech_free(int16_t *samples);

/* Write PCM samples as a RIFF/WAVE file (PCM, 16-bit, mono), atomically. */
imcap_status imcap_wav_write(const char *path, const int16_t *samples, size_t n_samples, int sample_rate);

/* Synthesize text and write it as a WAV file (atomically). */
imcap_status imcap_speech_write_wav(const char *text, const imcap_speech_params *p, const char *path);

/* Speak text on the default audio output and return when done. Fails with
 * IMCAP_E_UNSUPPORTED and a clear message when there is no audio device. */
imcap_status imcap_speech_play(const char *text, const imcap_speech_params *p);

#ifdef __cplusplus
}
#endif
#endif /* IMCAP_H */
