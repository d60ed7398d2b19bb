/*
 * qops.c - the uint8 kernels' drivers (im2col, row sums, threads), the
 * portable pools and softmax, TFLite's multiplier and activation-range
 * rules, and the naive references (see qops.h).
 */
#include "qops.h"
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

void q_act_range(enc_act act, float scale, int32_t zp, int32_t *lo, int32_t *hi)
{
    int32_t q0 = zp + (int32_t)roundf(0.0f / scale), q6 = zp + (int32_t)roundf(6.0f / scale);
    *lo = 0;
    *hi = 255;
    if (act == ENC_ACT_RELU || act == ENC_ACT_RELU6) *lo = q0 > 0 ? q0 : 0;
    if (act == ENC_ACT_RELU6) *hi = q6 < 255 ? q6 : 255;
}

bool q_add_init(q_add *p, float sa, int32_t za, float sb, int32_t zb, float sy, int32_t zy, int32_t lo, int32_t hi)
{
    float ra = sa / sy, rb = sb / sy, mx = ra > rb ? ra : rb;
    if (!(ra >= 0x1.0p-10f && rb >= 0x1.0p-10f && mx < 0x1.0p+8f)) return false;
    uint32_t bits;
    memcpy(&bits, &mx, 4);
    int shift = 20 - ((int)(bits >> 23) - 127);
    p->shift = shift;
    p->ma = (int32_t)lrintf(ldexpf(ra, shift));
    p->mb = (int32_t)lrintf(ldexpf(rb, shift));
    p->bias = (1 << (shift - 1)) - p->ma * za - p->mb * zb;
    p->zy = zy;
    p->lo = lo;
    p->hi = hi;
    return true;
}

size_t q_packed_bytes(int k, int n)
{
    size_t kp = ((size_t)k + 3) & ~(size_t)3, np = ((size_t)n + 15) & ~(size_t)15;
    return kp * np;
}

void q_pack_weights(int k, int n, const int8_t *w, int8_t *wp)
{
    size_t kp = ((size_t)k + 3) & ~(size_t)3, np = ((size_t)n + 15) & ~(size_t)15;
    memset(wp, 0, kp * np);
    for (size_t p = 0; p < np / 16; p++)
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < 16; j++) {
                size_t col = p * 16 + (size_t)j;
                if (col < (size_t)n)
                    wp[(p * (kp / 4) + (size_t)kk / 4) * 64 + (size_t)j * 4 + (size_t)kk % 4] =
                        w[(size_t)kk * (size_t)n + col];
            }
}

const q_kernels *q_kernels_active(void)
{
    switch (cpu_isa_active()) {
    case CPU_AVX512: return cpu_has_avx512_vnni() ? &q_kernels_avx512 : &q_kernels_avx2;
    case CPU_AVX2: return &q_kernels_avx2;
    default: return &q_kernels_generic;
    }
}

/* ------------------------------------------------------------ convolution */

enum { Q_ROWS = 96 }; /* GEMM rows per task (im2col block) */

typedef struct conv_ctx {
    const ops_win *g;
    const q_gemm *p;
    const q_kernels *kn;
    int32_t za;
    const uint8_t *x;
    uint8_t *y;
    bool direct;
    uint8_t *cols;          /* per thread: Q_ROWS x kp */
    int32_t *sums;          /* per thread: Q_ROWS */
} conv_ctx;

static void im2col_rows(const ops_win *g, int32_t za, const uint8_t *x, size_t r0, int m, int kp, uint8_t *a)
{
    size_t ohw = (size_t)g->oh * (size_t)g->ow, kc = (size_t)g->kw * (size_t)g->c;
    for (int r = 0; r < m; r++) {
        size_t row = r0 + (size_t)r, img = row / ohw, pix = row % ohw;
        int oy = (int)(pix / (size_t)g->ow), ox = (int)(pix % (size_t)g->ow);
        uint8_t *dst = a + (size_t)r * (size_t)kp;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = oy * g->sh - g->pt + ky;
            uint8_t *d = dst + (size_t)ky * kc;
            if (iy < 0 || iy >= g->h) {
                memset(d, za, kc);
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++) {
                int ix = ox * g->sw - g->pl + kx;
                uint8_t *dc = d + (size_t)kx * (size_t)g->c;
                const uint8_t *sc = x + ((img * (size_t)g->h + (size_t)iy) * (size_t)g->w + (size_t)ix) * (size_t)g->c;
                bool out = ix < 0 || ix >= g->w;
                if (g->c <= 8) /* a few bytes (the RGB input): no library calls */
                    for (int c = 0; c < g->c; c++) dc[c] = out ? (uint8_t)za : sc[c];
                else if (out) memset(dc, za, (size_t)g->c);
                else memcpy(dc, sc, (size_t)g->c);
            }
        }
        size_t k = (size_t)g->kh * kc;
        memset(dst + k, 0, (size_t)kp - k);
    }
}

static void conv_task(void *vctx, size_t b0, size_t b1, int tid)
{
    const conv_ctx *t = vctx;
    const ops_win *g = t->g;
    size_t m_all = (size_t)g->n * (size_t)g->oh * (size_t)g->ow;
    int kp = t->p->kp;
    uint8_t *cols = t->cols + (size_t)tid * Q_ROWS * (size_t)kp;
    int32_t *sums = t->sums + (size_t)tid * Q_ROWS;
    for (size_t b = b0; b < b1; b++) {
        size_t r0 = b * Q_ROWS;
        int m = (int)(m_all - r0 < Q_ROWS ? m_all - r0 : Q_ROWS);
        const uint8_t *a;
        size_t lda;
        if (t->direct) {
            a = t->x + r0 * (size_t)g->c;
            lda = (size_t)g->c;
        } else {
            im2col_rows(g, t->za, t->x, r0, m, kp, cols);
            a = cols;
            lda = (size_t)kp;
        }
        t->kn->rowsums(a, lda, m, t->p->k, t->p->zw_uniform ? t->p->zw[0] : 1, sums);
        t->kn->gemm(t->p, a, lda, sums, m, t->y + r0 * (size_t)g->oc, (size_t)g->oc);
    }
}

void q_conv2d(const ops_win *g, const q_gemm *p, int32_t za, const uint8_t *x, uint8_t *y)
{
    size_t m = (size_t)g->n * (size_t)g->oh * (size_t)g->ow, blocks = (m + Q_ROWS - 1) / Q_ROWS;
    bool direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
                  g->c % 4 == 0 && g->oh == g->h && g->ow == g->w;
    int nt = ops_threads();
    conv_ctx t = {g, p, q_kernels_active(), za, x, y, direct, NULL, NULL};
    t.sums = malloc((size_t)nt * Q_ROWS * sizeof(int32_t));
    if (!direct) t.cols = malloc((size_t)nt * Q_ROWS * (size_t)p->kp);
    if (!t.sums || (!direct && !t.cols)) {
        /* Out of memory for a few kB of scratch: one block at a time inline. */
        free(t.sums);
        free(t.cols);
        int32_t sums[Q_ROWS];
        uint8_t *cols = direct ? NULL : malloc(Q_ROWS * (size_t)p->kp);
        t.sums = sums;
        t.cols = cols;
        if (direct || cols) conv_task(&t, 0, blocks, 0);
        else memset(y, 0, m * (size_t)g->oc);
        free(cols);
        return;
    }
    ops_parallel(blocks, 1, conv_task, &t);
    free(t.sums);
    free(t.cols);
}

enum { DW_BAND_FLOATS = 48 << 10 }; /* input floats of a band, about */

static int dw_band_rows(const ops_win *g)
{
    size_t row = (size_t)g->w * (size_t)g->c * (size_t)g->sh;
    int r = row ? (int)(DW_BAND_FLOATS / row) : 1;
    return r < 1 ? 1 : r > g->oh ? g->oh : r;
}

/* Input rows a band of output rows [oy0, oy0 + rows) reads, per thread. */
static size_t dw_band_in(const ops_win *g, int rows) { return (size_t)((rows - 1) * g->sh + g->kh) * g->w * g->c; }

size_t q_dw_scratch(const ops_win *g)
{
    int rows = dw_band_rows(g);
    return (size_t)ops_threads() * (dw_band_in(g, rows) + (size_t)rows * g->ow * g->oc);
}

typedef struct dw_ctx {
    const q_dw *p;
    const q_kernels *kn;
    const uint8_t *x;
    uint8_t *y;
    float *scratch;
    int rows, bands;        /* output rows per band, bands per image */
} dw_ctx;

static void dw_task(void *vctx, size_t b0, size_t b1, int tid)
{
    const dw_ctx *t = vctx;
    const ops_win *g = t->p->win;
    size_t in_max = dw_band_in(g, t->rows);
    float *xf = t->scratch + (size_t)tid * (in_max + (size_t)t->rows * g->ow * g->oc), *yf = xf + in_max;
    size_t rowb = (size_t)g->w * (size_t)g->c;
    for (size_t b = b0; b < b1; b++) {
        size_t img = b / (size_t)t->bands;
        int oy0 = (int)(b % (size_t)t->bands) * t->rows, oy1 = oy0 + t->rows < g->oh ? oy0 + t->rows : g->oh;
        int top = oy0 * g->sh - g->pt, r0 = top > 0 ? top : 0;
        int r1 = (oy1 - 1) * g->sh - g->pt + g->kh;
        if (r1 > g->h) r1 = g->h;
        /* the band as a 1-image problem: its input rows, its padding */
        ops_win s = *g;
        s.n = 1;
        s.h = r1 - r0;
        s.oh = oy1 - oy0;
        s.pt = r0 - top;
        t->kn->to_float(t->x + (img * (size_t)g->h + (size_t)r0) * rowb, t->p->za, (size_t)s.h * rowb, xf);
        ops_dwconv2d(&s, xf, t->p->w, NULL, ENC_ACT_NONE, yf);
        size_t o0 = (img * (size_t)g->oh + (size_t)oy0) * (size_t)g->ow;
        t->kn->requant_rows(&t->p->rq, t->p->bias, yf, g->oc, 0, (size_t)s.oh * (size_t)g->ow, t->y + o0 * (size_t)g->oc);
    }
}

void q_dwconv2d(const q_dw *p, const uint8_t *x, uint8_t *y, float *scratch)
{
    const ops_win *g = p->win;
    int rows = dw_band_rows(g);
    dw_ctx t = {p, q_kernels_active(), x, y, scratch, rows, (g->oh + rows - 1) / rows};
    ops_parallel((size_t)g->n * (size_t)t.bands, 1, dw_task, &t);
}

typedef struct add_ctx {
    const q_add *p;
    const q_kernels *kn;
    const uint8_t *a, *b;
    uint8_t *y;
} add_ctx;

static void add_task(void *vctx, size_t i0, size_t i1, int tid)
{
    (void)tid;
    const add_ctx *t = vctx;
    t->kn->add(t->p, t->a + i0, t->b + i0, t->y + i0, i1 - i0);
}

void q_addv(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    add_ctx t = {p, q_kernels_active(), a, b, y};
    ops_parallel(count, 16384, add_task, &t);
}

/* ------------------------------------------------------------ pools, softmax */

static void pool(const ops_win *g, const uint8_t *x, uint8_t *y, int32_t lo, int32_t hi, bool is_max)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
                int fy0 = y0 < 0 ? -y0 : 0, fx0 = x0 < 0 ? -x0 : 0;
                int fy1 = g->h - y0 < g->kh ? g->h - y0 : g->kh, fx1 = g->w - x0 < g->kw ? g->w - x0 : g->kw;
                int count = (fy1 - fy0) * (fx1 - fx0);
                uint8_t *dst = y + (((size_t)i * (size_t)g->oh + (size_t)oy) * (size_t)g->ow + (size_t)ox) * (size_t)g->c;
                for (int c = 0; c < g->c; c++) {
                    int32_t acc = 0;
                    for (int fy = fy0; fy < fy1; fy++)
                        for (int fx = fx0; fx < fx1; fx++) {
                            int32_t v = x[(((size_t)i * (size_t)g->h + (size_t)(y0 + fy)) * (size_t)g->w +
                                           (size_t)(x0 + fx)) * (size_t)g->c + (size_t)c];
                            if (is_max) acc = v > acc ? v : acc;
                            else acc += v;
                        }
                    if (!is_max) acc = count > 0 ? (acc + count / 2) / count : 0;
                    acc = acc < lo ? lo : acc > hi ? hi : acc;
                    dst[c] = (uint8_t)acc;
                }
            }
}

void q_avgpool(const ops_win *g, const uint8_t *x, uint8_t *y, int32_t lo, int32_t hi)
{
    pool(g, x, y, lo, hi, false);
}

void q_maxpool(const ops_win *g, const uint8_t *x, uint8_t *y, int32_t lo, int32_t hi)
{
    pool(g, x, y, lo, hi, true);
}

void q_softmax(size_t m, int c, float in_scale, const uint8_t *x, uint8_t *y)
{
    float table[256];
    const float scale = -in_scale;
    for (int32_t v = 0; v <= 255; v++) table[255 - v] = expf(scale * (float)v);
    for (size_t r = 0; r < m; r++) {
        const uint8_t *xr = x + r * (size_t)c;
        uint8_t *yr = y + r * (size_t)c;
        int32_t mx = 0;
        for (int j = 0; j < c; j++) mx = xr[j] > mx ? xr[j] : mx;
        const float *t = &table[255 - mx];
        float sum = 0.0f;
        for (int j = 0; j < c; j++) sum += t[xr[j]];
        const float inv = 1.0f / (sum * (1.0f / 256.0f));
        for (int j = 0; j < c; j++) {
            int32_t q = (int32_t)(t[xr[j]] * inv + 0.5f);
            yr[j] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
    }
}

/* ------------------------------------------------------------ references */

void qref_conv2d(const ops_win *g, const uint8_t *x, int32_t za, const int8_t *w, const int32_t *zw,
                 const int32_t *bias, const float *scale, int32_t zy, int32_t lo, int32_t hi, uint8_t *y)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->oc; o++) {
                    int32_t acc = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                            for (int c = 0; c < g->c; c++) {
                                int32_t a = x[(((size_t)i * g->h + iy) * g->w + ix) * g->c + c];
                                int32_t wv = w[(((size_t)ky * g->kw + kx) * g->c + c) * g->oc + o];
                                acc += (a - za) * (wv - zw[o]);
                            }
                        }
                    if (bias) acc += bias[o];
                    y[(((size_t)i * g->oh + oy) * g->ow + ox) * g->oc + o] = (uint8_t)q_requant1(acc, scale[o], zy, lo, hi);
                }
}

void qref_dwconv2d(const ops_win *g, const uint8_t *x, int32_t za, const int8_t *w, const int32_t *zw,
                   const int32_t *bias, const float *scale, int32_t zy, int32_t lo, int32_t hi, uint8_t *y)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->oc; o++) {
                    int c = o / g->mult;
                    int32_t acc = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                            int32_t a = x[(((size_t)i * g->h + iy) * g->w + ix) * g->c + c];
                            acc += (a - za) * (w[((size_t)ky * g->kw + kx) * g->oc + o] - zw[o]);
                        }
                    if (bias) acc += bias[o];
                    y[(((size_t)i * g->oh + oy) * g->ow + ox) * g->oc + o] = (uint8_t)q_requant1(acc, scale[o], zy, lo, hi);
                }
}

void qref_add(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int32_t v = ((p->bias + p->ma * a[i] + p->mb * b[i]) >> p->shift) + p->zy;
        y[i] = (uint8_t)(v < p->lo ? p->lo : v > p->hi ? p->hi : v);
    }
}
