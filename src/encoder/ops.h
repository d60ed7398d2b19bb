/*
 * ops.h - float NHWC kernels of the encoder graph (graph.c calls them).
 * Every kernel works on a batch of n images laid out [n][h][w][c]; shapes
 * are checked by graph.c before a kernel is called. Kernels split their work
 * over the library's worker threads (ops_parallel).
 */
#ifndef IMCAP_OPS_H
#define IMCAP_OPS_H

#include "graph.h"

/* Geometry of a windowed op (conv, depthwise conv, pool). */
typedef struct ops_win {
    int n, h, w, c;       /* input batch */
    int oh, ow, oc;       /* output per image */
    int kh, kw, sh, sw;   /* window and strides */
    int pt, pl;           /* padding before (top, left); the rest is implied */
    int mult;             /* depthwise channel multiplier (oc = c * mult) */
} ops_win;

/* Weights w[k][n] of a convolution (k = kh*kw*c) or dense layer in the
 * layout our GEMM reads (16-column panels, k x 16 each, zero padded):
 * ops_packed_floats(k, n) floats, 32-byte aligned (imcap_alloc), packed
 * once per model by the graph. */
size_t ops_packed_floats(int k, int n);
void ops_pack_weights(int k, int n, const float *w, float *wp);
/* True when IMCAP_GEMM=openblas selects OpenBLAS (which reads w, not wp). */
bool ops_gemm_is_openblas(void);

/* Scratch floats ops_conv2d needs for this geometry (0 for 1x1 stride-1
 * unpadded convolutions, which multiply the input directly): im2col blocks
 * bounded in size, whatever the batch. */
size_t ops_conv2d_scratch(const ops_win *g);
/* Winograd F(4x4, 3x3) for this convolution: 3x3, stride 1, at least 16
 * input and output channels and 256 output pixels, our GEMM, and not
 * switched off with IMCAP_WINOGRAD=0. Its weights w[3][3][c][oc] are
 * transformed and packed once: ops_winograd_floats(c, oc) floats. */
bool ops_winograd_ok(const ops_win *g);
size_t ops_winograd_floats(int c, int oc);
void ops_winograd_pack(int c, int oc, const float *w, float *wu);
/* y[n][oh][ow][oc] = act(conv(x, w[kh][kw][c][oc]) + b); b may be NULL;
 * wp: w packed by ops_pack_weights (needed unless ops_gemm_is_openblas());
 * wu: w packed by ops_winograd_pack where ops_winograd_ok(g), else NULL. */
void ops_conv2d(const ops_win *g, const float *x, const float *w, const float *wp, const float *wu, const float *b,
                enc_act act, float *y, float *scratch);
/* Depthwise: output channel o = ci*mult + m reads input channel ci;
 * w[kh][kw][c*mult], b[c*mult] or NULL. */
void ops_dwconv2d(const ops_win *g, const float *x, const float *w, const float *b, enc_act act,
                  float *y);
/* Average pool (padded cells excluded from the count) or max pool
 * (padded cells ignored). */
void ops_avgpool(const ops_win *g, const float *x, float *y);
void ops_maxpool(const ops_win *g, const float *x, float *y);
/* Zero padding: y[n][oh][ow][c] holds x[n][h][w][c] at row top, column
 * left, zeros around it (oh >= h + top, ow >= w + left). */
void ops_pad(int n, int h, int w, int c, int top, int left, int oh, int ow, const float *x, float *y);
/* y[n][c] = mean over hw of x[n][hw][c]. */
void ops_gap(int n, int hw, int c, const float *x, float *y);
/* y[m][cout] = act(x[m][cin] w[cin][cout] + b); wp as for ops_conv2d. */
void ops_dense(int m, int cin, int cout, const float *x, const float *w, const float *wp, const float *b,
               enc_act act, float *y);
/* y = a + b elementwise (count floats). */
void ops_add(size_t count, const float *a, const float *b, float *y);
/* y[m][c] = x[m][c] * w[c] + b[c] (b may be NULL). */
void ops_affine(size_t m, int c, const float *x, const float *w, const float *b, float *y);
/* In place: y[m][c] = act(y[m][c] + b[c]); b may be NULL. */
void ops_bias_act(size_t m, int c, const float *b, enc_act act, float *y);
/* Softmax over the last dimension of x[m][c]. */
void ops_softmax(size_t m, int c, const float *x, float *y);
/* y[m][cx[0] + .. + cx[n-1]] = the rows of x[0][m][cx[0]] .. x[n-1] side by side. */
void ops_concat(size_t m, int n, const float *const *x, const int *cx, float *y);

/* Runs fn(ctx, begin, end, tid) over [0, n) split into contiguous ranges of
 * at least min_chunk items on the worker threads (the caller takes a share;
 * tid in [0, ops_threads()) names the thread, for per-thread scratch). Runs
 * inline (tid 0) when the workers are busy with another caller's job, so
 * concurrent callers never oversubscribe the cores. */
typedef void (*ops_range_fn)(void *ctx, size_t begin, size_t end, int tid);
void ops_parallel(size_t n, size_t min_chunk, ops_range_fn fn, void *ctx);
/* Number of threads ops_parallel uses (env IMCAP_THREADS, else online CPUs, at most 16). */
int ops_threads(void);
/* GEMMs run single-threaded inside OpenBLAS, split over our threads: call
 * ops_blas_enter() before a run's kernels and ops_blas_leave() after
 * (nested/concurrent runs are counted; the previous OpenBLAS thread count
 * is restored when the last run leaves). */
void ops_blas_enter(void);
void ops_blas_leave(void);

#endif
