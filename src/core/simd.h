/*
 * simd.h - the float vector of the ISA this file is compiled for, and the
 * handful of operations the kernels use. Kernel files compiled per ISA
 * (see cpu.h) include it: with -mavx512f a vector is a __m512 (16 lanes),
 * with -mavx2 -mfma a __m256 (8), otherwise a baseline SSE2 __m128 (4,
 * FMA as multiply + add). SIMD_SUFFIX names the path in symbols.
 */
#ifndef IMCAP_SIMD_H
#define IMCAP_SIMD_H

#include <immintrin.h>

#if defined(__AVX512F__)
#define SIMD_W 16
#define SIMD_SUFFIX avx512
typedef __m512 vf;
static inline vf vf_loadu(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vf_load(const float *p) { return _mm512_load_ps(p); }
static inline void vf_storeu(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_set1(float x) { return _mm512_set1_ps(x); }
static inline vf vf_bcast(const float *p) { return _mm512_set1_ps(*p); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }  /* a b + c */
static inline vf vf_fnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a b */
/* Lanes [0, cnt) of p, zeros beyond (cnt may exceed the width). */
static inline vf vf_load_part(const float *p, int cnt)
{
    if (cnt >= SIMD_W) return _mm512_loadu_ps(p);
    return _mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1), p);
}
static inline void vf_store_part(float *p, vf v, int cnt)
{
    if (cnt >= SIMD_W)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, (__mmask16)((1u << cnt) - 1), v);
}
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#define SIMD_W 8
#define SIMD_SUFFIX avx2
typedef __m256 vf;
static inline vf vf_loadu(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vf_load(const float *p) { return _mm256_load_ps(p); }
static inline void vf_storeu(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_set1(float x) { return _mm256_set1_ps(x); }
static inline vf vf_bcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_fnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vf_load_part(const float *p, int cnt)
{
    if (cnt >= SIMD_W) return _mm256_loadu_ps(p);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), idx));
}
static inline void vf_store_part(float *p, vf v, int cnt)
{
    if (cnt >= SIMD_W) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), idx), v);
}
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#else
#define SIMD_W 4
#define SIMD_SUFFIX generic
typedef __m128 vf;
static inline vf vf_loadu(const float *p) { return _mm_loadu_ps(p); }
static inline vf vf_load(const float *p) { return _mm_load_ps(p); }
static inline void vf_storeu(float *p, vf v) { _mm_storeu_ps(p, v); }
static inline vf vf_set1(float x) { return _mm_set1_ps(x); }
static inline vf vf_bcast(const float *p) { return _mm_set1_ps(*p); }
static inline vf vf_zero(void) { return _mm_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm_mul_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm_max_ps(a, b); }
static inline vf vf_min(vf a, vf b) { return _mm_min_ps(a, b); }
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
static inline vf vf_fnmadd(vf a, vf b, vf c) { return _mm_sub_ps(c, _mm_mul_ps(a, b)); }
static inline vf vf_load_part(const float *p, int cnt)
{
    if (cnt >= SIMD_W) return _mm_loadu_ps(p);
    float t[SIMD_W] = {0};
    for (int i = 0; i < cnt; i++) t[i] = p[i];
    return _mm_loadu_ps(t);
}
static inline void vf_store_part(float *p, vf v, int cnt)
{
    if (cnt >= SIMD_W) {
        _mm_storeu_ps(p, v);
        return;
    }
    float t[SIMD_W];
    _mm_storeu_ps(t, v);
    for (int i = 0; i < cnt; i++) p[i] = t[i];
}
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#endif

#define SIMD_STR2(x) #x
#define SIMD_STR(x) SIMD_STR2(x)
#define SIMD_CAT2(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT2(a, b)
/* name_avx2 etc.: the per-ISA symbol of a kernel table. */
#define SIMD_NAME(name) SIMD_CAT(name, SIMD_SUFFIX)

#endif
