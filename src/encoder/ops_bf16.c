/*
 * ops_bf16.c - the bf16 GEMM (ops_bf16.h), compiled with AVX-512 + BF16.
 * A task is a range of (panel group, 12-row tile) items; per K block of
 * BF_KC (even) and panel group (W block of BF_PG panels, 256 KB, stays in
 * L2), each tile's rows of A are gathered (im2col in place of the
 * convolution) and rounded to bf16 pairs, then a 12 x 32 register tile
 * (two panels) accumulates vdpbf16ps products; y is finished in place
 * after the last K block (bias, activation).
 */
#include "ops_bf16.h"
#include "ops_isa.h"

#include "cpu.h"

#include <immintrin.h>

/* rows of a tile: 12 (AVX512_BF16 registers) or 32 (two AMX A tiles) */
enum { BF_MR = 32, BF_MR_AVX = 12, BF_KC = 256, BF_PG = 32 };

/* AMX palette 1: tiles 0-3 C (16 x 16 fp32), 4-5 A (16 rows x 16 pairs), 6-7 B (16 pairs x 16 columns). */
typedef struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

typedef struct bf_ctx {
    const float *x, *b;
    const uint16_t *wp;
    size_t lda;
    const ops_win *cv;
    float *y;
    int m, k, n, k2, panels, groups, tiles, mr; /* mr: BF_MR (AMX) or BF_MR_AVX */
    bool amx;
    enc_act act;
} bf_ctx;

/* pairs per panel: a multiple of 16 (whole AMX B tiles) */
static int bf_k2(int k) { return ((k + 1) / 2 + 15) / 16 * 16; }

size_t ops_bf16_packed(int k, int n) { return (size_t)((n + OPS_NR - 1) / OPS_NR) * (size_t)bf_k2(k) * 32; }

void ops_bf16_pack(int k, int n, const float *w, uint16_t *wp)
{
    int k2 = bf_k2(k), panels = (n + OPS_NR - 1) / OPS_NR;
    for (int p = 0; p < panels; p++)
        for (int r = 0; r < k2; r++)
            for (int j = 0; j < OPS_NR; j++)
                for (int e = 0; e < 2; e++) {
                    int kk = 2 * r + e, col = p * OPS_NR + j;
                    wp[(((size_t)p * k2 + r) * OPS_NR + j) * 2 + e] =
                        kk < k && col < n ? ops_bf16_round(w[(size_t)kk * n + col]) : 0;
                }
}

/* Columns [k0, k1) of row r of A (the im2col row of cv) into dst. */
static void a_row(const bf_ctx *g, size_t r, int k0, int k1, float *dst)
{
    if (!g->cv) {
        memcpy(dst, g->x + r * g->lda + k0, (size_t)(k1 - k0) * sizeof(float));
        return;
    }
    const ops_win *cv = g->cv;
    int ox = (int)(r % (size_t)cv->ow);
    size_t q = r / (size_t)cv->ow;
    int oy = (int)(q % (size_t)cv->oh);
    const float *xi = g->x + (q / (size_t)cv->oh) * (size_t)cv->h * cv->w * cv->c;
    for (int kk = k0; kk < k1;) {
        int t = kk / cv->c, ch = kk % cv->c, len = cv->c - ch < k1 - kk ? cv->c - ch : k1 - kk;
        int iy = oy * cv->sh - cv->pt + t / cv->kw, ix = ox * cv->sw - cv->pl + t % cv->kw;
        if ((unsigned)iy < (unsigned)cv->h && (unsigned)ix < (unsigned)cv->w)
            memcpy(dst, xi + ((size_t)iy * cv->w + (size_t)ix) * cv->c + ch, (size_t)len * sizeof(float));
        else
            memset(dst, 0, (size_t)len * sizeof(float));
        dst += len;
        kk += len;
    }
}

/* The tile's rows r0.. (mr of them; the rest up to g->mr repeat the last)
 * over K [k0, k1) as bf16 pairs: ab[i][BF_KC], zero padded to a multiple
 * of 32 values (16 pairs, an AMX A tile's width). */
static void a_tile(const bf_ctx *g, size_t r0, int mr, int k0, int k1, uint16_t *ab)
{
    _Alignas(64) float row[BF_KC + 32];
    int len = k1 - k0;
    for (int i = 0; i < g->mr; i++) {
        a_row(g, r0 + (size_t)(i < mr ? i : mr - 1), k0, k1, row);
        uint16_t *d = ab + (size_t)i * BF_KC;
        for (int j = 0; j < len; j += 32) {
            int cnt = len - j < 32 ? len - j : 32;
            __mmask16 lo = (__mmask16)(cnt >= 16 ? 0xffff : (1u << cnt) - 1);
            __mmask16 hi = (__mmask16)(cnt >= 32 ? 0xffff : cnt > 16 ? (1u << (cnt - 16)) - 1 : 0);
            __m512 vl = _mm512_maskz_loadu_ps(lo, row + j), vh = _mm512_maskz_loadu_ps(hi, row + j + 16);
            _mm512_storeu_si512((void *)(d + j), (__m512i)_mm512_cvtne2ps_pbh(vh, vl));
        }
    }
}

/* cb[i][32]: the sums over kp pairs of A row i (of BF_MR_AVX) x panels b0, b1. */
static inline void bf_kernel(int kp, const uint16_t *a, const uint16_t *b0, const uint16_t *b1, float *cb)
{
    __m512 acc[BF_MR_AVX][2];
#pragma GCC unroll 12
    for (int i = 0; i < BF_MR_AVX; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(b0 + (size_t)p * 32));
        __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(b1 + (size_t)p * 32));
#pragma GCC unroll 12
        for (int i = 0; i < BF_MR_AVX; i++) {
            int32_t pair;
            memcpy(&pair, a + (size_t)i * BF_KC + 2 * p, sizeof pair);
            __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], xv, w0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], xv, w1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < BF_MR_AVX; i++) {
        _mm512_storeu_ps(cb + i * 32, acc[i][0]);
        _mm512_storeu_ps(cb + i * 32 + 16, acc[i][1]);
    }
}

/* The same with AMX over 32 rows and kp16 steps of 16 pairs: C tiles
 * rows 0-15 / 16-31 x panels b0 / b1. */
__attribute__((target("amx-tile,amx-bf16"))) static void amx_kernel(int kp16, const uint16_t *a, const uint16_t *b0,
                                                                      const uint16_t *b1, float *cb)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int s = 0; s < kp16; s++) {
        _tile_loadd(4, a + s * 32, BF_KC * 2);
        _tile_loadd(5, a + 16 * BF_KC + s * 32, BF_KC * 2);
        _tile_loadd(6, b0 + (size_t)s * 16 * 32, 64);
        _tile_loadd(7, b1 + (size_t)s * 16 * 32, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, cb, 128);
    _tile_stored(1, cb + 16, 128);
    _tile_stored(2, cb + 16 * 32, 128);
    _tile_stored(3, cb + 16 * 32 + 16, 128);
}

/* A constant: GCC 12 drops stores to a local config that only ldtilecfg reads. */
static const amx_cfg g_amx_cfg __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64}, .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile"))) static void amx_begin(void) { _tile_loadconfig(&g_amx_cfg); }

__attribute__((target("amx-tile"))) static void amx_end(void) { _tile_release(); }

static inline __m512 bf_act(__m512 v, enc_act act)
{
    if (act == ENC_ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == ENC_ACT_RELU6) return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    return v;
}

/* Rows cb[i][32] (i < mr), first nr columns, into y (see tile_store in ops_kernels.h). */
static void bf_store(const bf_ctx *g, size_t r0, int mr, int j0, int nr, const float *cb, bool first, bool last)
{
    for (int i = 0; i < mr; i++) {
        float *yr = g->y + (r0 + (size_t)i) * (size_t)g->n + j0;
        for (int v = 0; v < 2; v++) {
            int cnt = nr - v * 16;
            if (cnt <= 0) break;
            __mmask16 mk = (__mmask16)(cnt >= 16 ? 0xffff : (1u << cnt) - 1);
            __m512 s = _mm512_loadu_ps(cb + i * 32 + v * 16);
            if (!first) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk, yr + v * 16));
            if (last) {
                if (g->b) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk, g->b + j0 + v * 16));
                s = bf_act(s, g->act);
            }
            _mm512_mask_storeu_ps(yr + v * 16, mk, s);
        }
        if (last && g->act == ENC_ACT_SIGMOID)
            for (int j = 0; j < nr; j++) yr[j] = ops_act1(yr[j], g->act);
    }
}

/* Tiles [t0, t1) of panel group grp. */
static void bf_block(const bf_ctx *g, int grp, int t0, int t1)
{
    _Alignas(64) uint16_t ab[BF_MR * BF_KC];
    _Alignas(64) float cb[BF_MR * 32];
    int p0 = grp * BF_PG, p1 = p0 + BF_PG < g->panels ? p0 + BF_PG : g->panels;
    for (int k0 = 0; k0 < g->k; k0 += BF_KC) {
        int k1 = k0 + BF_KC < g->k ? k0 + BF_KC : g->k, kp = (k1 - k0 + 1) / 2;
        bool first = k0 == 0, last = k1 == g->k;
        for (int t = t0; t < t1; t++) {
            size_t r0 = (size_t)t * (size_t)g->mr;
            int mr = g->m - (int)r0 < g->mr ? g->m - (int)r0 : g->mr;
            a_tile(g, r0, mr, k0, k1, ab);
            for (int p = p0; p < p1; p += 2) {
                int np = p1 - p < 2 ? 1 : 2, j0 = p * OPS_NR;
                int nr = g->n - j0 < np * OPS_NR ? g->n - j0 : np * OPS_NR;
                const uint16_t *b0 = g->wp + ((size_t)p * g->k2 + (size_t)k0 / 2) * 32;
                const uint16_t *b1 = np > 1 ? b0 + (size_t)g->k2 * 32 : b0;
                if (g->amx) amx_kernel((kp + 15) / 16, ab, b0, b1, cb);
                else bf_kernel(kp, ab, b0, b1, cb);
                bf_store(g, r0, mr, j0, nr, cb, first, last);
            }
        }
    }
}

static void bf_task(void *vctx, size_t i0, size_t i1, int tid)
{
    (void)tid;
    const bf_ctx *g = vctx;
    size_t T = (size_t)g->tiles;
    if (g->amx) amx_begin();
    while (i0 < i1) {
        int grp = (int)(i0 / T);
        size_t end = ((size_t)grp + 1) * T < i1 ? ((size_t)grp + 1) * T : i1;
        bf_block(g, grp, (int)(i0 % T), (int)((end - 1) % T) + 1);
        i0 = end;
    }
    if (g->amx) amx_end();
}

void ops_gemm_bf16(const float *x, size_t lda, const ops_win *cv, const uint16_t *wp, const float *b, enc_act act,
                   float *y, int m, int k, int n)
{
    bf_ctx g = {.x = x, .b = b, .wp = wp, .lda = lda, .cv = cv, .y = y, .m = m, .k = k, .n = n, .act = act};
    g.k2 = bf_k2(k);
    g.amx = cpu_has_amx_bf16();
    g.mr = g.amx ? BF_MR : BF_MR_AVX;
    g.panels = (n + OPS_NR - 1) / OPS_NR;
    g.groups = (g.panels + BF_PG - 1) / BF_PG;
    g.tiles = (m + g.mr - 1) / g.mr;
    ops_parallel((size_t)g.groups * (size_t)g.tiles, 1, bf_task, &g);
}
