/*
 * ops_isa.h - the encoder kernels of one instruction set (ops_kernels.h,
 * compiled per ISA by ops_generic.c, ops_avx2.c and ops_avx512.c) as a
 * table; ops.c calls the table of the active path (cpu.h).
 */
#ifndef IMCAP_OPS_ISA_H
#define IMCAP_OPS_ISA_H

#include "cpu.h"
#include "ops.h"

#include <math.h>

typedef struct ops_kernels {
    const char *name;
    /* y[m][n] = act(A W + b): A = x (rows of stride lda) or, with cv, the
     * implicit im2col matrix of the convolution cv over x; wp packed by
     * ops_pack_weights. */
    void (*gemm)(const float *x, size_t lda, const ops_win *cv, const float *wp, const float *b, enc_act act,
                 float *y, int m, int k, int n);
    /* Winograd F(4x4, 3x3) (ops_winograd_ok(g)); tb tiles per block,
     * scratch: ops_winograd_scratch(g) floats. */
    void (*winograd)(const ops_win *g, const float *x, const float *up, const float *b, enc_act act, float *y,
                     float *scratch, int tb);
    void (*dwconv2d)(const ops_win *g, const float *x, const float *w, const float *b, enc_act act, float *y);
    void (*pool)(const ops_win *g, const float *x, float *y, int is_max);
    void (*gap)(int n, int hw, int c, const float *x, float *y);
    void (*add)(size_t count, const float *a, const float *b, float *y);
    void (*affine)(size_t m, int c, const float *x, const float *w, const float *b, float *y);
    /* y[r][c] = act(y[r][c] + b[c]) over rows [r0, r1) of stride ldy, one thread. */
    void (*bias_act_rows)(float *y, size_t r0, size_t r1, int c, int ldy, const float *b, enc_act act);
} ops_kernels;

extern const ops_kernels ops_kernels_generic, ops_kernels_avx2, ops_kernels_avx512;

/* The table of cpu_isa_active(). */
const ops_kernels *ops_kernels_active(void);

/* GEMM weight panels are OPS_NR columns wide on every path (the packed
 * weights do not depend on the ISA); Winograd blocks hold a multiple of
 * OPS_TILE_STEP tiles (a multiple of every path's GEMM rows). */
enum { OPS_NR = 16, OPS_KC = 320, OPS_TILE_STEP = 12 };

static inline float ops_act1(float v, enc_act act)
{
    switch (act) {
    case ENC_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ENC_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case ENC_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

#endif
