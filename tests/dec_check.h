/*
 * dec_check.h - the decoder's numeric checks the tests share: central
 * finite differences of a scalar objective against a backward's gradient,
 * and the PyTorch golden files (scripts/golden_decoder.py,
 * scripts/golden_attention.py): their reader and the checks of a backward
 * and of Adam steps against them; and an overfit run on real captions.
 */
#ifndef IMCAP_TEST_DEC_CHECK_H
#define IMCAP_TEST_DEC_CHECK_H

#include "decoder.h"

/* A scalar function of the floats being perturbed. */
typedef double (*fd_objective)(void *ctx);

/* Central differences (step 4e-3) of f over x[n], against the analytic
 * gradient an[n]: |fd - an| <= 1.5e-3 + 2e-2 |an|, failures named
 * "<name>[k]". x is restored. Returns max |an|. */
double fd_check(float *x, const float *an, size_t n, const char *name, fd_objective f, void *ctx);
/* fd_check over every tensor of m against grads [n_params] (a copy of the
 * backward's); every tensor must take part (max |gradient| > 1e-3). */
void fd_check_tensors(dec_model *m, const float *grads, fd_objective f, void *ctx);

/* A batch for dec_forward_backward: img [b][dec_input_floats], tokens
 * [b][t1], row weights [b] or NULL; train: a training pass. */
typedef struct dec_batch {
    dec_model *m;
    dec_work *w;
    float *img;
    const int32_t *tokens;
    const float *row_w;
    int b, t1;
    bool train;
} dec_batch;
/* The batch's loss (an fd_objective: ctx = a dec_batch; gradients overwritten). */
double dec_batch_loss(void *ctx);

/* -log softmax(z)[target] over z[n] (in double, max-shifted). */
double dec_check_xent(const float *z, int n, int target);

/* ---- golden files: little-endian int32 / float32 records */
typedef struct golden { const char *p, *end; } golden;
const void *golden_take(golden *r, size_t n);
int32_t golden_i32(golden *r);
float golden_f32(golden *r);
/* The model's weights, tensor by tensor (dec_tensor_at order). */
void golden_weights(golden *r, dec_model *m);
/* One training pass of the batch (its img gradient into dimg) against the
 * file's loss (1e-5 relative), then each tensor's gradient and d_img:
 * |c - torch| <= 2e-6 + 1e-4 (|torch| + the tensor's largest |torch|). */
void golden_check_backward(golden *r, const dec_batch *bt, float *dimg);
/* n_steps Adam steps (lr, clip) on the batch, each step's loss against the
 * file's (1e-5 relative), then the weights (1e-5 absolute). Returns how many
 * steps clipped. */
int golden_check_adam(golden *r, const dec_batch *bt, float lr, float clip, int n_steps);

/* Overfit (SKIPs without data/flickr8k/captions.csv): 8 real captions, the
 * (i % n)-th of images 0, 97, 194, ..., learned by a model of config c
 * (n_vocab and pad_id set from their vocabulary; attention regulariser
 * att_reg for an attention model) on random inputs (seed 3) with Adam (lr
 * 1e-2, clip 5) until the loss is below target (at most 1500 steps, the
 * first loss above 2); greedy decoding then regenerates each caption. */
void dec_overfit_check(dec_config c, float att_reg, float target);

#endif
