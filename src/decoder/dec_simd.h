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

/* Output features [o0, o1): DEC_SMALL_COLS rows of W at a time against
 * DEC_SMALL_ROWS rows of x (12 accumulators in registers), each row of W
 * read once per DEC_SMALL_ROWS rows of x while it is in L1. */
static void small_nt_task(void *vctx, size_t o0, size_t o1, int tid)
{
    const dec_small_ctx *t = vctx;
    const int in = t->in;
    for (size_t o = o0; o < o1; o += DEC_SMALL_COLS) {
        const int nc = o1 - o < DEC_SMALL_COLS ? (int)(o1 - o) : DEC_SMALL_COLS;
        const float *wr[DEC_SMALL_COLS];
        for (int c = 0; c < DEC_SMALL_COLS; c++) wr[c] = t->w + (o + (c < nc ? c : 0)) * (size_t)in;
        for (int r0 = 0; r0 < t->n; r0 += DEC_SMALL_ROWS) {
            const int n = t->n - r0 < DEC_SMALL_ROWS ? t->n - r0 : DEC_SMALL_ROWS;
            const float *x = t->x + (size_t)r0 * in;
            vf acc[DEC_SMALL_ROWS][DEC_SMALL_COLS];
            for (int r = 0; r < DEC_SMALL_ROWS; r++)
                for (int c = 0; c < DEC_SMALL_COLS; c++) acc[r][c] = vf_zero();
            int i = 0;
            for (; i + SIMD_W <= in; i += SIMD_W) {
                const vf w0 = vf_loadu(wr[0] + i), w1 = vf_loadu(wr[1] + i);
                for (int r = 0; r < n; r++) {
                    const vf xv = vf_loadu(x + (size_t)r * in + i);
                    acc[r][0] = vf_fmadd(xv, w0, acc[r][0]);
                    acc[r][1] = vf_fmadd(xv, w1, acc[r][1]);
                }
            }
            for (int r = 0; r < n; r++)
                for (int c = 0; c < nc; c++) {
                    float sum = vf_hsum(acc[r][c]);
                    for (int k = i; k < in; k++) sum += x[(size_t)r * in + k] * wr[c][k];
                    float *yo = t->y + (size_t)(r0 + r) * t->out + o + c;
                    *yo = (t->accumulate ? *yo : t->b[o + c]) + sum;
                }
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
