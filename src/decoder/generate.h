/*
 * generate.h - caption generation from the decoder's inference step API
 * (dec_init_state / dec_step): greedy, temperature sampling and beam search
 * with length normalisation. Token ids in, token ids out; the vocabulary
 * turns them into words. See imcap_gen_params in imcap.h for the rules.
 */
#ifndef IMCAP_GENERATE_H
#define IMCAP_GENERATE_H

#include "decoder.h"

enum { GEN_MAX_LEN = 100, GEN_MAX_BEAM = 64, GEN_MAX_MASKED = 8 };

/* The special token ids: START feeds the first step, END stops a caption,
 * masked ids (PAD, START, UNK) are never generated. */
typedef struct gen_special {
    int32_t start_id, end_id;
    int n_masked;
    int32_t masked[GEN_MAX_MASKED];
} gen_special;

typedef struct gen_hyp {
    int32_t words[GEN_MAX_LEN]; /* generated words, END excluded */
    int n_words;
    bool ended;                 /* true if the model emitted END (else cut at max_len) */
    double logprob;             /* sum of log p over the words (+ END if ended) */
    double score;               /* logprob / (n_words + ended)^length_alpha */
} gen_hyp;

/* Generate captions for one image embedding img [n_img]. out has room for
 * p->n_best hypotheses; *n_out receives how many were written (n_best,
 * except for beam search when fewer distinct hypotheses exist), best first.
 * Thread-safe: m is only read. */
imcap_status gen_caption(const dec_model *m, const float *img, const gen_special *sp,
                         const imcap_gen_params *p, gen_hyp *out, int *n_out);

/* Greedy decoding of n images at once, img [n][n_img], with the masking
 * rules above: out [n][max_len] receives the words (without START and END),
 * lens [n] their counts. Same result per image as gen_caption's greedy;
 * faster for many images (one GEMM per step for the whole batch). */
imcap_status gen_greedy_batch(const dec_model *m, const float *img, int n, const gen_special *sp, int max_len,
                              int32_t *out, int *lens);

/* gen_greedy_batch with only START and END known (nothing else masked);
 * for training diagnostics on models whose vocabulary is not at hand. */
imcap_status gen_greedy(const dec_model *m, const float *img, int n, int32_t start_id, int32_t end_id, int max_len,
                        int32_t *out, int *lens);

/* Self-critical training's rollouts for n images img [n][n_img]: each
 * image gets k + 1 rows, row i*(k+1) its greedy caption and rows
 * i*(k+1) + 1 .. i*(k+1) + k k captions sampled at temperature 1, with the
 * masking rules above. Sample row r draws from an rng seeded with
 * seed ^ hash(r), so the captions depend only on (model, images, seed).
 * out [n*(k+1)][max_len] receives the words, lens [n*(k+1)] their counts,
 * ended [n*(k+1)] whether END was emitted. All rows advance together (one
 * dec_step for the rows still running); the per-row softmax and draws are
 * spread over the worker threads. */
imcap_status gen_rollouts(const dec_model *m, const float *img, int n, int k, const gen_special *sp, int max_len,
                          uint64_t seed, int32_t *out, int *lens, bool *ended);

/* Beam search with p->beam hypotheses, any width >= 1 (gen_caption uses it
 * for beam > 1; with beam 1 it must agree with greedy decoding). */
imcap_status gen_beam_search(const dec_model *m, const float *img, const gen_special *sp,
                             const imcap_gen_params *p, gen_hyp *out, int *n_out);

/* Log-probability of a given word sequence (ended with END if ended) under
 * the same masking rules; for tests and for scoring reference captions. */
imcap_status gen_sequence_logprob(const dec_model *m, const float *img, const gen_special *sp,
                                  const int32_t *words, int n_words, bool ended, double *logprob);

/* The attention weights behind each word of a caption: attn [n_words][L]
 * (L = dec_regions), row t the weights of the step that produced word t,
 * from the step API fed START and the words (the computation generation
 * made). Each row sums to 1; a model without attention gives 1s. */
imcap_status gen_attention(const dec_model *m, const float *img, const gen_special *sp, const int32_t *words,
                           int n_words, float *attn);

#endif
