/*
 * decoder.h - the caption decoder: an image-conditioned LSTM language model.
 *
 *   img [D] -> dense n_img1 ELU -> dense n_hid ELU = h0 = c0
 *   token -> embedding n_emb -> LSTM n_hid (gates i,f,g,o as PyTorch:
 *       i = sig(.), f = sig(.), g = tanh(.), o = sig(.),
 *       c' = f*c + i*g, h' = o*tanh(c'))
 *   h -> dense n_out1 ELU -> dense n_vocab logits
 *
 * Training loss: mean cross-entropy of the next token over the targets that
 * are not pad_id (inputs = tokens[:, :-1], targets = tokens[:, 1:]).
 *
 * All parameters live in one float buffer (dec_model.params) and the named
 * tensors (dec_tensors) are views into it; gradients live in a second buffer
 * with the same layout. Dense weights are stored [out][in] (PyTorch layout).
 */
#ifndef IMCAP_DECODER_H
#define IMCAP_DECODER_H

#include "gguf.h"
#include "internal.h"

typedef struct dec_config {
    int n_img;   /* D: image embedding size (e.g. 2048) */
    int n_img1;  /* first image dense layer (120) */
    int n_hid;   /* LSTM size, also h0/c0 size (300) */
    int n_emb;   /* word embedding size (100) */
    int n_out1;  /* output dense layer (120) */
    int n_vocab; /* |V| */
    int pad_id;  /* target id ignored by the loss */
} dec_config;

/* Defaults above with the given D and |V|; pad_id 0. */
dec_config dec_default_config(int n_img, int n_vocab);

enum { DEC_N_TENSORS = 12 };

typedef struct dec_tensors {
    float *img1_w;  /* [n_img1][n_img] */
    float *img1_b;  /* [n_img1] */
    float *img2_w;  /* [n_hid][n_img1] */
    float *img2_b;  /* [n_hid] */
    float *emb;     /* [n_vocab][n_emb] */
    float *lstm_wx; /* [4*n_hid][n_emb], rows i,f,g,o */
    float *lstm_wh; /* [4*n_hid][n_hid] */
    float *lstm_b;  /* [4*n_hid] (PyTorch's bias_ih + bias_hh) */
    float *out1_w;  /* [n_out1][n_hid] */
    float *out1_b;  /* [n_out1] */
    float *out2_w;  /* [n_vocab][n_out1] */
    float *out2_b;  /* [n_vocab] */
} dec_tensors;

/* Name, shape (rows x cols; cols = 1 for vectors is reported as n_dims 1)
 * and offset of tensor i in the parameter buffer, in dec_tensors order. */
typedef struct dec_tensor_info {
    const char *name; /* "img1.weight", ... */
    int n_dims;
    int64_t shape[2];
    size_t offset, size;
} dec_tensor_info;
dec_tensor_info dec_tensor_at(const dec_config *cfg, int i);

typedef struct dec_model {
    dec_config cfg;
    size_t n_params;
    float *params;  /* one buffer, n_params floats */
    dec_tensors p;  /* views into params */
    float *grads;   /* one buffer, same layout (NULL if not allocated) */
    dec_tensors g;  /* views into grads */
} dec_model;

/* Checks the config (all sizes >= 1, bounded; pad_id in [0, n_vocab)). */
imcap_status dec_config_check(const dec_config *cfg);
/* Allocates parameters (zeroed) and, if with_grads, gradients. */
imcap_status dec_model_new(const dec_config *cfg, bool with_grads, dec_model **out);
void dec_model_free(dec_model *m);

/* Initialisation (the Keras defaults of the recipe's model): dense kernels
 * and the LSTM input kernel Glorot-uniform (fan_in + fan_out of the whole
 * matrix), the LSTM recurrent kernel orthogonal (the [4H][H] matrix has
 * orthonormal columns), biases zero except the LSTM forget-gate bias 1, word
 * embedding U(-0.05, 0.05). Deterministic for a given rng state. */
void dec_model_init(dec_model *m, imcap_rng *rng);

/* ---- training: batched forward + backward ---- */

/* Workspace for batches of up to max_b sequences of up to max_t1 tokens. */
typedef struct dec_work dec_work;
imcap_status dec_work_new(const dec_config *cfg, int max_b, int max_t1, dec_work **out);
void dec_work_free(dec_work *w);

/* Dropout for the following training passes (backward = true): each unit of
 * the LSTM output h_t is zeroed with probability p before the output layers
 * and the others scaled by 1 / (1 - p) (inverted dropout; passes without
 * backward, validation and generation never drop). The mask is a hash of
 * (seed, batch row, t, unit): set a new seed per batch. p = 0: off. */
void dec_work_set_dropout(dec_work *w, float p, uint64_t seed);

/* Batch of b sequences of t1 token ids (row-major [b][t1]): the model reads
 * tokens[:, :-1] and predicts tokens[:, 1:]; img is [b][n_img].
 * Returns the mean loss over non-pad targets in *loss (0 if there are none)
 * and the number of those targets in *n_targets.
 * If m->grads is set and backward is true, the gradients are overwritten with
 * d loss / d params, and if d_img is not NULL it receives d loss / d img
 * [b][n_img]. Token ids must be in [0, n_vocab). */
imcap_status dec_forward_backward(dec_model *m, dec_work *w, const float *img, const int32_t *tokens,
                                  int b, int t1, bool backward, float *d_img, float *loss,
                                  int64_t *n_targets);
/* The same with a loss weight per batch row, row_w [b] (NULL: all 1):
 * loss = sum_r row_w[r] * sum_t CE_rt / n_targets, and the gradients of that
 * (weights may be negative; policy-gradient training uses them). */
imcap_status dec_forward_backward_weighted(dec_model *m, dec_work *w, const float *img, const int32_t *tokens,
                                           const float *row_w, int b, int t1, bool backward, float *d_img,
                                           float *loss, int64_t *n_targets);

/* ---- inference: one step at a time for n hypotheses ---- */

/* h0 = c0 from n image embeddings img [n][n_img]: h, c are [n][n_hid]. */
imcap_status dec_init_state(const dec_model *m, const float *img, int n, float *h, float *c);
/* Scratch floats dec_step needs for n hypotheses. */
size_t dec_step_scratch_floats(const dec_config *cfg, int n);
/* One step: tokens [n], state h, c [n][n_hid] -> logits [n][n_vocab] and the
 * new state h_out, c_out (may alias h, c). scratch has
 * dec_step_scratch_floats(n) floats. */
void dec_step(const dec_model *m, const int32_t *tokens, int n, const float *h, const float *c,
              float *logits, float *h_out, float *c_out, float *scratch);

/* ---- model files (GGUF, docs/FORMATS.md "Decoder checkpoint") ---- */

/* Adds the decoder's keys (config, vocabulary) and weight tensors to w; the
 * tensors reference m->params, which must stay valid until gguf_write. */
imcap_status dec_gguf_add(gguf_writer *w, const dec_model *m, const imcap_vocab *v);
/* Reads the decoder from an open GGUF file: validates the architecture,
 * version, sizes, vocabulary (special tokens agree with the stored ids) and
 * every tensor's shape; errors name the file and key or tensor. */
imcap_status dec_gguf_read(const gguf_file *f, dec_model **m, imcap_vocab **v);
/* A decoder model file alone (no training state), written atomically. */
imcap_status dec_save(const char *path, const dec_model *m, const imcap_vocab *v);
/* Loads a decoder model file or a training checkpoint (weights only). */
imcap_status dec_load(const char *path, dec_model **m, imcap_vocab **v);

#endif
