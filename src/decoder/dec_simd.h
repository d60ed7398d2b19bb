/*
 * dec_simd.h - the decoder's elementwise kernels (dec_kernels.h: gates,
 * cell, ELU, softmax cross-entropy) and generation's small GEMM, compiled
 * once per instruction set: included only by dec_generic.c, dec_avx2.c and
 * dec_avx512.c (built with -O3 and the ISA's flags, so GCC vectorizes the
 * loops at that width), each defining dec_kernels_<isa> (dec_isa.h).
 */
#ifndef IMCAP_DEC_SIMD_H
#define IMCAP_DEC_SIMD_H

#include "dec_kernels.h"
#include "simd.h"

static void small_nt_task(void *vctx, size_t o0, size_t o1, int tid)
{
    const dec_small_ctx *t = vctx;
    const int n = t->n, in = t->in;
    for (size_t o = o0; o < o1; o++) {
        const float *wr = t->w + o * (size_t)in;
        vf acc[DEC_SMALL_ROWS];
        for (int r = 0; r < n; r++) acc[r] = vf_zero();
        int i = 0;
        for (; i + SIMD_W <= in; i += SIMD_W) {
            vf wv = vf_loadu(wr + i);
            for (int r = 0; r < n; r++) acc[r] = vf_fmadd(vf_loadu(t->x + (size_t)r * in + i), wv, acc[r]);
        }
        for (int r = 0; r < n; r++) {
            float sum = vf_hsum(acc[r]);
            for (int k = i; k < in; k++) sum += t->x[(size_t)r * in + k] * wr[k];
            float *yo = t->y + (size_t)r * t->out + o;
            *yo = (t->accumulate ? *yo : t->b[o]) + sum;
        }
    }
}

const dec_kernels SIMD_NAME(dec_kernels) = {
    .small_nt_task = small_nt_task,
    .elu_forward = k_elu_forward,
    .elu_backward = k_elu_backward,
    .lstm_cell_forward = k_lstm_cell_forward,
    .lstm_cell_backward = k_lstm_cell_backward,
    .softmax_xent_row = k_softmax_xent_row,
};

#endif
