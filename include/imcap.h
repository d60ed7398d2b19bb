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
