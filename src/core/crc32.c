/*
 * crc32.c - CRC-32 (zlib's polynomial, bit-reflected), alone or fused with
 * a copy (the loaders verify tensors while they copy them: one pass over
 * the bytes instead of two).
 *
 * Three paths, chosen once from cpuid:
 *   vclmul  AVX-512 + VPCLMULQDQ: four 512-bit accumulators, 256 bytes a
 *           step, each 128-bit lane folded 2048 bits forward;
 *   clmul   PCLMULQDQ + SSE4.1 (every AVX2 machine): four 128-bit lanes,
 *           64 bytes a step (Gopal et al., "Fast CRC Computation for Generic
 *           Polynomials Using PCLMULQDQ", Intel 2009);
 *   table   slice-by-8: eight bytes a step through eight derived tables.
 * Fold constants: k(N) = reflect32(x^N mod P) << 1; folding a 128-bit lane
 * N bits forward multiplies its low half by k(N + 32) and its high half by
 * k(N - 32) (k(544) = 0x154442bd4 and k(480) = 0x1c6e41596 are the paper's
 * k1, k2). Lengths the folds leave over (< 16 bytes) go through the table.
 * IMCAP_CRC_TABLE=1 forces the table path; tests/test_robust.c checks every
 * path the CPU has against a bitwise reference, copies included.
 */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint32_t g_table[8][256];
static crc_path g_best = CRC_TABLE, g_path = CRC_TABLE;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        g_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) g_table[t][i] = g_table[0][g_table[t - 1][i] & 0xff] ^ (g_table[t - 1][i] >> 8);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) g_best = CRC_CLMUL;
    if (g_best == CRC_CLMUL && __builtin_cpu_supports("vpclmulqdq") && cpu_isa_supported(CPU_AVX512))
        g_best = CRC_VCLMUL;
#endif
    const char *e = getenv("IMCAP_CRC_TABLE");
    g_path = e && *e && strcmp(e, "0") ? CRC_TABLE : g_best;
}

/* The inverted register crc over len bytes, by the tables; copied to dst if not NULL. */
static uint32_t table_update(uint32_t crc, unsigned char *dst, const unsigned char *p, size_t len)
{
    const uint32_t(*T)[256] = (const uint32_t(*)[256])g_table;
    if (dst) memcpy(dst, p, len);
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^
              T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    }
    while (len--) crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))
#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, x) _mm_storeu_si128((__m128i *)(void *)(p), x)

/* a folded 128 bits forward by the constants k = (k(N+32), k(N-32)) */
CLMUL_TARGET static inline __m128i fold128(__m128i a, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11));
}

/* The last 16-byte blocks into the 128-bit state x, then the reduction to
 * the inverted register (128 -> 64 bits, Barrett to 32). len % 16 == 0. */
CLMUL_TARGET static uint32_t clmul_finish(__m128i x, unsigned char *dst, const unsigned char *buf, size_t len)
{
    const __m128i k128 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124), poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    for (; len >= 16; buf += 16, len -= 16) {
        const __m128i d = LD(buf);
        if (dst) ST(dst, d), dst += 16;
        x = _mm_xor_si128(fold128(x, k128), d);
    }
    const __m128i lo32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i y = _mm_clmulepi64_si128(x, k128, 0x10);
    x = _mm_xor_si128(_mm_srli_si128(x, 8), y);
    y = _mm_srli_si128(x, 4);
    x = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x, lo32), k5k0, 0x00), y);
    y = _mm_clmulepi64_si128(_mm_and_si128(x, lo32), poly, 0x10);
    y = _mm_clmulepi64_si128(_mm_and_si128(y, lo32), poly, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x, y), 1);
}

/* Flags of one pass: what it does besides reading (always-inlined bodies,
 * so each combination compiles to its own loop). */
enum { P_COPY = 1, P_FOLD = 2, P_FINITE = 4 };

/* Whether any of the 32-bit lanes of d has all exponent bits set (a float
 * inf or NaN), OR-ed into acc. */
#define NONFINITE_SSE(acc, d, expo) acc = _mm_or_si128(acc, _mm_cmpeq_epi32(_mm_and_si128(d, expo), expo))

/* One pass over len bytes (len >= 64, a multiple of 16): copy to dst
 * (P_COPY), the inverted register crc folded (P_FOLD: four 128-bit lanes
 * folded 512 bits a step) and returned, non-finite floats noted in *bad
 * (P_FINITE; len a multiple of 4 then). */
CLMUL_TARGET static inline __attribute__((always_inline)) uint32_t
clmul_body(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len, int flags, bool *bad)
{
    const __m128i k512 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4), k128 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i expo = _mm_set1_epi32(0x7f800000);
    __m128i nf = _mm_setzero_si128();
    __m128i x1 = LD(buf), x2 = LD(buf + 16), x3 = LD(buf + 32), x4 = LD(buf + 48);
    if (flags & P_COPY) ST(dst, x1), ST(dst + 16, x2), ST(dst + 32, x3), ST(dst + 48, x4), dst += 64;
    if (flags & P_FINITE) {
        NONFINITE_SSE(nf, x1, expo), NONFINITE_SSE(nf, x2, expo), NONFINITE_SSE(nf, x3, expo);
        NONFINITE_SSE(nf, x4, expo);
    }
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    buf += 64;
    len -= 64;
    for (; len >= 64; buf += 64, len -= 64) {
        const __m128i d1 = LD(buf), d2 = LD(buf + 16), d3 = LD(buf + 32), d4 = LD(buf + 48);
        if (flags & P_COPY) ST(dst, d1), ST(dst + 16, d2), ST(dst + 32, d3), ST(dst + 48, d4), dst += 64;
        if (flags & P_FINITE) {
            NONFINITE_SSE(nf, d1, expo), NONFINITE_SSE(nf, d2, expo), NONFINITE_SSE(nf, d3, expo);
            NONFINITE_SSE(nf, d4, expo);
        }
        if (flags & P_FOLD) {
            x1 = _mm_xor_si128(fold128(x1, k512), d1);
            x2 = _mm_xor_si128(fold128(x2, k512), d2);
            x3 = _mm_xor_si128(fold128(x3, k512), d3);
            x4 = _mm_xor_si128(fold128(x4, k512), d4);
        }
    }
    for (; (flags & P_FOLD) == 0 && len >= 16; buf += 16, len -= 16) {
        const __m128i d = LD(buf);
        if (flags & P_COPY) ST(dst, d), dst += 16;
        if (flags & P_FINITE) NONFINITE_SSE(nf, d, expo);
    }
    if (!(flags & P_FOLD)) {
        if ((flags & P_FINITE) && _mm_movemask_epi8(nf)) *bad = true;
        return crc;
    }
    x2 = _mm_xor_si128(fold128(x1, k128), x2);
    x3 = _mm_xor_si128(fold128(x2, k128), x3);
    x4 = _mm_xor_si128(fold128(x3, k128), x4);
    if (flags & P_FINITE) /* the last 16-byte blocks clmul_finish reads */
        for (size_t i = 0; i < len; i += 16) {
            const __m128i d = LD(buf + i);
            NONFINITE_SSE(nf, d, expo);
        }
    if ((flags & P_FINITE) && _mm_movemask_epi8(nf)) *bad = true;
    return clmul_finish(x4, (flags & P_COPY) ? dst : NULL, buf, len);
}

CLMUL_TARGET static uint32_t clmul_update(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len)
{
    return dst ? clmul_body(crc, dst, buf, len, P_COPY | P_FOLD, NULL) : clmul_body(crc, NULL, buf, len, P_FOLD, NULL);
}

#define VCLMUL_TARGET __attribute__((target("pclmul,sse4.1,avx512f,avx512bw,vpclmulqdq")))

VCLMUL_TARGET static inline __m512i vfold(__m512i a, __m512i k, __m512i d)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00), _mm512_clmulepi64_epi128(a, k, 0x11), d,
                                     0x96);
}

/* clmul_body's pass with four 512-bit accumulators (16 lanes of 128 bits),
 * 256 bytes a step, each lane folded 2048 bits forward (len >= 256). */
VCLMUL_TARGET static inline __attribute__((always_inline)) uint32_t
vclmul_body(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len, int flags, bool *bad)
{
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x01322d1430, 0x011542778a));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x01c6e41596, 0x0154442bd4));
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    __mmask16 nf = 0;
#define NONFINITE_512(d) nf |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(d, expo), expo)
    __m512i x0 = _mm512_loadu_si512(buf), x1 = _mm512_loadu_si512(buf + 64);
    __m512i x2 = _mm512_loadu_si512(buf + 128), x3 = _mm512_loadu_si512(buf + 192);
    if (flags & P_COPY) {
        _mm512_storeu_si512(dst, x0), _mm512_storeu_si512(dst + 64, x1);
        _mm512_storeu_si512(dst + 128, x2), _mm512_storeu_si512(dst + 192, x3);
        dst += 256;
    }
    if (flags & P_FINITE) NONFINITE_512(x0), NONFINITE_512(x1), NONFINITE_512(x2), NONFINITE_512(x3);
    x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)crc)));
    buf += 256;
    len -= 256;
    for (; len >= 256; buf += 256, len -= 256) {
        const __m512i d0 = _mm512_loadu_si512(buf), d1 = _mm512_loadu_si512(buf + 64);
        const __m512i d2 = _mm512_loadu_si512(buf + 128), d3 = _mm512_loadu_si512(buf + 192);
        if (flags & P_COPY) {
            _mm512_storeu_si512(dst, d0), _mm512_storeu_si512(dst + 64, d1);
            _mm512_storeu_si512(dst + 128, d2), _mm512_storeu_si512(dst + 192, d3);
            dst += 256;
        }
        if (flags & P_FINITE) NONFINITE_512(d0), NONFINITE_512(d1), NONFINITE_512(d2), NONFINITE_512(d3);
        if (flags & P_FOLD) {
            x0 = vfold(x0, k2048, d0);
            x1 = vfold(x1, k2048, d1);
            x2 = vfold(x2, k2048, d2);
            x3 = vfold(x3, k2048, d3);
        }
    }
    /* the accumulators into one, 512 bits apart, then 64 bytes a step */
    x1 = vfold(x0, k512, x1);
    x2 = vfold(x1, k512, x2);
    x3 = vfold(x2, k512, x3);
    for (; len >= 64; buf += 64, len -= 64) {
        const __m512i d = _mm512_loadu_si512(buf);
        if (flags & P_COPY) _mm512_storeu_si512(dst, d), dst += 64;
        if (flags & P_FINITE) NONFINITE_512(d);
        if (flags & P_FOLD) x3 = vfold(x3, k512, d);
    }
#undef NONFINITE_512
    if ((flags & P_FINITE) && nf) *bad = true;
    if (!(flags & P_FOLD)) {
        _mm256_zeroupper();
        const __m128i e = _mm_set1_epi32(0x7f800000);
        __m128i acc = _mm_setzero_si128();
        for (; len >= 16; buf += 16, len -= 16) {
            const __m128i d = LD(buf);
            if (flags & P_COPY) ST(dst, d), dst += 16;
            if (flags & P_FINITE) NONFINITE_SSE(acc, d, e);
        }
        if ((flags & P_FINITE) && _mm_movemask_epi8(acc)) *bad = true;
        return crc;
    }
    /* the four lanes into one: 384, 256 and 128 bits forward */
    const __m128i k384 = _mm_set_epi64x(0x0174359406, 0x003db1ecdc), k256 = _mm_set_epi64x(0x015a546366, 0x00f1da05aa);
    const __m128i k128 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    __m128i x = _mm_xor_si128(fold128(_mm512_extracti32x4_epi32(x3, 0), k384),
                              fold128(_mm512_extracti32x4_epi32(x3, 1), k256));
    x = _mm_xor_si128(x, fold128(_mm512_extracti32x4_epi32(x3, 2), k128));
    x = _mm_xor_si128(x, _mm512_extracti32x4_epi32(x3, 3));
    /* clean upper state before the SSE code that follows (here and in the
     * caller): left dirty, it slowed a whole captioner load 2.5x */
    _mm256_zeroupper();
    if (flags & P_FINITE) { /* the last 16-byte blocks clmul_finish reads */
        const __m128i e = _mm_set1_epi32(0x7f800000);
        __m128i acc = _mm_setzero_si128();
        for (size_t i = 0; i < len; i += 16) NONFINITE_SSE(acc, LD(buf + i), e);
        if (_mm_movemask_epi8(acc)) *bad = true;
    }
    return clmul_finish(x, (flags & P_COPY) ? dst : NULL, buf, len);
}

VCLMUL_TARGET static uint32_t vclmul_update(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len)
{
    return dst ? vclmul_body(crc, dst, buf, len, P_COPY | P_FOLD, NULL) : vclmul_body(crc, NULL, buf, len, P_FOLD, NULL);
}

/* The f32 loads (imcap_copy_f32_checked) on each path: copy + check, with or without the fold. */
CLMUL_TARGET static uint32_t clmul_load(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len,
                                        bool fold, bool *bad)
{
    return fold ? clmul_body(crc, dst, buf, len, P_COPY | P_FOLD | P_FINITE, bad)
                : clmul_body(crc, dst, buf, len, P_COPY | P_FINITE, bad);
}

VCLMUL_TARGET static uint32_t vclmul_load(uint32_t crc, unsigned char *dst, const unsigned char *buf, size_t len,
                                          bool fold, bool *bad)
{
    return fold ? vclmul_body(crc, dst, buf, len, P_COPY | P_FOLD | P_FINITE, bad)
                : vclmul_body(crc, dst, buf, len, P_COPY | P_FINITE, bad);
}
#undef LD
#undef ST
#endif

/* crc over len bytes of src, copied to dst if not NULL, on the given path */
static uint32_t crc_run(crc_path path, uint32_t crc, unsigned char *dst, const unsigned char *p, size_t len)
{
    crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    if ((path == CRC_VCLMUL && len >= 256) || (path >= CRC_CLMUL && len >= 64)) {
        const size_t n = len & ~(size_t)15;
        crc = path == CRC_VCLMUL && len >= 256 ? vclmul_update(crc, dst, p, n) : clmul_update(crc, dst, p, n);
        p += n;
        len -= n;
        if (dst) dst += n;
    }
#else
    (void)path;
#endif
    return ~table_update(crc, dst, p, len);
}

uint32_t imcap_crc32(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&g_once, crc_init);
    return crc_run(g_path, crc, NULL, data, len);
}

uint32_t imcap_crc32_copy(uint32_t crc, void *dst, const void *src, size_t len)
{
    pthread_once(&g_once, crc_init);
    return crc_run(g_path, crc, dst, src, len);
}

size_t imcap_copy_f32_checked(float *dst, const float *src, size_t n, uint32_t *crc)
{
    pthread_once(&g_once, crc_init);
    return imcap_copy_f32_checked_on(g_path, dst, src, n, crc);
}

size_t imcap_copy_f32_checked_on(crc_path path, float *dst, const float *src, size_t n, uint32_t *crc)
{
    pthread_once(&g_once, crc_init);
    if (path > g_best) path = g_best;
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *p = (const unsigned char *)src;
    size_t len = n * sizeof(float), done = 0; /* bytes the vector pass copied and checked */
    uint32_t c = crc ? ~*crc : 0;
    bool bad = false;
#if defined(__x86_64__) && defined(__GNUC__)
    const size_t m = len & ~(size_t)15;
    if (path == CRC_VCLMUL && len >= 256) done = m, c = vclmul_load(c, d, p, m, crc != NULL, &bad);
    else if (path >= CRC_CLMUL && len >= 64) done = m, c = clmul_load(c, d, p, m, crc != NULL, &bad);
    p += done, d += done, len -= done;
#endif
    if (crc) *crc = ~table_update(c, d, p, len);
    else memcpy(d, p, len);
    if (bad) return imcap_first_nonfinite(dst, n);
    const size_t k = done / sizeof(float);
    return k + imcap_first_nonfinite(dst + k, n - k);
}

bool imcap_crc32_path_supported(crc_path path)
{
    pthread_once(&g_once, crc_init);
    return path <= g_best;
}

uint32_t imcap_crc32_on(crc_path path, uint32_t crc, void *dst, const void *src, size_t len)
{
    pthread_once(&g_once, crc_init);
    return crc_run(path <= g_best ? path : g_best, crc, dst, src, len);
}

const char *imcap_crc32_path_name(crc_path path)
{
    static const char *const names[] = {"table", "clmul", "vclmul"};
    return path >= CRC_TABLE && path <= CRC_VCLMUL ? names[path] : "?";
}

crc_path imcap_crc32_path(void)
{
    pthread_once(&g_once, crc_init);
    return g_path;
}
