/*
 * dec_isa.h - the decoder kernels of one instruction set (dec_simd.h,
 * compiled per ISA) as a table; decoder.c calls the active one (cpu.h).
 */
#ifndef IMCAP_DEC_ISA_H
#define IMCAP_DEC_ISA_H

#include "cpu.h"

#include <stddef.h>

/* Generation's GEMMs have few rows (beam hypotheses; SCST's rollouts: a
 * few hundred) and are bound by reading W: for few rows OpenBLAS repacks W
 * on every call, which cost more than the arithmetic. small_nt_task reads
 * each row of W once for every DEC_SMALL_ROWS rows of x, DEC_SMALL_COLS rows
 * of W at a time, over the output features [o0, o1) (split over the worker
 * threads by the caller); each output is the same sum whatever n is (on a
 * given path): y [n][out] = (accumulate ? y : b) + x [n][in] W^T. */
enum { DEC_SMALL_ROWS = 6, DEC_SMALL_COLS = 2 };

typedef struct dec_small_ctx {
    const float *x, *w, *b;
    float *y;
    int n, in, out;
    bool accumulate;
} dec_small_ctx;

/* One packed row of the attention decoder's backward (attention.c): from
 * dz = d context [D], the row's weights al [L], its regions a [L][D], the
 * column sums S [L] of its alphas and the regulariser's weight reg:
 *   d alpha_i = a_i . dz - 2 reg (1 - S_i), through the softmax to d e_i;
 *   da_i += alpha_i dz;  then through e_i = v . tanh(P_i + q):
 *   dP_i += d e_i v (1 - th^2),  dq = sum_i of the same (overwritten),
 *   dv += sum_i d e_i th. */
typedef struct dec_att_row {
    int L, D, A;
    const float *a, *dz, *al, *S, *P, *q, *v;
    float reg;
    float *da, *dP, *dq, *dv;
} dec_att_row;

typedef struct dec_kernels {
    /* One row's attention: P [L][A], q [A], v [A], a [L][D] -> alpha [L]
     * = softmax_i(v . tanh(P_i + q)) and z [D] = sum_i alpha_i a_i. */
    void (*att_forward_row)(int L, int A, int D, const float *P, const float *q, const float *v, const float *a,
                            float *alpha, float *z);
    void (*att_backward_row)(const dec_att_row *r);
    void (*small_nt_task)(void *ctx, size_t o0, size_t o1, int tid); /* ctx: a dec_small_ctx */
    /* y = ELU(y) in place; dy *= ELU'(x) given the ELU output y */
    void (*elu_forward)(float *y, size_t n);
    void (*elu_backward)(float *dy, const float *y, size_t n);
    /* One LSTM row forward / backward (see dec_kernels.h) */
    void (*lstm_cell_forward)(int H, float *restrict g, const float *restrict cp, float *restrict cn,
                              float *restrict tc, float *restrict h);
    void (*lstm_cell_backward)(int H, float *restrict g, const float *restrict cp, const float *restrict tc,
                               const float *restrict dho, const float *restrict dhn, float *restrict dcn);
    /* Softmax cross-entropy of one row in place; returns the loss */
    double (*softmax_xent_row)(float *restrict z, int n, int target, float scale);
} dec_kernels;

extern const dec_kernels dec_kernels_generic, dec_kernels_avx2, dec_kernels_avx512;

const dec_kernels *dec_kernels_active(void);

#endif
