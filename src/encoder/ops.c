/*
 * ops.c - float NHWC kernels: convolution as im2col + GEMM (1x1 stride-1
 * convolutions multiply the input directly), AVX2/FMA loops for depthwise
 * convolution, pools and elementwise ops, and the worker pool that splits
 * every kernel (GEMMs included) over the cores.
 *
 * GEMM: our AVX2/FMA kernel (own_gemm: 6x16 register tile over weights
 * packed once per model, convolutions read in place without im2col, bias
 * and activation fused into the store); IMCAP_GEMM=openblas switches to
 * OpenBLAS cblas_sgemm over im2col blocks + a bias/activation pass (both
 * are benchmarked, both tested).
 *
 * Threading: one process-wide pool of ops_threads()-1 pthreads plus the
 * calling thread. During a graph run OpenBLAS is set to one thread and each
 * of our threads computes its own GEMM tile, so OpenBLAS's pool and ours
 * never compete for the cores.
 */
#define _GNU_SOURCE
#include "ops.h"

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

/* ------------------------------------------------------------ activations */

static inline __m256 act8(__m256 v, enc_act act)
{
    switch (act) {
    case ENC_ACT_RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
    case ENC_ACT_RELU6: return _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(6.0f));
    default: return v;
    }
}

static inline float act1(float v, enc_act act)
{
    switch (act) {
    case ENC_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ENC_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case ENC_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

/* y[m][c] = act(y[m][c] + b[c]) over rows [r0, r1). */
static void bias_act_rows(float *y, size_t r0, size_t r1, int c, int ldy, const float *b, enc_act act)
{
    if (!b && act == ENC_ACT_NONE) return;
    for (size_t r = r0; r < r1; r++) {
        float *row = y + r * (size_t)ldy;
        int i = 0;
        if (act != ENC_ACT_SIGMOID) {
            for (; i + 8 <= c; i += 8) {
                __m256 v = _mm256_loadu_ps(row + i);
                if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
                _mm256_storeu_ps(row + i, act8(v, act));
            }
        }
        for (; i < c; i++) row[i] = act1(row[i] + (b ? b[i] : 0.0f), act);
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
    bias_act_rows(x->y, r0, r1, x->c, x->c, x->b, x->act);
}

void ops_bias_act(size_t m, int c, const float *b, enc_act act, float *y)
{
    if (!b && act == ENC_ACT_NONE) return;
    bias_act_ctx ctx = {y, c, b, act};
    ops_parallel(m, 4096 / (size_t)(c > 0 ? c : 1) + 1, bias_act_task, &ctx);
}

/* ------------------------------------------------------------------ GEMM */

/* Our GEMM: y[m][n] = act(A[m][k] W[k][n] + b) where A is either a matrix
 * (rows with stride lda) or the implicit im2col matrix of a convolution,
 * never materialised: a row of it is one output pixel, and its K range for
 * tap (ky, kx) is the input pixel under that tap (channels contiguous in
 * NHWC) or zeros where the tap falls in the padding. The micro-kernel takes
 * one pointer per tile row and tap, so A is read in place, for any stride.
 *
 * W comes pre-packed (ops_pack_weights, once per model): 16-column panels,
 * each k x 16 contiguous and zero padded. A 6x16 register tile accumulates
 * over a K block (whole taps, or one tap's channel range, at most GEMM_KC
 * long); bias and activation are applied when the tile is stored after the
 * last K block, so y is written once per K block and finished in place.
 *
 * Work is split into (tile rows x panels) rectangles sized so the threads
 * get equal shares (gemm_split) and each rectangle's W block stays in L2. */
enum { GEMM_MR = 6, GEMM_NR = 16, GEMM_KC = 320, GEMM_MAX_TAPS = 64, GEMM_L2_BYTES = 512 << 10,
       GEMM_GATHER_C = 16 /* fewer channels per tap: gather the taps */ };

static const float g_zeros[GEMM_KC] __attribute__((aligned(64)));

size_t ops_packed_floats(int k, int n)
{
    return (size_t)((n + GEMM_NR - 1) / GEMM_NR) * GEMM_NR * (size_t)k;
}

void ops_pack_weights(int k, int n, const float *w, float *wp)
{
    for (int j0 = 0; j0 < n; j0 += GEMM_NR) {
        int nr = n - j0 < GEMM_NR ? n - j0 : GEMM_NR;
        for (int kk = 0; kk < k; kk++, wp += GEMM_NR) {
            const float *src = w + (size_t)kk * n + j0;
            if (nr == GEMM_NR) {
                _mm256_store_ps(wp, _mm256_loadu_ps(src));
                _mm256_store_ps(wp + 8, _mm256_loadu_ps(src + 8));
            } else {
                for (int j = 0; j < GEMM_NR; j++) wp[j] = j < nr ? src[j] : 0.0f;
            }
        }
    }
}

static inline void tile_store(float *y, size_t ldy, int mr, int nr, __m256 c[GEMM_MR][2], const float *bias,
                              bool first, bool last, enc_act act)
{
    for (int i = 0; i < mr; i++) {
        float *yr = y + (size_t)i * ldy;
        if (nr == GEMM_NR) {
            __m256 v0 = c[i][0], v1 = c[i][1];
            if (!first) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(yr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(yr + 8));
            }
            if (last) {
                if (bias) {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8));
                }
                v0 = act8(v0, act);
                v1 = act8(v1, act);
            }
            _mm256_storeu_ps(yr, v0);
            _mm256_storeu_ps(yr + 8, v1);
            if (last && act == ENC_ACT_SIGMOID)
                for (int j = 0; j < GEMM_NR; j++) yr[j] = act1(yr[j], act);
        } else {
            float tmp[GEMM_NR];
            _mm256_storeu_ps(tmp, c[i][0]);
            _mm256_storeu_ps(tmp + 8, c[i][1]);
            for (int j = 0; j < nr; j++) {
                float v = tmp[j] + (first ? 0.0f : yr[j]);
                if (last) v = act1(v + (bias ? bias[j] : 0.0f), act);
                yr[j] = v;
            }
        }
    }
}

/* 6x16 tile over ntaps taps of len each: rows ar[t*6 + i] + [0, len),
 * panel bp[t*len + k][16] (consecutive taps are consecutive in W). */
static inline void kernel_6x16(int ntaps, int len, const float *const *ar, const float *bp, __m256 c[GEMM_MR][2])
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int t = 0; t < ntaps; t++, ar += GEMM_MR) {
        const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
        for (int k = 0; k < len; k++) {
            __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), x;
            bp += GEMM_NR;
            x = _mm256_broadcast_ss(a0 + k);
            c00 = _mm256_fmadd_ps(x, b0, c00);
            c01 = _mm256_fmadd_ps(x, b1, c01);
            x = _mm256_broadcast_ss(a1 + k);
            c10 = _mm256_fmadd_ps(x, b0, c10);
            c11 = _mm256_fmadd_ps(x, b1, c11);
            x = _mm256_broadcast_ss(a2 + k);
            c20 = _mm256_fmadd_ps(x, b0, c20);
            c21 = _mm256_fmadd_ps(x, b1, c21);
            x = _mm256_broadcast_ss(a3 + k);
            c30 = _mm256_fmadd_ps(x, b0, c30);
            c31 = _mm256_fmadd_ps(x, b1, c31);
            x = _mm256_broadcast_ss(a4 + k);
            c40 = _mm256_fmadd_ps(x, b0, c40);
            c41 = _mm256_fmadd_ps(x, b1, c41);
            x = _mm256_broadcast_ss(a5 + k);
            c50 = _mm256_fmadd_ps(x, b0, c50);
            c51 = _mm256_fmadd_ps(x, b1, c51);
        }
    }
    c[0][0] = c00, c[0][1] = c01, c[1][0] = c10, c[1][1] = c11, c[2][0] = c20, c[2][1] = c21;
    c[3][0] = c30, c[3][1] = c31, c[4][0] = c40, c[4][1] = c41, c[5][0] = c50, c[5][1] = c51;
}

/* One GEMM: the A operand (x with row stride lda, or the convolution cv
 * over x, whose K = taps x c), packed W, and the split into tasks. */
typedef struct gemm_ctx {
    const float *x, *wp, *b;
    size_t lda;
    const ops_win *cv;
    int taps, c;       /* K = taps * c (a plain matrix: 1 tap of k channels) */
    int tpb, cpb, nkb; /* K blocks: tpb taps of c, or (tpb = 1) channel ranges of cpb; nkb blocks */
    float *y;
    int m, k, n;
    enc_act act;
    int tiles, panels, rows_split, cols_split;
} gemm_ctx;

/* K blocks of at most GEMM_KC: whole taps when a tap fits, else each tap in
 * equal channel ranges; blocks as equal as possible (no short tail block). */
static void gemm_kblocks(gemm_ctx *g)
{
    if (g->c <= GEMM_KC) {
        int per = GEMM_KC / g->c;
        if (per > GEMM_MAX_TAPS) per = GEMM_MAX_TAPS;
        int nb = (g->taps + per - 1) / per;
        g->tpb = (g->taps + nb - 1) / nb;
        g->cpb = g->c;
        g->nkb = (g->taps + g->tpb - 1) / g->tpb;
    } else {
        int nb = (g->c + GEMM_KC - 1) / GEMM_KC;
        g->tpb = 1;
        g->cpb = (g->c + nb - 1) / nb;
        g->nkb = g->taps * ((g->c + g->cpb - 1) / g->cpb);
    }
}

/* The derived fields of g: K as taps x channels, tile and panel counts,
 * K blocks (x, lda, cv, m, k, n must be set). */
static void gemm_init(gemm_ctx *g)
{
    g->taps = g->cv ? g->cv->kh * g->cv->kw : 1;
    g->c = g->cv ? g->cv->c : g->k;
    g->tiles = (g->m + GEMM_MR - 1) / GEMM_MR;
    g->panels = (g->n + GEMM_NR - 1) / GEMM_NR;
    gemm_kblocks(g);
}

/* Tasks: rows_split ranges of 6-row tiles x cols_split ranges of panels,
 * at most 4 per thread (ops_parallel then hands them out one by one). The
 * split minimises the busiest thread's tile count; a task covers at most
 * the panels whose K block fits the L2 budget. */
static void gemm_split(gemm_ctx *g)
{
    int nt = ops_threads(), T = g->tiles, P = g->panels;
    size_t kb = (size_t)g->tpb * g->cpb * GEMM_NR * sizeof(float);
    int pmax = (int)(GEMM_L2_BYTES / kb);
    if (pmax < 1) pmax = 1;
    int cmin = (P + pmax - 1) / pmax, max_tasks = nt * 4;
    long best = -1;
    g->rows_split = 1;
    g->cols_split = cmin;
    for (int cs = cmin; cs <= P && cs <= max_tasks; cs++)
        for (int rs = 1; rs <= T && rs * cs <= max_tasks; rs++) {
            int tasks = rs * cs, rounds = (tasks + nt - 1) / nt;
            long per = (long)((T + rs - 1) / rs) * ((P + cs - 1) / cs);
            /* the busiest thread's micro-tiles; among equal splits the one
             * with fewer tasks (each recomputes A pointers, reloads W) */
            long cost = (long)rounds * per * 64 + tasks;
            if (best < 0 || cost < best) {
                best = cost;
                g->rows_split = rs;
                g->cols_split = cs;
            }
        }
}

/* K block b: taps [t0, t1) with channels [c0, c1) of each; in W's rows it
 * is [t0 * c + c0, t0 * c + c0 + (t1 - t0) * (c1 - c0)). */
static void gemm_kblock(const gemm_ctx *g, int b, int *t0, int *t1, int *c0, int *c1)
{
    if (g->tpb > 1 || g->cpb == g->c) {
        *t0 = b * g->tpb;
        *t1 = *t0 + g->tpb < g->taps ? *t0 + g->tpb : g->taps;
        *c0 = 0;
        *c1 = g->c;
    } else {
        int per_tap = (g->c + g->cpb - 1) / g->cpb;
        *t0 = b / per_tap;
        *t1 = *t0 + 1;
        *c0 = (b % per_tap) * g->cpb;
        *c1 = *c0 + g->cpb < g->c ? *c0 + g->cpb : g->c;
    }
}

/* Pointers to the 6 rows x taps of K block b for the tile of rows r0..;
 * with few channels per tap the block's taps are gathered into abuf
 * (6 rows of ntaps*c floats) and passed as one long tap. */
static void gemm_rows(const gemm_ctx *g, int b, size_t r0, int mr, const float **ar, float *abuf, int *ntaps,
                      int *len, size_t *koff)
{
    int t0, t1, c0, c1;
    gemm_kblock(g, b, &t0, &t1, &c0, &c1);
    *ntaps = t1 - t0;
    *len = c1 - c0;
    *koff = (size_t)t0 * g->c + c0;
    if (!g->cv) {
        for (int i = 0; i < GEMM_MR; i++)
            ar[i] = g->x + (r0 + (size_t)(i < mr ? i : mr - 1)) * g->lda + c0;
        return;
    }
    const ops_win *cv = g->cv;
    bool gather = g->c < GEMM_GATHER_C;
    int n = c1 - c0, kw = cv->kw;
    for (int i = 0; i < GEMM_MR; i++) {
        size_t r = r0 + (size_t)(i < mr ? i : mr - 1);
        int ox = (int)(r % (size_t)cv->ow);
        size_t q = r / (size_t)cv->ow;
        int oy = (int)(q % (size_t)cv->oh);
        const float *xi = g->x + (q / (size_t)cv->oh) * (size_t)cv->h * cv->w * cv->c + c0;
        int iy0 = oy * cv->sh - cv->pt, ix0 = ox * cv->sw - cv->pl;
        float *dst = abuf + (size_t)i * GEMM_KC;
        bool row_in = ix0 >= 0 && ix0 + kw <= cv->w && n == cv->c;
        for (int t = t0, ky = t0 / kw, kx = t0 % kw; t < t1; t++) {
            int iy = iy0 + ky, ix = ix0 + kx;
            bool in = (unsigned)iy < (unsigned)cv->h && (unsigned)ix < (unsigned)cv->w;
            const float *src = in ? xi + ((size_t)iy * cv->w + (size_t)ix) * cv->c : g_zeros;
            if (gather && in && row_in && kx == 0 && t + kw <= t1) {
                /* a whole kernel row inside the image: kw taps contiguous in NHWC */
                memcpy(dst, src, (size_t)kw * n * sizeof(float));
                dst += kw * n;
                t += kw - 1;
                ky++;
                continue;
            }
            if (gather) {
                for (int j = 0; j < n; j++) dst[j] = src[j];
                dst += n;
            } else {
                ar[(t - t0) * GEMM_MR + i] = src;
            }
            if (++kx == kw) kx = 0, ky++;
        }
        if (gather) ar[i] = abuf + (size_t)i * GEMM_KC;
    }
    if (gather) {
        *len *= *ntaps;
        *ntaps = 1;
    }
}

/* Tiles [i0, i1) x panels [p0, p1). The next tile's rows are fetched
 * into cache while the current tile runs (a row of A is 6 separate streams
 * the hardware prefetcher would only pick up after several misses). */
static void gemm_block(const gemm_ctx *g, int i0, int i1, int p0, int p1)
{
    const float *ar[2][GEMM_MAX_TAPS * GEMM_MR];
    _Alignas(64) float abuf[2][GEMM_MR * GEMM_KC];
    for (int b = 0; b < g->nkb; b++) {
        bool first = b == 0, last = b == g->nkb - 1;
        int cur = 0, ntaps[2], len[2], mr[2], next_len = 0;
        size_t koff[2], next_koff = 0, next_lines = 0, per_tile = 0;
        if (!last) {
            /* W's next K block, fetched into L2 a slice per tile: W streams
             * from memory once per run, and a cold block would stall the
             * first tile of every K block. */
            int t0, t1, c0, c1;
            gemm_kblock(g, b + 1, &t0, &t1, &c0, &c1);
            next_koff = (size_t)t0 * g->c + (size_t)c0;
            next_len = (t1 - t0) * (c1 - c0);
            next_lines = (size_t)(p1 - p0) * (size_t)next_len;
            per_tile = (next_lines + (size_t)(i1 - i0) - 1) / (size_t)(i1 - i0);
        }
        for (int i = i0; i < i1; i++, cur ^= 1) {
            for (size_t l = (size_t)(i - i0) * per_tile, le = l + per_tile < next_lines ? l + per_tile : next_lines;
                 l < le; l++)
                _mm_prefetch((const char *)(g->wp + ((size_t)(p0 + (int)(l / (size_t)next_len)) * g->k + next_koff +
                                                    l % (size_t)next_len) * GEMM_NR),
                             _MM_HINT_T1);
            size_t r0 = (size_t)i * GEMM_MR;
            if (i == i0) {
                mr[cur] = g->m - (int)r0 < GEMM_MR ? g->m - (int)r0 : GEMM_MR;
                gemm_rows(g, b, r0, mr[cur], ar[cur], abuf[cur], &ntaps[cur], &len[cur], &koff[cur]);
            }
            if (i + 1 < i1) {
                int nx = cur ^ 1;
                mr[nx] = g->m - (int)(r0 + GEMM_MR) < GEMM_MR ? g->m - (int)(r0 + GEMM_MR) : GEMM_MR;
                gemm_rows(g, b, r0 + GEMM_MR, mr[nx], ar[nx], abuf[nx], &ntaps[nx], &len[nx], &koff[nx]);
                for (int q = 0; q < ntaps[nx] * GEMM_MR; q++)
                    for (int j = 0; j < len[nx]; j += 16) _mm_prefetch((const char *)(ar[nx][q] + j), _MM_HINT_T0);
            }
            for (int p = p0; p < p1; p++) {
                int j0 = p * GEMM_NR, nr = g->n - j0 < GEMM_NR ? g->n - j0 : GEMM_NR;
                __m256 c[GEMM_MR][2];
                kernel_6x16(ntaps[cur], len[cur], ar[cur], g->wp + ((size_t)p * g->k + koff[cur]) * GEMM_NR, c);
                tile_store(g->y + r0 * (size_t)g->n + j0, (size_t)g->n, mr[cur], nr, c, g->b ? g->b + j0 : NULL,
                           first, last, g->act);
            }
        }
    }
}

static void gemm_task(void *vctx, size_t t0, size_t t1, int tid)
{
    const gemm_ctx *g = vctx;
    for (size_t t = t0; t < t1; t++) {
        int rb = (int)t / g->cols_split, cb = (int)t % g->cols_split;
        int i0 = (int)((long)g->tiles * rb / g->rows_split), i1 = (int)((long)g->tiles * (rb + 1) / g->rows_split);
        int p0 = (int)((long)g->panels * cb / g->cols_split), p1 = (int)((long)g->panels * (cb + 1) / g->cols_split);
        gemm_block(g, i0, i1, p0, p1);
    }
}

static void own_gemm(const float *x, size_t lda, const ops_win *cv, const float *wp, const float *b, enc_act act,
                     float *y, int m, int k, int n)
{
    gemm_ctx g = {.x = x, .wp = wp, .b = b, .lda = lda, .cv = cv, .y = y, .m = m, .k = k, .n = n, .act = act};
    gemm_init(&g);
    gemm_split(&g);
    ops_parallel((size_t)g.rows_split * g.cols_split, 1, gemm_task, &g);
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
    bias_act_rows(y, 0, (size_t)mr, nc, g->n, g->b ? g->b + c0 : NULL, g->act);
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
        own_gemm(x, (size_t)cin, NULL, wp, b, act, y, m, cin, cout);
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
            float *dst = up + ((size_t)(o / GEMM_NR) * c + ci) * GEMM_NR + o % GEMM_NR;
            for (int u = 0; u < 6; u++)
                for (int v = 0; v < 6; v++)
                    dst[(size_t)(u * 6 + v) * per] = t[u][0] * G[v][0] + t[u][1] * G[v][1] + t[u][2] * G[v][2];
        }
    /* the zero padding of each matrix's last panel */
    if (oc % GEMM_NR)
        for (int xi = 0; xi < 36; xi++)
            for (int ci = 0; ci < c; ci++)
                for (int j = oc % GEMM_NR; j < GEMM_NR; j++)
                    up[(size_t)xi * per + ((size_t)(oc / GEMM_NR) * c + ci) * GEMM_NR + j] = 0.0f;
}

/* Tiles per block: a multiple of the GEMM's 6 rows, V and M within the L2
 * budget. */
static int wino_block_tiles(const ops_win *g)
{
    size_t per_tile = 36 * (size_t)(g->c + g->oc) * sizeof(float);
    int tb = (int)(WINO_L2_BYTES / per_tile) / GEMM_MR * GEMM_MR;
    return tb < GEMM_MR ? GEMM_MR : tb > 96 ? 96 : tb;
}

size_t ops_winograd_scratch(const ops_win *g)
{
    return (size_t)ops_threads() * (size_t)wino_block_tiles(g) * 36 * (size_t)(g->c + g->oc);
}

/* B^T d for one column of 6 (in place over 8 channels each). */
static inline void wino_bt(__m256 *d0, __m256 *d1, __m256 *d2, __m256 *d3, __m256 *d4, __m256 *d5)
{
    __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
    __m256 a = *d0, b = *d1, c = *d2, d = *d3, e = *d4, f = *d5;
    __m256 t1 = _mm256_fnmadd_ps(four, c, e), t2 = _mm256_fnmadd_ps(four, b, d); /* e - 4c, d - 4b */
    __m256 t3 = _mm256_sub_ps(e, c), t4 = _mm256_mul_ps(two, _mm256_sub_ps(d, b));
    *d0 = _mm256_add_ps(_mm256_fnmadd_ps(five, c, _mm256_mul_ps(four, a)), e); /* 4a - 5c + e */
    *d1 = _mm256_add_ps(t1, t2);                                               /* -4b - 4c + d + e */
    *d2 = _mm256_sub_ps(t1, t2);                                               /* 4b - 4c - d + e */
    *d3 = _mm256_add_ps(t3, t4);                                               /* -2b - c + 2d + e */
    *d4 = _mm256_sub_ps(t3, t4);                                               /* 2b - c - 2d + e */
    *d5 = _mm256_add_ps(_mm256_fnmadd_ps(five, d, _mm256_mul_ps(four, b)), f); /* 4b - 5d + f */
}

/* A^T m for one column of 6 -> 4. */
static inline void wino_at(__m256 m0, __m256 m1, __m256 m2, __m256 m3, __m256 m4, __m256 m5, __m256 *o)
{
    __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
    __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
    o[0] = _mm256_add_ps(_mm256_add_ps(m0, s12), s34);
    o[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
    o[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m5);
}

typedef struct wino_ctx {
    const ops_win *g;
    const float *x, *up, *b;
    float *y, *scratch;
    enc_act act;
    int th, tw, tb; /* tiles per image: th x tw; tiles per block: tb */
    size_t tiles;
} wino_ctx;

/* Tile number -> image, tile row, tile column. */
static inline size_t wino_tile(const wino_ctx *t, size_t tile, int *ty, int *tx)
{
    *tx = (int)(tile % (size_t)t->tw);
    *ty = (int)(tile / (size_t)t->tw % (size_t)t->th);
    return tile / ((size_t)t->tw * t->th);
}

/* Lanes [0, cnt) of 8 from p (zeros beyond). */
static inline __m256 load_part(const float *p, int cnt)
{
    if (cnt >= 8) return _mm256_loadu_ps(p);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), idx));
}

static inline void store_part(float *p, __m256 v, int cnt)
{
    if (cnt >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), idx), v);
}

static void wino_task(void *vctx, size_t b0, size_t b1, int tid)
{
    const wino_ctx *t = vctx;
    const ops_win *g = t->g;
    int C = g->c, OC = g->oc, tb = t->tb;
    float *V = t->scratch + (size_t)tid * tb * 36 * (size_t)(C + OC), *M = V + (size_t)36 * tb * C;
    size_t vstride = (size_t)tb * C, mstride = (size_t)tb * OC; /* per xi */
    for (size_t blk = b0; blk < b1; blk++) {
        size_t t0 = blk * (size_t)tb;
        int nt = t->tiles - t0 < (size_t)tb ? (int)(t->tiles - t0) : tb;
        /* Input transform: V[xi][i][c] = (B^T d B)[xi] of tile i. */
        for (int i = 0; i < nt; i++) {
            int tx, ty;
            const float *xi = t->x + wino_tile(t, t0 + (size_t)i, &ty, &tx) * (size_t)g->h * g->w * C;
            int iy0 = ty * 4 - g->pt, ix0 = tx * 4 - g->pl;
            for (int c0 = 0; c0 < C; c0 += 8) {
                int cnt = C - c0 < 8 ? C - c0 : 8;
                __m256 d[6][6];
                for (int r = 0; r < 6; r++)
                    for (int q = 0; q < 6; q++) {
                        int iy = iy0 + r, ix = ix0 + q;
                        d[r][q] = iy < 0 || iy >= g->h || ix < 0 || ix >= g->w
                                      ? _mm256_setzero_ps()
                                      : load_part(xi + ((size_t)iy * g->w + ix) * C + c0, cnt);
                    }
                for (int q = 0; q < 6; q++) wino_bt(&d[0][q], &d[1][q], &d[2][q], &d[3][q], &d[4][q], &d[5][q]);
                for (int r = 0; r < 6; r++) wino_bt(&d[r][0], &d[r][1], &d[r][2], &d[r][3], &d[r][4], &d[r][5]);
                for (int xi6 = 0; xi6 < 36; xi6++)
                    store_part(V + xi6 * vstride + (size_t)i * C + c0, d[xi6 / 6][xi6 % 6], cnt);
            }
        }
        /* The 36 products: M[xi] = V[xi] U[xi]. */
        for (int xi6 = 0; xi6 < 36; xi6++) {
            gemm_ctx gc = {.x = V + xi6 * vstride, .wp = t->up + (size_t)xi6 * ops_packed_floats(C, OC), .lda = (size_t)C,
                           .y = M + xi6 * mstride, .m = nt, .k = C, .n = OC, .act = ENC_ACT_NONE};
            gemm_init(&gc);
            gemm_block(&gc, 0, gc.tiles, 0, gc.panels);
        }
        /* Output transform, bias, activation. */
        for (int i = 0; i < nt; i++) {
            int tx, ty;
            float *yi = t->y + wino_tile(t, t0 + (size_t)i, &ty, &tx) * (size_t)g->oh * g->ow * OC;
            for (int o0 = 0; o0 < OC; o0 += 8) {
                int cnt = OC - o0 < 8 ? OC - o0 : 8;
                __m256 m[6][6], s[4][6], o[4];
                for (int xi6 = 0; xi6 < 36; xi6++)
                    m[xi6 / 6][xi6 % 6] = load_part(M + xi6 * mstride + (size_t)i * OC + o0, cnt);
                for (int q = 0; q < 6; q++) {
                    wino_at(m[0][q], m[1][q], m[2][q], m[3][q], m[4][q], m[5][q], o);
                    for (int r = 0; r < 4; r++) s[r][q] = o[r];
                }
                __m256 bias = t->b ? load_part(t->b + o0, cnt) : _mm256_setzero_ps();
                for (int r = 0; r < 4; r++) {
                    int oy = ty * 4 + r;
                    if (oy >= g->oh) break;
                    wino_at(s[r][0], s[r][1], s[r][2], s[r][3], s[r][4], s[r][5], o);
                    for (int q = 0; q < 4 && tx * 4 + q < g->ow; q++) {
                        float *dst = yi + ((size_t)oy * g->ow + (size_t)(tx * 4 + q)) * OC + o0;
                        __m256 v = _mm256_add_ps(o[q], bias);
                        if (t->act == ENC_ACT_SIGMOID) {
                            float tmp[8];
                            _mm256_storeu_ps(tmp, v);
                            for (int j = 0; j < cnt; j++) dst[j] = act1(tmp[j], t->act);
                        } else {
                            store_part(dst, act8(v, t->act), cnt);
                        }
                    }
                }
            }
        }
    }
}

static void winograd_conv(const ops_win *g, const float *x, const float *up, const float *b, enc_act act, float *y,
                          float *scratch)
{
    wino_ctx t = {g, x, up, b, y, scratch, act, (g->oh + 3) / 4, (g->ow + 3) / 4, wino_block_tiles(g), 0};
    t.tiles = (size_t)g->n * t.th * t.tw;
    ops_parallel((t.tiles + (size_t)t.tb - 1) / (size_t)t.tb, 1, wino_task, &t);
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
        winograd_conv(g, x, wu, b, act, y, scratch);
        return;
    }
    if (!ops_gemm_is_openblas()) {
        own_gemm(x, (size_t)g->c, conv_direct(g) ? NULL : g, wp, b, act, y, (int)m, k, g->oc);
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

/* ---------------------------------------------------- depthwise and pools */

typedef struct win_ctx {
    const ops_win *g;
    const float *x, *w, *b;
    float *y;
    enc_act act;
} win_ctx;

/* Valid tap range [k0, k1) of an output coordinate. */
static inline void tap_range(int o, int s, int pad, int k, int in, int *k0, int *k1)
{
    int i0 = o * s - pad;
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = in - i0 < k ? in - i0 : k;
}

/* One output pixel of a depthwise conv, all channels, any window (borders
 * and the general case). */
static void dw_pixel(const win_ctx *t, const float *xi, int oy, int ox, float *yo)
{
    const ops_win *g = t->g;
    int c = g->c, oc = g->oc, mult = g->mult;
    int ky0, ky1, kx0, kx1;
    tap_range(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
    tap_range(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
    int iy0 = oy * g->sh - g->pt, ix0 = ox * g->sw - g->pl;
    if (mult != 1) {
        for (int o = 0; o < oc; o++) {
            int ci = o / mult;
            float a = t->b ? t->b[o] : 0.0f;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++)
                    a += xi[((size_t)(iy0 + ky) * g->w + (size_t)(ix0 + kx)) * c + ci] *
                         t->w[((size_t)ky * g->kw + kx) * oc + o];
            yo[o] = act1(a, t->act);
        }
        return;
    }
    int o = 0;
    for (; o + 32 <= oc; o += 32) {
        __m256 a0, a1, a2, a3;
        if (t->b) {
            a0 = _mm256_loadu_ps(t->b + o);
            a1 = _mm256_loadu_ps(t->b + o + 8);
            a2 = _mm256_loadu_ps(t->b + o + 16);
            a3 = _mm256_loadu_ps(t->b + o + 24);
        } else {
            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
        }
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
            const float *wr = t->w + (size_t)ky * g->kw * oc + o;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *xp = xr + (size_t)(ix0 + kx) * c;
                const float *wp = wr + (size_t)kx * oc;
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(wp), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8), _mm256_loadu_ps(wp + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 16), _mm256_loadu_ps(wp + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 24), _mm256_loadu_ps(wp + 24), a3);
            }
        }
        _mm256_storeu_ps(yo + o, act8(a0, t->act));
        _mm256_storeu_ps(yo + o + 8, act8(a1, t->act));
        _mm256_storeu_ps(yo + o + 16, act8(a2, t->act));
        _mm256_storeu_ps(yo + o + 24, act8(a3, t->act));
    }
    for (; o + 8 <= oc; o += 8) {
        __m256 a0 = t->b ? _mm256_loadu_ps(t->b + o) : _mm256_setzero_ps();
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
            const float *wr = t->w + (size_t)ky * g->kw * oc + o;
            for (int kx = kx0; kx < kx1; kx++)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + (size_t)(ix0 + kx) * c), _mm256_loadu_ps(wr + (size_t)kx * oc),
                                     a0);
        }
        _mm256_storeu_ps(yo + o, act8(a0, t->act));
    }
    for (; o < oc; o++) {
        float a = t->b ? t->b[o] : 0.0f;
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                a += xi[((size_t)(iy0 + ky) * g->w + (size_t)(ix0 + kx)) * c + o] * t->w[((size_t)ky * g->kw + kx) * oc + o];
        yo[o] = act1(a, t->act);
    }
    if (t->act == ENC_ACT_SIGMOID)
        for (int i = 0; i < oc - oc % 8; i++) yo[i] = act1(yo[i], t->act);
}

/* 3x3 depthwise, multiplier 1, channels a multiple of 8: one output row.
 * Per 8 channels the 9 taps stay in registers (taps of rows outside the
 * image are zeroed and read a valid row instead), 4 output pixels at a time
 * for independent FMA chains; border columns go through dw_pixel. */
static void dw3x3_row(const win_ctx *t, const float *xi, int oy, float *yrow)
{
    const ops_win *g = t->g;
    int C = g->c, W = g->w, sw = g->sw;
    int iy0 = oy * g->sh - g->pt;
    const float *rows[3];
    int valid[3];
    for (int ky = 0; ky < 3; ky++) {
        int iy = iy0 + ky;
        valid[ky] = iy >= 0 && iy < g->h;
        int use = valid[ky] ? iy : (iy0 + 1 >= 0 && iy0 + 1 < g->h ? iy0 + 1 : (iy < 0 ? 0 : g->h - 1));
        rows[ky] = xi + (size_t)use * W * C;
    }
    int oxa = (g->pl + sw - 1) / sw, oxb = W - 3 + g->pl >= 0 ? (W - 3 + g->pl) / sw + 1 : 0;
    if (oxa > g->ow) oxa = g->ow;
    if (oxb > g->ow) oxb = g->ow;
    if (oxb < oxa) oxb = oxa;
    for (int ox = 0; ox < oxa; ox++) dw_pixel(t, xi, oy, ox, yrow + (size_t)ox * C);
    for (int ox = oxb; ox < g->ow; ox++) dw_pixel(t, xi, oy, ox, yrow + (size_t)ox * C);
    const __m256 zero = _mm256_setzero_ps();
    for (int c = 0; c < C; c += 8) {
        __m256 w[9];
        for (int k = 0; k < 9; k++) w[k] = valid[k / 3] ? _mm256_loadu_ps(t->w + (size_t)k * C + c) : zero;
        __m256 bias = t->b ? _mm256_loadu_ps(t->b + c) : zero;
        const float *r0 = rows[0] + c, *r1 = rows[1] + c, *r2 = rows[2] + c;
        int ox = oxa;
        size_t step = (size_t)sw * C;
        for (; ox + 4 <= oxb; ox += 4) {
            size_t b0 = (size_t)(ox * sw - g->pl) * C;
            __m256 acc[4];
            for (int p = 0; p < 4; p++) {
                size_t b = b0 + (size_t)p * step;
                __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b), w[0], bias);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b + C), w[1], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b + 2 * C), w[2], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + b), w[3], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + b + C), w[4], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + b + 2 * C), w[5], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + b), w[6], a);
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + b + C), w[7], a);
                acc[p] = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + b + 2 * C), w[8], a);
            }
            for (int p = 0; p < 4; p++) {
                __m256 v = act8(acc[p], t->act);
                if (t->act == ENC_ACT_SIGMOID) {
                    float tmp[8];
                    _mm256_storeu_ps(tmp, v);
                    for (int i = 0; i < 8; i++) tmp[i] = act1(tmp[i], t->act);
                    v = _mm256_loadu_ps(tmp);
                }
                _mm256_storeu_ps(yrow + (size_t)(ox + p) * C + c, v);
            }
        }
        for (; ox < oxb; ox++) {
            size_t b = (size_t)(ox * sw - g->pl) * C;
            __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b), w[0], bias);
            __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(r1 + b), w[3]);
            __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(r2 + b), w[6]);
            a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b + C), w[1], a);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + b + C), w[4], a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + b + C), w[7], a2);
            a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + b + 2 * C), w[2], a);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + b + 2 * C), w[5], a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + b + 2 * C), w[8], a2);
            __m256 v = act8(_mm256_add_ps(_mm256_add_ps(a, a1), a2), t->act);
            if (t->act == ENC_ACT_SIGMOID) {
                float tmp[8];
                _mm256_storeu_ps(tmp, v);
                for (int i = 0; i < 8; i++) tmp[i] = act1(tmp[i], t->act);
                v = _mm256_loadu_ps(tmp);
            }
            _mm256_storeu_ps(yrow + (size_t)ox * C + c, v);
        }
    }
}

static void dw_task(void *vctx, size_t r0, size_t r1, int tid)
{
    win_ctx *t = vctx;
    const ops_win *g = t->g;
    bool fast = g->mult == 1 && g->kh == 3 && g->kw == 3 && g->c % 8 == 0;
    for (size_t r = r0; r < r1; r++) {
        int oy = (int)(r % (size_t)g->oh);
        size_t img = r / (size_t)g->oh;
        const float *xi = t->x + img * (size_t)g->h * g->w * g->c;
        float *yrow = t->y + r * (size_t)g->ow * g->oc;
        if (fast) {
            dw3x3_row(t, xi, oy, yrow);
            continue;
        }
        for (int ox = 0; ox < g->ow; ox++) dw_pixel(t, xi, oy, ox, yrow + (size_t)ox * g->oc);
    }
}

void ops_dwconv2d(const ops_win *g, const float *x, const float *w, const float *b, enc_act act, float *y)
{
    win_ctx ctx = {g, x, w, b, y, act};
    ops_parallel((size_t)g->n * g->oh, 1, dw_task, &ctx);
}

static void pool_task(void *vctx, size_t r0, size_t r1, int is_max)
{
    win_ctx *t = vctx;
    const ops_win *g = t->g;
    int c = g->c;
    for (size_t r = r0; r < r1; r++) {
        int oy = (int)(r % (size_t)g->oh);
        size_t img = r / (size_t)g->oh;
        const float *xi = t->x + img * (size_t)g->h * g->w * c;
        int ky0, ky1;
        tap_range(oy, g->sh, g->pt, g->kh, g->h, &ky0, &ky1);
        int iy0 = oy * g->sh - g->pt;
        for (int ox = 0; ox < g->ow; ox++) {
            float *yo = t->y + (r * (size_t)g->ow + (size_t)ox) * c;
            int kx0, kx1;
            tap_range(ox, g->sw, g->pl, g->kw, g->w, &kx0, &kx1);
            int ix0 = ox * g->sw - g->pl;
            int cnt = (ky1 - ky0) * (kx1 - kx0);
            float inv = cnt > 0 ? 1.0f / (float)cnt : 0.0f;
            int o = 0;
            for (; o + 8 <= c; o += 8) {
                __m256 a = is_max ? _mm256_set1_ps(-INFINITY) : _mm256_setzero_ps();
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
                    for (int kx = kx0; kx < kx1; kx++) {
                        __m256 v = _mm256_loadu_ps(xr + (size_t)(ix0 + kx) * c);
                        a = is_max ? _mm256_max_ps(a, v) : _mm256_add_ps(a, v);
                    }
                }
                if (!is_max) a = _mm256_mul_ps(a, _mm256_set1_ps(inv));
                _mm256_storeu_ps(yo + o, a);
            }
            for (; o < c; o++) {
                float a = is_max ? -INFINITY : 0.0f;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        float v = xi[((size_t)(iy0 + ky) * g->w + (size_t)(ix0 + kx)) * c + o];
                        a = is_max ? (v > a ? v : a) : a + v;
                    }
                yo[o] = is_max ? a : a * inv;
            }
        }
    }
}

static void avgpool_task(void *vctx, size_t r0, size_t r1, int tid) { pool_task(vctx, r0, r1, 0); }
static void maxpool_task(void *vctx, size_t r0, size_t r1, int tid) { pool_task(vctx, r0, r1, 1); }

void ops_avgpool(const ops_win *g, const float *x, float *y)
{
    win_ctx ctx = {g, x, NULL, NULL, y, ENC_ACT_NONE};
    ops_parallel((size_t)g->n * g->oh, 1, avgpool_task, &ctx);
}

void ops_maxpool(const ops_win *g, const float *x, float *y)
{
    win_ctx ctx = {g, x, NULL, NULL, y, ENC_ACT_NONE};
    ops_parallel((size_t)g->n * g->oh, 1, maxpool_task, &ctx);
}

/* ------------------------------------------------------------ elementwise */

void ops_gap(int n, int hw, int c, const float *x, float *y)
{
    float inv = 1.0f / (float)hw;
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * c;
        const float *xi = x + (size_t)i * hw * c;
        memset(yi, 0, (size_t)c * sizeof(float));
        for (int p = 0; p < hw; p++) {
            const float *xp = xi + (size_t)p * c;
            int o = 0;
            for (; o + 8 <= c; o += 8)
                _mm256_storeu_ps(yi + o, _mm256_add_ps(_mm256_loadu_ps(yi + o), _mm256_loadu_ps(xp + o)));
            for (; o < c; o++) yi[o] += xp[o];
        }
        for (int o = 0; o < c; o++) yi[o] *= inv;
    }
}

typedef struct ew_ctx {
    const float *a, *b, *w;
    float *y;
    int c;
} ew_ctx;

static void add_task(void *vctx, size_t i0, size_t i1, int tid)
{
    ew_ctx *t = vctx;
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(t->y + i, _mm256_add_ps(_mm256_loadu_ps(t->a + i), _mm256_loadu_ps(t->b + i)));
    for (; i < i1; i++) t->y[i] = t->a[i] + t->b[i];
}

void ops_add(size_t count, const float *a, const float *b, float *y)
{
    ew_ctx ctx = {a, b, NULL, y, 0};
    ops_parallel(count, 16384, add_task, &ctx);
}

static void affine_task(void *vctx, size_t r0, size_t r1, int tid)
{
    ew_ctx *t = vctx;
    int c = t->c;
    for (size_t r = r0; r < r1; r++) {
        const float *x = t->a + r * (size_t)c;
        float *y = t->y + r * (size_t)c;
        int o = 0;
        for (; o + 8 <= c; o += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + o), _mm256_loadu_ps(t->w + o));
            if (t->b) v = _mm256_add_ps(v, _mm256_loadu_ps(t->b + o));
            _mm256_storeu_ps(y + o, v);
        }
        for (; o < c; o++) y[o] = x[o] * t->w[o] + (t->b ? t->b[o] : 0.0f);
    }
}

void ops_affine(size_t m, int c, const float *x, const float *w, const float *b, float *y)
{
    ew_ctx ctx = {x, b, w, y, c};
    ops_parallel(m, 4096 / (size_t)c + 1, affine_task, &ctx);
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
