/*
 * ops.c - what the float NHWC kernels share on every instruction set:
 * convolution as im2col + GEMM (1x1 stride-1 convolutions multiply the
 * input directly), the dispatch to the kernels of the active ISA
 * (ops_kernels.h, compiled per ISA: AVX-512, AVX2/FMA or baseline SSE2,
 * chosen by cpu.h), weight packing, and the worker pool that splits every
 * kernel (GEMMs included) over the cores.
 *
 * GEMM: our kernel (ops_kernels.h: register tile over weights packed once
 * per model, convolutions read in place without im2col, bias and
 * activation fused into the store); IMCAP_GEMM=openblas switches to
 * OpenBLAS cblas_sgemm over im2col blocks + a bias/activation pass (both
 * are benchmarked, both tested).
 *
 * Threading: one process-wide pool of ops_threads()-1 pthreads plus the
 * calling thread. During a graph run OpenBLAS is set to one thread and each
 * of our threads computes its own GEMM tile, so OpenBLAS's pool and ours
 * never compete for the cores.
 */
#define _GNU_SOURCE
#include "ops_isa.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ worker pool */

enum { POOL_MAX = 16 };
#define POOL_SPIN_TICKS 1300000ull /* time-stamp counter ticks: ~0.5 ms at 2.6 GHz */

static struct {
    pthread_once_t once;
    int nthreads;                /* including the caller */
    pthread_mutex_t busy;        /* held by the caller whose job runs */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned gen;                /* job generation, bumped per job */
    int pending;                 /* workers that have not finished the job */
    ops_range_fn fn;
    void *ctx;
    size_t n, chunk;
    atomic_size_t next;          /* next chunk index to claim */
    atomic_uint agen;            /* gen, readable without the lock (spinning) */
} g_pool = {.once = PTHREAD_ONCE_INIT};

static void pool_drain(int tid)
{
    size_t nchunks = (g_pool.n + g_pool.chunk - 1) / g_pool.chunk;
    for (;;) {
        size_t i = atomic_fetch_add(&g_pool.next, 1);
        if (i >= nchunks) break;
        size_t b = i * g_pool.chunk, e = b + g_pool.chunk;
        if (e > g_pool.n) e = g_pool.n;
        g_pool.fn(g_pool.ctx, b, e, tid);
    }
}

static void *pool_worker(void *arg)
{
    int tid = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        /* Spin up to ~0.5 ms (the jobs of one run follow each other closely,
         * and a futex wake-up costs tens of microseconds), then sleep. */
        for (uint64_t t0 = __rdtsc(); atomic_load(&g_pool.agen) == seen && __rdtsc() - t0 < POOL_SPIN_TICKS;)
            _mm_pause();
        pthread_mutex_lock(&g_pool.mu);
        while (g_pool.gen == seen) pthread_cond_wait(&g_pool.cv_work, &g_pool.mu);
        seen = g_pool.gen;
        pthread_mutex_unlock(&g_pool.mu);
        pool_drain(tid);
        pthread_mutex_lock(&g_pool.mu);
        if (--g_pool.pending == 0) pthread_cond_signal(&g_pool.cv_done);
        pthread_mutex_unlock(&g_pool.mu);
    }
    return NULL;
}

static void pool_init(void)
{
    int n = 0;
    const char *e = getenv("IMCAP_THREADS");
    if (e && *e) n = atoi(e);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    pthread_mutex_init(&g_pool.busy, NULL);
    pthread_mutex_init(&g_pool.mu, NULL);
    pthread_cond_init(&g_pool.cv_work, NULL);
    pthread_cond_init(&g_pool.cv_done, NULL);
    g_pool.nthreads = 1;
    for (int i = 1; i < n; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, pool_worker, (void *)(intptr_t)i);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        g_pool.nthreads++;
    }
}

int ops_threads(void)
{
    pthread_once(&g_pool.once, pool_init);
    return g_pool.nthreads;
}

void ops_parallel(size_t n, size_t min_chunk, ops_range_fn fn, void *ctx)
{
    if (n == 0) return;
    int nt = ops_threads();
    if (min_chunk < 1) min_chunk = 1;
    size_t chunk = (n + (size_t)nt * 4 - 1) / ((size_t)nt * 4);
    if (chunk < min_chunk) chunk = min_chunk;
    if (nt == 1 || chunk >= n || pthread_mutex_trylock(&g_pool.busy) != 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&g_pool.mu);
    g_pool.fn = fn;
    g_pool.ctx = ctx;
    g_pool.n = n;
    g_pool.chunk = chunk;
    atomic_store(&g_pool.next, 0);
    g_pool.pending = nt - 1;
    g_pool.gen++;
    atomic_store(&g_pool.agen, g_pool.gen);
    pthread_cond_broadcast(&g_pool.cv_work);
    pthread_mutex_unlock(&g_pool.mu);
    pool_drain(0);
    pthread_mutex_lock(&g_pool.mu);
    while (g_pool.pending > 0) pthread_cond_wait(&g_pool.cv_done, &g_pool.mu);
    pthread_mutex_unlock(&g_pool.mu);
    pthread_mutex_unlock(&g_pool.busy);
}

static pthread_mutex_t g_blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_blas_users, g_blas_saved;

void ops_blas_enter(void)
{
    pthread_mutex_lock(&g_blas_mu);
    if (g_blas_users++ == 0) {
        g_blas_saved = openblas_get_num_threads();
        if (g_blas_saved != 1) openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&g_blas_mu);
}

void ops_blas_leave(void)
{
    pthread_mutex_lock(&g_blas_mu);
    if (--g_blas_users == 0 && g_blas_saved != 1) openblas_set_num_threads(g_blas_saved);
    pthread_mutex_unlock(&g_blas_mu);
}

/* ------------------------------------------------------- kernel dispatch */

const ops_kernels *ops_kernels_active(void)
{
    switch (cpu_isa_active()) {
    case CPU_AVX512: return &ops_kernels_avx512;
    case CPU_AVX2: return &ops_kernels_avx2;
    default: return &ops_kernels_generic;
    }
}

typedef struct bias_act_ctx {
    float *y;
    int c;
    const float *b;
    enc_act act;
} bias_act_ctx;

static void bias_act_task(void *vctx, size_t r0, size_t r1, int tid)
{
    bias_act_ctx *x = vctx;
    ops_kernels_active()->bias_act_rows(x->y, r0, r1, x->c, x->c, x->b, x->act);
}

void ops_bias_act(size_t m, int c, const float *b, enc_act act, float *y)
{
    if (!b && act == ENC_ACT_NONE) return;
    bias_act_ctx ctx = {y, c, b, act};
    ops_parallel(m, 4096 / (size_t)(c > 0 ? c : 1) + 1, bias_act_task, &ctx);
}

/* ------------------------------------------------------------------ GEMM */

/* The GEMM itself is per ISA (ops_kernels.h); the packed layout of W is
 * the same on every path: 16-column panels, each k x 16 contiguous and zero
 * padded. */
size_t ops_packed_floats(int k, int n)
{
    return (size_t)((n + OPS_NR - 1) / OPS_NR) * OPS_NR * (size_t)k;
}

void ops_pack_weights(int k, int n, const float *w, float *wp)
{
    for (int j0 = 0; j0 < n; j0 += OPS_NR) {
        int nr = n - j0 < OPS_NR ? n - j0 : OPS_NR;
        for (int kk = 0; kk < k; kk++, wp += OPS_NR) {
            const float *src = w + (size_t)kk * n + j0;
            for (int j = 0; j < OPS_NR; j++) wp[j] = j < nr ? src[j] : 0.0f;
        }
    }
}

/* The OpenBLAS path: cblas_sgemm per block of rows (or columns when rows
 * are few) on our threads, then a bias/activation pass over the block. */
typedef struct blas_ctx {
    const float *a, *w, *b;
    float *y;
    int m, k, n, lda;
    enc_act act;
    int by_cols;
} blas_ctx;

static void blas_task(void *vctx, size_t i0, size_t i1, int tid)
{
    const blas_ctx *g = vctx;
    int r0 = g->by_cols ? 0 : (int)i0, mr = g->by_cols ? g->m : (int)(i1 - i0);
    int c0 = g->by_cols ? (int)i0 : 0, nc = g->by_cols ? (int)(i1 - i0) : g->n;
    float *y = g->y + (size_t)r0 * g->n + c0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mr, nc, g->k, 1.0f, g->a + (size_t)r0 * g->lda, g->lda,
                g->w + c0, g->n, 0.0f, y, g->n);
    ops_kernels_active()->bias_act_rows(y, 0, (size_t)mr, nc, g->n, g->b ? g->b + c0 : NULL, g->act);
}

static void blas_gemm(const float *a, int lda, const float *w, const float *b, enc_act act, float *y, int m, int k,
                      int n)
{
    int nt = ops_threads();
    blas_ctx ctx = {a, w, b, y, m, k, n, lda, act, 0};
    if (nt > 1 && m < nt * 96 && n >= nt * 32) {
        ctx.by_cols = 1;
        size_t per = (size_t)n / ((size_t)nt * 4);
        if (per < 32) per = 32;
        ops_parallel((size_t)n, (per + 15) & ~(size_t)15, blas_task, &ctx);
    } else {
        size_t per = (size_t)m / ((size_t)nt * 6);
        ops_parallel((size_t)m, per < 96 ? 96 : per, blas_task, &ctx);
    }
}

static pthread_once_t g_gemm_once = PTHREAD_ONCE_INIT;
static bool g_use_openblas;

static void gemm_choose(void)
{
    const char *e = getenv("IMCAP_GEMM");
    g_use_openblas = e && !strcmp(e, "openblas");
}

bool ops_gemm_is_openblas(void)
{
    pthread_once(&g_gemm_once, gemm_choose);
    return g_use_openblas;
}

void ops_dense(int m, int cin, int cout, const float *x, const float *w, const float *wp, const float *b,
               enc_act act, float *y)
{
    if (ops_gemm_is_openblas())
        blas_gemm(x, cin, w, b, act, y, m, cin, cout);
    else
        ops_kernels_active()->gemm(x, (size_t)cin, NULL, wp, b, act, y, m, cin, cout);
}

/* ------------------------------------------------- Winograd convolution */

/* 3x3 stride-1 convolutions with enough channels and output pixels run as
 * Winograd F(4x4, 3x3) (Lavin & Gray 2016, interpolation points 0, +-1,
 * +-2, inf): each 4x4 output tile comes from a 6x6 input tile d as
 * A^T [ (G g G^T) .* (B^T d B) ] A, so the 36 products per tile and channel
 * pair replace 144 multiplications of the direct form. The elementwise
 * products over channels are 36 GEMMs (tiles x c) x (c x oc), one per
 * position xi of the 6x6 transform, with the transformed weights U[xi]
 * packed once per model (ops_winograd_pack). Tiles are processed in blocks
 * small enough that the block's transformed inputs V[36][tiles][c] and
 * products M[36][tiles][oc] stay in L2, one block per task. */
enum { WINO_L2_BYTES = 640 << 10, WINO_MIN_PIXELS = 256 };

static pthread_once_t g_wino_once = PTHREAD_ONCE_INIT;
static bool g_wino_off;

static void wino_choose(void)
{
    const char *e = getenv("IMCAP_WINOGRAD");
    g_wino_off = e && !strcmp(e, "0");
}

bool ops_winograd_ok(const ops_win *g)
{
    pthread_once(&g_wino_once, wino_choose);
    return !g_wino_off && !ops_gemm_is_openblas() && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
           g->c >= 16 && g->oc >= 16 && g->oh * g->ow >= WINO_MIN_PIXELS;
}

size_t ops_winograd_floats(int c, int oc) { return 36 * ops_packed_floats(c, oc); }

void ops_winograd_pack(int c, int oc, const float *w, float *up)
{
    static const float G[6][3] = {{1.0f / 4, 0, 0},
                                  {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                  {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                  {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                  {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                  {0, 0, 1}};
    size_t per = ops_packed_floats(c, oc);
    for (int ci = 0; ci < c; ci++)
        for (int o = 0; o < oc; o++) {
            /* U = G g G^T for the 3x3 kernel g of (ci, o), via t = G g. */
            float g3[3][3], t[6][3];
            for (int a = 0; a < 9; a++) g3[a / 3][a % 3] = w[((size_t)a * c + ci) * oc + o];
            for (int u = 0; u < 6; u++)
                for (int b = 0; b < 3; b++) t[u][b] = G[u][0] * g3[0][b] + G[u][1] * g3[1][b] + G[u][2] * g3[2][b];
            /* U[xi][ci][o] at the packed position of (ci, o) in matrix xi */
            float *dst = up + ((size_t)(o / OPS_NR) * c + ci) * OPS_NR + o % OPS_NR;
            for (int u = 0; u < 6; u++)
                for (int v = 0; v < 6; v++)
                    dst[(size_t)(u * 6 + v) * per] = t[u][0] * G[v][0] + t[u][1] * G[v][1] + t[u][2] * G[v][2];
        }
    /* the zero padding of each matrix's last panel */
    if (oc % OPS_NR)
        for (int xi = 0; xi < 36; xi++)
            for (int ci = 0; ci < c; ci++)
                for (int j = oc % OPS_NR; j < OPS_NR; j++)
                    up[(size_t)xi * per + ((size_t)(oc / OPS_NR) * c + ci) * OPS_NR + j] = 0.0f;
}

/* Tiles per block: a multiple of every path's GEMM rows, V and M within
 * the L2 budget. */
static int wino_block_tiles(const ops_win *g)
{
    size_t per_tile = 36 * (size_t)(g->c + g->oc) * sizeof(float);
    int tb = (int)(WINO_L2_BYTES / per_tile) / OPS_TILE_STEP * OPS_TILE_STEP;
    return tb < OPS_TILE_STEP ? OPS_TILE_STEP : tb > 96 ? 96 : tb;
}

size_t ops_winograd_scratch(const ops_win *g)
{
    return (size_t)ops_threads() * (size_t)wino_block_tiles(g) * 36 * (size_t)(g->c + g->oc);
}

/* ------------------------------------------------------------ convolution */

enum { IM2COL_MAX_FLOATS = 1 << 20 };

static int conv_direct(const ops_win *g)
{
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
           g->oh == g->h && g->ow == g->w;
}

static size_t conv_rows_per_block(const ops_win *g)
{
    size_t k = (size_t)g->kh * g->kw * g->c;
    size_t rows = IM2COL_MAX_FLOATS / k;
    if (rows < 16) rows = 16;
    return rows;
}

size_t ops_conv2d_scratch(const ops_win *g)
{
    if (ops_winograd_ok(g)) return ops_winograd_scratch(g);
    if (conv_direct(g) || !ops_gemm_is_openblas()) return 0;
    size_t m = (size_t)g->n * g->oh * g->ow, rows = conv_rows_per_block(g);
    if (rows > m) rows = m;
    return rows * (size_t)g->kh * g->kw * g->c;
}

typedef struct im2col_ctx {
    const ops_win *g;
    const float *x;
    float *col;
    size_t row0;
} im2col_ctx;

static void im2col_task(void *vctx, size_t r0, size_t r1, int tid)
{
    im2col_ctx *t = vctx;
    const ops_win *g = t->g;
    size_t k = (size_t)g->kh * g->kw * g->c, rowlen = (size_t)g->kw * g->c;
    for (size_t r = r0; r < r1; r++) {
        size_t gr = t->row0 + r;
        int ox = (int)(gr % (size_t)g->ow);
        size_t q = gr / (size_t)g->ow;
        int oy = (int)(q % (size_t)g->oh);
        size_t img = q / (size_t)g->oh;
        float *dst = t->col + r * k;
        const float *xi = t->x + img * (size_t)g->h * g->w * g->c;
        int iy0 = oy * g->sh - g->pt, ix0 = ox * g->sw - g->pl;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = iy0 + ky;
            float *d = dst + (size_t)ky * rowlen;
            if (iy < 0 || iy >= g->h) {
                memset(d, 0, rowlen * sizeof(float));
                continue;
            }
            const float *xr = xi + (size_t)iy * g->w * g->c;
            if (ix0 >= 0 && ix0 + g->kw <= g->w) {
                memcpy(d, xr + (size_t)ix0 * g->c, rowlen * sizeof(float));
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= g->w)
                    memset(d + (size_t)kx * g->c, 0, (size_t)g->c * sizeof(float));
                else
                    memcpy(d + (size_t)kx * g->c, xr + (size_t)ix * g->c, (size_t)g->c * sizeof(float));
            }
        }
    }
}

void ops_conv2d(const ops_win *g, const float *x, const float *w, const float *wp, const float *wu, const float *b,
                enc_act act, float *y, float *scratch)
{
    int k = g->kh * g->kw * g->c;
    size_t m = (size_t)g->n * g->oh * g->ow;
    if (wu && ops_winograd_ok(g)) {
        ops_kernels_active()->winograd(g, x, wu, b, act, y, scratch, wino_block_tiles(g));
        return;
    }
    if (!ops_gemm_is_openblas()) {
        ops_kernels_active()->gemm(x, (size_t)g->c, conv_direct(g) ? NULL : g, wp, b, act, y, (int)m, k, g->oc);
        return;
    }
    if (conv_direct(g)) {
        blas_gemm(x, g->c, w, b, act, y, (int)m, k, g->oc);
        return;
    }
    size_t rows = conv_rows_per_block(g);
    for (size_t r0 = 0; r0 < m; r0 += rows) {
        size_t nr = m - r0 < rows ? m - r0 : rows;
        im2col_ctx ctx = {g, x, scratch, r0};
        ops_parallel(nr, 8, im2col_task, &ctx);
        blas_gemm(scratch, k, w, b, act, y + r0 * (size_t)g->oc, (int)nr, k, g->oc);
    }
}

/* ------------------------------------------- depthwise, pools, elementwise */

void ops_dwconv2d(const ops_win *g, const float *x, const float *w, const float *b, enc_act act, float *y)
{
    ops_kernels_active()->dwconv2d(g, x, w, b, act, y);
}

void ops_avgpool(const ops_win *g, const float *x, float *y) { ops_kernels_active()->pool(g, x, y, 0); }

void ops_maxpool(const ops_win *g, const float *x, float *y) { ops_kernels_active()->pool(g, x, y, 1); }

void ops_gap(int n, int hw, int c, const float *x, float *y) { ops_kernels_active()->gap(n, hw, c, x, y); }

void ops_add(size_t count, const float *a, const float *b, float *y) { ops_kernels_active()->add(count, a, b, y); }

void ops_affine(size_t m, int c, const float *x, const float *w, const float *b, float *y)
{
    ops_kernels_active()->affine(m, c, x, w, b, y);
}

void ops_softmax(size_t m, int c, const float *x, float *y)
{
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * (size_t)c;
        float *yr = y + r * (size_t)c;
        float mx = xr[0];
        for (int i = 1; i < c; i++) mx = xr[i] > mx ? xr[i] : mx;
        double s = 0.0;
        for (int i = 0; i < c; i++) {
            yr[i] = expf(xr[i] - mx);
            s += yr[i];
        }
        float inv = (float)(1.0 / s);
        for (int i = 0; i < c; i++) yr[i] *= inv;
    }
}

typedef struct concat_ctx {
    int n, cy;
    const float *const *x;
    const int *cx;
    float *y;
} concat_ctx;

static void concat_task(void *vctx, size_t r0, size_t r1, int tid)
{
    const concat_ctx *t = vctx;
    for (size_t r = r0; r < r1; r++) {
        float *dst = t->y + r * (size_t)t->cy;
        for (int i = 0; i < t->n; i++) {
            memcpy(dst, t->x[i] + r * (size_t)t->cx[i], (size_t)t->cx[i] * sizeof(float));
            dst += t->cx[i];
        }
    }
}

void ops_concat(size_t m, int n, const float *const *x, const int *cx, float *y)
{
    int cy = 0;
    for (int i = 0; i < n; i++) cy += cx[i];
    concat_ctx t = {n, cy, x, cx, y};
    ops_parallel(m, 16384 / (size_t)(cy > 0 ? cy : 1) + 1, concat_task, &t);
}

void ops_pad(int n, int h, int w, int c, int top, int left, int oh, int ow, const float *x, float *y)
{
    size_t row = (size_t)ow * c, in_row = (size_t)w * c;
    for (int b = 0; b < n; b++) {
        float *yb = y + (size_t)b * oh * row;
        const float *xb = x + (size_t)b * h * in_row;
        memset(yb, 0, (size_t)top * row * sizeof(float));
        for (int i = 0; i < h; i++) {
            float *yr = yb + (size_t)(top + i) * row;
            memset(yr, 0, (size_t)left * c * sizeof(float));
            memcpy(yr + (size_t)left * c, xb + (size_t)i * in_row, in_row * sizeof(float));
            memset(yr + (size_t)(left + w) * c, 0, (size_t)(ow - left - w) * c * sizeof(float));
        }
        memset(yb + (size_t)(top + h) * row, 0, (size_t)(oh - top - h) * row * sizeof(float));
    }
}
