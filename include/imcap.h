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

/* How a caption is generated from the decoder (see docs/GENERATION.md):
 *   greedy (beam 1, temperature 0, the default): the most probable word at
 *     each step;
 *   sampling (beam 1, temperature T > 0): each word drawn from the model's
 *     distribution p^(1/T) renormalised, with a seeded PRNG (deterministic
 *     for a given seed); n_best > 1 draws n_best independent captions;
 *   beam search (beam K > 1): K hypotheses; finished ones are ranked by
 *     logprob / len^length_alpha, len = words + the END token (0 = plain
 *     log-probability, 1 = mean per-token log-probability); the n_best
 *     (<= K) best are returned.
 * PAD, START and UNK are never generated (their probability is masked out
 * and the rest renormalised), END is not allowed as the first token.
 * Reported log-probabilities are the model's (temperature 1) under that
 * masking, summed over the words and the END token if the caption ended. */
typedef struct imcap_gen_params {
    int beam;           /* beam width K, 1..64 (default 1) */
    float temperature;  /* 0 = greedy (default); > 0 sampling (requires beam 1), up to 100 */
    uint64_t seed;      /* sampling seed (default 1) */
    int max_len;        /* maximum number of words, 1..100 (default 20) */
    int n_best;         /* captions returned, 1..64 (default 1); <= beam for beam search */
    float length_alpha; /* beam length normalisation exponent, 0..2 (default 0.7) */
} imcap_gen_params;

imcap_gen_params imcap_gen_default_params(void);
/* IMCAP_E_ARG with a message naming the bad field, or IMCAP_OK. */
imcap_status imcap_gen_params_check(const imcap_gen_params *p);

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
