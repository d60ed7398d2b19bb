/*
 * decoder.c - the LSTM caption decoder: forward and backward side by side.
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
#include "decoder.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

dec_config dec_default_config(int n_img, int n_vocab)
{
    dec_config c = {.n_img = n_img, .n_img1 = 120, .n_hid = 300, .n_emb = 100, .n_out1 = 120,
                    .n_vocab = n_vocab, .pad_id = 0};
    return c;
}

imcap_status dec_config_check(const dec_config *c)
{
    const int lim = 1 << 20;
    if (c->n_img < 1 || c->n_img > lim || c->n_img1 < 1 || c->n_img1 > lim || c->n_hid < 1 ||
        c->n_hid > (1 << 16) || c->n_emb < 1 || c->n_emb > lim || c->n_out1 < 1 || c->n_out1 > lim ||
        c->n_vocab < 2 || c->n_vocab > (1 << 24))
        return imcap_fail(IMCAP_E_ARG,
                          "decoder config out of range: img %d, img1 %d, hid %d, emb %d, out1 %d, vocab %d",
                          c->n_img, c->n_img1, c->n_hid, c->n_emb, c->n_out1, c->n_vocab);
    if (c->pad_id < 0 || c->pad_id >= c->n_vocab)
        return imcap_fail(IMCAP_E_ARG, "decoder config: pad id %d outside the vocabulary of %d", c->pad_id,
                          c->n_vocab);
    return IMCAP_OK;
}

dec_tensor_info dec_tensor_at(const dec_config *c, int i)
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

static void set_views(const dec_config *c, float *base, dec_tensors *t)
{
    float **v[DEC_N_TENSORS] = {&t->img1_w, &t->img1_b, &t->img2_w,  &t->img2_b, &t->emb,    &t->lstm_wx,
                                &t->lstm_wh, &t->lstm_b, &t->out1_w, &t->out1_b, &t->out2_w, &t->out2_b};
    for (int i = 0; i < DEC_N_TENSORS; i++) *v[i] = base + dec_tensor_at(c, i).offset;
}

imcap_status dec_model_new(const dec_config *cfg, bool with_grads, dec_model **out)
{
    *out = NULL;
    imcap_status s = dec_config_check(cfg);
    if (s) return s;
    dec_model *m = imcap_calloc(1, sizeof *m);
    if (!m) return IMCAP_E_NOMEM;
    m->cfg = *cfg;
    m->n_params = dec_tensor_at(cfg, DEC_N_TENSORS).offset;
    m->params = imcap_calloc(m->n_params, sizeof(float));
    if (!m->params) goto nomem;
    set_views(cfg, m->params, &m->p);
    if (with_grads) {
        m->grads = imcap_calloc(m->n_params, sizeof(float));
        if (!m->grads) goto nomem;
        set_views(cfg, m->grads, &m->g);
    }
    *out = m;
    return IMCAP_OK;
nomem:
    dec_model_free(m);
    return IMCAP_E_NOMEM;
}

void dec_model_free(dec_model *m)
{
    if (!m) return;
    imcap_free(m->params);
    imcap_free(m->grads);
    imcap_free(m);
}

static void init_uniform(float *w, size_t n, double a, imcap_rng *rng)
{
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * imcap_rng_uniform(rng) - 1.0) * a);
}

static void init_glorot(float *w, int rows, int cols, imcap_rng *rng)
{
    init_uniform(w, (size_t)rows * cols, sqrt(6.0 / (rows + cols)), rng);
}

/* w [rows][cols], rows >= cols: normal entries, then modified Gram-Schmidt
 * on the columns (in double) so that the columns are orthonormal. */
static void init_orthogonal(float *w, int rows, int cols, imcap_rng *rng)
{
    double *a = malloc(sizeof(double) * (size_t)rows * cols);
    if (!a) {
        init_glorot(w, rows, cols, rng);
        return;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) a[i] = imcap_rng_normal(rng);
    for (int j = 0; j < cols; j++) {
        for (int k = 0; k < j; k++) {
            double d = 0;
            for (int r = 0; r < rows; r++) d += a[(size_t)r * cols + j] * a[(size_t)r * cols + k];
            for (int r = 0; r < rows; r++) a[(size_t)r * cols + j] -= d * a[(size_t)r * cols + k];
        }
        double n = 0;
        for (int r = 0; r < rows; r++) n += a[(size_t)r * cols + j] * a[(size_t)r * cols + j];
        n = n > 0 ? 1.0 / sqrt(n) : 0.0;
        for (int r = 0; r < rows; r++) a[(size_t)r * cols + j] *= n;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)a[i];
    free(a);
}

void dec_model_init(dec_model *m, imcap_rng *rng)
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

/* ------------------------------------------------------------ elementwise */

/* e^x, x clamped to [-87, 88]: x = n ln2 + r with |r| <= ln2/2, e^r by
 * the Cephes degree-7 polynomial, 2^n built in the exponent bits. Relative
 * error about 2e-7. Branch-free and call-free so that loops calling it are
 * vectorized (AVX2 with this build's flags). */
static inline float exp_fast(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

/* tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error about 2e-7. */
static inline float tanh_fast(float x) { return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f); }

/* y = x W^T + b for x [n][in], W [out][in], b [out] -> y [n][out]. */
static void dense_forward(const float *x, const float *w, const float *b, int n, int in, int out, float *y)
{
    for (int r = 0; r < n; r++) memcpy(y + (size_t)r * out, b, sizeof(float) * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

/* Given dy [n][out] and the layer input x [n][in]: dW += dy^T x, db += colsum
 * dy, and dx = dy W (if dx). */
static void dense_backward(const float *dy, const float *x, const float *w, int n, int in, int out, float *dw,
                           float *db, float *dx)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    for (int r = 0; r < n; r++) {
        const float *d = dy + (size_t)r * out;
        for (int j = 0; j < out; j++) db[j] += d[j];
    }
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

static void elu_forward(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = exp_fast(y[i]) - 1.0f;
        y[i] = y[i] > 0.0f ? y[i] : e;
    }
}

/* dy *= ELU'(x) written with the ELU output y: 1 if y > 0 else y + 1. */
static void elu_backward(float *dy, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) dy[i] *= y[i] > 0.0f ? 1.0f : y[i] + 1.0f;
}

/* ---------------------------------------------------------------- workspace */

struct dec_work {
    dec_config cfg;
    int max_b, max_t1;
    size_t max_n;
    int *len, *perm, *bt, *off;   /* [max_b], [max_b], [max_t1], [max_t1 + 1] */
    int32_t *xtok, *tgt;          /* [max_n] input token and target of each packed row */
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
    float *cend;                  /* [H] scratch for the last c of a sequence */
    float *da2, *da1;             /* [max_b][H], [max_b][n_img1] */
};

void dec_work_free(dec_work *w)
{
    if (!w) return;
    void *p[] = {w->len, w->perm, w->bt, w->off, w->xtok, w->tgt, w->a1, w->a2, w->x, w->g, w->hp, w->cp,
                 w->tc, w->h, w->ximg, w->y1, w->dy1, w->lg, w->dh, w->dx, w->dhn, w->dcn, w->da2, w->da1, w->cend};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) imcap_free(p[i]);
    imcap_free(w);
}

imcap_status dec_work_new(const dec_config *c, int max_b, int max_t1, dec_work **out)
{
    *out = NULL;
    imcap_status s = dec_config_check(c);
    if (s) return s;
    if (max_b < 1 || max_b > (1 << 20) || max_t1 < 2 || max_t1 > (1 << 16))
        return imcap_fail(IMCAP_E_ARG, "decoder workspace: batch %d x length %d out of range", max_b, max_t1);
    dec_work *w = imcap_calloc(1, sizeof *w);
    if (!w) return IMCAP_E_NOMEM;
    w->cfg = *c;
    w->max_b = max_b;
    w->max_t1 = max_t1;
    size_t n = (size_t)max_b * (size_t)(max_t1 - 1), H = c->n_hid;
    w->max_n = n;
    bool ok = (w->len = imcap_alloc(max_b, sizeof(int))) && (w->perm = imcap_alloc(max_b, sizeof(int))) &&
              (w->bt = imcap_alloc(max_t1, sizeof(int))) && (w->off = imcap_alloc(max_t1 + 1, sizeof(int))) &&
              (w->xtok = imcap_alloc(n, sizeof(int32_t))) && (w->tgt = imcap_alloc(n, sizeof(int32_t))) &&
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
              (w->dx = imcap_alloc(n, sizeof(float) * c->n_emb)) &&
              (w->dhn = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->dcn = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->da2 = imcap_alloc((size_t)max_b * H, sizeof(float))) &&
              (w->da1 = imcap_alloc((size_t)max_b * c->n_img1, sizeof(float))) &&
              (w->cend = imcap_alloc(H, sizeof(float)));
    if (!ok) {
        dec_work_free(w);
        return IMCAP_E_NOMEM;
    }
    *out = w;
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- LSTM cell */

/* One row: g [4H] holds the gate pre-activations (i, f, g, o) and receives
 * the activations; cp = c_{t-1}; out: cn = c_t, tc = tanh(c_t), h = h_t. */
static void lstm_cell_forward(int H, float *restrict g, const float *restrict cp, float *restrict cn,
                              float *restrict tc, float *restrict h)
{
    for (int k = 0; k < H; k++) {
        const float i_ = sigmoid_fast(g[k]), f_ = sigmoid_fast(g[H + k]), g_ = tanh_fast(g[2 * H + k]),
                    o_ = sigmoid_fast(g[3 * H + k]);
        g[k] = i_;
        g[H + k] = f_;
        g[2 * H + k] = g_;
        g[3 * H + k] = o_;
        const float cc = f_ * cp[k] + i_ * g_;
        const float th = tanh_fast(cc);
        cn[k] = cc;
        tc[k] = th;
        h[k] = o_ * th;
    }
}

/* Backward of one row: g [4H] holds the activations and receives d loss /
 * d pre-activations; dho = d loss / d h_t from the outputs; dhn, dcn hold
 * d h_t, d c_t from step t + 1 and receive (dhn: unchanged, the caller
 * recomputes it with a GEMM) dcn = d c_{t-1}. */
static void lstm_cell_backward(int H, float *restrict g, const float *restrict cp, const float *restrict tc,
                               const float *restrict dho, const float *restrict dhn, float *restrict dcn)
{
    for (int k = 0; k < H; k++) {
        const float i_ = g[k], f_ = g[H + k], g_ = g[2 * H + k], o_ = g[3 * H + k], th = tc[k];
        const float dh = dho[k] + dhn[k];
        const float dc = dcn[k] + dh * o_ * (1.0f - th * th);
        dcn[k] = dc * f_;
        g[k] = dc * g_ * i_ * (1.0f - i_);
        g[H + k] = dc * cp[k] * f_ * (1.0f - f_);
        g[2 * H + k] = dc * i_ * (1.0f - g_ * g_);
        g[3 * H + k] = dh * th * o_ * (1.0f - o_);
    }
}

/* --------------------------------------------------------- forward/backward */

/* Softmax cross-entropy of one row of logits, in place: returns the loss and
 * leaves scale * (softmax - onehot(target)) in the row. */
static double softmax_xent_row(float *restrict z, int n, int target, float scale)
{
    /* 8 lanes of partial max / sum so that the reductions vectorize */
    float lane[8];
    for (int l = 0; l < 8; l++) lane[l] = z[0];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) lane[l] = z[j + l] > lane[l] ? z[j + l] : lane[l];
    float mx = lane[0];
    for (int l = 1; l < 8; l++) mx = lane[l] > mx ? lane[l] : mx;
    for (; j < n; j++) mx = z[j] > mx ? z[j] : mx;
    const float zt = z[target];
    for (int l = 0; l < 8; l++) lane[l] = 0.0f;
    for (j = 0; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            float e = exp_fast(z[j + l] - mx);
            z[j + l] = e;
            lane[l] += e;
        }
    float sum = 0.0f;
    for (; j < n; j++) {
        float e = exp_fast(z[j] - mx);
        z[j] = e;
        sum += e;
    }
    for (int l = 0; l < 8; l++) sum += lane[l];
    const float inv = scale / sum;
    for (j = 0; j < n; j++) z[j] *= inv;
    z[target] -= scale;
    return log((double)sum) - (double)(zt - mx);
}

imcap_status dec_forward_backward(dec_model *m, dec_work *w, const float *img, const int32_t *tokens, int b,
                                  int t1, bool backward, float *d_img, float *loss, int64_t *n_targets)
{
    const dec_config *c = &m->cfg;
    const int D = c->n_img, A = c->n_img1, H = c->n_hid, E = c->n_emb, O = c->n_out1, V = c->n_vocab;
    const int G4 = 4 * H, T = t1 - 1;
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

    /* Lengths, order by decreasing length (stable), active rows per step. */
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
                if (w->len[r] == L) w->perm[k++] = r;
    }
    int N = 0, n_tgt = 0;
    for (int t = 0; t < T; t++) {
        int bt = 0;
        while (bt < n_active && w->len[w->perm[bt]] > t) bt++;
        w->bt[t] = bt;
        w->off[t] = N;
        for (int j = 0; j < bt; j++) {
            const int32_t *row = tokens + (size_t)w->perm[j] * t1;
            w->xtok[N + j] = row[t];
            w->tgt[N + j] = row[t + 1];
            n_tgt += row[t + 1] != c->pad_id;
        }
        N += bt;
    }
    w->off[T] = N;
    if (n_targets) *n_targets = n_tgt;
    if (backward) memset(m->grads, 0, m->n_params * sizeof(float));
    if (backward && d_img) memset(d_img, 0, sizeof(float) * (size_t)b * D);
    if (N == 0) return IMCAP_OK;

    /* Image MLP for the active rows, in packed order: a2 = h0 = c0. */
    const dec_tensors *P = &m->p;
    for (int j = 0; j < n_active; j++)
        memcpy(w->ximg + (size_t)j * D, img + (size_t)w->perm[j] * D, sizeof(float) * D);
    dense_forward(w->ximg, P->img1_w, P->img1_b, n_active, D, A, w->a1);
    elu_forward(w->a1, (size_t)n_active * A);
    dense_forward(w->a1, P->img2_w, P->img2_b, n_active, A, H, w->a2);
    elu_forward(w->a2, (size_t)n_active * H);

    /* Embeddings and the input projection of every step: g = x Wx^T + b. */
    for (int r = 0; r < N; r++) memcpy(w->x + (size_t)r * E, P->emb + (size_t)w->xtok[r] * E, sizeof(float) * E);
    dense_forward(w->x, P->lstm_wx, P->lstm_b, N, E, G4, w->g);

    /* Recurrence: step t adds h_{t-1} Wh^T to its gates, then the cell. The
     * new h and c of the rows still active at t + 1 go to their hp/cp rows. */
    memcpy(w->hp, w->a2, sizeof(float) * (size_t)w->bt[0] * H);
    memcpy(w->cp, w->a2, sizeof(float) * (size_t)w->bt[0] * H);
    for (int t = 0; t < T && w->bt[t] > 0; t++) {
        const int bt = w->bt[t], o0 = w->off[t];
        const int bn = t + 1 < T ? w->bt[t + 1] : 0;
        float *g = w->g + (size_t)o0 * G4;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bt, G4, H, 1.0f, w->hp + (size_t)o0 * H, H,
                    P->lstm_wh, H, 1.0f, g, G4);
        for (int j = 0; j < bt; j++) {
            /* c_t goes to the next step's c_{t-1} row, or to scratch when
             * the sequence ends here; h_t likewise to h_{t-1} */
            float *h = w->h + (size_t)(o0 + j) * H;
            lstm_cell_forward(H, g + (size_t)j * G4, w->cp + (size_t)(o0 + j) * H,
                              j < bn ? w->cp + (size_t)(o0 + bt + j) * H : w->cend, w->tc + (size_t)(o0 + j) * H, h);
            if (j < bn) memcpy(w->hp + (size_t)(o0 + bt + j) * H, h, sizeof(float) * H);
        }
    }

    /* Output layers over all N rows and the loss. */
    dense_forward(w->h, P->out1_w, P->out1_b, N, H, O, w->y1);
    elu_forward(w->y1, (size_t)N * O);
    dense_forward(w->y1, P->out2_w, P->out2_b, N, O, V, w->lg);
    const float scale = n_tgt > 0 ? 1.0f / (float)n_tgt : 0.0f;
    double total = 0.0;
    for (int r = 0; r < N; r++) {
        float *z = w->lg + (size_t)r * V;
        if (w->tgt[r] == c->pad_id) {
            memset(z, 0, sizeof(float) * V);
            continue;
        }
        total += softmax_xent_row(z, V, w->tgt[r], scale);
    }
    *loss = n_tgt > 0 ? (float)(total / n_tgt) : 0.0f;
    if (!backward) return IMCAP_OK;

    /* ---- backward: lg holds d loss / d logits ---- */
    dec_tensors *Gd = &m->g;
    dense_backward(w->lg, w->y1, P->out2_w, N, O, V, Gd->out2_w, Gd->out2_b, w->dy1);
    elu_backward(w->dy1, w->y1, (size_t)N * O);
    dense_backward(w->dy1, w->h, P->out1_w, N, H, O, Gd->out1_w, Gd->out1_b, w->dh);

    /* Back through time; g becomes d loss / d gate pre-activations. dhn/dcn
     * carry d h_{t} and d c_{t} of step t + 1's rows back to step t. */
    int tl = T - 1;
    while (tl > 0 && w->bt[tl] == 0) tl--;
    for (int t = tl; t >= 0; t--) {
        const int bt = w->bt[t], o0 = w->off[t];
        const int bn = t + 1 < T ? w->bt[t + 1] : 0;
        float *g = w->g + (size_t)o0 * G4;
        for (int j = 0; j < bt; j++) {
            float *dhn = w->dhn + (size_t)j * H, *dcn = w->dcn + (size_t)j * H;
            if (j >= bn) { /* the sequence ends at t: nothing flows back from t + 1 */
                memset(dhn, 0, sizeof(float) * H);
                memset(dcn, 0, sizeof(float) * H);
            }
            lstm_cell_backward(H, g + (size_t)j * G4, w->cp + (size_t)(o0 + j) * H, w->tc + (size_t)(o0 + j) * H,
                               w->dh + (size_t)(o0 + j) * H, dhn, dcn);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, H, G4, 1.0f, g, G4, P->lstm_wh, H, 0.0f, w->dhn,
                    H);
    }
    /* LSTM weights: dWh += dG^T h_{t-1}, dWx += dG^T x, db += colsum dG,
     * d x = dG Wx scattered into the embedding rows. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, G4, H, N, 1.0f, w->g, G4, w->hp, H, 1.0f, Gd->lstm_wh, H);
    dense_backward(w->g, w->x, P->lstm_wx, N, E, G4, Gd->lstm_wx, Gd->lstm_b, w->dx);
    for (int r = 0; r < N; r++) {
        float *de = Gd->emb + (size_t)w->xtok[r] * E;
        const float *d = w->dx + (size_t)r * E;
        for (int k = 0; k < E; k++) de[k] += d[k];
    }

    /* Image MLP: h0 and c0 are both a2. */
    for (size_t i = 0; i < (size_t)n_active * H; i++) w->da2[i] = w->dhn[i] + w->dcn[i];
    elu_backward(w->da2, w->a2, (size_t)n_active * H);
    dense_backward(w->da2, w->a1, P->img2_w, n_active, A, H, Gd->img2_w, Gd->img2_b, w->da1);
    elu_backward(w->da1, w->a1, (size_t)n_active * A);
    /* d img overwrites the gathered images (their use for d W1 comes first). */
    dense_backward(w->da1, w->ximg, P->img1_w, n_active, D, A, Gd->img1_w, Gd->img1_b, d_img ? w->ximg : NULL);
    if (d_img)
        for (int j = 0; j < n_active; j++)
            memcpy(d_img + (size_t)w->perm[j] * D, w->ximg + (size_t)j * D, sizeof(float) * D);
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- inference */

imcap_status dec_init_state(const dec_model *m, const float *img, int n, float *h, float *c)
{
    const dec_config *cf = &m->cfg;
    if (n < 1) return imcap_fail(IMCAP_E_ARG, "dec_init_state: %d images", n);
    float *a1 = imcap_alloc((size_t)n * cf->n_img1, sizeof(float));
    if (!a1) return IMCAP_E_NOMEM;
    dense_forward(img, m->p.img1_w, m->p.img1_b, n, cf->n_img, cf->n_img1, a1);
    elu_forward(a1, (size_t)n * cf->n_img1);
    dense_forward(a1, m->p.img2_w, m->p.img2_b, n, cf->n_img1, cf->n_hid, h);
    elu_forward(h, (size_t)n * cf->n_hid);
    memcpy(c, h, sizeof(float) * (size_t)n * cf->n_hid);
    imcap_free(a1);
    return IMCAP_OK;
}

size_t dec_step_scratch_floats(const dec_config *cfg, int n)
{
    return (size_t)n * ((size_t)cfg->n_emb + 6 * (size_t)cfg->n_hid + (size_t)cfg->n_out1) + (size_t)cfg->n_hid;
}

void dec_step(const dec_model *m, const int32_t *tokens, int n, const float *h, const float *c, float *logits,
              float *h_out, float *c_out, float *scratch)
{
    const dec_config *cf = &m->cfg;
    const int H = cf->n_hid, E = cf->n_emb, G4 = 4 * H, O = cf->n_out1;
    /* scratch: x [n][E], g [n][4H], hn [n][H], cn [n][H], y1 [n][O], tc [H] */
    float *x = scratch, *g = x + (size_t)n * E, *hn = g + (size_t)n * G4, *cn = hn + (size_t)n * H;
    float *y1 = cn + (size_t)n * H, *tc = y1 + (size_t)n * O;
    for (int r = 0; r < n; r++) memcpy(x + (size_t)r * E, m->p.emb + (size_t)tokens[r] * E, sizeof(float) * E);
    dense_forward(x, m->p.lstm_wx, m->p.lstm_b, n, E, G4, g);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, G4, H, 1.0f, h, H, m->p.lstm_wh, H, 1.0f, g, G4);
    for (int r = 0; r < n; r++)
        lstm_cell_forward(H, g + (size_t)r * G4, c + (size_t)r * H, cn + (size_t)r * H, tc, hn + (size_t)r * H);
    memcpy(h_out, hn, sizeof(float) * (size_t)n * H);
    memcpy(c_out, cn, sizeof(float) * (size_t)n * H);
    dense_forward(hn, m->p.out1_w, m->p.out1_b, n, H, O, y1);
    elu_forward(y1, (size_t)n * O);
    dense_forward(y1, m->p.out2_w, m->p.out2_b, n, O, cf->n_vocab, logits);
}
