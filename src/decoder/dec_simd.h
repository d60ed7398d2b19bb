/*
 * dec_simd.h - the decoder's elementwise kernels (gates, cell, ELU,
 * softmax cross-entropy) and generation's small GEMM, written once and
 * compiled once per instruction set: included only by dec_generic.c,
 * dec_avx2.c and dec_avx512.c (built with -O3 and the ISA's flags, so GCC
 * vectorizes the loops at that width), each defining dec_kernels_<isa>
 * (dec_isa.h). decoder.c calls the table of the active path.
 */
#ifndef IMCAP_DEC_SIMD_H
#define IMCAP_DEC_SIMD_H

#include "dec_isa.h"
#include "simd.h"

#include <math.h>
#include <string.h>

/* e^x, x clamped to [-87, 88]: x = n ln2 + r with |r| <= ln2/2, e^r by
 * the Cephes degree-7 polynomial, 2^n built in the exponent bits. Relative
 * error about 2e-7. Branch-free and call-free so that loops calling it are
 * vectorized (at the width of the ISA this file is built for). */
static inline float exp_fast(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

/* tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error about 2e-7. */
static inline float tanh_fast(float x) { return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f); }

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

static void elu_forward(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = exp_fast(y[i]) - 1.0f;
        y[i] = y[i] > 0.0f ? y[i] : e;
    }
}

/* dy *= ELU'(x) written with the ELU output y: 1 if y > 0 else y + 1. */
static void elu_backward(float *dy, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) dy[i] *= y[i] > 0.0f ? 1.0f : y[i] + 1.0f;
}

/* One row: g [4H] holds the gate pre-activations (i, f, g, o) and receives
 * the activations; cp = c_{t-1}; out: cn = c_t, tc = tanh(c_t), h = h_t. */
static void lstm_cell_forward(int H, float *restrict g, const float *restrict cp, float *restrict cn,
                              float *restrict tc, float *restrict h)
{
    for (int k = 0; k < H; k++) {
        const float i_ = sigmoid_fast(g[k]), f_ = sigmoid_fast(g[H + k]), g_ = tanh_fast(g[2 * H + k]),
                    o_ = sigmoid_fast(g[3 * H + k]);
        g[k] = i_;
        g[H + k] = f_;
        g[2 * H + k] = g_;
        g[3 * H + k] = o_;
        const float cc = f_ * cp[k] + i_ * g_;
        const float th = tanh_fast(cc);
        cn[k] = cc;
        tc[k] = th;
        h[k] = o_ * th;
    }
}

/* Backward of one row: g [4H] holds the activations and receives d loss /
 * d pre-activations; dho = d loss / d h_t from the outputs; dhn, dcn hold
 * d h_t, d c_t from step t + 1 and receive (dhn: unchanged, the caller
 * recomputes it with a GEMM) dcn = d c_{t-1}. */
static void lstm_cell_backward(int H, float *restrict g, const float *restrict cp, const float *restrict tc,
                               const float *restrict dho, const float *restrict dhn, float *restrict dcn)
{
    for (int k = 0; k < H; k++) {
        const float i_ = g[k], f_ = g[H + k], g_ = g[2 * H + k], o_ = g[3 * H + k], th = tc[k];
        const float dh = dho[k] + dhn[k];
        const float dc = dcn[k] + dh * o_ * (1.0f - th * th);
        dcn[k] = dc * f_;
        g[k] = dc * g_ * i_ * (1.0f - i_);
        g[H + k] = dc * cp[k] * f_ * (1.0f - f_);
        g[2 * H + k] = dc * i_ * (1.0f - g_ * g_);
        g[3 * H + k] = dh * th * o_ * (1.0f - o_);
    }
}

/* Softmax cross-entropy of one row of logits, in place: returns the loss and
 * leaves scale * (softmax - onehot(target)) in the row. */
static double softmax_xent_row(float *restrict z, int n, int target, float scale)
{
    /* 8 lanes of partial max / sum so that the reductions vectorize */
    float lane[8];
    for (int l = 0; l < 8; l++) lane[l] = z[0];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) lane[l] = z[j + l] > lane[l] ? z[j + l] : lane[l];
    float mx = lane[0];
    for (int l = 1; l < 8; l++) mx = lane[l] > mx ? lane[l] : mx;
    for (; j < n; j++) mx = z[j] > mx ? z[j] : mx;
    const float zt = z[target];
    for (int l = 0; l < 8; l++) lane[l] = 0.0f;
    for (j = 0; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            float e = exp_fast(z[j + l] - mx);
            z[j + l] = e;
            lane[l] += e;
        }
    float sum = 0.0f;
    for (; j < n; j++) {
        float e = exp_fast(z[j] - mx);
        z[j] = e;
        sum += e;
    }
    for (int l = 0; l < 8; l++) sum += lane[l];
    const float inv = scale / sum;
    for (j = 0; j < n; j++) z[j] *= inv;
    z[target] -= scale;
    return log((double)sum) - (double)(zt - mx);
}

const dec_kernels SIMD_NAME(dec_kernels) = {
    .small_nt_task = small_nt_task,
    .elu_forward = elu_forward,
    .elu_backward = elu_backward,
    .lstm_cell_forward = lstm_cell_forward,
    .lstm_cell_backward = lstm_cell_backward,
    .softmax_xent_row = softmax_xent_row,
};

#endif
