/*
 * attention.c - the soft-attention decoder (DEC_ARCH_ATTENTION, decoder.h;
 * Xu et al. 2015, "Show, Attend and Tell"), forward and backward.
 *
 * Input: a grid a_1..a_L of D features per photo (img [L][D], grid order).
 *   abar = mean_i a_i;  h0 = tanh(init_h abar),  c0 = tanh(init_c abar)
 *   P_i = att_a a_i + b                  (once per photo)        [L][A]
 * step t, from h = h_{t-1}, c = c_{t-1} and the input token x_t:
 *   e_i = v . tanh(P_i + att_h h)        alpha = softmax(e)      [L]
 *   z = sum_i alpha_i a_i                                        [D]
 *   beta = sigmoid(gate h + b)                                   [D]
 *   LSTM([emb(x_t); beta * z], h, c) -> h_t, c_t  (gates as the recipe's)
 *   y = ELU(out1 [drop(h_t); z; emb(x_t)] + b)   (deep output)   [O]
 *   logits = out2 y + b                                          [V]
 * Loss: the weighted masked cross-entropy of decoder.h plus the doubly
 * stochastic regulariser lambda / (R L) * sum_r sum_i (1 - sum_t alpha_rti)^2
 * over the R rows with a target, t over each row's steps.
 *
 * Training cuts a batch into AT_SHARDS shards of consecutive rows (by the
 * batch size alone, never by the thread count) that run the whole forward
 * and backward below on their own workspaces, one per worker thread
 * (ops_parallel; OpenBLAS single-threaded in each); each shard scales its
 * loss by the whole batch's target and active-row counts, keys its dropout
 * by the batch row, and fills its own gradient buffer; the buffers are
 * summed in shard order. The per-row attention backward is an ISA kernel
 * (dec_simd.h, att_backward_row).
 *
 * Each shard packs its rows like the recipe (recipe.c): a row's length is 1 +
 * its last step with a target, rows are sorted by decreasing length (the
 * photo order perm), and step t works on the first bt[t] of them, packed
 * row n = off[t] + j for sorted row j. Every weight gradient is one GEMM
 * over all N packed rows; per step only the products with h_{t-1} are
 * GEMMs of bt[t] rows.
 */
#include "dec_kernels.h"

enum {
    AT_INIT_H_W, AT_INIT_H_B, AT_INIT_C_W, AT_INIT_C_B, AT_EMB, AT_ATT_A_W, AT_ATT_A_B, AT_ATT_H_W, AT_ATT_V,
    AT_GATE_W, AT_GATE_B, AT_LSTM_WX, AT_LSTM_WH, AT_LSTM_B, AT_OUT1_W, AT_OUT1_B, AT_OUT2_W, AT_OUT2_B,
    AT_N_TENSORS
};

typedef struct at_tensors {
    float *ih_w; /* [H][D] */
    float *ih_b; /* [H] */
    float *ic_w; /* [H][D] */
    float *ic_b; /* [H] */
    float *emb;  /* [V][E] */
    float *aa_w; /* [A][D] */
    float *aa_b; /* [A] */
    float *ah_w; /* [A][H] */
    float *av;   /* [A] */
    float *g_w;  /* [D][H] */
    float *g_b;  /* [D] */
    float *wx;   /* [4H][E + D], rows i,f,g,o */
    float *wh;   /* [4H][H] */
    float *lb;   /* [4H] */
    float *o1_w; /* [O][H + D + E] */
    float *o1_b; /* [O] */
    float *o2_w; /* [V][O] */
    float *o2_b; /* [V] */
} at_tensors;

static imcap_status at_check(const dec_config *c)
{
    const int64_t L = (int64_t)c->grid_h * c->grid_w;
    if (c->n_img1 != 0 || c->grid_h < 1 || c->grid_w < 1 || L > 4096 || L * c->n_img > (1 << 26) || c->n_att < 1)
        return imcap_fail(IMCAP_E_ARG,
                          "attention decoder config: grid %dx%d of %d features, attention %d, img1 %d (must be 0) "
                          "out of range",
                          c->grid_h, c->grid_w, c->n_img, c->n_att, c->n_img1);
    return IMCAP_OK;
}

static int at_n_tensors(const dec_config *c) { return AT_N_TENSORS; }

static dec_tensor_info at_tensor_at(const dec_config *c, int i)
{
    const int64_t H = c->n_hid, D = c->n_img, E = c->n_emb, A = c->n_att, O = c->n_out1, V = c->n_vocab;
    struct { const char *name; int64_t r, k; } t[AT_N_TENSORS] = {
        {"init_h.weight", H, D},      {"init_h.bias", H, 0},      {"init_c.weight", H, D},
        {"init_c.bias", H, 0},        {"embed.weight", V, E},     {"att_a.weight", A, D},
        {"att_a.bias", A, 0},         {"att_h.weight", A, H},     {"att_v.weight", A, 0},
        {"gate.weight", D, H},        {"gate.bias", D, 0},        {"lstm.weight_ih", 4 * H, E + D},
        {"lstm.weight_hh", 4 * H, H}, {"lstm.bias", 4 * H, 0},    {"out1.weight", O, H + D + E},
        {"out1.bias", O, 0},          {"out2.weight", V, O},      {"out2.bias", V, 0},
    };
    dec_tensor_info info = {0};
    size_t off = 0;
    for (int j = 0; j <= i && j < AT_N_TENSORS; j++) {
        size_t size = (size_t)t[j].r * (size_t)(t[j].k ? t[j].k : 1);
        size_t padded = (size + 15) & ~(size_t)15; /* 64-byte aligned views */
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
    if (i == AT_N_TENSORS) info.offset = off;
    return info;
}

static at_tensors at_views(const dec_config *c, float *base)
{
    at_tensors t;
    float **v[AT_N_TENSORS] = {&t.ih_w, &t.ih_b, &t.ic_w, &t.ic_b, &t.emb, &t.aa_w, &t.aa_b, &t.ah_w, &t.av,
                               &t.g_w,  &t.g_b,  &t.wx,   &t.wh,   &t.lb,  &t.o1_w, &t.o1_b, &t.o2_w, &t.o2_b};
    for (int i = 0; i < AT_N_TENSORS; i++) *v[i] = base + at_tensor_at(c, i).offset;
    return t;
}

/* Glorot-uniform dense kernels (the LSTM's input kernel over [emb; z]),
 * orthogonal recurrent kernel, biases zero except the forget gate's 1,
 * embedding U(-0.05, 0.05). */
static void at_init(dec_model *m, imcap_rng *rng)
{
    const dec_config *c = &m->cfg;
    const int H = c->n_hid, D = c->n_img, E = c->n_emb, A = c->n_att, O = c->n_out1, V = c->n_vocab;
    memset(m->params, 0, m->n_params * sizeof(float));
    at_tensors p = at_views(c, m->params);
    init_glorot(p.ih_w, H, D, rng);
    init_glorot(p.ic_w, H, D, rng);
    init_uniform(p.emb, (size_t)V * E, 0.05, rng);
    init_glorot(p.aa_w, A, D, rng);
    init_glorot(p.ah_w, A, H, rng);
    init_glorot(p.av, 1, A, rng);
    init_glorot(p.g_w, D, H, rng);
    init_glorot(p.wx, 4 * H, E + D, rng);
    init_orthogonal(p.wh, 4 * H, H, rng);
    for (int j = 0; j < H; j++) p.lb[H + j] = 1.0f;
    init_glorot(p.o1_w, O, H + D + E, rng);
    init_glorot(p.o2_w, V, O, rng);
}

/* ---------------------------------------------------------------- attention */

/* One row's attention (dec_isa.h): alpha [L] and z [D]. */
static void attend(int L, int A, int D, const float *P, const float *q, const float *v, const float *a,
                   float *alpha, float *z)
{
    dec_kernels_active()->att_forward_row(L, A, D, P, q, v, a, alpha, z);
}

/* y [n][out] = x [n][in] W^T (no bias; accumulate: y += ...). */
static void gemm_nt(const float *x, const float *w, int n, int in, int out, float *y, bool accumulate)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, accumulate ? 1.0f : 0.0f, y,
                out);
}

/* dW [out][in] += dy^T x over n rows (row strides ldy, ldx); db += colsum dy. */
static void weight_grad(const float *dy, int ldy, const float *x, int ldx, int n, int in, int out, float *dw,
                        float *db)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, ldy, x, ldx, 1.0f, dw, in);
    if (db)
        for (int r = 0; r < n; r++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)r * ldy + j];
}

/* ---------------------------------------------------------------- workspace */

typedef struct at_work {
    dec_config cfg;
    int max_b, max_t1;
    float drop, lambda;
    uint64_t drop_seed;
    int *len;               /* [max_b] steps of each batch row */
    int *perm;              /* [max_b] sorted position -> batch row (decreasing length) */
    int *bt, *off;          /* [max_t1] rows alive at step t, their first packed row */
    int32_t *xtok, *tgt;    /* [N] input token and target of each packed row */
    uint32_t *rid;          /* [N] batch row * t1 + t: the dropout mask's key */
    float *mean;            /* [max_b][D] mean of the grid, sorted order */
    float *P, *dP;          /* [max_b][L][A] att_a a_i + b, its gradient */
    float *S;               /* [max_b][L] sum over the row's steps of alpha */
    float *hp, *cp;         /* [N][H] h_{t-1}, c_{t-1} of each packed row (step 0: h0, c0) */
    float *hn, *cn;         /* [N][H] h_t, c_t */
    float *tc;              /* [N][H] tanh(c_t) */
    float *q, *dq;          /* [N][A] att_h h_{t-1}, its gradient */
    float *alpha;           /* [N][L] */
    float *z, *beta, *dbp;  /* [N][D] context, gate, d gate pre-activation */
    float *xin, *dxin;      /* [N][E + D] LSTM input [emb; beta z], its gradient */
    float *g;               /* [N][4H] gate activations, then d pre-activations */
    float *o, *dO;          /* [N][H + D + E] deep output input [drop(h); z; emb], its gradient */
    float *y1, *dy1;        /* [N][O] */
    float *lg;              /* [N][V] logits, then d logits */
    float *dhn, *dcn;       /* [max_b][H] sorted order */
    float *dmean, *da;      /* [max_b][D], [max_b][L][D] */
    float *tmp;             /* [max_b][max(4H, D)] */
} at_work;

static void at_shard_work_free(at_work *w)
{
    if (!w) return;
    void *p[] = {w->len, w->perm, w->bt, w->off, w->rid, w->hn, w->cn,
                 w->xtok, w->tgt, w->mean, w->P, w->dP, w->S, w->hp, w->cp, w->tc, w->q,
                 w->dq, w->alpha, w->z, w->beta, w->dbp, w->xin, w->dxin, w->g, w->o, w->dO, w->y1, w->dy1,
                 w->lg, w->dhn, w->dcn, w->dmean, w->da, w->tmp};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) imcap_free(p[i]);
    imcap_free(w);
}

static imcap_status at_shard_work_new(const dec_config *c, int max_b, int max_t1, at_work **out)
{
    *out = NULL;
    at_work *w = imcap_calloc(1, sizeof *w);
    if (!w) return IMCAP_E_NOMEM;
    w->cfg = *c;
    w->max_b = max_b;
    w->max_t1 = max_t1;
    const size_t B = (size_t)max_b, N = B * (size_t)(max_t1 - 1), H = c->n_hid, D = c->n_img, E = c->n_emb,
                 A = c->n_att, O = c->n_out1, V = c->n_vocab, L = (size_t)dec_regions(c);
    const size_t big = 4 * H > D ? 4 * H : D;
    bool ok = (w->len = imcap_alloc(B, sizeof(int))) && (w->perm = imcap_alloc(B, sizeof(int))) &&
              (w->bt = imcap_alloc((size_t)max_t1, sizeof(int))) && (w->off = imcap_alloc((size_t)max_t1, sizeof(int))) &&
              (w->rid = imcap_alloc(N, sizeof(uint32_t))) && (w->hn = imcap_alloc(N * H, sizeof(float))) &&
              (w->cn = imcap_alloc(N * H, sizeof(float))) && (w->xtok = imcap_alloc(N, sizeof(int32_t))) &&
              (w->tgt = imcap_alloc(N, sizeof(int32_t))) &&
              (w->mean = imcap_alloc(B * D, sizeof(float))) && (w->P = imcap_alloc(B * L * A, sizeof(float))) &&
              (w->dP = imcap_alloc(B * L * A, sizeof(float))) && (w->S = imcap_alloc(B * L, sizeof(float))) &&
              (w->hp = imcap_alloc(N * H, sizeof(float))) && (w->cp = imcap_alloc(N * H, sizeof(float))) &&
              (w->tc = imcap_alloc(N * H, sizeof(float))) && (w->q = imcap_alloc(N * A, sizeof(float))) &&
              (w->dq = imcap_alloc(N * A, sizeof(float))) && (w->alpha = imcap_alloc(N * L, sizeof(float))) &&
              (w->z = imcap_alloc(N * D, sizeof(float))) && (w->beta = imcap_alloc(N * D, sizeof(float))) &&
              (w->dbp = imcap_alloc(N * D, sizeof(float))) && (w->xin = imcap_alloc(N * (E + D), sizeof(float))) &&
              (w->dxin = imcap_alloc(N * (E + D), sizeof(float))) && (w->g = imcap_alloc(N * 4 * H, sizeof(float))) &&
              (w->o = imcap_alloc(N * (H + D + E), sizeof(float))) &&
              (w->dO = imcap_alloc(N * (H + D + E), sizeof(float))) && (w->y1 = imcap_alloc(N * O, sizeof(float))) &&
              (w->dy1 = imcap_alloc(N * O, sizeof(float))) && (w->lg = imcap_alloc(N * V, sizeof(float))) &&
              (w->dhn = imcap_alloc(B * H, sizeof(float))) && (w->dcn = imcap_alloc(B * H, sizeof(float))) &&
              (w->dmean = imcap_alloc(B * D, sizeof(float))) && (w->da = imcap_alloc(B * L * D, sizeof(float))) &&
              (w->tmp = imcap_alloc(B * big, sizeof(float)));
    if (!ok) {
        at_shard_work_free(w);
        return imcap_fail(IMCAP_E_NOMEM, "attention decoder workspace: out of memory for %d x %d tokens", max_b,
                          max_t1);
    }
    *out = w;
    return IMCAP_OK;
}

/* The workspace of a batch: AT_SHARDS shard workspaces of ceil(max_b /
 * AT_SHARDS) rows; shard s > 0 fills grads[s - 1] ([n_params] each), shard 0
 * the model's gradient buffer. */
enum { AT_SHARDS = 2 };

typedef struct at_works {
    int max_b, max_t1;
    size_t n_params;
    at_work *sh[AT_SHARDS];
    float *grads[AT_SHARDS - 1];
} at_works;

static void at_work_free(void *vw)
{
    at_works *w = vw;
    if (!w) return;
    for (int s = 0; s < AT_SHARDS; s++) at_shard_work_free(w->sh[s]);
    for (int s = 0; s + 1 < AT_SHARDS; s++) imcap_free(w->grads[s]);
    imcap_free(w);
}

static imcap_status at_work_new(const dec_config *c, int max_b, int max_t1, void **out)
{
    *out = NULL;
    if (max_b < 1 || max_b > (1 << 16) || max_t1 < 2 || max_t1 > 1024)
        return imcap_fail(IMCAP_E_ARG, "attention decoder workspace: batch %d x length %d out of range", max_b,
                          max_t1);
    at_works *w = imcap_calloc(1, sizeof *w);
    if (!w) return IMCAP_E_NOMEM;
    w->max_b = max_b;
    w->max_t1 = max_t1;
    w->n_params = at_tensor_at(c, AT_N_TENSORS).offset;
    const int rows = (max_b + AT_SHARDS - 1) / AT_SHARDS;
    imcap_status st = IMCAP_OK;
    for (int s = 0; s < AT_SHARDS && !st; s++) st = at_shard_work_new(c, rows, max_t1, &w->sh[s]);
    for (int s = 0; s + 1 < AT_SHARDS && !st; s++)
        if (!(w->grads[s] = imcap_alloc(w->n_params, sizeof(float))))
            st = imcap_fail(IMCAP_E_NOMEM, "attention decoder workspace: out of memory for a gradient buffer of %zu "
                            "parameters", w->n_params);
    if (st) {
        at_work_free(w);
        return st;
    }
    *out = w;
    return IMCAP_OK;
}

static void at_set_dropout(void *vw, float p, uint64_t seed)
{
    at_works *w = vw;
    for (int s = 0; s < AT_SHARDS; s++) {
        w->sh[s]->drop = p > 0.0f && p < 1.0f ? p : 0.0f;
        w->sh[s]->drop_seed = seed;
    }
}

static void at_set_reg(void *vw, float lambda)
{
    at_works *w = vw;
    for (int s = 0; s < AT_SHARDS; s++) w->sh[s]->lambda = lambda > 0.0f && isfinite(lambda) ? lambda : 0.0f;
}

/* --------------------------------------------------------- forward/backward */

static void tanh_rows(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanh_fast(y[i]);
}

/* What one shard's pass shares with the batch: the whole batch's target and
 * active-row counts (the loss scales), the shard's first batch row (the
 * dropout key is the batch row's), the gradient buffer it fills, and its
 * partial sums of the loss. */
typedef struct at_shard {
    int n_tgt, n_active; /* of the whole batch */
    int r0;              /* first batch row of the shard */
    float *grads;        /* [n_params], overwritten */
    double total, rsum;  /* out: sum of weighted cross-entropies, of the regulariser's squares */
} at_shard;

/* The batch's rows with at least one target and its count of targets. */
static void at_count(const dec_config *c, const int32_t *tokens, int b, int t1, int *n_active, int *n_tgt)
{
    *n_active = *n_tgt = 0;
    for (int r = 0; r < b; r++) {
        int k = 0;
        for (int t = 1; t < t1; t++) k += tokens[(size_t)r * t1 + t] != c->pad_id;
        *n_tgt += k;
        *n_active += k > 0;
    }
}

/* Forward (and backward) of the b rows of one shard: img, tokens, row_w
 * and d_img point at its first row; sh->grads receives its gradients. */
static void at_shard_pass(const dec_model *m, at_work *w, const float *img, const int32_t *tokens,
                          const float *row_w, const dec_mask *mask, int b, int t1, bool backward, float *d_img,
                          at_shard *sh)
{
    const dec_config *c = &m->cfg;
    const int H = c->n_hid, D = c->n_img, E = c->n_emb, A = c->n_att, O = c->n_out1, V = c->n_vocab;
    const int L = dec_regions(c), G4 = 4 * H, XI = E + D, OI = H + D + E, T = t1 - 1;
    const at_tensors p = at_views(c, m->params);
    const float drop = backward ? w->drop : 0.0f;
    const uint32_t rid0 = (uint32_t)((size_t)sh->r0 * t1);
    int n_active = 0, Tm = 0;
    for (int r = 0; r < b; r++) {
        int len = 0;
        for (int t = 0; t < T; t++)
            if (tokens[(size_t)r * t1 + t + 1] != c->pad_id) len = t + 1;
        w->len[r] = len;
        n_active += len > 0;
        Tm = len > Tm ? len : Tm;
    }
    sh->total = sh->rsum = 0.0;
    if (backward) memset(sh->grads, 0, m->n_params * sizeof(float));
    if (backward && d_img) memset(d_img, 0, sizeof(float) * (size_t)b * L * D);
    if (Tm == 0) return;
    /* rows by decreasing length (stable), packed step after step */
    int k = 0;
    for (int len = Tm; len >= 1; len--)
        for (int r = 0; r < b; r++)
            if (w->len[r] == len) w->perm[k++] = r;
    size_t N = 0;
    for (int t = 0; t < Tm; t++) {
        int bt = 0;
        while (bt < n_active && w->len[w->perm[bt]] > t) bt++;
        w->bt[t] = bt;
        w->off[t] = (int)N;
        for (int j = 0; j < bt; j++) {
            const int r = w->perm[j];
            w->xtok[N + j] = tokens[(size_t)r * t1 + t];
            w->tgt[N + j] = tokens[(size_t)r * t1 + t + 1];
            w->rid[N + j] = (uint32_t)((size_t)r * t1 + t);
        }
        N += (size_t)bt;
    }
    const float scale = 1.0f / (float)sh->n_tgt;
    const float reg = w->lambda / ((float)sh->n_active * (float)L);

    /* the photos: mean (sorted order), h0, c0 (packed rows of step 0), P (batch order) */
    for (int j = 0; j < n_active; j++) {
        float *mu = w->mean + (size_t)j * D;
        const float *a = img + (size_t)w->perm[j] * L * D;
        memset(mu, 0, sizeof(float) * D);
        for (int i = 0; i < L; i++)
            for (int q = 0; q < D; q++) mu[q] += a[(size_t)i * D + q];
        for (int q = 0; q < D; q++) mu[q] /= (float)L;
    }
    dense_forward(w->mean, p.ih_w, p.ih_b, n_active, D, H, w->hp);
    tanh_rows(w->hp, (size_t)n_active * H);
    dense_forward(w->mean, p.ic_w, p.ic_b, n_active, D, H, w->cp);
    tanh_rows(w->cp, (size_t)n_active * H);
    dense_forward(img, p.aa_w, p.aa_b, b * L, D, A, w->P);
    memset(w->S, 0, sizeof(float) * (size_t)b * L);

    for (int t = 0; t < Tm; t++) {
        const int bt = w->bt[t], bn = t + 1 < Tm ? w->bt[t + 1] : 0;
        const size_t n0 = (size_t)w->off[t], n1 = t + 1 < Tm ? (size_t)w->off[t + 1] : 0;
        const float *hp = w->hp + n0 * H;
        float *q = w->q + n0 * A, *beta = w->beta + n0 * D, *xin = w->xin + n0 * XI, *g = w->g + n0 * G4;
        gemm_nt(hp, p.ah_w, bt, H, A, q, false);
        dense_forward(hp, p.g_w, p.g_b, bt, H, D, beta);
        for (size_t i = 0; i < (size_t)bt * D; i++) beta[i] = sigmoid_fast(beta[i]);
        for (int j = 0; j < bt; j++) {
            const size_t n = n0 + j;
            const int r = w->perm[j];
            float *al = w->alpha + n * L, *z = w->z + n * D;
            attend(L, A, D, w->P + (size_t)r * L * A, q + (size_t)j * A, p.av, img + (size_t)r * L * D, al, z);
            for (int i = 0; i < L; i++) w->S[(size_t)r * L + i] += al[i];
            float *x = xin + (size_t)j * XI;
            memcpy(x, p.emb + (size_t)w->xtok[n] * E, sizeof(float) * E);
            for (int q2 = 0; q2 < D; q2++) x[E + q2] = beta[(size_t)j * D + q2] * z[q2];
        }
        dense_forward(xin, p.wx, p.lb, bt, XI, G4, g);
        gemm_nt(hp, p.wh, bt, H, G4, g, true);
        for (int j = 0; j < bt; j++) {
            const size_t n = n0 + j;
            float *h = w->hn + n * H;
            lstm_cell_forward(H, g + (size_t)j * G4, w->cp + n * H, w->cn + n * H, w->tc + n * H, h);
            if (j < bn) {
                memcpy(w->hp + (n1 + j) * H, h, sizeof(float) * H);
                memcpy(w->cp + (n1 + j) * H, w->cn + n * H, sizeof(float) * H);
            }
            float *o = w->o + n * OI;
            for (int u = 0; u < H; u++)
                o[u] = drop > 0.0f ? h[u] * drop_factor(w->drop_seed, rid0 + w->rid[n], u, drop) : h[u];
            memcpy(o + H, w->z + n * D, sizeof(float) * D);
            memcpy(o + H + D, xin + (size_t)j * XI, sizeof(float) * E);
        }
    }
    dense_forward(w->o, p.o1_w, p.o1_b, (int)N, OI, O, w->y1);
    elu_forward(w->y1, N * O);
    dense_forward(w->y1, p.o2_w, p.o2_b, (int)N, O, V, w->lg);
    double total = 0.0;
    for (size_t n = 0; n < N; n++) {
        float *zr = w->lg + n * V;
        if (w->tgt[n] == c->pad_id) {
            memset(zr, 0, sizeof(float) * V);
            continue;
        }
        const float rw = row_w ? row_w[w->rid[n] / (uint32_t)t1] : 1.0f;
        total += rw * dec_xent_row(zr, V, w->tgt[n], scale * rw, mask, (int)(w->rid[n] % (uint32_t)t1));
    }
    double rsum = 0.0;
    for (int r = 0; r < b; r++)
        if (w->len[r] > 0)
            for (int i = 0; i < L; i++) {
                const double d = 1.0 - w->S[(size_t)r * L + i];
                rsum += d * d;
            }
    sh->total = total;
    sh->rsum = rsum;
    if (!backward) return;

    at_tensors gr = at_views(c, sh->grads);
    /* output layers over all rows */
    weight_grad(w->lg, V, w->y1, O, (int)N, O, V, gr.o2_w, gr.o2_b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, O, V, 1.0f, w->lg, V, p.o2_w, O, 0.0f, w->dy1, O);
    elu_backward(w->dy1, w->y1, N * O);
    weight_grad(w->dy1, O, w->o, OI, (int)N, OI, O, gr.o1_w, gr.o1_b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, OI, O, 1.0f, w->dy1, O, p.o1_w, OI, 0.0f, w->dO,
                OI);

    /* back through time; dhn, dcn (sorted rows) carry d h_t, d c_t from step t + 1 */
    memset(w->dhn, 0, sizeof(float) * (size_t)n_active * H);
    memset(w->dcn, 0, sizeof(float) * (size_t)n_active * H);
    memset(w->dP, 0, sizeof(float) * (size_t)b * L * A);
    memset(w->da, 0, sizeof(float) * (size_t)b * L * D);
    for (int t = Tm - 1; t >= 0; t--) {
        const int bt = w->bt[t];
        const size_t n0 = (size_t)w->off[t];
        float *g = w->g + n0 * G4, *dxin = w->dxin + n0 * XI;
        for (int j = 0; j < bt; j++) {
            const size_t n = n0 + j;
            float *dho = w->dO + n * OI;
            if (drop > 0.0f)
                for (int u = 0; u < H; u++) dho[u] *= drop_factor(w->drop_seed, rid0 + w->rid[n], u, drop);
            lstm_cell_backward(H, g + (size_t)j * G4, w->cp + n * H, w->tc + n * H, dho, w->dhn + (size_t)j * H,
                               w->dcn + (size_t)j * H);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, XI, G4, 1.0f, g, G4, p.wx, XI, 0.0f, dxin, XI);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, H, G4, 1.0f, g, G4, p.wh, H, 0.0f, w->dhn, H);
        float *dz = w->tmp;
        for (int j = 0; j < bt; j++) {
            const size_t n = n0 + j;
            const int r = w->perm[j];
            const float *z = w->z + n * D, *be = w->beta + n * D, *al = w->alpha + n * L;
            const float *dbz = dxin + (size_t)j * XI + E, *dOz = w->dO + n * OI + H;
            const float *a = img + (size_t)r * L * D, *P = w->P + (size_t)r * L * A, *q = w->q + n * A;
            float *dbp = w->dbp + n * D, *dq = w->dq + n * A, *dP = w->dP + (size_t)r * L * A;
            float *da = w->da + (size_t)r * L * D, *dzr = dz + (size_t)j * D;
            for (int u = 0; u < D; u++) {
                dzr[u] = dOz[u] + dbz[u] * be[u];
                dbp[u] = dbz[u] * z[u] * be[u] * (1.0f - be[u]);
            }
            const dec_att_row ar = {.L = L, .D = D, .A = A, .a = a, .dz = dzr, .al = al,
                                    .S = w->S + (size_t)r * L, .P = P, .q = q, .v = p.av, .reg = reg,
                                    .da = da, .dP = dP, .dq = dq, .dv = gr.av};
            dec_kernels_active()->att_backward_row(&ar);
            /* the embedding: its LSTM input part and its deep-output part */
            float *de = gr.emb + (size_t)w->xtok[n] * E;
            const float *dxe = dxin + (size_t)j * XI, *dOe = w->dO + n * OI + H + D;
            for (int u = 0; u < E; u++) de[u] += dxe[u] + dOe[u];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, H, D, 1.0f, w->dbp + n0 * D, D, p.g_w, H, 1.0f,
                    w->dhn, H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bt, H, A, 1.0f, w->dq + n0 * A, A, p.ah_w, H, 1.0f,
                    w->dhn, H);
    }
    /* weights of the per-step products, over all packed rows */
    weight_grad(w->g, G4, w->xin, XI, (int)N, XI, G4, gr.wx, gr.lb);
    weight_grad(w->g, G4, w->hp, H, (int)N, H, G4, gr.wh, NULL);
    weight_grad(w->dbp, D, w->hp, H, (int)N, H, D, gr.g_w, gr.g_b);
    weight_grad(w->dq, A, w->hp, H, (int)N, H, A, gr.ah_w, NULL);
    /* h0, c0: the packed rows of step 0, sorted order */
    for (size_t i = 0; i < (size_t)n_active * H; i++) {
        w->dhn[i] *= 1.0f - w->hp[i] * w->hp[i];
        w->dcn[i] *= 1.0f - w->cp[i] * w->cp[i];
    }
    weight_grad(w->dhn, H, w->mean, D, n_active, D, H, gr.ih_w, gr.ih_b);
    weight_grad(w->dcn, H, w->mean, D, n_active, D, H, gr.ic_w, gr.ic_b);
    /* P = att_a a + b */
    weight_grad(w->dP, A, img, D, b * L, D, A, gr.aa_w, gr.aa_b);
    if (d_img) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_active, D, H, 1.0f, w->dhn, H, p.ih_w, D, 0.0f,
                    w->dmean, D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_active, D, H, 1.0f, w->dcn, H, p.ic_w, D, 1.0f,
                    w->dmean, D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b * L, D, A, 1.0f, w->dP, A, p.aa_w, D, 1.0f, w->da, D);
        for (int j = 0; j < n_active; j++) {
            const int r = w->perm[j];
            const float *dm = w->dmean + (size_t)j * D;
            for (int i = 0; i < L; i++) {
                float *o = d_img + ((size_t)r * L + i) * D;
                const float *dai = w->da + ((size_t)r * L + i) * D;
                for (int u = 0; u < D; u++) o[u] = dai[u] + dm[u] / (float)L;
            }
        }
    }
}

typedef struct at_batch {
    const dec_model *m;
    at_works *w;
    const float *img, *row_w;
    const int32_t *tokens;
    const dec_mask *mask;
    int b, t1, rows;
    bool backward;
    float *d_img;
    at_shard sh[AT_SHARDS];
} at_batch;

static void at_shard_task(void *vc, size_t s0, size_t s1, int tid)
{
    at_batch *x = vc;
    const size_t L = (size_t)dec_regions(&x->m->cfg), D = (size_t)x->m->cfg.n_img;
    for (size_t s = s0; s < s1; s++) {
        const int r0 = (int)s * x->rows, n = x->b - r0 < x->rows ? x->b - r0 : x->rows;
        if (n <= 0) continue;
        at_shard_pass(x->m, x->w->sh[s], x->img + (size_t)r0 * L * D, x->tokens + (size_t)r0 * x->t1,
                      x->row_w ? x->row_w + r0 : NULL, x->mask, n, x->t1, x->backward,
                      x->d_img ? x->d_img + (size_t)r0 * L * D : NULL, &x->sh[s]);
    }
}

/* grads[0] (the model's) += the other shards' buffers, in shard order. */
static void at_sum_task(void *vc, size_t i0, size_t i1, int tid)
{
    at_batch *x = vc;
    for (int s = 1; s < AT_SHARDS; s++) {
        if (x->b <= s * x->rows) break;
        const float *g = x->sh[s].grads;
        for (size_t i = i0; i < i1; i++) x->sh[0].grads[i] += g[i];
    }
}

/* The batch: AT_SHARDS shards of consecutive rows, fixed by the batch size
 * alone (so no result depends on the thread count), run by ops_parallel;
 * each scales its loss by the whole batch's counts. */
static imcap_status at_forward_backward(dec_model *m, void *vw, const float *img, const int32_t *tokens,
                                        const float *row_w, const dec_mask *mask, int b, int t1, bool backward,
                                        float *d_img, float *loss, int64_t *n_targets)
{
    at_works *w = vw;
    const dec_config *c = &m->cfg;
    const int V = c->n_vocab, L = dec_regions(c);
    if (b < 1 || b > w->max_b || t1 < 2 || t1 > w->max_t1)
        return imcap_fail(IMCAP_E_ARG, "decoder batch %d x %d exceeds the workspace (%d x %d)", b, t1, w->max_b,
                          w->max_t1);
    if (backward && !m->grads) return imcap_fail(IMCAP_E_ARG, "decoder model has no gradient buffer");
    if (m->n_params != w->n_params)
        return imcap_fail(IMCAP_E_ARG, "decoder model of %zu parameters, workspace for %zu", m->n_params,
                          w->n_params);
    for (size_t i = 0; i < (size_t)b * t1; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return imcap_fail(IMCAP_E_ARG, "token id %d at batch row %zu, position %zu outside the vocabulary of %d",
                              (int)tokens[i], i / t1, i % t1, V);
    int n_active, n_tgt;
    at_count(c, tokens, b, t1, &n_active, &n_tgt);
    if (n_targets) *n_targets = n_tgt;
    *loss = 0.0f;
    if (n_tgt == 0) {
        if (backward) memset(m->grads, 0, m->n_params * sizeof(float));
        if (backward && d_img) memset(d_img, 0, sizeof(float) * (size_t)b * L * c->n_img);
        return IMCAP_OK;
    }
    at_batch x = {.m = m, .w = w, .img = img, .row_w = row_w, .tokens = tokens, .mask = mask, .b = b, .t1 = t1,
                  .rows = (b + AT_SHARDS - 1) / AT_SHARDS, .backward = backward, .d_img = d_img};
    for (int s = 0; s < AT_SHARDS; s++)
        x.sh[s] = (at_shard){.n_tgt = n_tgt, .n_active = n_active, .r0 = s * x.rows,
                             .grads = s == 0 ? m->grads : w->grads[s - 1]};
    ops_parallel(AT_SHARDS, 1, at_shard_task, &x);
    if (backward) ops_parallel(m->n_params, 4096, at_sum_task, &x);
    double total = 0.0, rsum = 0.0;
    for (int s = 0; s < AT_SHARDS; s++) {
        total += x.sh[s].total;
        rsum += x.sh[s].rsum;
    }
    const float reg = w->sh[0]->lambda / ((float)n_active * (float)L);
    *loss = (float)(total / n_tgt + (double)reg * rsum);
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- inference */

/* Context of a photo: [a (L x D); P (L x A)]. State of a hypothesis: [h; c]. */
static size_t at_context_floats(const dec_config *c)
{
    return (size_t)dec_regions(c) * ((size_t)c->n_img + (size_t)c->n_att);
}

static size_t at_state_floats(const dec_config *c) { return 2 * (size_t)c->n_hid; }

static imcap_status at_init_state(const dec_model *m, const float *img, int n, float *ctx, size_t ctx_stride,
                                  float *state, size_t state_stride)
{
    const dec_config *c = &m->cfg;
    const int H = c->n_hid, D = c->n_img, A = c->n_att, L = dec_regions(c);
    const at_tensors p = at_views(c, m->params);
    float *mu = imcap_alloc(D, sizeof(float)), *hc = imcap_alloc(2 * (size_t)H, sizeof(float));
    if (!mu || !hc) {
        imcap_free(mu);
        imcap_free(hc);
        return IMCAP_E_NOMEM;
    }
    for (int r = 0; r < n; r++) {
        const float *a = img + (size_t)r * L * D;
        float *cx = ctx + (size_t)r * ctx_stride;
        memcpy(cx, a, sizeof(float) * (size_t)L * D);
        dense_forward(a, p.aa_w, p.aa_b, L, D, A, cx + (size_t)L * D);
        memset(mu, 0, sizeof(float) * D);
        for (int i = 0; i < L; i++)
            for (int k = 0; k < D; k++) mu[k] += a[(size_t)i * D + k];
        for (int k = 0; k < D; k++) mu[k] /= (float)L;
        dense_forward(mu, p.ih_w, p.ih_b, 1, D, H, hc);
        dense_forward(mu, p.ic_w, p.ic_b, 1, D, H, hc + H);
        tanh_rows(hc, 2 * (size_t)H);
        memcpy(state + (size_t)r * state_stride, hc, sizeof(float) * 2 * H);
    }
    imcap_free(mu);
    imcap_free(hc);
    return IMCAP_OK;
}

static size_t at_step_scratch_floats(const dec_config *c, int n)
{
    const size_t H = c->n_hid, D = c->n_img, E = c->n_emb, A = c->n_att, O = c->n_out1, L = dec_regions(c);
    return (size_t)n * (4 * H + A + L + 2 * D + (E + D) + 4 * H + (H + D + E) + O) + H;
}

static void at_step(const dec_model *m, const float *ctx, size_t ctx_stride, bool shared_ctx, const int32_t *tokens,
                    int n, const float *state, size_t state_stride, float *logits, float *state_out, float *attn,
                    float *scratch)
{
    const dec_config *c = &m->cfg;
    const int H = c->n_hid, D = c->n_img, E = c->n_emb, A = c->n_att, O = c->n_out1, L = dec_regions(c);
    const int G4 = 4 * H, XI = E + D, OI = H + D + E;
    const at_tensors p = at_views(c, m->params);
    const size_t SS = state_stride;
    /* scratch: hp, cp, hn, cn [n][H]; q [n][A]; al [n][L]; z, be [n][D]; x [n][XI]; g [n][4H]; o [n][OI];
     * y1 [n][O]; tc [H] */
    float *hp = scratch, *cp = hp + (size_t)n * H, *hn = cp + (size_t)n * H, *cn = hn + (size_t)n * H;
    float *q = cn + (size_t)n * H, *al = q + (size_t)n * A, *z = al + (size_t)n * L, *be = z + (size_t)n * D;
    float *x = be + (size_t)n * D, *g = x + (size_t)n * XI, *o = g + (size_t)n * G4, *y1 = o + (size_t)n * OI;
    float *tc = y1 + (size_t)n * O;
    for (int r = 0; r < n; r++) {
        memcpy(hp + (size_t)r * H, state + (size_t)r * SS, sizeof(float) * H);
        memcpy(cp + (size_t)r * H, state + (size_t)r * SS + H, sizeof(float) * H);
    }
    memset(q, 0, sizeof(float) * (size_t)n * A);
    small_nt(hp, n, p.ah_w, NULL, H, A, q, true);
    small_nt(hp, n, p.g_w, p.g_b, H, D, be, false);
    for (int r = 0; r < n; r++) {
        const float *cx = shared_ctx ? ctx : ctx + (size_t)r * ctx_stride;
        attend(L, A, D, cx + (size_t)L * D, q + (size_t)r * A, p.av, cx, al + (size_t)r * L, z + (size_t)r * D);
        float *xr = x + (size_t)r * XI;
        memcpy(xr, p.emb + (size_t)tokens[r] * E, sizeof(float) * E);
        for (int k = 0; k < D; k++) xr[E + k] = sigmoid_fast(be[(size_t)r * D + k]) * z[(size_t)r * D + k];
        if (attn) memcpy(attn + (size_t)r * L, al + (size_t)r * L, sizeof(float) * L);
    }
    small_nt(x, n, p.wx, p.lb, XI, G4, g, false);
    small_nt(hp, n, p.wh, NULL, H, G4, g, true);
    for (int r = 0; r < n; r++) {
        lstm_cell_forward(H, g + (size_t)r * G4, cp + (size_t)r * H, cn + (size_t)r * H, tc, hn + (size_t)r * H);
        float *orow = o + (size_t)r * OI;
        memcpy(orow, hn + (size_t)r * H, sizeof(float) * H);
        memcpy(orow + H, z + (size_t)r * D, sizeof(float) * D);
        memcpy(orow + H + D, x + (size_t)r * XI, sizeof(float) * E);
    }
    for (int r = 0; r < n; r++) {
        memcpy(state_out + (size_t)r * SS, hn + (size_t)r * H, sizeof(float) * H);
        memcpy(state_out + (size_t)r * SS + H, cn + (size_t)r * H, sizeof(float) * H);
    }
    small_nt(o, n, p.o1_w, p.o1_b, OI, O, y1, false);
    elu_forward(y1, (size_t)n * O);
    small_nt(y1, n, p.o2_w, p.o2_b, O, c->n_vocab, logits, false);
}

const dec_arch dec_arch_attention = {
    .name = "attention",
    .check = at_check,
    .n_tensors = at_n_tensors,
    .tensor_at = at_tensor_at,
    .init = at_init,
    .work_new = at_work_new,
    .work_free = at_work_free,
    .set_dropout = at_set_dropout,
    .set_reg = at_set_reg,
    .forward_backward = at_forward_backward,
    .context_floats = at_context_floats,
    .state_floats = at_state_floats,
    .init_state = at_init_state,
    .step_scratch_floats = at_step_scratch_floats,
    .step = at_step,
};
