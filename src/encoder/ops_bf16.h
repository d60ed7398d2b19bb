/*
 * ops_bf16.h - bfloat16 GEMMs of the encoder's dense and convolution layers
 * (IMCAP_PRECISION_BF16): weights rounded to bf16 (round to nearest even)
 * and packed once, activations rounded to bf16 while a tile's rows of the
 * implicit im2col matrix are gathered, products summed in fp32 by
 * AVX512_BF16's vdpbf16ps; bias and activation in fp32. Only for CPUs with
 * cpu_has_avx512_bf16() (ops_bf16.c is compiled for AVX-512 + BF16).
 */
#ifndef IMCAP_OPS_BF16_H
#define IMCAP_OPS_BF16_H

#include "ops.h"

#include <stdint.h>
#include <string.h>

/* bf16 (round to nearest even; NaN stays NaN) and back. */
static inline uint16_t ops_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float ops_bf16_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Elements of w[k][n] packed for ops_gemm_bf16: 16-column panels of
 * ceil(k/2) rows of 16 (w[2r][j], w[2r+1][j]) pairs, zero padded. */
size_t ops_bf16_packed(int k, int n);
void ops_bf16_pack(int k, int n, const float *w, uint16_t *wp);
/* y[m][n] = act(A W + b) as ops_kernels.gemm (cv NULL: A = x with row
 * stride lda), W packed by ops_bf16_pack. */
void ops_gemm_bf16(const float *x, size_t lda, const ops_win *cv, const uint16_t *wp, const float *b, enc_act act,
                   float *y, int m, int k, int n);

#endif
