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

static void att_tanh_back(int A, float de, const float *restrict p, const float *restrict q,
                          const float *restrict v, float *restrict dp, float *restrict dq, float *restrict dv)
{
    for (int u = 0; u < A; u++) {
        const float th = tanh_fast(p[u] + q[u]);
        dv[u] += de * th;
        const float d = de * v[u] * (1.0f - th * th);
        dq[u] += d;
        dp[u] += d;
    }
}

static void att_axpy(int n, float w, const float *restrict x, float *restrict y)
{
    for (int u = 0; u < n; u++) y[u] += w * x[u];
}

static float att_score(int A, const float *restrict p, const float *restrict q, const float *restrict v)
{
    vf acc = vf_zero();
    int k = 0;
    for (; k + SIMD_W <= A; k += SIMD_W) {
        float t[SIMD_W];
        for (int j = 0; j < SIMD_W; j++) t[j] = tanh_fast(p[k + j] + q[k + j]);
        acc = vf_fmadd(vf_loadu(v + k), vf_loadu(t), acc);
    }
    float e = vf_hsum(acc);
    for (; k < A; k++) e += v[k] * tanh_fast(p[k] + q[k]);
    return e;
}

static void att_forward_row(int L, int A, int D, const float *P, const float *q, const float *v, const float *a,
                            float *alpha, float *z)
{
    float mx = -INFINITY;
    for (int i = 0; i < L; i++) {
        const float e = att_score(A, P + (size_t)i * A, q, v);
        alpha[i] = e;
        mx = e > mx ? e : mx;
    }
    float s = 0.0f;
    for (int i = 0; i < L; i++) s += (alpha[i] = exp_fast(alpha[i] - mx));
    const float inv = 1.0f / s;
    memset(z, 0, sizeof(float) * D);
    for (int i = 0; i < L; i++) att_axpy(D, alpha[i] *= inv, a + (size_t)i * D, z);
}

static void att_backward_row(const dec_att_row *r)
{
    const int L = r->L, D = r->D, A = r->A;
    float dal[4096], dot = 0.0f;
    for (int i = 0; i < L; i++) {
        const float *ai = r->a + (size_t)i * D;
        vf acc = vf_zero();
        int u = 0;
        for (; u + SIMD_W <= D; u += SIMD_W) acc = vf_fmadd(vf_loadu(ai + u), vf_loadu(r->dz + u), acc);
        float sum = vf_hsum(acc);
        for (; u < D; u++) sum += ai[u] * r->dz[u];
        sum += -2.0f * r->reg * (1.0f - r->S[i]);
        dal[i] = sum;
        dot += r->al[i] * sum;
        att_axpy(D, r->al[i], r->dz, r->da + (size_t)i * D);
    }
    memset(r->dq, 0, sizeof(float) * A);
    for (int i = 0; i < L; i++)
        att_tanh_back(A, r->al[i] * (dal[i] - dot), r->P + (size_t)i * A, r->q, r->v, r->dP + (size_t)i * A, r->dq,
                      r->dv);
}

const dec_kernels SIMD_NAME(dec_kernels) = {
    .att_forward_row = att_forward_row,
    .att_backward_row = att_backward_row,
    .small_nt_task = small_nt_task,
    .elu_forward = k_elu_forward,
    .elu_backward = k_elu_backward,
    .lstm_cell_forward = k_lstm_cell_forward,
    .lstm_cell_backward = k_lstm_cell_backward,
    .softmax_xent_row = k_softmax_xent_row,
};

#endif
