/*
 * ops_kernels.h - the float NHWC kernels of the encoder, written once over
 * the vector type of simd.h and compiled once per instruction set: included
 * only by ops_generic.c (baseline SSE2), ops_avx2.c (-mavx2 -mfma) and
 * ops_avx512.c (-mavx512f/bw/vl/dq), each of which defines the table
 * ops_kernels_<isa> (ops_isa.h). ops.c holds what does not depend on the
 * ISA (worker pool, weight packing, OpenBLAS path, dispatch).
 *
 * GEMM: y[m][n] = act(A[m][k] W[k][n] + b) where A is either a matrix
 * (rows with stride lda) or the implicit im2col matrix of a convolution,
 * never materialised: a row of it is one output pixel, and its K range for
 * tap (ky, kx) is the input pixel under that tap (channels contiguous in
 * NHWC) or zeros where the tap falls in the padding. The micro-kernel takes
 * one pointer per tile row and tap, so A is read in place, for any stride.
 *
 * W comes pre-packed (ops_pack_weights, once per model): 16-column panels,
 * each k x 16 contiguous and zero padded. A GEMM_MR x (GEMM_PP x 16)
 * register tile (6 x 16 with AVX2, 12 x 32 = two panels with AVX-512's 32
 * registers, 2 x 16 on baseline SSE2) accumulates over a K block (whole
 * taps, or one tap's channel range, at most OPS_KC long); bias and
 * activation are applied when the tile is stored after the last K block,
 * so y is written once per K block and finished in place.
 *
 * Work is split into (tile rows x panels) rectangles sized so the threads
 * get equal shares (gemm_split) and each rectangle's W block stays in L2.
 */
#ifndef IMCAP_OPS_KERNELS_H
#define IMCAP_OPS_KERNELS_H

#include "ops_isa.h"
#include "simd.h"

#include <string.h>

#if SIMD_W == 16
enum { GEMM_MR = 12, GEMM_PP = 2 };
#elif SIMD_W == 8
enum { GEMM_MR = 6, GEMM_PP = 1 };
#else
enum { GEMM_MR = 2, GEMM_PP = 1 };
#endif
/* vectors per tile row: GEMM_PP panels of OPS_NR / SIMD_W vectors */
enum { GEMM_KV = OPS_NR / SIMD_W, GEMM_NV = GEMM_PP * GEMM_KV, GEMM_MAX_TAPS = 64, GEMM_L2_BYTES = 512 << 10,
       GEMM_GATHER_C = 16 /* fewer channels per tap: gather the taps */ };

static const float g_zeros[OPS_KC] __attribute__((aligned(64)));

/* ------------------------------------------------------------ activations */

static inline vf act_v(vf v, enc_act act)
{
    switch (act) {
    case ENC_ACT_RELU: return vf_max(v, vf_zero());
    case ENC_ACT_RELU6: return vf_min(vf_max(v, vf_zero()), vf_set1(6.0f));
    default: return v;
    }
}

static void bias_act_rows(float *y, size_t r0, size_t r1, int c, int ldy, const float *b, enc_act act)
{
    if (!b && act == ENC_ACT_NONE) return;
    for (size_t r = r0; r < r1; r++) {
        float *row = y + r * (size_t)ldy;
        int i = 0;
        if (act != ENC_ACT_SIGMOID) {
            for (; i + SIMD_W <= c; i += SIMD_W) {
                vf v = vf_loadu(row + i);
                if (b) v = vf_add(v, vf_loadu(b + i));
                vf_storeu(row + i, act_v(v, act));
            }
        }
        for (; i < c; i++) row[i] = ops_act1(row[i] + (b ? b[i] : 0.0f), act);
    }
}

/* ------------------------------------------------------------------ GEMM */

/* The first nr columns of the tile c (nr <= GEMM_PP * 16) into y: added to
 * y unless first, bias and activation when last. */
static inline void tile_store(float *y, size_t ldy, int mr, int nr, vf c[GEMM_MR][GEMM_NV], const float *bias,
                              bool first, bool last, enc_act act)
{
    for (int i = 0; i < mr; i++) {
        float *yr = y + (size_t)i * ldy;
        for (int v = 0; v < GEMM_NV; v++) {
            int cnt = nr - v * SIMD_W;
            if (cnt <= 0) break;
            vf x = c[i][v];
            if (!first) x = vf_add(x, vf_load_part(yr + v * SIMD_W, cnt));
            if (last) {
                if (bias) x = vf_add(x, vf_load_part(bias + v * SIMD_W, cnt));
                x = act_v(x, act);
            }
            vf_store_part(yr + v * SIMD_W, x, cnt);
        }
        if (last && act == ENC_ACT_SIGMOID)
            for (int j = 0; j < nr; j++) yr[j] = ops_act1(yr[j], act);
    }
}

/* GEMM_MR x (GEMM_PP x 16) tile over ntaps taps of len each: rows
 * ar[t*GEMM_MR + i] + [0, len), panels bp[t*len + k][16] and (with two
 * panels) bp + bstride (consecutive taps are consecutive in W). */
static inline void gemm_kernel(int ntaps, int len, const float *const *ar, const float *bp, size_t bstride,
                               vf c[GEMM_MR][GEMM_NV])
{
    vf acc[GEMM_MR][GEMM_NV];
#pragma GCC unroll 16
    for (int i = 0; i < GEMM_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GEMM_NV; v++) acc[i][v] = vf_zero();
    for (int t = 0; t < ntaps; t++, ar += GEMM_MR) {
        const float *a[GEMM_MR];
#pragma GCC unroll 16
        for (int i = 0; i < GEMM_MR; i++) a[i] = ar[i];
        for (int k = 0; k < len; k++) {
            vf b[GEMM_NV];
#pragma GCC unroll 4
            for (int v = 0; v < GEMM_NV; v++) b[v] = vf_load(bp + (size_t)(v / GEMM_KV) * bstride + (v % GEMM_KV) * SIMD_W);
            bp += OPS_NR;
#pragma GCC unroll 16
            for (int i = 0; i < GEMM_MR; i++) {
                vf x = vf_bcast(a[i] + k);
#pragma GCC unroll 4
                for (int v = 0; v < GEMM_NV; v++) acc[i][v] = vf_fmadd(x, b[v], acc[i][v]);
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < GEMM_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GEMM_NV; v++) c[i][v] = acc[i][v];
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

/* K blocks of at most OPS_KC: whole taps when a tap fits, else each tap in
 * equal channel ranges; blocks as equal as possible (no short tail block). */
static void gemm_kblocks(gemm_ctx *g)
{
    if (g->c <= OPS_KC) {
        int per = OPS_KC / g->c;
        if (per > GEMM_MAX_TAPS) per = GEMM_MAX_TAPS;
        int nb = (g->taps + per - 1) / per;
        g->tpb = (g->taps + nb - 1) / nb;
        g->cpb = g->c;
        g->nkb = (g->taps + g->tpb - 1) / g->tpb;
    } else {
        int nb = (g->c + OPS_KC - 1) / OPS_KC;
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
    g->panels = (g->n + OPS_NR - 1) / OPS_NR;
    gemm_kblocks(g);
}

/* Tasks: rows_split ranges of tiles x cols_split ranges of panels, at most
 * 4 per thread (ops_parallel then hands them out one by one). The split
 * minimises the busiest thread's tile count; a task covers at most the
 * panels whose K block fits the L2 budget. */
static void gemm_split(gemm_ctx *g)
{
    int nt = ops_threads(), T = g->tiles, P = g->panels;
    size_t kb = (size_t)g->tpb * g->cpb * OPS_NR * sizeof(float);
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

/* Pointers to the GEMM_MR rows x taps of K block b for the tile of rows
 * r0..; with few channels per tap the block's taps are gathered into abuf
 * (GEMM_MR rows of ntaps*c floats) and passed as one long tap. */
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
        float *dst = abuf + (size_t)i * OPS_KC;
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
        if (gather) ar[i] = abuf + (size_t)i * OPS_KC;
    }
    if (gather) {
        *len *= *ntaps;
        *ntaps = 1;
    }
}

/* Tiles [i0, i1) x panels [p0, p1). The next tile's rows are fetched
 * into cache while the current tile runs (a row of A is GEMM_MR separate
 * streams the hardware prefetcher would only pick up after several misses). */
static void gemm_block(const gemm_ctx *g, int i0, int i1, int p0, int p1)
{
    const float *ar[2][GEMM_MAX_TAPS * GEMM_MR];
    _Alignas(64) float abuf[2][GEMM_MR * OPS_KC];
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
                                                    l % (size_t)next_len) * OPS_NR),
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
            for (int p = p0; p < p1; p += GEMM_PP) {
                /* np panels here (the task's last one alone when GEMM_PP = 2
                 * and the count is odd: the kernel then reads it twice) */
                int np = p1 - p < GEMM_PP ? p1 - p : GEMM_PP;
                int j0 = p * OPS_NR, nr = g->n - j0 < np * OPS_NR ? g->n - j0 : np * OPS_NR;
                size_t bstride = np > 1 ? (size_t)g->k * OPS_NR : 0;
                vf c[GEMM_MR][GEMM_NV];
                gemm_kernel(ntaps[cur], len[cur], ar[cur], g->wp + ((size_t)p * g->k + koff[cur]) * OPS_NR, bstride, c);
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

/* ------------------------------------------------- Winograd convolution */

/* F(4x4, 3x3) (see ops.c): the input transform B^T d B per tile and
 * SIMD_W channels, the 36 GEMMs of a block of tiles, the output transform
 * A^T m A with bias and activation. */

/* B^T d for one column of 6 (in place over SIMD_W channels each). */
static inline void wino_bt(vf *d0, vf *d1, vf *d2, vf *d3, vf *d4, vf *d5)
{
    vf four = vf_set1(4.0f), five = vf_set1(5.0f), two = vf_set1(2.0f);
    vf a = *d0, b = *d1, c = *d2, d = *d3, e = *d4, f = *d5;
    vf t1 = vf_fnmadd(four, c, e), t2 = vf_fnmadd(four, b, d); /* e - 4c, d - 4b */
    vf t3 = vf_sub(e, c), t4 = vf_mul(two, vf_sub(d, b));
    *d0 = vf_add(vf_fnmadd(five, c, vf_mul(four, a)), e); /* 4a - 5c + e */
    *d1 = vf_add(t1, t2);                                  /* -4b - 4c + d + e */
    *d2 = vf_sub(t1, t2);                                  /* 4b - 4c - d + e */
    *d3 = vf_add(t3, t4);                                  /* -2b - c + 2d + e */
    *d4 = vf_sub(t3, t4);                                  /* 2b - c - 2d + e */
    *d5 = vf_add(vf_fnmadd(five, d, vf_mul(four, b)), f); /* 4b - 5d + f */
}

/* A^T m for one column of 6 -> 4. */
static inline void wino_at(vf m0, vf m1, vf m2, vf m3, vf m4, vf m5, vf *o)
{
    vf s12 = vf_add(m1, m2), d12 = vf_sub(m1, m2);
    vf s34 = vf_add(m3, m4), d34 = vf_sub(m3, m4);
    o[0] = vf_add(vf_add(m0, s12), s34);
    o[1] = vf_fmadd(vf_set1(2.0f), d34, d12);
    o[2] = vf_fmadd(vf_set1(4.0f), s34, s12);
    o[3] = vf_add(vf_fmadd(vf_set1(8.0f), d34, d12), m5);
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

static void wino_task(void *vctx, size_t b0, size_t b1, int tid)
{
    const wino_ctx *t = vctx;
    const ops_win *g = t->g;
    int C = g->c, OC = g->oc, tb = t->tb;
    float *V = t->scratch + (size_t)tid * tb * 36 * (size_t)(C + OC), *M = V + (size_t)36 * tb * C;
    size_t vstride = (size_t)tb * C, mstride = (size_t)tb * OC; /* per xi */
    size_t per = ops_packed_floats(C, OC);
    for (size_t blk = b0; blk < b1; blk++) {
        size_t t0 = blk * (size_t)tb;
        int nt = t->tiles - t0 < (size_t)tb ? (int)(t->tiles - t0) : tb;
        /* Input transform: V[xi][i][c] = (B^T d B)[xi] of tile i. */
        for (int i = 0; i < nt; i++) {
            int tx, ty;
            const float *xi = t->x + wino_tile(t, t0 + (size_t)i, &ty, &tx) * (size_t)g->h * g->w * C;
            int iy0 = ty * 4 - g->pt, ix0 = tx * 4 - g->pl;
            for (int c0 = 0; c0 < C; c0 += SIMD_W) {
                int cnt = C - c0 < SIMD_W ? C - c0 : SIMD_W;
                vf d[6][6];
                for (int r = 0; r < 6; r++)
                    for (int q = 0; q < 6; q++) {
                        int iy = iy0 + r, ix = ix0 + q;
                        d[r][q] = iy < 0 || iy >= g->h || ix < 0 || ix >= g->w
                                      ? vf_zero()
                                      : vf_load_part(xi + ((size_t)iy * g->w + ix) * C + c0, cnt);
                    }
                for (int q = 0; q < 6; q++) wino_bt(&d[0][q], &d[1][q], &d[2][q], &d[3][q], &d[4][q], &d[5][q]);
                for (int r = 0; r < 6; r++) wino_bt(&d[r][0], &d[r][1], &d[r][2], &d[r][3], &d[r][4], &d[r][5]);
                for (int xi6 = 0; xi6 < 36; xi6++)
                    vf_store_part(V + xi6 * vstride + (size_t)i * C + c0, d[xi6 / 6][xi6 % 6], cnt);
            }
        }
        /* The 36 products: M[xi] = V[xi] U[xi]. */
        for (int xi6 = 0; xi6 < 36; xi6++) {
            gemm_ctx gc = {.x = V + xi6 * vstride, .wp = t->up + (size_t)xi6 * per, .lda = (size_t)C,
                           .y = M + xi6 * mstride, .m = nt, .k = C, .n = OC, .act = ENC_ACT_NONE};
            gemm_init(&gc);
            gemm_block(&gc, 0, gc.tiles, 0, gc.panels);
        }
        /* Output transform, bias, activation. */
        for (int i = 0; i < nt; i++) {
            int tx, ty;
            float *yi = t->y + wino_tile(t, t0 + (size_t)i, &ty, &tx) * (size_t)g->oh * g->ow * OC;
            for (int o0 = 0; o0 < OC; o0 += SIMD_W) {
                int cnt = OC - o0 < SIMD_W ? OC - o0 : SIMD_W;
                vf m[6][6], s[4][6], o[4];
                for (int xi6 = 0; xi6 < 36; xi6++)
                    m[xi6 / 6][xi6 % 6] = vf_load_part(M + xi6 * mstride + (size_t)i * OC + o0, cnt);
                for (int q = 0; q < 6; q++) {
                    wino_at(m[0][q], m[1][q], m[2][q], m[3][q], m[4][q], m[5][q], o);
                    for (int r = 0; r < 4; r++) s[r][q] = o[r];
                }
                vf bias = t->b ? vf_load_part(t->b + o0, cnt) : vf_zero();
                for (int r = 0; r < 4; r++) {
                    int oy = ty * 4 + r;
                    if (oy >= g->oh) break;
                    wino_at(s[r][0], s[r][1], s[r][2], s[r][3], s[r][4], s[r][5], o);
                    for (int q = 0; q < 4 && tx * 4 + q < g->ow; q++) {
                        float *dst = yi + ((size_t)oy * g->ow + (size_t)(tx * 4 + q)) * OC + o0;
                        vf v = vf_add(o[q], bias);
                        if (t->act == ENC_ACT_SIGMOID) {
                            float tmp[SIMD_W];
                            vf_storeu(tmp, v);
                            for (int j = 0; j < cnt; j++) dst[j] = ops_act1(tmp[j], t->act);
                        } else {
                            vf_store_part(dst, act_v(v, t->act), cnt);
                        }
                    }
                }
            }
        }
    }
}

static void winograd_conv(const ops_win *g, const float *x, const float *up, const float *b, enc_act act, float *y,
                          float *scratch, int tb)
{
    wino_ctx t = {g, x, up, b, y, scratch, act, (g->oh + 3) / 4, (g->ow + 3) / 4, tb, 0};
    t.tiles = (size_t)g->n * t.th * t.tw;
    ops_parallel((t.tiles + (size_t)t.tb - 1) / (size_t)t.tb, 1, wino_task, &t);
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
            yo[o] = ops_act1(a, t->act);
        }
        return;
    }
    int o = 0;
    for (; o + 4 * SIMD_W <= oc; o += 4 * SIMD_W) {
        vf a[4];
        for (int j = 0; j < 4; j++) a[j] = t->b ? vf_loadu(t->b + o + j * SIMD_W) : vf_zero();
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
            const float *wr = t->w + (size_t)ky * g->kw * oc + o;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *xp = xr + (size_t)(ix0 + kx) * c;
                const float *wp = wr + (size_t)kx * oc;
                for (int j = 0; j < 4; j++)
                    a[j] = vf_fmadd(vf_loadu(xp + j * SIMD_W), vf_loadu(wp + j * SIMD_W), a[j]);
            }
        }
        for (int j = 0; j < 4; j++) vf_storeu(yo + o + j * SIMD_W, act_v(a[j], t->act));
    }
    for (; o + SIMD_W <= oc; o += SIMD_W) {
        vf a0 = t->b ? vf_loadu(t->b + o) : vf_zero();
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
            const float *wr = t->w + (size_t)ky * g->kw * oc + o;
            for (int kx = kx0; kx < kx1; kx++)
                a0 = vf_fmadd(vf_loadu(xr + (size_t)(ix0 + kx) * c), vf_loadu(wr + (size_t)kx * oc), a0);
        }
        vf_storeu(yo + o, act_v(a0, t->act));
    }
    int vec_end = o;
    for (; o < oc; o++) {
        float a = t->b ? t->b[o] : 0.0f;
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                a += xi[((size_t)(iy0 + ky) * g->w + (size_t)(ix0 + kx)) * c + o] * t->w[((size_t)ky * g->kw + kx) * oc + o];
        yo[o] = ops_act1(a, t->act);
    }
    if (t->act == ENC_ACT_SIGMOID)
        for (int i = 0; i < vec_end; i++) yo[i] = ops_act1(yo[i], t->act);
}

/* Stores v (cnt lanes) at p after the activation (sigmoid lane by lane). */
static inline void dw_store(float *p, vf v, int cnt, enc_act act)
{
    v = act_v(v, act);
    if (act == ENC_ACT_SIGMOID) {
        float tmp[SIMD_W];
        vf_storeu(tmp, v);
        for (int i = 0; i < SIMD_W; i++) tmp[i] = ops_act1(tmp[i], act);
        v = vf_loadu(tmp);
    }
    vf_store_part(p, v, cnt);
}

/* Channels [c, c + cnt) of the interior pixels [oxa, oxb) of one 3x3 output
 * row (rows: the 3 input rows, valid: which are inside the image). The 9
 * taps stay in registers, 4 output pixels at a time for independent FMA
 * chains. full (cnt == SIMD_W) is a constant at each call site. */
static inline __attribute__((always_inline)) void dw3x3_chunk(const win_ctx *t, const float *const *rows,
                                                              const int *valid, int c, int cnt, bool full, int oxa,
                                                              int oxb, float *yrow)
{
    const ops_win *g = t->g;
    int C = g->c, sw = g->sw;
#define DW_LD(p) (full ? vf_loadu(p) : vf_load_part(p, cnt))
    const vf zero = vf_zero();
    vf w[9];
    for (int k = 0; k < 9; k++) w[k] = valid[k / 3] ? DW_LD(t->w + (size_t)k * C + c) : zero;
    vf bias = t->b ? DW_LD(t->b + c) : zero;
    const float *r0 = rows[0] + c, *r1 = rows[1] + c, *r2 = rows[2] + c;
    int ox = oxa;
    size_t step = (size_t)sw * C;
    for (; ox + 4 <= oxb; ox += 4) {
        size_t b0 = (size_t)(ox * sw - g->pl) * C;
        vf acc[4];
        for (int p = 0; p < 4; p++) {
            size_t b = b0 + (size_t)p * step;
            vf a = vf_fmadd(DW_LD(r0 + b), w[0], bias);
            a = vf_fmadd(DW_LD(r0 + b + C), w[1], a);
            a = vf_fmadd(DW_LD(r0 + b + 2 * C), w[2], a);
            a = vf_fmadd(DW_LD(r1 + b), w[3], a);
            a = vf_fmadd(DW_LD(r1 + b + C), w[4], a);
            a = vf_fmadd(DW_LD(r1 + b + 2 * C), w[5], a);
            a = vf_fmadd(DW_LD(r2 + b), w[6], a);
            a = vf_fmadd(DW_LD(r2 + b + C), w[7], a);
            acc[p] = vf_fmadd(DW_LD(r2 + b + 2 * C), w[8], a);
        }
        for (int p = 0; p < 4; p++) dw_store(yrow + (size_t)(ox + p) * C + c, acc[p], cnt, t->act);
    }
    for (; ox < oxb; ox++) {
        size_t b = (size_t)(ox * sw - g->pl) * C;
        vf a = vf_fmadd(DW_LD(r0 + b), w[0], bias);
        vf a1 = vf_mul(DW_LD(r1 + b), w[3]);
        vf a2 = vf_mul(DW_LD(r2 + b), w[6]);
        a = vf_fmadd(DW_LD(r0 + b + C), w[1], a);
        a1 = vf_fmadd(DW_LD(r1 + b + C), w[4], a1);
        a2 = vf_fmadd(DW_LD(r2 + b + C), w[7], a2);
        a = vf_fmadd(DW_LD(r0 + b + 2 * C), w[2], a);
        a1 = vf_fmadd(DW_LD(r1 + b + 2 * C), w[5], a1);
        a2 = vf_fmadd(DW_LD(r2 + b + 2 * C), w[8], a2);
        dw_store(yrow + (size_t)ox * C + c, vf_add(vf_add(a, a1), a2), cnt, t->act);
    }
#undef DW_LD
}

/* 3x3 depthwise, multiplier 1, channels a multiple of 4: one output row.
 * Taps of rows outside the image are zeroed and read a valid row instead;
 * border columns go through dw_pixel. */
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
    int c = 0;
    for (; c + SIMD_W <= C; c += SIMD_W) dw3x3_chunk(t, rows, valid, c, SIMD_W, true, oxa, oxb, yrow);
    if (c < C) dw3x3_chunk(t, rows, valid, c, C - c, false, oxa, oxb, yrow);
}

static void dw_task(void *vctx, size_t r0, size_t r1, int tid)
{
    win_ctx *t = vctx;
    const ops_win *g = t->g;
    bool fast = g->mult == 1 && g->kh == 3 && g->kw == 3 && g->c % 4 == 0;
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

static void dwconv2d(const ops_win *g, const float *x, const float *w, const float *b, enc_act act, float *y)
{
    win_ctx ctx = {g, x, w, b, y, act};
    ops_parallel((size_t)g->n * g->oh, 1, dw_task, &ctx);
}

static void pool_rows(void *vctx, size_t r0, size_t r1, int is_max)
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
            for (; o + SIMD_W <= c; o += SIMD_W) {
                vf a = is_max ? vf_set1(-INFINITY) : vf_zero();
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *xr = xi + ((size_t)(iy0 + ky) * g->w) * c + o;
                    for (int kx = kx0; kx < kx1; kx++) {
                        vf v = vf_loadu(xr + (size_t)(ix0 + kx) * c);
                        a = is_max ? vf_max(a, v) : vf_add(a, v);
                    }
                }
                if (!is_max) a = vf_mul(a, vf_set1(inv));
                vf_storeu(yo + o, a);
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

static void avgpool_task(void *vctx, size_t r0, size_t r1, int tid) { pool_rows(vctx, r0, r1, 0); }
static void maxpool_task(void *vctx, size_t r0, size_t r1, int tid) { pool_rows(vctx, r0, r1, 1); }

static void pool(const ops_win *g, const float *x, float *y, int is_max)
{
    win_ctx ctx = {g, x, NULL, NULL, y, ENC_ACT_NONE};
    ops_parallel((size_t)g->n * g->oh, 1, is_max ? maxpool_task : avgpool_task, &ctx);
}

/* ------------------------------------------------------------ elementwise */

static void gap(int n, int hw, int c, const float *x, float *y)
{
    float inv = 1.0f / (float)hw;
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * c;
        const float *xi = x + (size_t)i * hw * c;
        memset(yi, 0, (size_t)c * sizeof(float));
        for (int p = 0; p < hw; p++) {
            const float *xp = xi + (size_t)p * c;
            int o = 0;
            for (; o + SIMD_W <= c; o += SIMD_W) vf_storeu(yi + o, vf_add(vf_loadu(yi + o), vf_loadu(xp + o)));
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
    for (; i + SIMD_W <= i1; i += SIMD_W) vf_storeu(t->y + i, vf_add(vf_loadu(t->a + i), vf_loadu(t->b + i)));
    for (; i < i1; i++) t->y[i] = t->a[i] + t->b[i];
}

static void add(size_t count, const float *a, const float *b, float *y)
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
        for (; o + SIMD_W <= c; o += SIMD_W) {
            vf v = vf_mul(vf_loadu(x + o), vf_loadu(t->w + o));
            if (t->b) v = vf_add(v, vf_loadu(t->b + o));
            vf_storeu(y + o, v);
        }
        for (; o < c; o++) y[o] = x[o] * t->w[o] + (t->b ? t->b[o] : 0.0f);
    }
}

static void affine(size_t m, int c, const float *x, const float *w, const float *b, float *y)
{
    ew_ctx ctx = {x, b, w, y, c};
    ops_parallel(m, 4096 / (size_t)c + 1, affine_task, &ctx);
}

const ops_kernels SIMD_NAME(ops_kernels) = {
    .name = SIMD_STR(SIMD_SUFFIX),
    .gemm = own_gemm,
    .winograd = winograd_conv,
    .dwconv2d = dwconv2d,
    .pool = pool,
    .gap = gap,
    .add = add,
    .affine = affine,
    .bias_act_rows = bias_act_rows,
};

#endif
