/*
 * decoder.h - the caption decoder interface: an image-conditioned language
 * model behind one table of operations (dec_arch), so that training,
 * checkpoints, generation, evaluation, export and the captioner are written
 * once for every architecture:
 *
 *   "recipe" (DEC_ARCH_RECIPE, recipe.c): one pooled vector per photo,
 *     img [D] -> dense n_img1 ELU -> dense n_hid ELU = h0 = c0
 *     token -> embedding n_emb -> LSTM n_hid (gates i,f,g,o as PyTorch:
 *         i = sig(.), f = sig(.), g = tanh(.), o = sig(.),
 *         c' = f*c + i*g, h' = o*tanh(c'))
 *     h -> dense n_out1 ELU -> dense n_vocab logits
 *   "attention" (DEC_ARCH_ATTENTION, attention.c): soft attention over a
 *     grid of L = grid_h x grid_w regions of D features (Show, Attend and
 *     Tell): h0, c0 from the grid mean; per step alpha = softmax over
 *     w . tanh(W_a a_i + W_h h), context z = sum alpha_i a_i gated by
 *     sigmoid(W_b h), LSTM input [emb; beta z], deep output (h, z, emb).
 *
 *   "ensemble" (DEC_ARCH_ENSEMBLE, ensemble.c): K trained decoders of one
 *     vocabulary and one image input, for generation only: each step runs
 *     every member and returns log(mean_k softmax(logits_k)), the mixture of
 *     their next-word distributions; attention weights are the members' mean.
 *
 * An architecture defines its image input (dec_input_floats per photo), its
 * parameter tensors (dec_tensor_at), a per-photo context computed once
 * (dec_init_state) and a per-hypothesis recurrent state of
 * dec_state_floats floats that dec_step advances by one token.
 *
 * Training loss: cross-entropy of the next token over the targets that are
 * not pad_id (inputs = tokens[:, :-1], targets = tokens[:, 1:]), each batch
 * row weighted: loss = sum_r w_r * sum_t CE_rt / n_targets (w = NULL: all 1).
 *
 * All parameters live in one float buffer (dec_model.params) and the named
 * tensors are views into it; gradients live in a second buffer with the same
 * layout. Dense weights are stored [out][in] (PyTorch layout).
 */
#ifndef IMCAP_DECODER_H
#define IMCAP_DECODER_H

#include "gguf.h"
#include "internal.h"

enum { DEC_ARCH_RECIPE = 0, DEC_ARCH_ATTENTION = 1, DEC_N_ARCHS = 2 };
/* Ensembles (dec_ensemble_new) have no parameters of their own and no
 * training operations; dec_config_check refuses them. */
enum { DEC_ARCH_ENSEMBLE = 16, DEC_MAX_MEMBERS = 8 };

typedef struct dec_config {
    int n_img;   /* D: image features (recipe: the pooled embedding; attention: per region) */
    int n_img1;  /* recipe: first image dense layer (120) */
    int n_hid;   /* LSTM size, also h0/c0 size (300) */
    int n_emb;   /* word embedding size (100) */
    int n_out1;  /* output dense layer (120) */
    int n_vocab; /* |V| */
    int pad_id;  /* target id ignored by the loss */
    int arch;    /* DEC_ARCH_*; 0 = the recipe decoder */
    int grid_h, grid_w; /* attention: the grid, L = grid_h * grid_w regions (recipe: 0) */
    int n_att;   /* attention: size of the attention MLP (recipe: 0) */
} dec_config;

/* Recipe defaults with the given D and |V|; pad_id 0. */
dec_config dec_default_config(int n_img, int n_vocab);

/* The architecture's name as model files record it ("recipe", ...), or
 * NULL for an unknown id; dec_arch_from_name returns -1 for unknown names. */
const char *dec_arch_name(int arch);
int dec_arch_from_name(const char *name);

/* Floats of one photo's image input: recipe D, attention L * D (row-major
 * [L][D], regions in grid order). */
size_t dec_input_floats(const dec_config *cfg);
/* Regions L of the grid (1 for the recipe). */
int dec_regions(const dec_config *cfg);
/* Whether the decoder reads a grid of regions (attention and ensembles of
 * it) rather than one pooled vector. */
bool dec_has_grid(const dec_config *cfg);

enum { DEC_N_TENSORS = 12, DEC_MAX_TENSORS = 32 };

/* Recipe tensors (the views of a DEC_ARCH_RECIPE model). */
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
 * and offset of tensor i in the parameter buffer, for i < dec_n_tensors;
 * i = dec_n_tensors gives the total buffer size in offset. */
typedef struct dec_tensor_info {
    const char *name; /* "img1.weight", ... */
    int n_dims;
    int64_t shape[2];
    size_t offset, size;
} dec_tensor_info;
int dec_n_tensors(const dec_config *cfg);
dec_tensor_info dec_tensor_at(const dec_config *cfg, int i);

typedef struct dec_model {
    dec_config cfg;
    size_t n_params;
    float *params;  /* one buffer, n_params floats */
    dec_tensors p;  /* views into params (recipe models only) */
    float *grads;   /* one buffer, same layout (NULL if not allocated) */
    dec_tensors g;  /* views into grads (recipe models only) */
    int n_members;  /* ensembles: their members (owned; n_params 0), else 0 */
    struct dec_model *member[DEC_MAX_MEMBERS];
} dec_model;

/* Checks the config (all sizes >= 1, bounded; pad_id in [0, n_vocab); the
 * architecture's own fields). */
imcap_status dec_config_check(const dec_config *cfg);
/* Allocates parameters (zeroed) and, if with_grads, gradients. */
imcap_status dec_model_new(const dec_config *cfg, bool with_grads, dec_model **out);
void dec_model_free(dec_model *m);

/* An ensemble of k (2..DEC_MAX_MEMBERS) decoders that agree on the
 * vocabulary size, pad id, image features and grid. On success the
 * ensemble owns the members (dec_model_free frees them); on failure the
 * caller keeps them. Its cfg is member 0's with arch DEC_ARCH_ENSEMBLE. */
imcap_status dec_ensemble_new(dec_model *const *members, int k, dec_model **out);

/* Initialisation (the recipe's: the Keras defaults of the recipe's model:
 * dense kernels and the LSTM input kernel Glorot-uniform (fan_in + fan_out
 * of the whole matrix), the LSTM recurrent kernel orthogonal (the [4H][H]
 * matrix has orthonormal columns), biases zero except the LSTM forget-gate
 * bias 1, word embedding U(-0.05, 0.05)). Deterministic for a given rng
 * state. */
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
/* Attention models: weight lambda of the doubly stochastic regulariser
 * (lambda * mean over rows and regions of (1 - sum_t alpha_ti)^2, added to
 * the loss of training and validation passes); 0 = off (default). Ignored by
 * architectures without attention. */
void dec_work_set_attention_reg(dec_work *w, float lambda);

/* Logits left out of the loss's softmax (as if they were -inf: probability
 * and gradient 0): ids[0..n) at every target, first_id (-1: none) at the
 * first target of each row only. SCST samples from the generator's masked
 * softmax (generate.h: PAD, START, UNK never emitted, END not as the first
 * word), so its log p and policy gradient must be that softmax's too.
 * Cross-entropy training sets nothing (n = 0, first_id = -1: the default). */
enum { DEC_MAX_MASKED = 8 };
typedef struct dec_mask {
    int n;
    int32_t ids[DEC_MAX_MASKED];
    int32_t first_id;
} dec_mask;
/* Copies *mask (NULL: no mask); ids must be in [0, n_vocab), n <= DEC_MAX_MASKED. */
imcap_status dec_work_set_mask(dec_work *w, const dec_mask *mask);
/* The architectures' loss of one row of logits z [V] for target at target
 * position pos (0: the first word) under mask (NULL: none): returns
 * -log softmax(z)[target] and leaves scale * d/dz of it in z (masked
 * entries 0). */
double dec_xent_row(float *z, int V, int target, float scale, const dec_mask *mask, int pos);

/* Batch of b sequences of t1 token ids (row-major [b][t1]): the model reads
 * tokens[:, :-1] and predicts tokens[:, 1:]; img is [b][dec_input_floats].
 * row_w [b] weights each row's loss (NULL: all 1; any finite values, e.g.
 * negative advantages): *loss = sum_r row_w[r] * sum_t CE_rt / n_targets
 * over non-pad targets (0 if there are none) plus the architecture's
 * regulariser; *n_targets receives the number of non-pad targets.
 * If m->grads is set and backward is true, the gradients are overwritten with
 * d loss / d params, and if d_img is not NULL it receives d loss / d img
 * [b][dec_input_floats]. Token ids must be in [0, n_vocab). */
imcap_status dec_forward_backward(dec_model *m, dec_work *w, const float *img, const int32_t *tokens,
                                  const float *row_w, int b, int t1, bool backward, float *d_img, float *loss,
                                  int64_t *n_targets);

/* ---- inference: one step at a time for n hypotheses ---- */

/* Floats of the per-photo context (computed once by dec_init_state, only
 * read by dec_step; may be 0) and of one hypothesis's recurrent state. */
size_t dec_context_floats(const dec_model *m);
size_t dec_state_floats(const dec_model *m);
/* For n photos img [n][dec_input_floats]: ctx [n][dec_context_floats]
 * (may be NULL when that is 0) and the initial states state [n][dec_state_floats]. */
imcap_status dec_init_state(const dec_model *m, const float *img, int n, float *ctx, float *state);
/* Scratch floats dec_step needs for n hypotheses. */
size_t dec_step_scratch_floats(const dec_model *m, int n);
/* One step for n hypotheses: tokens [n], states [n][dec_state_floats] ->
 * logits [n][n_vocab] and the new states state_out (may alias state).
 * Hypothesis r reads context row r, or row 0 for all when shared_ctx.
 * attn, if not NULL, receives each hypothesis's attention weights [n][L]
 * (architectures without attention write 1 for their one region). scratch
 * has dec_step_scratch_floats(n) floats. */
void dec_step(const dec_model *m, const float *ctx, bool shared_ctx, const int32_t *tokens, int n,
              const float *state, float *logits, float *state_out, float *attn, float *scratch);

/* ---- one architecture's operations (the implementations behind the API above) ---- */

typedef struct dec_arch {
    const char *name;
    imcap_status (*check)(const dec_config *cfg);
    int (*n_tensors)(const dec_config *cfg);
    dec_tensor_info (*tensor_at)(const dec_config *cfg, int i);
    void (*init)(dec_model *m, imcap_rng *rng);
    imcap_status (*work_new)(const dec_config *cfg, int max_b, int max_t1, void **out);
    void (*work_free)(void *work);
    void (*set_dropout)(void *work, float p, uint64_t seed);
    void (*set_reg)(void *work, float lambda); /* NULL: no regulariser */
    imcap_status (*forward_backward)(dec_model *m, void *work, const float *img, const int32_t *tokens,
                                     const float *row_w, const dec_mask *mask, int b, int t1, bool backward,
                                     float *d_img, float *loss, int64_t *n_targets);
    size_t (*context_floats)(const dec_config *cfg);
    size_t (*state_floats)(const dec_config *cfg);
    /* As dec_init_state / dec_step, with context row r at ctx + r * ctx_stride
     * and state row r at state + r * state_stride (an ensemble's members each
     * own a slice of its rows). */
    imcap_status (*init_state)(const dec_model *m, const float *img, int n, float *ctx, size_t ctx_stride,
                               float *state, size_t state_stride);
    size_t (*step_scratch_floats)(const dec_config *cfg, int n);
    void (*step)(const dec_model *m, const float *ctx, size_t ctx_stride, bool shared_ctx, const int32_t *tokens,
                 int n, const float *state, size_t state_stride, float *logits, float *state_out, float *attn,
                 float *scratch);
} dec_arch;

extern const dec_arch dec_arch_recipe, dec_arch_attention;

/* The ensemble's side of the inference API (ensemble.c; decoder.c dispatches). */
size_t dec_ens_context_floats(const dec_model *m);
size_t dec_ens_state_floats(const dec_model *m);
size_t dec_ens_scratch_floats(const dec_model *m, int n);
imcap_status dec_ens_init_state(const dec_model *m, const float *img, int n, float *ctx, float *state);
void dec_ens_step(const dec_model *m, const float *ctx, bool shared_ctx, const int32_t *tokens, int n,
                  const float *state, float *logits, float *state_out, float *attn, float *scratch);
/* The architecture's operations (NULL for ensembles), for the ensemble's members. */
const dec_arch *dec_arch_of(const dec_config *cfg);

/* ---- model files (GGUF, docs/FORMATS.md "Decoder checkpoint") ---- */

/* The decoder's config keys "<key_prefix>n_img" ... (u32; the architecture
 * as the string "<key_prefix>arch", absent in files from before it was
 * recorded = recipe) and its tensors "<tensor_prefix><name>"; pad_id is the
 * caller's (it comes with the vocabulary). An ensemble stores its member
 * count as "<key_prefix>members" (u32, absent = one decoder), member 0 as a
 * single decoder and member k >= 1 under "<key_prefix>m<k>." and
 * "<tensor_prefix>m<k>.". Tensors reference m->params,
 * which must stay valid until gguf_write. Shared by decoder files,
 * checkpoints and captioner files. */
imcap_status dec_gguf_put(gguf_writer *w, const dec_model *m, const char *key_prefix, const char *tensor_prefix);
/* Reads what dec_gguf_put wrote, with the given pad id: validates the
 * architecture, sizes and every tensor's shape and values (finite); errors
 * name the file and key or tensor. */
imcap_status dec_gguf_get(const gguf_file *f, const char *key_prefix, const char *tensor_prefix, int pad_id,
                          dec_model **out);

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
