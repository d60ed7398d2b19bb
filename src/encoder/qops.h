/*
 * qops.h - uint8 kernels of the encoder's int8 program (qgraph.c), with
 * TensorFlow Lite's integer arithmetic: uint8 activations a with a real
 * value scale * (a - zero_point), int8 weights (uint8 weights stored minus
 * 128, their zero point too), int32 accumulation, and the requantization
 * of TFLite's runtime (q_requant1: float scale, round to nearest even,
 * output zero point, clamp to the fused activation's range). The GEMM and the depthwise and add kernels are compiled per
 * instruction set (qops_kernels.h: portable C, AVX2 widening to int16,
 * AVX-512 VNNI vpdpbusd) and picked at run time (cpu.h); the qref_* loops
 * are the naive references the tests compare every path with.
 */
#ifndef IMCAP_QOPS_H
#define IMCAP_QOPS_H

#include "ops.h"

#include <math.h>
#include <stdint.h>

/* ----------------------------------------------------- TFLite arithmetic */

/* Requantization as the runtime that made the goldens does it (TFLite with
 * its XNNPACK delegate, which runs the MobileNets' uint8 convolutions):
 * y = round_to_nearest_even((float)acc * scale) + zy, clamped to [lo, hi],
 * scale = in_scale * w_scale / out_scale in float. TFLite's own integer
 * kernels (QuantizeMultiplier + SaturatingRoundingDoublingHighMul +
 * RoundingDivideByPOT, or their single-rounding form) differ from it on
 * 1-11% (double rounding) or a few in 10^5 (single rounding) of a layer's
 * outputs; measured layer by layer against the runtime, docs in README. */
static inline int32_t q_requant1(int32_t acc, float scale, int32_t zy, int32_t lo, int32_t hi)
{
    float v = (float)acc * scale, vlo = (float)(lo - zy), vhi = (float)(hi - zy);
    v = v < vlo ? vlo : v > vhi ? vhi : v;
    return (int32_t)lrintf(v) + zy;
}

/* Range of a fused activation on a uint8 output (CalculateActivationRangeUint8). */
void q_act_range(enc_act act, float scale, int32_t zp, int32_t *lo, int32_t *hi);

/* ---------------------------------------------------------- kernels */

/* Requantization of int32 accumulators to uint8, per output column:
 * q_requant1(acc, scale[n], zy, lo, hi); scale padded to a multiple of 16. */
typedef struct q_requant {
    const float *scale;
    int32_t zy, lo, hi;
} q_requant;

/* A GEMM y[m][n] = requant(sum_k a[m][k] w[k][n] - zw[n] rowsum[m] + cterm[n])
 * where w = the int8 weights (uint8 minus 128), zw their zero point in that
 * domain, rowsum[m] = sum_k a[m][k], cterm[n] = bias[n] - za colsum[n] +
 * K za zw[n]: the expansion of sum (a - za)(w - zw) + bias. */
typedef struct q_gemm {
    const int8_t *wp;       /* packed: [n/16 panels][kp/4][16 columns][4 k], zero padded */
    int k, kp, n;           /* kp = k rounded up to 4 */
    const int32_t *zw, *cterm; /* [n rounded up to 16] */
    bool zw_uniform;        /* one weight zero point: rowsum arrives multiplied by it */
    q_requant rq;
} q_gemm;

size_t q_packed_bytes(int k, int n);
/* w[k][n] int8 -> the packed panels. */
void q_pack_weights(int k, int n, const int8_t *w, int8_t *wp);

/* Depthwise convolution: the products (a - za)(w - zw) and their sums over
 * at most Q_DW_MAX_TAPS taps are integers below 2^24 in magnitude, so the
 * float depthwise kernel (ops.h) computes the int32 accumulator exactly, in
 * any order, on every path; q_dwconv2d adds the bias and requantizes. */
enum { Q_DW_MAX_TAPS = 258 };
typedef struct q_dw {
    const ops_win *win;
    const float *w;         /* [kh][kw][oc]: weight minus its zero point */
    const int32_t *bias;    /* [pad16(oc)] */
    int32_t za;             /* input zero point */
    q_requant rq;           /* per output channel */
} q_dw;

/* Elementwise add, as TFLite's runtime runs a uint8 ADD (its XNNPACK
 * delegate's qu8 add; TFLite's own kernel with left shift 20 differs on a
 * few values in 10^5): acc = bias + a ma + b mb in int32 (multipliers
 * < 2^21 from the float ratios scale_a / scale_y, scale_b / scale_y, shifted
 * by 20 - the larger one's exponent; bias = 2^(shift-1) - ma za - mb zb),
 * y = clamp((acc >> shift) + zy, lo, hi). q_add_init fails (false) where the
 * ratios are outside XNNPACK's range [2^-10, 2^8). */
typedef struct q_add {
    int32_t ma, mb, bias, shift;
    int32_t zy, lo, hi;
} q_add;

bool q_add_init(q_add *p, float sa, int32_t za, float sb, int32_t zb, float sy, int32_t zy, int32_t lo, int32_t hi);

typedef struct q_kernels {
    const char *name;
    /* rows [0, m) of a (stride lda, at least kp readable bytes each) */
    void (*gemm)(const q_gemm *p, const uint8_t *a, size_t lda, const int32_t *rowsum, int m, uint8_t *y,
                 size_t ldy);
    /* sums[r] = mult * sum_k a[r][k], k < kk (wrapping in 32 bits) */
    void (*rowsums)(const uint8_t *a, size_t lda, int m, int kk, int32_t mult, int32_t *sums);
    /* x[i] - za as floats */
    void (*to_float)(const uint8_t *x, int32_t za, size_t count, float *y);
    /* rows [r0, r1) of acc[r][c] (exact integers in float): y = requant(acc + bias[c]) */
    void (*requant_rows)(const q_requant *rq, const int32_t *bias, const float *acc, int c, size_t r0, size_t r1,
                         uint8_t *y);
    void (*add)(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count);
} q_kernels;

extern const q_kernels q_kernels_generic, q_kernels_avx2, q_kernels_avx512;
/* The kernels of the active path: AVX-512 only where the CPU has VNNI
 * (else the AVX2 kernels); "generic", "avx2" or "avx512-vnni". */
const q_kernels *q_kernels_active(void);

/* Convolution through the GEMM (im2col, padding filled with za; 1x1
 * stride-1 convolutions read x in place), over the worker threads. */
void q_conv2d(const ops_win *g, const q_gemm *p, int32_t za, const uint8_t *x, uint8_t *y);
/* Runs in bands of output rows (their input rows converted to float, the
 * float kernel, requantization), each band's floats in cache; scratch:
 * q_dw_scratch(g) floats. */
size_t q_dw_scratch(const ops_win *g);
void q_dwconv2d(const q_dw *p, const uint8_t *x, uint8_t *y, float *scratch);
void q_addv(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count);
/* TFLite uint8 average pool (padding excluded from the count; (sum +
 * count/2) / count) and max pool, then clamped to [lo, hi]. */
void q_avgpool(const ops_win *g, const uint8_t *x, uint8_t *y, int32_t lo, int32_t hi);
void q_maxpool(const ops_win *g, const uint8_t *x, uint8_t *y, int32_t lo, int32_t hi);
/* TFLite's optimized uint8 softmax (beta 1, output scale 1/256, zero point
 * 0): a float table of exp(-scale * d), rows [m][c]. */
void q_softmax(size_t m, int c, float in_scale, const uint8_t *x, uint8_t *y);

/* ---------------------------------------------------------- references */

/* Naive loops over the definitions (sum over (a - za)(w - zw) with skipped
 * padding), for the tests. w[kh][kw][c][oc] int8, zw and scale per output
 * channel (arrays of oc). */
void qref_conv2d(const ops_win *g, const uint8_t *x, int32_t za, const int8_t *w, const int32_t *zw,
                 const int32_t *bias, const float *scale, int32_t zy, int32_t lo, int32_t hi, uint8_t *y);
/* w[kh][kw][c*mult] int8. */
void qref_dwconv2d(const ops_win *g, const uint8_t *x, int32_t za, const int8_t *w, const int32_t *zw,
                   const int32_t *bias, const float *scale, int32_t zy, int32_t lo, int32_t hi, uint8_t *y);
void qref_add(const q_add *p, const uint8_t *a, const uint8_t *b, uint8_t *y, size_t count);

#endif
