/*
 * dec_kernels.h - the numeric pieces every decoder architecture shares
 * (recipe.c, attention.c): initialisers, fast elementwise functions, dense
 * layers through OpenBLAS and the small-row GEMM of generation, the LSTM
 * cell forward/backward, the dropout mask hash and the softmax
 * cross-entropy row.
 *
 * The elementwise loops (k_*) are compiled per instruction set by
 * dec_simd.h (dec_generic.c, dec_avx2.c, dec_avx512.c) together with the
 * small-row GEMM; elu_forward, lstm_cell_forward, small_nt, ... call the
 * table of the active path (dec_isa.h, chosen by cpu.h).
 */
#ifndef IMCAP_DEC_KERNELS_H
#define IMCAP_DEC_KERNELS_H

#include "dec_isa.h"
#include "decoder.h"
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline void init_uniform(float *w, size_t n, double a, imcap_rng *rng)
{
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * imcap_rng_uniform(rng) - 1.0) * a);
}

static inline void init_glorot(float *w, int rows, int cols, imcap_rng *rng)
{
    init_uniform(w, (size_t)rows * cols, sqrt(6.0 / (rows + cols)), rng);
}

/* w [rows][cols], rows >= cols: normal entries, then modified Gram-Schmidt
 * on the columns (in double) so that the columns are orthonormal. */
static inline void init_orthogonal(float *w, int rows, int cols, imcap_rng *rng)
{
    double *a = malloc(sizeof(double) * (size_t)rows * cols);
    if (!a) {
        init_glorot(w, rows, cols, rng);
        return;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) a[i] = imcap_rng_normal(rng);
    for (int j = 0; j < cols; j++) {
        for (int k = 0; k < j; k++) {
            double d = 0;
            for (int r = 0; r < rows; r++) d += a[(size_t)r * cols + j] * a[(size_t)r * cols + k];
            for (int r = 0; r < rows; r++) a[(size_t)r * cols + j] -= d * a[(size_t)r * cols + k];
        }
        double n = 0;
        for (int r = 0; r < rows; r++) n += a[(size_t)r * cols + j] * a[(size_t)r * cols + j];
        n = n > 0 ? 1.0 / sqrt(n) : 0.0;
        for (int r = 0; r < rows; r++) a[(size_t)r * cols + j] *= n;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)a[i];
    free(a);
}

/* ------------------------------------------------------------ elementwise */

/* e^x, x clamped to [-87, 88]: x = n ln2 + r with |r| <= ln2/2, e^r by
 * the Cephes degree-7 polynomial, 2^n built in the exponent bits. Relative
 * error about 2e-7. Branch-free and call-free so that loops calling it are
 * vectorized (at the width of the ISA dec_simd.h is compiled for). */
static inline float exp_fast(float x_in)
{
    /* Clamped so that every input, NaN included, stays in range for the
     * float-to-int conversion and the shift below; NaN is returned as NaN. */
    float x = x_in > -87.0f ? x_in : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x_in == x_in ? p * scale : x_in;
}

static inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

/* tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error about 2e-7. */
static inline float tanh_fast(float x) { return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f); }

/* y = x W^T + b for x [n][in], W [out][in], b [out] -> y [n][out]. */
static inline void dense_forward(const float *x, const float *w, const float *b, int n, int in, int out, float *y)
{
    for (int r = 0; r < n; r++) memcpy(y + (size_t)r * out, b, sizeof(float) * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

/* Generation's small GEMM (dec_isa.h), the output features split over the
 * worker threads. */
static inline void small_nt(const float *x, int n, const float *w, const float *b, int in, int out, float *y,
                            bool accumulate)
{
    dec_small_ctx t = {x, w, b, y, n, in, out, accumulate};
    ops_parallel((size_t)out, 64, dec_kernels_active()->small_nt_task, &t);
}

/* Given dy [n][out] and the layer input x [n][in]: dW += dy^T x, db += colsum
 * dy, and dx = dy W (if dx). */
static inline void dense_backward(const float *dy, const float *x, const float *w, int n, int in, int out, float *dw,
                           float *db, float *dx)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    for (int r = 0; r < n; r++) {
        const float *d = dy + (size_t)r * out;
        for (int j = 0; j < out; j++) db[j] += d[j];
    }
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

static inline void k_elu_forward(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = exp_fast(y[i]) - 1.0f;
        y[i] = y[i] > 0.0f ? y[i] : e;
    }
}

/* dy *= ELU'(x) written with the ELU output y: 1 if y > 0 else y + 1. */
static inline void k_elu_backward(float *dy, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) dy[i] *= y[i] > 0.0f ? 1.0f : y[i] + 1.0f;
}
/* Dropout factor of unit j of the packed row keyed rid: 0 (dropped, with
 * probability p) or 1 / (1 - p), from a hash of (seed, rid, j), so a mask
 * depends on neither the packing nor the thread count. */
static inline float drop_factor(uint64_t seed, uint32_t rid, int j, float p)
{
    uint64_t z = seed + (((uint64_t)rid << 20 | (uint64_t)j) + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * 0x1p-24f < p ? 0.0f : 1.0f / (1.0f - p);
}

/* ---------------------------------------------------------------- LSTM cell */

/* One row: g [4H] holds the gate pre-activations (i, f, g, o) and receives
 * the activations; cp = c_{t-1}; out: cn = c_t, tc = tanh(c_t), h = h_t. */
static inline void k_lstm_cell_forward(int H, float *restrict g, const float *restrict cp, float *restrict cn,
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
static inline void k_lstm_cell_backward(int H, float *restrict g, const float *restrict cp, const float *restrict tc,
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
static inline double k_softmax_xent_row(float *restrict z, int n, int target, float scale)
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

/* The loops above on the active path. */
static inline void elu_forward(float *y, size_t n) { dec_kernels_active()->elu_forward(y, n); }
static inline void elu_backward(float *dy, const float *y, size_t n) { dec_kernels_active()->elu_backward(dy, y, n); }
static inline void lstm_cell_forward(int H, float *restrict g, const float *restrict cp, float *restrict cn,
                                     float *restrict tc, float *restrict h)
{
    dec_kernels_active()->lstm_cell_forward(H, g, cp, cn, tc, h);
}
static inline void lstm_cell_backward(int H, float *restrict g, const float *restrict cp, const float *restrict tc,
                                      const float *restrict dho, const float *restrict dhn, float *restrict dcn)
{
    dec_kernels_active()->lstm_cell_backward(H, g, cp, tc, dho, dhn, dcn);
}
static inline double softmax_xent_row(float *restrict z, int n, int target, float scale)
{
    return dec_kernels_active()->softmax_xent_row(z, n, target, scale);
}

#endif
