/*
 * qops_kernels.h - the uint8 GEMM, depthwise and add kernels (qops.h) of one
 * instruction set; included once by each of qops_generic.c, qops_avx2.c
 * (AVX2: bytes widened to int16, _mm256_madd_epi16 pair sums, exact in
 * int32) and qops_avx512.c (AVX-512 VNNI: _mm512_dpbusd_epi32, uint8 x int8
 * in groups of 4, no saturation). All paths give the same bytes: integer
 * arithmetic and the same float requantization lane by lane.
 *
 * Packed weights: panels of 16 columns, in each [kp/4][16 columns][4 k]
 * (one 64-byte vector per 4 k of a panel).
 */
#include "qops.h"

#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QK_VNNI 1
#define QK_TABLE q_kernels_avx512
#define QK_NAME "avx512-vnni"
#elif defined(__AVX2__)
#define QK_AVX2 1
#define QK_TABLE q_kernels_avx2
#define QK_NAME "avx2"
#else
#define QK_TABLE q_kernels_generic
#define QK_NAME "generic"
#endif

/* The register tiles' loops have constant trip counts: unrolled, their
 * accumulators stay in registers. */
#define QK_UNROLL _Pragma("GCC unroll 16")

static inline uint8_t qk_requant1(const q_requant *rq, int col, int32_t acc)
{
    return (uint8_t)q_requant1(acc, rq->scale[col], rq->zy, rq->lo, rq->hi);
}

/* acc - zw * rowsum + cterm, wrapping in 32 bits (the exact sum fits). */
static inline int32_t qk_correct(int32_t acc, int32_t zw, int32_t rowsum, int32_t cterm)
{
    return (int32_t)((uint32_t)acc - (uint32_t)zw * (uint32_t)rowsum + (uint32_t)cterm);
}

/* ------------------------------------------------------------ portable */

static inline void gemm_rows_c(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int m, int pn0,
                        int pn1, uint8_t *y, size_t ldy)
{
    int kg = p->kp / 4;
    for (int r = 0; r < m; r++) {
        const uint8_t *ar = a + (size_t)r * lda;
        for (int pn = pn0; pn < pn1; pn++) {
            int32_t acc[16] = {0};
            const int8_t *bp = p->wp + (size_t)pn * (size_t)kg * 64;
            for (int g = 0; g < kg; g++)
                for (int j = 0; j < 16; j++)
                    for (int q = 0; q < 4; q++) acc[j] += (int32_t)ar[4 * g + q] * bp[(size_t)g * 64 + (size_t)j * 4 + (size_t)q];
            for (int j = 0; j < 16; j++) {
                int col = pn * 16 + j;
                if (col < p->n)
                    y[(size_t)r * ldy + (size_t)col] =
                        qk_requant1(&p->rq, col, qk_correct(acc[j], p->zw_uniform ? 1 : p->zw[col], rowsum[r], p->cterm[col]));
            }
        }
    }
}

static inline uint32_t rowsum_c(const uint8_t *a, int k0, int kk)
{
    uint32_t s = 0;
    for (int k = k0; k < kk; k++) s += a[k];
    return s;
}

static inline void to_float_c(const uint8_t *x, int32_t za, size_t count, float *y)
{
    for (size_t i = 0; i < count; i++) y[i] = (float)((int32_t)x[i] - za);
}

static inline void requant_rows_c(const q_requant *rq, const int32_t *bias, const float *acc, int c, size_t r0,
                                  size_t r1, uint8_t *y, int c0)
{
    for (size_t r = r0; r < r1; r++)
        for (int o = c0; o < c; o++)
            y[r * (size_t)c + (size_t)o] = qk_requant1(rq, o, (int32_t)acc[r * (size_t)c + (size_t)o] + bias[o]);
}

static inline void add_c(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    qref_add(p, a, b, y, count);
}

/* ------------------------------------------------------------ AVX-512 VNNI */
#if defined(QK_VNNI)

/* q_requant1 on 16 lanes (the conversion rounds to nearest even, as lrintf
 * in the default rounding mode), storing the lanes in keep. */
static inline void store16(const q_requant *rq, int col, __m512i v, uint8_t *dst, __mmask16 keep)
{
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(rq->scale + col));
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps((float)(rq->lo - rq->zy))), _mm512_set1_ps((float)(rq->hi - rq->zy)));
    v = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(rq->zy));
    _mm_mask_storeu_epi8(dst, keep, _mm512_cvtepi32_epi8(v));
}

static inline __attribute__((always_inline)) void tile_vnni(const q_gemm *p, const uint8_t *a, size_t lda,
                                                            const int32_t *rowsum, int r0, int nr, int pn0,
                                                            const int np, uint8_t *y, size_t ldy)
{
    enum { R = 6 };
    const uint8_t *ar[R];
    QK_UNROLL
    for (int i = 0; i < R; i++) ar[i] = a + (size_t)(r0 + (i < nr ? i : nr - 1)) * lda;
    int kg = p->kp / 4;
    size_t ps = (size_t)kg * 64;
    const int8_t *bp = p->wp + (size_t)pn0 * ps;
    /* accumulators start at cterm - zw rowsum (the zero-point terms) */
    __m512i acc[R][4];
    QK_UNROLL
    for (int j = 0; j < np; j++) {
        int col = (pn0 + j) * 16;
        __m512i zw = _mm512_loadu_si512(p->zw + col), ct = _mm512_loadu_si512(p->cterm + col);
        QK_UNROLL
        for (int i = 0; i < R; i++) {
            __m512i rs = _mm512_set1_epi32(rowsum[r0 + (i < nr ? i : nr - 1)]);
            acc[i][j] = _mm512_sub_epi32(ct, p->zw_uniform ? rs : _mm512_mullo_epi32(zw, rs));
        }
    }
    for (int g = 0; g < kg; g++) {
        __m512i b[4];
        QK_UNROLL
        for (int j = 0; j < np; j++) b[j] = _mm512_loadu_si512(bp + (size_t)j * ps + (size_t)g * 64);
        QK_UNROLL
        for (int i = 0; i < R; i++) {
            int32_t a4;
            memcpy(&a4, ar[i] + 4 * g, 4);
            __m512i av = _mm512_set1_epi32(a4);
            QK_UNROLL
            for (int j = 0; j < np; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, b[j]);
        }
    }
    QK_UNROLL
    for (int j = 0; j < np; j++) {
        int col = (pn0 + j) * 16;
        int left = p->n - col;
        __mmask16 keep = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        QK_UNROLL
        for (int i = 0; i < nr; i++) store16(&p->rq, col, acc[i][j], y + (size_t)(r0 + i) * ldy + (size_t)col, keep);
    }
}

static void gemm_k(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int m, uint8_t *y,
                   size_t ldy)
{
    int np = (p->n + 15) / 16;
    for (int r0 = 0; r0 < m; r0 += 6) {
        int nr = m - r0 < 6 ? m - r0 : 6, pn = 0;
        for (; pn + 4 <= np; pn += 4) tile_vnni(p, a, lda, rowsum, r0, nr, pn, 4, y, ldy);
        if (np - pn == 3) tile_vnni(p, a, lda, rowsum, r0, nr, pn, 3, y, ldy);
        else if (np - pn == 2) tile_vnni(p, a, lda, rowsum, r0, nr, pn, 2, y, ldy);
        else if (np - pn == 1) tile_vnni(p, a, lda, rowsum, r0, nr, pn, 1, y, ldy);
    }
}

static void rowsums_k(const uint8_t *a, size_t lda, int m, int kk, int32_t mult, int32_t *sums)
{
    for (int r = 0; r < m; r++) {
        const uint8_t *ar = a + (size_t)r * lda;
        __m512i acc = _mm512_setzero_si512();
        int k = 0;
        for (; k + 64 <= kk; k += 64) acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_loadu_si512(ar + k), _mm512_setzero_si512()));
        if (k < kk) {
            __mmask64 keep = (__mmask64)(((uint64_t)1 << (kk - k)) - 1);
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(keep, ar + k), _mm512_setzero_si512()));
        }
        sums[r] = (int32_t)((uint32_t)_mm512_reduce_add_epi64(acc) * (uint32_t)mult);
    }
}

static void to_float_k(const uint8_t *x, int32_t za, size_t count, float *y)
{
    const __m512i z = _mm512_set1_epi32(za);
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + i))), z)));
    to_float_c(x + i, za, count - i, y + i);
}

static void requant_rows_k(const q_requant *rq, const int32_t *bias, const float *acc, int c, size_t r0, size_t r1,
                           uint8_t *y)
{
    for (size_t r = r0; r < r1; r++)
        for (int o = 0; o < c; o += 16) {
            int left = c - o;
            __mmask16 keep = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512i v = _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_maskz_loadu_ps(keep, acc + r * (size_t)c + (size_t)o)),
                                         _mm512_loadu_si512(bias + o));
            store16(rq, o, v, y + r * (size_t)c + (size_t)o, keep);
        }
}

static void add_k(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    const __m512i ma = _mm512_set1_epi32(p->ma), mb = _mm512_set1_epi32(p->mb), bias = _mm512_set1_epi32(p->bias);
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo), hi = _mm512_set1_epi32(p->hi);
    const __m128i sh = _mm_cvtsi32_si128(p->shift);
    for (size_t i = 0; i < count; i += 16) {
        size_t left = count - i;
        __mmask16 keep = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512i va = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(keep, a + i)), vb = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(keep, b + i));
        __m512i acc = _mm512_add_epi32(bias, _mm512_add_epi32(_mm512_mullo_epi32(va, ma), _mm512_mullo_epi32(vb, mb)));
        __m512i v = _mm512_add_epi32(_mm512_sra_epi32(acc, sh), zy);
        v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
        _mm_mask_storeu_epi8(y + i, keep, _mm512_cvtepi32_epi8(v));
    }
}

/* ------------------------------------------------------------ AVX2 */
#elif defined(QK_AVX2)

/* q_requant1 on 8 lanes before the zero point (see store16). */
static inline __m256i rq256(__m256i v, const float *scale, float vlo, float vhi)
{
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale));
    f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps(vlo)), _mm256_set1_ps(vhi));
    return _mm256_cvtps_epi32(f);
}

/* Requantize 8 lanes and store the first n (1..8) bytes. */
static inline void store8(__m256i v, __m256i zy, __m256i lo, __m256i hi, uint8_t *dst, int n)
{
    v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, zy), lo), hi);
    __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    __m128i b8 = _mm_packus_epi16(w16, w16);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)dst, b8);
    } else {
        uint8_t t[16];
        _mm_storeu_si128((__m128i *)t, b8);
        memcpy(dst, t, (size_t)n);
    }
}

static inline __attribute__((always_inline)) void tile_avx2(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int r0, int nr,
                             int hp, uint8_t *y, size_t ldy)
{
    enum { R = 4 };
    const uint8_t *ar[R];
    QK_UNROLL
    for (int i = 0; i < R; i++) ar[i] = a + (size_t)(r0 + (i < nr ? i : nr - 1)) * lda;
    int kg = p->kp / 4;
    const int8_t *bp = p->wp + (size_t)(hp / 2) * (size_t)kg * 64 + (size_t)(hp % 2) * 32;
    __m256i acc[R][2];
    QK_UNROLL
    for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (int g = 0; g < kg; g++) {
        __m256i wb = _mm256_loadu_si256((const __m256i *)(bp + (size_t)g * 64));
        __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb)), w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb, 1));
        QK_UNROLL
        for (int i = 0; i < R; i++) {
            int32_t a4;
            memcpy(&a4, ar[i] + 4 * g, 4);
            __m256i av = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(a4)));
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(av, w0));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(av, w1));
        }
    }
    int col = hp * 8, left = p->n - col;
    const __m256i perm = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    __m256i zw = _mm256_loadu_si256((const __m256i *)(p->zw + col)), ct = _mm256_loadu_si256((const __m256i *)(p->cterm + col));
    float vlo = (float)(p->rq.lo - p->rq.zy), vhi = (float)(p->rq.hi - p->rq.zy);
    __m256i zy = _mm256_set1_epi32(p->rq.zy), lo = _mm256_set1_epi32(p->rq.lo), hi = _mm256_set1_epi32(p->rq.hi);
    for (int i = 0; i < nr; i++) {
        __m256i s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[i][0], acc[i][1]), perm);
        __m256i rz = p->zw_uniform ? _mm256_set1_epi32(rowsum[r0 + i]) : _mm256_mullo_epi32(zw, _mm256_set1_epi32(rowsum[r0 + i]));
        s = _mm256_add_epi32(_mm256_sub_epi32(s, rz), ct);
        store8(rq256(s, p->rq.scale + col, vlo, vhi), zy, lo, hi, y + (size_t)(r0 + i) * ldy + (size_t)col, left);
    }
}

static void gemm_k(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int m, uint8_t *y,
                   size_t ldy)
{
    int nh = (p->n + 7) / 8;
    for (int r0 = 0; r0 < m; r0 += 4) {
        int nr = m - r0 < 4 ? m - r0 : 4;
        for (int hp = 0; hp < nh; hp++) tile_avx2(p, a, lda, rowsum, r0, nr, hp, y, ldy);
    }
}

static void rowsums_k(const uint8_t *a, size_t lda, int m, int kk, int32_t mult, int32_t *sums)
{
    for (int r = 0; r < m; r++) {
        const uint8_t *ar = a + (size_t)r * lda;
        __m256i acc = _mm256_setzero_si256();
        int k = 0;
        for (; k + 32 <= kk; k += 32)
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(ar + k)), _mm256_setzero_si256()));
        __m128i h = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        uint32_t s = (uint32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) + rowsum_c(ar, k, kk);
        sums[r] = (int32_t)(s * (uint32_t)mult);
    }
}

static void to_float_k(const uint8_t *x, int32_t za, size_t count, float *y)
{
    const __m256i z = _mm256_set1_epi32(za);
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + i))), z)));
    to_float_c(x + i, za, count - i, y + i);
}

static void requant_rows_k(const q_requant *rq, const int32_t *bias, const float *acc, int c, size_t r0, size_t r1,
                           uint8_t *y)
{
    const __m256i zy = _mm256_set1_epi32(rq->zy), lo = _mm256_set1_epi32(rq->lo), hi = _mm256_set1_epi32(rq->hi);
    float vlo = (float)(rq->lo - rq->zy), vhi = (float)(rq->hi - rq->zy);
    int cv = c & ~7;
    for (size_t r = r0; r < r1; r++) {
        for (int o = 0; o < cv; o += 8) {
            __m256i v = _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_loadu_ps(acc + r * (size_t)c + (size_t)o)),
                                         _mm256_loadu_si256((const __m256i *)(bias + o)));
            store8(rq256(v, rq->scale + o, vlo, vhi), zy, lo, hi, y + r * (size_t)c + (size_t)o, 8);
        }
        if (cv < c) requant_rows_c(rq, bias, acc, c, r, r + 1, y, cv);
    }
}

static void add_k(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    const __m256i ma = _mm256_set1_epi32(p->ma), mb = _mm256_set1_epi32(p->mb), bias = _mm256_set1_epi32(p->bias);
    const __m256i zy = _mm256_set1_epi32(p->zy), lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
    const __m128i sh = _mm_cvtsi32_si128(p->shift);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256i va = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + i)));
        __m256i vb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + i)));
        __m256i acc = _mm256_add_epi32(bias, _mm256_add_epi32(_mm256_mullo_epi32(va, ma), _mm256_mullo_epi32(vb, mb)));
        store8(_mm256_sra_epi32(acc, sh), zy, lo, hi, y + i, 8);
    }
    if (i < count) qref_add(p, a + i, b + i, y + i, count - i);
}

/* ------------------------------------------------------------ portable */
#else

static void gemm_k(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int m, uint8_t *y,
                   size_t ldy)
{
    gemm_rows_c(p, a, lda, rowsum, m, 0, (p->n + 15) / 16, y, ldy);
}

static void rowsums_k(const uint8_t *a, size_t lda, int m, int kk, int32_t mult, int32_t *sums)
{
    for (int r = 0; r < m; r++) sums[r] = (int32_t)(rowsum_c(a + (size_t)r * lda, 0, kk) * (uint32_t)mult);
}

static void to_float_k(const uint8_t *x, int32_t za, size_t count, float *y) { to_float_c(x, za, count, y); }

static void requant_rows_k(const q_requant *rq, const int32_t *bias, const float *acc, int c, size_t r0, size_t r1,
                           uint8_t *y)
{
    requant_rows_c(rq, bias, acc, c, r0, r1, y, 0);
}

static void add_k(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count)
{
    add_c(p, a, b, y, count);
}

#endif

const q_kernels QK_TABLE = {QK_NAME, gemm_k, rowsums_k, to_float_k, requant_rows_k, add_k};
