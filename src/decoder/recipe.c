/*
 * recipe.c - the recipe decoder (DEC_ARCH_RECIPE, decoder.h): one pooled
 * image vector, an LSTM and two output layers; forward and backward side by
 * side.
 *
 * A batch is processed packed, like PyTorch's PackedSequence: sequence b has
 * length L_b = 1 + the last step whose target is not PAD (steps after it
 * cannot change the loss), the sequences are ordered by decreasing length
 * and step t works on the first B_t of them, so every buffer holds only the
 * N = sum L_b useful rows, packed step after step (rows off[t] ..
 * off[t] + B_t - 1). The input projection of all steps, the two output
 * layers and every weight gradient are single GEMMs over those N rows; only
 * the recurrent product h_{t-1} Wh^T is done per step.
 */
#include "dec_kernels.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static imcap_status rc_check(const dec_config *c)
{
    if (c->n_img1 < 1 || c->n_img1 > (1 << 20) || c->grid_h != 0 || c->grid_w != 0 || c->n_att != 0)
        return imcap_fail(IMCAP_E_ARG, "recipe decoder config: img1 %d out of range, or grid %dx%d / attention %d set",
                          c->n_img1, c->grid_h, c->grid_w, c->n_att);
    return IMCAP_OK;
}

static int rc_n_tensors(const dec_config *c) { return DEC_N_TENSORS; }

static dec_tensor_info rc_tensor_at(const dec_config *c, int i)
{
    const int64_t G = 4 * (int64_t)c->n_hid;
    struct { const char *name; int64_t r, k; } t[DEC_N_TENSORS] = {
        {"img1.weight", c->n_img1, c->n_img}, {"img1.bias", c->n_img1, 0},
        {"img2.weight", c->n_hid, c->n_img1}, {"img2.bias", c->n_hid, 0},
        {"embed.weight", c->n_vocab, c->n_emb}, {"lstm.weight_ih", G, c->n_emb},
        {"lstm.weight_hh", G, c->n_hid},     {"lstm.bias", G, 0},
        {"out1.weight", c->n_out1, c->n_hid}, {"out1.bias", c->n_out1, 0},
        {"out2.weight", c->n_vocab, c->n_out1}, {"out2.bias", c->n_vocab, 0},
    };
    dec_tensor_info info = {0};
    size_t off = 0;
    for (int j = 0; j <= i && j < DEC_N_TENSORS; j++) {
        size_t size = (size_t)t[j].r * (size_t)(t[j].k ? t[j].k : 1);
        /* keep every tensor 16-float (64-byte) aligned inside the buffer */
        size_t padded = (size + 15) & ~(size_t)15;
        if (j == i) {
            info.name = t[j].name;
            info.n_dims = t[j].k ? 2 : 1;
            info.shape[0] = t[j].r;
            info.shape[1] = t[j].k;
            info.offset = off;
            info.size = size;
        }
        off += padded;
    }
    if (i == DEC_N_TENSORS) info.offset = off; /* total size */
    return info;
}

static void rc_init(dec_model *m, imcap_rng *rng)
{
    const dec_config *c = &m->cfg;
    const int H = c->n_hid;
    memset(m->params, 0, m->n_params * sizeof(float));
    init_glorot(m->p.img1_w, c->n_img1, c->n_img, rng);
    init_glorot(m->p.img2_w, H, c->n_img1, rng);
    init_uniform(m->p.emb, (size_t)c->n_vocab * c->n_emb, 0.05, rng);
    init_glorot(m->p.lstm_wx, 4 * H, c->n_emb, rng);
    init_orthogonal(m->p.lstm_wh, 4 * H, H, rng);
    for (int j = 0; j < H; j++) m->p.lstm_b[H + j] = 1.0f;
    init_glorot(m->p.out1_w, c->n_out1, H, rng);
    init_glorot(m->p.out2_w, c->n_vocab, c->n_out1, rng);
}

/* ---------------------------------------------------------------- workspace */

typedef struct rc_work rc_work;

struct rc_work {
    dec_config cfg;
    int max_b, max_t1, nsub;
    size_t max_n;
    /* batch layout: the active sequences sorted by decreasing length are
     * dealt round-robin to nsub sub-batches (one per thread) so that their
     * recurrences run independently; sequence k of the packed order belongs
     * to sub-batch s for base[s] <= k < base[s + 1] */
    int *len, *perm;              /* [max_b] length of each row, packed order -> batch row */
    int *base;                    /* [nsub + 1] */
    int *bt, *off;                /* [nsub][max_t1]: active rows and first packed row of each step */
    int *rows;                    /* [nsub + 1] first packed row of each sub-batch */
    int32_t *xtok, *tgt;          /* [max_n] input token and target of each packed row */
    double *rowloss;              /* [max_n] loss of each packed row */
    float *a1;                    /* [max_b][n_img1] image dense 1, after ELU */
    float *a2;                    /* [max_b][H] image dense 2, after ELU = h0 = c0 */
    float *x;                     /* [max_n][E] embedded inputs */
    float *g;                     /* [max_n][4H] gates after activation; then their gradients */
    float *hp, *cp;               /* [max_n][H] h_{t-1}, c_{t-1} of each packed row */
    float *tc, *h;                /* [max_n][H] tanh(c_t), h_t */
    float *ximg;                  /* [max_b][D] images in packed order; then d img */
    float *y1, *dy1;              /* [max_n][O] output dense 1 after ELU, its gradient */
    float *lg;                    /* [max_n][V] logits -> d logits */
    float *dh;                    /* [max_n][H] d loss / d h_t from the output layers */
    float *dx;                    /* [max_n][E] d loss / d embedded inputs */
    float *dhn, *dcn;             /* [max_b][H] gradient carried to the previous step */
    float *cend;                  /* [nsub][H] scratch for the last c of a sequence */
    float *da2, *da1;             /* [max_b][H], [max_b][n_img1] */
    /* dropout on h_t before the output layers (training passes only) */
    float drop;                   /* probability of dropping a unit, 0 = off */
    uint64_t drop_seed;
    uint32_t *rid;                /* [max_n] batch row * t1 + t of each packed row: the mask's key */
    float *hd;                    /* [max_n][H] h_t after dropout */
};

static void rc_work_free_impl(rc_work *w)
{
    if (!w) return;
    void *p[] = {w->len, w->perm, w->base, w->bt,  w->off, w->rows, w->xtok, w->tgt, w->rowloss,
                 w->a1,  w->a2,   w->x,    w->g,   w->hp,  w->cp,   w->tc,   w->h,   w->ximg,
                 w->y1,  w->dy1,  w->lg,   w->dh,  w->dx,  w->dhn,  w->dcn,  w->da2, w->da1, w->cend,
                 w->rid, w->hd};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) imcap_free(p[i]);
    imcap_free(w);
}

static imcap_status rc_work_new_impl(const dec_config *c, int max_b, int max_t1, rc_work **out)
{
    *out = NULL;
    if (max_b < 1 || max_b > (1 << 20) || max_t1 < 2 || max_t1 > (1 << 16))
        return imcap_fail(IMCAP_E_ARG, "decoder workspace: batch %d x length %d out of range", max_b, max_t1);
    rc_work *w = imcap_calloc(1, sizeof *w);
    if (!w) return IMCAP_E_NOMEM;
    w->cfg = *c;
    w->max_b = max_b;
    w->max_t1 = max_t1;
    w->nsub = ops_threads();
    const size_t n = (size_t)max_b * (size_t)(max_t1 - 1), H = c->n_hid, ns = (size_t)w->nsub;
    w->max_n = n;
    bool ok = (w->len = imcap_alloc(max_b, sizeof(int))) && (w->perm = imcap_alloc(max_b, sizeof(int))) &&
              (w->base = imcap_alloc(ns + 1, sizeof(int))) && (w->bt = imcap_alloc(ns * max_t1, sizeof(int))) &&
              (w->off = imcap_alloc(ns * max_t1, sizeof(int))) && (w->rows = imcap_alloc(ns + 1, sizeof(int))) &&
              (w->xtok = imcap_alloc(n, sizeof(int32_t))) && (w->tgt = imcap_alloc(n, sizeof(int32_t))) &&
              (w->rowloss = imcap_alloc(n, sizeof(double))) &&
              (w->a1 = imcap_alloc((size_t)max_b * c->n_img1, sizeof(float))) &&
              (w->a2 = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->x = imcap_alloc(n, sizeof(float) * c->n_emb)) &&
              (w->g = imcap_alloc(n, sizeof(float) * 4 * H)) && (w->hp = imcap_alloc(n, sizeof(float) * H)) &&
              (w->cp = imcap_alloc(n, sizeof(float) * H)) && (w->tc = imcap_alloc(n, sizeof(float) * H)) &&
              (w->h = imcap_alloc(n, sizeof(float) * H)) &&
              (w->ximg = imcap_alloc((size_t)max_b * c->n_img, sizeof(float))) &&
              (w->y1 = imcap_alloc(n, sizeof(float) * c->n_out1)) &&
              (w->dy1 = imcap_alloc(n, sizeof(float) * c->n_out1)) &&
              (w->lg = imcap_alloc(n, sizeof(float) * c->n_vocab)) && (w->dh = imcap_alloc(n, sizeof(float) * H)) &&
              (w->rid = imcap_alloc(n, sizeof(uint32_t))) && (w->hd = imcap_alloc(n, sizeof(float) * H)) &&
              (w->dx = imcap_alloc(n, sizeof(float) * c->n_emb)) &&
              (w->dhn = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->dcn = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->da2 = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->da1 = imcap_alloc((size_t)max_b * c->n_img1, sizeof(float))) &&
              (w->cend = imcap_alloc(ns * H, sizeof(float)));
    if (!ok) {
        rc_work_free_impl(w);
        return IMCAP_E_NOMEM;
    }
    *out = w;
    return IMCAP_OK;
}

static void rc_set_dropout(void *vw, float p, uint64_t seed)
{
    rc_work *w = vw;
    w->drop = p > 0.0f && p < 1.0f ? p : 0.0f;
    w->drop_seed = seed;
}

/* --------------------------------------------------------- forward/backward */
/* Everything the parallel parts of one forward/backward pass share. Each
 * part is a function of a range [b, e) of rows (or of output features, or
 * of sub-batches) run by ops_parallel; ranges never overlap in what they
 * write, and no result depends on how the ranges are split across threads
 * except through OpenBLAS's blocking of a GEMM's rows (deterministic for a
 * given thread count). */
typedef struct fb_ctx {
    dec_model *m;
    rc_work *w;
    const float *img;
    int N, n_active, T;
    float scale; /* 1 / number of targets */
    int32_t pad;
    float drop;  /* dropout probability of this pass (0 unless training) */
    const float *row_w; /* [b] loss weight of each batch row, or NULL (all 1) */
    int t1;             /* tokens per batch row (rid / t1 = batch row, rid % t1 = target position) */
    const dec_mask *mask; /* logits left out of the loss, or NULL */
} fb_ctx;

/* The number of items each ops_parallel chunk gets: one chunk per thread. */
static size_t per_thread(size_t n)
{
    size_t nt = (size_t)ops_threads();
    return (n + nt - 1) / nt;
}

/* rows [b, e) of the packed images: gather, dense ELU, dense ELU */
static void part_img_forward(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const dec_config *cf = &c->m->cfg;
    const int D = cf->n_img, A = cf->n_img1, H = cf->n_hid, n = (int)(e - b);
    for (size_t j = b; j < e; j++)
        memcpy(w->ximg + j * D, c->img + (size_t)w->perm[j] * D, sizeof(float) * D);
    dense_forward(w->ximg + b * D, c->m->p.img1_w, c->m->p.img1_b, n, D, A, w->a1 + b * A);
    elu_forward(w->a1 + b * A, (size_t)n * A);
    dense_forward(w->a1 + b * A, c->m->p.img2_w, c->m->p.img2_b, n, A, H, w->a2 + b * H);
    elu_forward(w->a2 + b * H, (size_t)n * H);
}

/* packed rows [b, e): embeddings and the input projection g = x Wx^T + b */
static void part_input_projection(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const int E = c->m->cfg.n_emb, G4 = 4 * c->m->cfg.n_hid;
    for (size_t r = b; r < e; r++)
        memcpy(w->x + r * E, c->m->p.emb + (size_t)w->xtok[r] * E, sizeof(float) * E);
    dense_forward(w->x + b * E, c->m->p.lstm_wx, c->m->p.lstm_b, (int)(e - b), E, G4, w->g + b * G4);
}

/* sub-batches [b, e): the recurrence. Step t adds h_{t-1} Wh^T to its gates,
 * then the cell; the new h and c of the rows still active at t + 1 go to
 * their hp/cp rows. */
static void part_recurrence(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const int H = c->m->cfg.n_hid, G4 = 4 * H, T = c->T;
    for (size_t s = b; s < e; s++) {
        const int *bts = w->bt + s * w->max_t1, *offs = w->off + s * w->max_t1;
        const int k0 = w->base[s];
        if (bts[0] == 0) continue;
        memcpy(w->hp + (size_t)offs[0] * H, w->a2 + (size_t)k0 * H, sizeof(float) * (size_t)bts[0] * H);
        memcpy(w->cp + (size_t)offs[0] * H, w->a2 + (size_t)k0 * H, sizeof(float) * (size_t)bts[0] * H);
        for (int t = 0; t < T && bts[t] > 0; t++) {
            const int bt = bts[t], o0 = offs[t];
            const int bn = t + 1 < T ? bts[t + 1] : 0, o1 = t + 1 < T ? offs[t + 1] : 0;
            float *g = w->g + (size_t)o0 * G4;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, G4, H, 1.0f, w->hp + (size_t)o0 * H, H,
                        c->m->p.lstm_wh, H, 1.0f, g, G4);
            for (int j = 0; j < bt; j++) {
                float *h = w->h + (size_t)(o0 + j) * H;
                lstm_cell_forward(H, g + (size_t)j * G4, w->cp + (size_t)(o0 + j) * H,
                                  j < bn ? w->cp + (size_t)(o1 + j) * H : w->cend + s * H,
                                  w->tc + (size_t)(o0 + j) * H, h);
                if (j < bn) memcpy(w->hp + (size_t)(o1 + j) * H, h, sizeof(float) * H);
            }
        }
    }
}

/* packed rows [b, e): output layers, softmax cross-entropy, d logits */
static void part_output_forward(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const dec_tensors *P = &c->m->p;
    const int H = c->m->cfg.n_hid, O = c->m->cfg.n_out1, V = c->m->cfg.n_vocab, n = (int)(e - b);
    const float *hin = w->h;
    if (c->drop > 0.0f) {
        for (size_t r = b; r < e; r++)
            for (int j = 0; j < H; j++)
                w->hd[r * H + j] = w->h[r * H + j] * drop_factor(w->drop_seed, w->rid[r], j, c->drop);
        hin = w->hd;
    }
    dense_forward(hin + b * H, P->out1_w, P->out1_b, n, H, O, w->y1 + b * O);
    elu_forward(w->y1 + b * O, (size_t)n * O);
    dense_forward(w->y1 + b * O, P->out2_w, P->out2_b, n, O, V, w->lg + b * V);
    for (size_t r = b; r < e; r++) {
        float *z = w->lg + r * V;
        if (w->tgt[r] == c->pad) {
            memset(z, 0, sizeof(float) * V);
            w->rowloss[r] = 0.0;
        } else {
            const float rw = c->row_w ? c->row_w[w->rid[r] / (uint32_t)c->t1] : 1.0f;
            w->rowloss[r] = rw * dec_xent_row(z, V, w->tgt[r], c->scale * rw, c->mask, (int)(w->rid[r] % (uint32_t)c->t1));
        }
    }
}

/* dW += dy^T x and db += colsum dy for output features [b, e) of a dense
 * layer over n rows (dy [n][out], x [n][in], dw [out][in]). */
static void dense_weight_grad(const float *dy, const float *x, int n, int in, int out, size_t b, size_t e,
                              float *dw, float *db)
{
    const int k = (int)(e - b);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, in, n, 1.0f, dy + b, out, x, in, 1.0f, dw + b * in, in);
    for (int r = 0; r < n; r++) {
        const float *d = dy + (size_t)r * out;
        for (size_t j = b; j < e; j++) db[j] += d[j];
    }
}

/* output features [b, e) of out2: its weight gradient */
static void part_out2_weights(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    const dec_config *cf = &c->m->cfg;
    dense_weight_grad(c->w->lg, c->w->y1, c->N, cf->n_out1, cf->n_vocab, b, e, c->m->g.out2_w, c->m->g.out2_b);
}

/* packed rows [b, e): d y1 = d logits W2, ELU', d h = d y1' W1 */
static void part_output_backward(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const dec_config *cf = &c->m->cfg;
    const int H = cf->n_hid, O = cf->n_out1, V = cf->n_vocab, n = (int)(e - b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, O, V, 1.0f, w->lg + b * V, V, c->m->p.out2_w, O, 0.0f,
                w->dy1 + b * O, O);
    elu_backward(w->dy1 + b * O, w->y1 + b * O, (size_t)n * O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, O, 1.0f, w->dy1 + b * O, O, c->m->p.out1_w, H, 0.0f,
                w->dh + b * H, H);
    if (c->drop > 0.0f)
        for (size_t r = b; r < e; r++)
            for (int j = 0; j < H; j++) w->dh[r * H + j] *= drop_factor(w->drop_seed, w->rid[r], j, c->drop);
}

/* output features [b, e) of out1: its weight gradient */
static void part_out1_weights(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    const dec_config *cf = &c->m->cfg;
    dense_weight_grad(c->w->dy1, c->drop > 0.0f ? c->w->hd : c->w->h, c->N, cf->n_hid, cf->n_out1, b, e,
                      c->m->g.out1_w, c->m->g.out1_b);
}

/* sub-batches [b, e): back through time; g becomes d loss / d gate
 * pre-activations. dhn/dcn carry d h_t and d c_t of step t + 1's rows back
 * to step t; after step 0 they hold d h0 and d c0. */
static void part_bptt(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const int H = c->m->cfg.n_hid, G4 = 4 * H, T = c->T;
    for (size_t s = b; s < e; s++) {
        const int *bts = w->bt + s * w->max_t1, *offs = w->off + s * w->max_t1;
        float *dhn0 = w->dhn + (size_t)w->base[s] * H, *dcn0 = w->dcn + (size_t)w->base[s] * H;
        int tl = T - 1;
        while (tl > 0 && bts[tl] == 0) tl--;
        for (int t = tl; t >= 0 && bts[0] > 0; t--) {
            const int bt = bts[t], o0 = offs[t];
            const int bn = t + 1 < T ? bts[t + 1] : 0;
            float *g = w->g + (size_t)o0 * G4;
            for (int j = 0; j < bt; j++) {
                float *dhn = dhn0 + (size_t)j * H, *dcn = dcn0 + (size_t)j * H;
                if (j >= bn) { /* the sequence ends at t: nothing flows back from t + 1 */
                    memset(dhn, 0, sizeof(float) * H);
                    memset(dcn, 0, sizeof(float) * H);
                }
                lstm_cell_backward(H, g + (size_t)j * G4, w->cp + (size_t)(o0 + j) * H,
                                   w->tc + (size_t)(o0 + j) * H, w->dh + (size_t)(o0 + j) * H, dhn, dcn);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, H, G4, 1.0f, g, G4, c->m->p.lstm_wh, H, 0.0f,
                        dhn0, H);
        }
    }
}

/* gate rows [b, e) of the LSTM weights: dWh += dG^T h_{t-1}, dWx += dG^T x,
 * db += colsum dG */
static void part_lstm_weights(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    rc_work *w = c->w;
    const int H = c->m->cfg.n_hid, E = c->m->cfg.n_emb, G4 = 4 * H, k = (int)(e - b);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, H, c->N, 1.0f, w->g + b, G4, w->hp, H, 1.0f,
                c->m->g.lstm_wh + b * H, H);
    dense_weight_grad(w->g, w->x, c->N, E, G4, b, e, c->m->g.lstm_wx, c->m->g.lstm_b);
}

/* packed rows [b, e): d x = dG Wx */
static void part_lstm_inputs(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    const int E = c->m->cfg.n_emb, G4 = 4 * c->m->cfg.n_hid;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(e - b), E, G4, 1.0f, c->w->g + b * G4, G4,
                c->m->p.lstm_wx, E, 0.0f, c->w->dx + b * E, E);
}

/* vocabulary ids [b, e): d x rows of those tokens added to the embedding */
static void part_embedding_grad(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    const int E = c->m->cfg.n_emb;
    for (int r = 0; r < c->N; r++) {
        const size_t id = (size_t)c->w->xtok[r];
        if (id < b || id >= e) continue;
        float *restrict de = c->m->g.emb + id * E;
        const float *restrict d = c->w->dx + (size_t)r * E;
        for (int k = 0; k < E; k++) de[k] += d[k];
    }
}

/* output features [b, e) of img1: its weight gradient */
static void part_img1_weights(void *vc, size_t b, size_t e, int tid)
{
    fb_ctx *c = vc;
    const dec_config *cf = &c->m->cfg;
    dense_weight_grad(c->w->da1, c->w->ximg, c->n_active, cf->n_img, cf->n_img1, b, e, c->m->g.img1_w,
                      c->m->g.img1_b);
}

static imcap_status rc_forward_backward(dec_model *m, void *vw, const float *img, const int32_t *tokens,
                                        const float *row_w, const dec_mask *mask, int b, int t1, bool backward,
                                        float *d_img, float *loss, int64_t *n_targets)
{
    rc_work *w = vw;
    const dec_config *c = &m->cfg;
    const int D = c->n_img, A = c->n_img1, H = c->n_hid, V = c->n_vocab;
    const int T = t1 - 1, ns = w->nsub;
    *loss = 0.0f;
    if (n_targets) *n_targets = 0;
    if (memcmp(&w->cfg, c, sizeof *c) != 0)
        return imcap_fail(IMCAP_E_MISMATCH, "decoder workspace was made for another configuration");
    if (b < 1 || b > w->max_b || t1 < 2 || t1 > w->max_t1)
        return imcap_fail(IMCAP_E_ARG, "decoder batch %d x %d exceeds the workspace (%d x %d)", b, t1, w->max_b,
                          w->max_t1);
    if (backward && !m->grads) return imcap_fail(IMCAP_E_ARG, "decoder model has no gradient buffer");
    for (size_t i = 0; i < (size_t)b * t1; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return imcap_fail(IMCAP_E_ARG, "token id %d at batch row %zu, position %zu outside the vocabulary of %d",
                              (int)tokens[i], i / t1, i % t1, V);

    /* Lengths; active sequences by decreasing length (stable) dealt to the
     * sub-batches round-robin; each sub-batch packed step after step. */
    int n_active = 0;
    for (int r = 0; r < b; r++) {
        int L = 0;
        for (int t = 0; t < T; t++)
            if (tokens[(size_t)r * t1 + t + 1] != c->pad_id) L = t + 1;
        w->len[r] = L;
        n_active += L > 0;
    }
    {
        int k = 0;
        for (int L = T; L >= 1; L--)
            for (int r = 0; r < b; r++)
                if (w->len[r] == L) w->xtok[k++] = r; /* sorted order; xtok is free until the rows are packed */
        for (int s = 0, q = 0; s < ns; s++) {
            w->base[s] = q;
            for (int i = s; i < n_active; i += ns) w->perm[q++] = w->xtok[i];
        }
        w->base[ns] = n_active;
    }
    int N = 0, n_tgt = 0;
    for (int s = 0; s < ns; s++) {
        int *bts = w->bt + (size_t)s * w->max_t1, *offs = w->off + (size_t)s * w->max_t1;
        const int k0 = w->base[s], cnt = w->base[s + 1] - k0;
        w->rows[s] = N;
        for (int t = 0; t < T; t++) {
            int bt = 0;
            while (bt < cnt && w->len[w->perm[k0 + bt]] > t) bt++;
            bts[t] = bt;
            offs[t] = N;
            for (int j = 0; j < bt; j++) {
                const int32_t *row = tokens + (size_t)w->perm[k0 + j] * t1;
                w->xtok[N + j] = row[t];
                w->tgt[N + j] = row[t + 1];
                w->rid[N + j] = (uint32_t)((size_t)w->perm[k0 + j] * t1 + t);
                n_tgt += row[t + 1] != c->pad_id;
            }
            N += bt;
        }
    }
    w->rows[ns] = N;
    if (n_targets) *n_targets = n_tgt;
    if (backward) memset(m->grads, 0, m->n_params * sizeof(float));
    if (backward && d_img) memset(d_img, 0, sizeof(float) * (size_t)b * D);
    if (N == 0) return IMCAP_OK;

    fb_ctx cx = {.m = m, .w = w, .img = img, .N = N, .n_active = n_active, .T = T,
                 .scale = n_tgt > 0 ? 1.0f / (float)n_tgt : 0.0f, .pad = c->pad_id,
                 .drop = backward ? w->drop : 0.0f, .row_w = row_w, .t1 = t1, .mask = mask};
    ops_blas_enter();
    ops_parallel((size_t)n_active, per_thread((size_t)n_active), part_img_forward, &cx);
    ops_parallel((size_t)N, per_thread((size_t)N), part_input_projection, &cx);
    ops_parallel((size_t)ns, 1, part_recurrence, &cx);
    ops_parallel((size_t)N, per_thread((size_t)N), part_output_forward, &cx);
    double total = 0.0;
    for (int r = 0; r < N; r++) total += w->rowloss[r];
    *loss = n_tgt > 0 ? (float)(total / n_tgt) : 0.0f;
    if (backward) {
        ops_parallel((size_t)V, per_thread((size_t)V), part_out2_weights, &cx);
        ops_parallel((size_t)N, per_thread((size_t)N), part_output_backward, &cx);
        ops_parallel((size_t)c->n_out1, per_thread((size_t)c->n_out1), part_out1_weights, &cx);
        ops_parallel((size_t)ns, 1, part_bptt, &cx);
        ops_parallel((size_t)4 * H, per_thread((size_t)4 * H), part_lstm_weights, &cx);
        ops_parallel((size_t)N, per_thread((size_t)N), part_lstm_inputs, &cx);
        ops_parallel((size_t)V, per_thread((size_t)V), part_embedding_grad, &cx);
        /* image MLP (small): h0 and c0 are both a2 */
        for (size_t i = 0; i < (size_t)n_active * H; i++) w->da2[i] = w->dhn[i] + w->dcn[i];
        elu_backward(w->da2, w->a2, (size_t)n_active * H);
        dense_backward(w->da2, w->a1, m->p.img2_w, n_active, A, H, m->g.img2_w, m->g.img2_b, w->da1);
        elu_backward(w->da1, w->a1, (size_t)n_active * A);
        ops_parallel((size_t)A, per_thread((size_t)A), part_img1_weights, &cx);
        if (d_img) {
            /* d img overwrites the gathered images (no longer needed) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_active, D, A, 1.0f, w->da1, A, m->p.img1_w, D,
                        0.0f, w->ximg, D);
            for (int j = 0; j < n_active; j++)
                memcpy(d_img + (size_t)w->perm[j] * D, w->ximg + (size_t)j * D, sizeof(float) * D);
        }
    }
    ops_blas_leave();
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- inference */

/* State of one hypothesis: [h (H); c (H)]; no per-photo context. */
static size_t rc_context_floats(const dec_config *cfg) { return 0; }
static size_t rc_state_floats(const dec_config *cfg) { return 2 * (size_t)cfg->n_hid; }

static imcap_status rc_init_state(const dec_model *m, const float *img, int n, float *ctx, size_t ctx_stride,
                                  float *state, size_t state_stride)
{
    const dec_config *cf = &m->cfg;
    const size_t H = (size_t)cf->n_hid;
    float *a1 = imcap_alloc((size_t)n * cf->n_img1, sizeof(float));
    float *h = imcap_alloc((size_t)n * H, sizeof(float));
    if (!a1 || !h) {
        imcap_free(a1);
        imcap_free(h);
        return IMCAP_E_NOMEM;
    }
    dense_forward(img, m->p.img1_w, m->p.img1_b, n, cf->n_img, cf->n_img1, a1);
    elu_forward(a1, (size_t)n * cf->n_img1);
    dense_forward(a1, m->p.img2_w, m->p.img2_b, n, cf->n_img1, cf->n_hid, h);
    elu_forward(h, (size_t)n * H);
    for (int r = 0; r < n; r++) {
        memcpy(state + (size_t)r * state_stride, h + (size_t)r * H, sizeof(float) * H);
        memcpy(state + (size_t)r * state_stride + H, h + (size_t)r * H, sizeof(float) * H);
    }
    imcap_free(a1);
    imcap_free(h);
    return IMCAP_OK;
}

static size_t rc_step_scratch_floats(const dec_config *cfg, int n)
{
    return (size_t)n * ((size_t)cfg->n_emb + 8 * (size_t)cfg->n_hid + (size_t)cfg->n_out1) + (size_t)cfg->n_hid;
}

static void rc_step(const dec_model *m, const float *ctx, size_t ctx_stride, bool shared_ctx, const int32_t *tokens,
                    int n, const float *state, size_t state_stride, float *logits, float *state_out, float *attn,
                    float *scratch)
{
    const dec_config *cf = &m->cfg;
    const int H = cf->n_hid, E = cf->n_emb, G4 = 4 * H, O = cf->n_out1;
    /* scratch: x [n][E], g [n][4H], hp [n][H], cp [n][H], hn [n][H], cn [n][H], y1 [n][O], tc [H] */
    float *x = scratch, *g = x + (size_t)n * E, *hp = g + (size_t)n * G4, *cp = hp + (size_t)n * H;
    float *hn = cp + (size_t)n * H, *cn = hn + (size_t)n * H;
    float *y1 = cn + (size_t)n * H, *tc = y1 + (size_t)n * O;
    for (int r = 0; r < n; r++) {
        memcpy(x + (size_t)r * E, m->p.emb + (size_t)tokens[r] * E, sizeof(float) * E);
        memcpy(hp + (size_t)r * H, state + (size_t)r * state_stride, sizeof(float) * H);
        memcpy(cp + (size_t)r * H, state + (size_t)r * state_stride + H, sizeof(float) * H);
    }
    small_nt(x, n, m->p.lstm_wx, m->p.lstm_b, E, G4, g, false);
    small_nt(hp, n, m->p.lstm_wh, NULL, H, G4, g, true);
    for (int r = 0; r < n; r++)
        lstm_cell_forward(H, g + (size_t)r * G4, cp + (size_t)r * H, cn + (size_t)r * H, tc, hn + (size_t)r * H);
    for (int r = 0; r < n; r++) {
        memcpy(state_out + (size_t)r * state_stride, hn + (size_t)r * H, sizeof(float) * H);
        memcpy(state_out + (size_t)r * state_stride + H, cn + (size_t)r * H, sizeof(float) * H);
        if (attn) attn[r] = 1.0f;
    }
    small_nt(hn, n, m->p.out1_w, m->p.out1_b, H, O, y1, false);
    elu_forward(y1, (size_t)n * O);
    small_nt(y1, n, m->p.out2_w, m->p.out2_b, O, cf->n_vocab, logits, false);
}

static imcap_status rc_work_new(const dec_config *cfg, int max_b, int max_t1, void **out)
{
    rc_work *w;
    imcap_status s = rc_work_new_impl(cfg, max_b, max_t1, &w);
    *out = w;
    return s;
}

static void rc_work_free(void *w) { rc_work_free_impl(w); }

const dec_arch dec_arch_recipe = {
    .name = "recipe",
    .check = rc_check,
    .n_tensors = rc_n_tensors,
    .tensor_at = rc_tensor_at,
    .init = rc_init,
    .work_new = rc_work_new,
    .work_free = rc_work_free,
    .set_dropout = rc_set_dropout,
    .set_reg = NULL,
    .forward_backward = rc_forward_backward,
    .context_floats = rc_context_floats,
    .state_floats = rc_state_floats,
    .init_state = rc_init_state,
    .step_scratch_floats = rc_step_scratch_floats,
    .step = rc_step,
};
