/*
 * f16.c - float <-> IEEE binary16 conversions: a portable bit-level version
 * and, for arrays, the F16C instructions when the build targets them (the
 * tests check both give the same bits on every half and on many floats).
 */
#include "f16.h"

#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

uint16_t imcap_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, NaN (keeps the top payload bits, sets the quiet bit) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
    if (ax < 0x38800000u) {                                    /* below 2^-14: a subnormal half (or 0) */
        if (ax <= 0x33000000u) return (uint16_t)sign;          /* <= 2^-25 rounds to 0 (2^-25 ties to even) */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax - 0x38000000u) >> 13, rem = ax & 0x1fffu; /* rebias the exponent 127 -> 15 */
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float imcap_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    float f;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        x = sign | ((e + 112) << 23) | (m << 13);
    } else {
        f = (float)m * 0x1p-24f; /* subnormal (or zero): exact */
        memcpy(&x, &f, 4);
        x |= sign;
    }
    memcpy(&f, &x, 4);
    return f;
}

void imcap_f32_to_f16_n(const float *x, uint16_t *h, size_t n)
{
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) h[i] = imcap_f32_to_f16(x[i]);
}

void imcap_f16_to_f32_n(const uint16_t *h, float *x, size_t n)
{
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; i++) x[i] = imcap_f16_to_f32(h[i]);
}
