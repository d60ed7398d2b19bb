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

/* COCO caption toolkit scoring (coco-caption / pycocoevalcap), computed
 * exactly: PTB tokenization, BLEU-1..4, ROUGE-L and CIDEr-D. */

/* Tokenize a caption as the toolkit does before scoring (Stanford PTB
 * tokenization, lower-cased, punctuation tokens removed). *out receives a
 * malloc'ed string of tokens separated by single spaces (possibly ""); the
 * caller releases it with free(). */
imcap_status imcap_ptb_tokenize(const char *text, char **out);

/* One evaluated image: a candidate caption and its reference captions. */
typedef struct imcap_score_item {
    const char *candidate;          /* the caption under test */
    const char *const *refs;        /* n_refs reference captions, n_refs >= 1 */
    size_t n_refs;
} imcap_score_item;

typedef struct imcap_scores {
    double bleu[4];                 /* Bleu_1 .. Bleu_4 (corpus level) */
    double rouge_l;                 /* ROUGE_L, mean over images */
    double cider_d;                 /* CIDEr (the toolkit's CIDEr-D), mean over images */
    size_t n_images;
    /* BLEU internals as the toolkit's bleu_scorer reports them: total
     * candidate length, total closest-reference length, and per n = 1..4 the
     * number of candidate n-grams (guess) and of clipped matches (correct). */
    uint64_t bleu_testlen, bleu_reflen;
    uint64_t bleu_guess[4], bleu_correct[4];
} imcap_scores;

/* Metric names as the toolkit prints them, index 0..5: Bleu_1, Bleu_2,
 * Bleu_3, Bleu_4, ROUGE_L, CIDEr; and the matching value of s. */
#define IMCAP_N_METRICS 6
const char *imcap_metric_name(int i);
double imcap_metric_value(const imcap_scores *s, int i);

/* Score n images. With tokenize != 0 the captions are raw text and are run
 * through imcap_ptb_tokenize first (what the toolkit does); with 0 they are
 * already tokenized (tokens separated by white space). per_image_cider, if
 * not NULL, receives n per-image CIDEr-D values; per_image_rouge likewise. */
imcap_status imcap_score(const imcap_score_item *items, size_t n, int tokenize, imcap_scores *out,
                         double *per_image_cider, double *per_image_rouge);

/* Score a COCO results file ([{"image_id", "caption"}, ...]) against a COCO
 * captions annotation file ({"annotations": [{"image_id", "caption"}, ...]}),
 * like the toolkit's COCOEvalCap: every result image must have references,
 * each image at most one result; annotations of images without a result are
 * ignored. Image ids may be integers or strings. Errors name the file and
 * the problem. */
imcap_status imcap_score_coco_files(const char *results_path, const char *refs_path, imcap_scores *out);

/* -------------------------------------------------------------- images */

/* ------------------------------------------------------------- encoder */

/* ----------------------------------------------------------- captioner */

/* -------------------------------------------------------------- speech */

#ifdef __cplusplus
}
#endif
#endif /* IMCAP_H */
