/* bench_train.h - what the decoder training benchmarks (bench_decoder.c,
 * bench_attention.c) share: the synthetic token rows and the model, its
 * workspace and Adam. */
#ifndef IMCAP_BENCH_TRAIN_H
#define IMCAP_BENCH_TRAIN_H

#include "bench_util.h"
#include "decoder.h"
#include "optimizer.h"

/* tok [b][t1]: caption rows of lengths uniform in 8..t1 tokens from the LCG
 * (START 2, words 4..V-1, END 0, then PAD 1), as the decoder benchmarks'
 * PyTorch peers draw them (scripts/bench_decoder_torch.py). */
static inline void bench_token_rows(uint64_t *s, int b, int t1, int V, int32_t *tok)
{
    for (int r = 0; r < b; r++) {
        int len = 8 + (int)(lcg(s) % (uint64_t)(t1 - 7));
        int32_t *row = tok + (size_t)r * t1;
        for (int t = 0; t < t1; t++) row[t] = 1;
        row[0] = 2;
        for (int t = 1; t < len - 1; t++) row[t] = 4 + (int32_t)(lcg(s) % (uint64_t)(V - 4));
        row[len - 1] = 0;
    }
}

/* The model of config c with gradients (weights from rng seed 1), a
 * workspace for b x t1 tokens and Adam (default settings); 0, or 1 after
 * "<prog>: <error>" on stderr. Free with bench_train_free. */
static inline int bench_train_setup(const dec_config *c, int b, int t1, const char *prog, dec_model **m, dec_work **w,
                                    adam *opt)
{
    adam_params ap = adam_default_params();
    if (dec_model_new(c, true, m) || dec_work_new(c, b, t1, w) || adam_init(opt, &ap, (*m)->n_params)) {
        fprintf(stderr, "%s: %s\n", prog, imcap_last_error());
        return 1;
    }
    imcap_rng rng;
    imcap_rng_seed(&rng, 1);
    dec_model_init(*m, &rng);
    return 0;
}

static inline void bench_train_free(dec_model *m, dec_work *w, adam *opt)
{
    adam_free(opt);
    dec_work_free(w);
    dec_model_free(m);
}

#endif
