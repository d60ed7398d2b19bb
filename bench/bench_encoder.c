/*
 * bench_encoder.c - images/s of the C encoder at given batch sizes, and the
 * network's FLOPs, so scripts/bench-encoder.sh can put it next to the peers
 * (PyTorch, ONNX Runtime) running the same encoder file.
 *
 *   bench_encoder --model enc.gguf [--batch 1,8] [--seconds 5] [--output embedding]
 *   bench_encoder --synth mobilenet_v2|inception_v3 --save enc.gguf
 *   bench_encoder --peak      (single-precision FMA peak of this machine, all threads, active ISA)
 *   bench_encoder --peak-int8 (int8 multiply-accumulates/s of the int8 kernels' instruction:
 *                              vpdpbusd on the avx512-vnni path, vpmaddwd + vpaddd on avx2)
 *   --precision int8|float|bf16|auto runs a quantized encoder's int8 program, its float graph or its bf16 GEMMs
 *
 * --synth builds the architecture with random weights (used until the real
 * converted encoders exist, and for the peers' comparison any encoder file
 * does: they read the same file). Output: one line per batch size,
 * "batch N: X images/s (Y ms/batch), Z GFLOP/s".
 */
#define _GNU_SOURCE
#include "cpu.h"
#include "graph.h"
#include "ops.h"
#include "qgraph.h"
#include "qops.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static imcap_rng g_rng;

static int param(enc_graph *g, const char *name, int nd, const int *shape, float scale)
{
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    float *d = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) d[i] = (float)(imcap_rng_normal(&g_rng) * scale);
    int id = enc_graph_add_param(g, name, nd, shape, d);
    free(d);
    return id;
}

static int conv(enc_graph *g, int in, int kh, int kw, int cout, int s, enc_pad pad, enc_act act, const char *name)
{
    const enc_value *v = enc_graph_value(g, in);
    int ws[4] = {kh, kw, v->c, cout};
    char pn[ENC_NAME_LEN];
    snprintf(pn, sizeof pn, "%s/w", name);
    int w = param(g, pn, 4, ws, (float)(1.4 / sqrt((double)kh * kw * v->c)));
    snprintf(pn, sizeof pn, "%s/b", name);
    int b = param(g, pn, 1, &cout, 0.05f);
    enc_node nd = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .sh = s, .sw = s, .pad = pad, .act = act,
                   .weight = w, .bias = b};
    snprintf(nd.name, sizeof nd.name, "%s", name);
    return enc_graph_add_node(g, &nd, name);
}

static int dwconv(enc_graph *g, int in, int k, int s, enc_act act, const char *name)
{
    int c = enc_graph_value(g, in)->c;
    int ws[3] = {k, k, c};
    char pn[ENC_NAME_LEN];
    snprintf(pn, sizeof pn, "%s/w", name);
    int w = param(g, pn, 3, ws, (float)(1.4 / k));
    snprintf(pn, sizeof pn, "%s/b", name);
    int b = param(g, pn, 1, &c, 0.05f);
    enc_node nd = {.op = ENC_DWCONV2D, .n_inputs = 1, .inputs = {in}, .sh = s, .sw = s, .pad = ENC_PAD_SAME,
                   .act = act, .weight = w, .bias = b};
    snprintf(nd.name, sizeof nd.name, "%s", name);
    return enc_graph_add_node(g, &nd, name);
}

static int simple(enc_graph *g, enc_op op, int n, const int *ins, int k, int s, enc_pad pad, const char *name)
{
    enc_node nd = {.op = op, .n_inputs = n, .kh = k, .kw = k, .sh = s, .sw = s, .pad = pad, .weight = -1, .bias = -1};
    for (int i = 0; i < n; i++) nd.inputs[i] = ins[i];
    snprintf(nd.name, sizeof nd.name, "%s", name);
    return enc_graph_add_node(g, &nd, name);
}

static int head(enc_graph *g, int x, int classes)
{
    int gap = simple(g, ENC_GAP, 1, &x, 0, 0, ENC_PAD_VALID, "gap");
    enc_graph_set_output(g, "embedding", gap);
    int c = enc_graph_value(g, gap)->c, ws[2] = {c, classes};
    int w = param(g, "logits/w", 2, ws, (float)(1.0 / sqrt(c)));
    int b = param(g, "logits/b", 1, &classes, 0.01f);
    enc_node nd = {.op = ENC_DENSE, .n_inputs = 1, .inputs = {gap}, .weight = w, .bias = b, .name = "logits"};
    int lg = enc_graph_add_node(g, &nd, "logits");
    enc_graph_set_output(g, "logits", lg);
    int pr = simple(g, ENC_SOFTMAX, 1, &lg, 0, 0, ENC_PAD_VALID, "probs");
    enc_graph_set_output(g, "probs", pr);
    return pr;
}

static enc_graph *synth_mobilenet_v2(void)
{
    enc_graph *g = enc_graph_new("mobilenet_v2_synthetic");
    int x = enc_graph_add_input(g, "input", 224, 224, 3);
    x = conv(g, x, 3, 3, 32, 2, ENC_PAD_SAME, ENC_ACT_RELU6, "stem");
    static const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                  {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int blk = 0;
    for (int i = 0; i < 7; i++)
        for (int r = 0; r < cfg[i][2]; r++, blk++) {
            int s = r == 0 ? cfg[i][3] : 1, cin = enc_graph_value(g, x)->c, y = x;
            char nm[64];
            if (cfg[i][0] != 1) {
                snprintf(nm, sizeof nm, "b%d/expand", blk);
                y = conv(g, y, 1, 1, cin * cfg[i][0], 1, ENC_PAD_SAME, ENC_ACT_RELU6, nm);
            }
            snprintf(nm, sizeof nm, "b%d/dw", blk);
            y = dwconv(g, y, 3, s, ENC_ACT_RELU6, nm);
            snprintf(nm, sizeof nm, "b%d/project", blk);
            y = conv(g, y, 1, 1, cfg[i][1], 1, ENC_PAD_SAME, ENC_ACT_NONE, nm);
            if (s == 1 && cin == cfg[i][1]) {
                int ins[2] = {x, y};
                snprintf(nm, sizeof nm, "b%d/add", blk);
                y = simple(g, ENC_ADD, 2, ins, 0, 0, ENC_PAD_VALID, nm);
            }
            x = y;
        }
    x = conv(g, x, 1, 1, 1280, 1, ENC_PAD_SAME, ENC_ACT_RELU6, "last");
    head(g, x, 1001);
    enc_preproc pre = {224, 224, {2, 2, 2}, {-1, -1, -1}};
    enc_graph_set_preproc(g, &pre);
    return g;
}

/* Conv + ReLU, the InceptionV3 building block (batch norm folded in). */
static int cbr(enc_graph *g, int x, int kh, int kw, int c, int s, enc_pad pad, const char *name)
{
    return conv(g, x, kh, kw, c, s, pad, ENC_ACT_RELU, name);
}

static int cat(enc_graph *g, int n, const int *ins, const char *name)
{
    return simple(g, ENC_CONCAT, n, ins, 0, 0, ENC_PAD_VALID, name);
}

static enc_graph *synth_inception_v3(void)
{
    enc_graph *g = enc_graph_new("inception_v3_synthetic");
    int x = enc_graph_add_input(g, "input", 299, 299, 3);
    char n[64];
    int k = 0;
#define NM (snprintf(n, sizeof n, "conv%d", k++), n)
    x = cbr(g, x, 3, 3, 32, 2, ENC_PAD_VALID, NM);
    x = cbr(g, x, 3, 3, 32, 1, ENC_PAD_VALID, NM);
    x = cbr(g, x, 3, 3, 64, 1, ENC_PAD_SAME, NM);
    x = simple(g, ENC_MAXPOOL, 1, &x, 3, 2, ENC_PAD_VALID, "pool0");
    x = cbr(g, x, 1, 1, 80, 1, ENC_PAD_VALID, NM);
    x = cbr(g, x, 3, 3, 192, 1, ENC_PAD_VALID, NM);
    x = simple(g, ENC_MAXPOOL, 1, &x, 3, 2, ENC_PAD_VALID, "pool1");
    static const int pf[3] = {32, 64, 64};
    for (int m = 0; m < 3; m++) {
        int b[4];
        b[0] = cbr(g, x, 1, 1, 64, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, x, 1, 1, 48, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, b[1], 5, 5, 64, 1, ENC_PAD_SAME, NM);
        int t = cbr(g, x, 1, 1, 64, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 3, 3, 96, 1, ENC_PAD_SAME, NM);
        b[2] = cbr(g, t, 3, 3, 96, 1, ENC_PAD_SAME, NM);
        t = simple(g, ENC_AVGPOOL, 1, &x, 3, 1, ENC_PAD_SAME, NM);
        b[3] = cbr(g, t, 1, 1, pf[m], 1, ENC_PAD_SAME, NM);
        snprintf(n, sizeof n, "mixed%d", m);
        x = cat(g, 4, b, n);
    }
    {
        int b[3];
        b[0] = cbr(g, x, 3, 3, 384, 2, ENC_PAD_VALID, NM);
        int t = cbr(g, x, 1, 1, 64, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 3, 3, 96, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, t, 3, 3, 96, 2, ENC_PAD_VALID, NM);
        b[2] = simple(g, ENC_MAXPOOL, 1, &x, 3, 2, ENC_PAD_VALID, "pool3");
        x = cat(g, 3, b, "mixed3");
    }
    static const int c7s[4] = {128, 160, 160, 192};
    for (int m = 0; m < 4; m++) {
        int c7 = c7s[m], b[4];
        b[0] = cbr(g, x, 1, 1, 192, 1, ENC_PAD_SAME, NM);
        int t = cbr(g, x, 1, 1, c7, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 1, 7, c7, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, t, 7, 1, 192, 1, ENC_PAD_SAME, NM);
        t = cbr(g, x, 1, 1, c7, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 7, 1, c7, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 1, 7, c7, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 7, 1, c7, 1, ENC_PAD_SAME, NM);
        b[2] = cbr(g, t, 1, 7, 192, 1, ENC_PAD_SAME, NM);
        t = simple(g, ENC_AVGPOOL, 1, &x, 3, 1, ENC_PAD_SAME, NM);
        b[3] = cbr(g, t, 1, 1, 192, 1, ENC_PAD_SAME, NM);
        snprintf(n, sizeof n, "mixed%d", 4 + m);
        x = cat(g, 4, b, n);
        if (m == 1) {
            int p = simple(g, ENC_GAP, 1, &x, 0, 0, ENC_PAD_VALID, "mixed5_pool");
            enc_graph_set_output(g, "mixed5", p);
        }
    }
    {
        int b[3];
        int t = cbr(g, x, 1, 1, 192, 1, ENC_PAD_SAME, NM);
        b[0] = cbr(g, t, 3, 3, 320, 2, ENC_PAD_VALID, NM);
        t = cbr(g, x, 1, 1, 192, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 1, 7, 192, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 7, 1, 192, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, t, 3, 3, 192, 2, ENC_PAD_VALID, NM);
        b[2] = simple(g, ENC_MAXPOOL, 1, &x, 3, 2, ENC_PAD_VALID, "pool8");
        x = cat(g, 3, b, "mixed8");
    }
    for (int m = 0; m < 2; m++) {
        int b[6];
        b[0] = cbr(g, x, 1, 1, 320, 1, ENC_PAD_SAME, NM);
        int t = cbr(g, x, 1, 1, 384, 1, ENC_PAD_SAME, NM);
        b[1] = cbr(g, t, 1, 3, 384, 1, ENC_PAD_SAME, NM);
        b[2] = cbr(g, t, 3, 1, 384, 1, ENC_PAD_SAME, NM);
        t = cbr(g, x, 1, 1, 448, 1, ENC_PAD_SAME, NM);
        t = cbr(g, t, 3, 3, 384, 1, ENC_PAD_SAME, NM);
        b[3] = cbr(g, t, 1, 3, 384, 1, ENC_PAD_SAME, NM);
        b[4] = cbr(g, t, 3, 1, 384, 1, ENC_PAD_SAME, NM);
        t = simple(g, ENC_AVGPOOL, 1, &x, 3, 1, ENC_PAD_SAME, NM);
        b[5] = cbr(g, t, 1, 1, 192, 1, ENC_PAD_SAME, NM);
        snprintf(n, sizeof n, "mixed%d", 9 + m);
        x = cat(g, 6, b, n);
    }
#undef NM
    head(g, x, 5);
    enc_preproc pre = {299, 299, {2, 2, 2}, {-1, -1, -1}};
    enc_graph_set_preproc(g, &pre);
    return g;
}

/* Multiply-adds x2 of the nodes needed for value `out` (every node, here). */
static double graph_flops(const enc_graph *g)
{
    double f = 0;
    for (int i = 0; i < enc_graph_n_nodes(g); i++) {
        const enc_node *nd = enc_graph_node(g, i);
        const enc_value *x = enc_graph_value(g, nd->inputs[0]), *y = enc_graph_value(g, nd->output);
        double pix = (double)y->h * y->w;
        switch (nd->op) {
        case ENC_CONV2D: f += 2.0 * pix * nd->kh * nd->kw * x->c * y->c; break;
        case ENC_DWCONV2D: f += 2.0 * pix * nd->kh * nd->kw * y->c; break;
        case ENC_DENSE: f += 2.0 * pix * x->c * y->c; break;
        default: break;
        }
    }
    return f;
}

/* ---- FMA peak of the active ISA (cpu.h): 12 independent accumulator chains
 * per thread (enough to cover FMA latency x throughput), kept in registers;
 * one body per vector width, compiled for that ISA with a target attribute.
 * Timed in thread CPU time, so other processes on a shared machine do not
 * lower it: the sum over threads is cores x one core's peak. ---- */
static double thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define PEAK_BODY(T, SET1, FMA, ADD, W)                                                                           \
    T m = SET1(0.999999f), c = SET1(1e-7f);                                                                       \
    T a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4), a5 = SET1(5);                         \
    T a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);                     \
    long iters = 50000000L * 8 / (W);                                                                             \
    double t0 = thread_cpu_now();                                                                                 \
    for (long it = 0; it < iters; it++) {                                                                         \
        a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);                           \
        a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);                           \
        a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c);                       \
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));                       \
    }                                                                                                             \
    double t = thread_cpu_now() - t0;                                                                             \
    T s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                                      \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                                                  \
    float v[W];                                                                                                   \
    memcpy(v, &s, sizeof v);                                                                                      \
    out[0] = (double)iters * 12 * (W) * 2 / t;                                                                    \
    out[1] = v[0];

#define SSE_FMA(a, b, c) _mm_add_ps(_mm_mul_ps(a, b), c)
static void peak_generic(double *out) { PEAK_BODY(__m128, _mm_set1_ps, SSE_FMA, _mm_add_ps, 4) }
__attribute__((target("avx2,fma"))) static void peak_avx2(double *out)
{
    PEAK_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8)
}
__attribute__((target("avx512f"))) static void peak_avx512(double *out)
{
    PEAK_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16)
}

/* int8: 12 chains of the int8 GEMM's multiply-accumulate instruction. */
#define PEAK_I8_BODY(T, SET1, MAC, MACS)                                                                          \
    T x = SET1(0x01020304), y = SET1(0x01010101);                                                                 \
    T a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4), a5 = SET1(5);                         \
    T a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);                     \
    long iters = 50000000L;                                                                                       \
    double t0 = thread_cpu_now();                                                                                 \
    for (long it = 0; it < iters; it++) {                                                                         \
        a0 = MAC(a0, x, y), a1 = MAC(a1, x, y), a2 = MAC(a2, x, y), a3 = MAC(a3, x, y);                           \
        a4 = MAC(a4, x, y), a5 = MAC(a5, x, y), a6 = MAC(a6, x, y), a7 = MAC(a7, x, y);                           \
        a8 = MAC(a8, x, y), a9 = MAC(a9, x, y), a10 = MAC(a10, x, y), a11 = MAC(a11, x, y);                       \
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));                       \
        __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                     \
    }                                                                                                             \
    double t = thread_cpu_now() - t0;                                                                             \
    int32_t v[sizeof(T) / 4];                                                                                     \
    memcpy(v, &a0, sizeof v);                                                                                     \
    out[0] = (double)iters * 12 * (MACS) / t;                                                                     \
    out[1] = v[0] + v[1];

#define AVX2_MAC(a, x, y) _mm256_add_epi32(a, _mm256_madd_epi16(x, y))
__attribute__((target("avx2"))) static void peak_i8_avx2(double *out)
{
    PEAK_I8_BODY(__m256i, _mm256_set1_epi32, AVX2_MAC, 16)
}
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void peak_i8_vnni(double *out)
{
    PEAK_I8_BODY(__m512i, _mm512_set1_epi32, _mm512_dpbusd_epi32, 64)
}

static void *peak_i8_thread(void *arg)
{
    const char *k = q_kernels_active()->name;
    if (!strcmp(k, "avx512-vnni")) peak_i8_vnni(arg);
    else if (!strcmp(k, "avx2")) peak_i8_avx2(arg);
    else ((double *)arg)[0] = 0;
    return NULL;
}

/* Runs fn on ops_threads() threads at once; the sum of their rates. */
static double on_all_threads(void *(*fn)(void *))
{
    int nt = ops_threads();
    pthread_t th[16];
    double res[16][2];
    for (int i = 0; i < nt; i++) pthread_create(&th[i], NULL, fn, res[i]);
    double total = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        total += res[i][0];
    }
    return total;
}

static int peak_int8(void)
{
    int nt = ops_threads();
    double total = on_all_threads(peak_i8_thread);
    printf("int8 peak: %.1f GMAC/s (%d threads x %s int8 kernels' multiply-accumulate, thread CPU time)\n", total / 1e9, nt,
           q_kernels_active()->name);
    return 0;
}

static void *peak_thread(void *arg)
{
    switch (cpu_isa_active()) {
    case CPU_AVX512: peak_avx512(arg); break;
    case CPU_AVX2: peak_avx2(arg); break;
    default: peak_generic(arg); break;
    }
    return NULL;
}

static int peak(void)
{
    int nt = ops_threads();
    double total = on_all_threads(peak_thread);
    printf("peak: %.1f GFLOP/s single precision (%d threads x %s FMA, thread CPU time)\n", total / 1e9, nt, cpu_isa_name(cpu_isa_active()));
    return 0;
}

/* --profile: time per op kind (and per conv shape class), summed over runs. */
static double g_prof[16][3]; /* [op][0] seconds, [1] flops, [2] count; conv split: 11 = 1x1, 12 = kxk */
enum { PROF_NODES = 1024 };
static double g_node_prof[PROF_NODES][2]; /* per node: seconds, flops */

/* --cpu: attribute this thread's CPU time between callbacks to the node
 * (with IMCAP_THREADS=1 all work runs on the calling thread): a measure that
 * other processes on a busy machine do not distort as much as wall time. */
static int g_cpu_mode;
static double g_cpu_last;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void prof_cb(void *user, const enc_graph *g, int node, int batch, double sec)
{
    if (g_cpu_mode) {
        double now = thread_cpu();
        sec = now - g_cpu_last;
        g_cpu_last = now;
    }
    const enc_node *nd = enc_graph_node(g, node);
    const enc_value *x = enc_graph_value(g, nd->inputs[0]), *y = enc_graph_value(g, nd->output);
    int k = nd->op;
    double f = 0, pix = (double)batch * y->h * y->w;
    if (nd->op == ENC_CONV2D) {
        k = nd->kh * nd->kw == 1 ? 11 : 12;
        f = 2.0 * pix * nd->kh * nd->kw * x->c * y->c;
    } else if (nd->op == ENC_DWCONV2D) {
        f = 2.0 * pix * nd->kh * nd->kw * y->c;
    }
    g_prof[k][0] += sec;
    g_prof[k][1] += f;
    g_prof[k][2] += 1;
    if (node < PROF_NODES) {
        g_node_prof[node][0] += sec;
        g_node_prof[node][1] += f;
    }
}

static int by_time_desc(const void *a, const void *b)
{
    double ta = g_node_prof[*(const int *)a][0], tb = g_node_prof[*(const int *)b][0];
    return (ta < tb) - (ta > tb);
}

static void prof_print(const enc_graph *g, int runs, int top)
{
    static const char *names[16] = {"CONV2D", "DWCONV2D", "DENSE", "ADD", "CONCAT", "AVGPOOL", "MAXPOOL",
                                    "GAP", "SOFTMAX", "ACT", "AFFINE", "CONV 1x1", "CONV kxk"};
    for (int k = 0; k < 13; k++)
        if (g_prof[k][2] > 0)
            printf("  %-9s %8.2f ms/run  %6.1f GFLOP/s  (%d nodes)\n", names[k], 1e3 * g_prof[k][0] / runs,
                   g_prof[k][1] / g_prof[k][0] / 1e9, (int)(g_prof[k][2] / runs));
    int nn = enc_graph_n_nodes(g) < PROF_NODES ? enc_graph_n_nodes(g) : PROF_NODES, order[PROF_NODES];
    for (int i = 0; i < nn; i++) order[i] = i;
    qsort(order, (size_t)nn, sizeof order[0], by_time_desc);
    if (top > 0) printf("  slowest nodes:\n");
    for (int r = 0; r < top && r < nn && g_node_prof[order[r]][0] > 0; r++) {
        const enc_node *nd = enc_graph_node(g, order[r]);
        const enc_value *x = enc_graph_value(g, nd->inputs[0]), *y = enc_graph_value(g, nd->output);
        printf("  %8.3f ms/run %6.1f GFLOP/s  %-28s %dx%d s%d  %dx%dx%d -> %dx%dx%d\n",
               1e3 * g_node_prof[order[r]][0] / runs, g_node_prof[order[r]][1] / g_node_prof[order[r]][0] / 1e9,
               nd->name, nd->kh, nd->kw, nd->sh, x->h, x->w, x->c, y->h, y->w, y->c);
    }
    memset(g_prof, 0, sizeof g_prof);
    memset(g_node_prof, 0, sizeof g_node_prof);
}

int main(int argc, char **argv)
{
    int profile = 0, top = 0;
    const char *dump_in = NULL, *dump_out = NULL;
    const char *model = NULL, *synth = NULL, *save = NULL, *batches = "1,8", *output = "embedding", *precision = NULL;
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--synth") && i + 1 < argc) synth = argv[++i];
        else if (!strcmp(argv[i], "--save") && i + 1 < argc) save = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batches = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
        else if (!strcmp(argv[i], "--peak")) return peak();
        else if (!strcmp(argv[i], "--peak-int8")) return peak_int8();
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--top") && i + 1 < argc) profile = 1, top = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu")) profile = g_cpu_mode = 1;
        else if (!strcmp(argv[i], "--dump") && i + 2 < argc) {
            dump_in = argv[++i];
            dump_out = argv[++i];
        }
        else {
            fprintf(stderr, "usage: bench_encoder (--model F.gguf | --synth mobilenet_v2|inception_v3 [--save F.gguf])\n"
                            "       [--batch 1,8] [--seconds S] [--output NAME] [--precision P] [--profile] [--top N] [--cpu]\n"
                            "       [--dump IN.f32 OUT.f32] | --peak | --peak-int8\n");
            return 2;
        }
    }
    enc_graph *g = NULL;
    imcap_rng_seed(&g_rng, 42);
    if (synth) {
        if (!strcmp(synth, "mobilenet_v2")) g = synth_mobilenet_v2();
        else if (!strcmp(synth, "inception_v3")) g = synth_inception_v3();
        else {
            fprintf(stderr, "bench_encoder: unknown architecture %s\n", synth);
            return 2;
        }
        if (!g || enc_graph_output(g, "probs") < 0) {
            fprintf(stderr, "bench_encoder: building %s failed: %s\n", synth, imcap_last_error());
            return 1;
        }
        if (save) {
            if (enc_graph_save(g, save)) {
                fprintf(stderr, "bench_encoder: %s\n", imcap_last_error());
                return 1;
            }
            printf("saved %s to %s\n", synth, save);
            enc_graph_free(g);
            return 0;
        }
    } else if (model) {
        double t0 = imcap_now();
        if (enc_graph_load(model, &g)) {
            fprintf(stderr, "bench_encoder: %s\n", imcap_last_error());
            return 1;
        }
        printf("loaded %s in %.2f ms\n", model, (imcap_now() - t0) * 1e3);
        enc_precision pr;
        if (precision && (enc_precision_parse(precision, &pr) || enc_graph_set_precision(g, pr))) {
            fprintf(stderr, "bench_encoder: %s\n", imcap_last_error());
            return 1;
        }
    } else {
        fprintf(stderr, "bench_encoder: need --model or --synth\n");
        return 2;
    }
    int out = enc_graph_output(g, output);
    if (out < 0) {
        fprintf(stderr, "bench_encoder: the encoder has no output '%s'\n", output);
        return 1;
    }
    const enc_value *in = enc_graph_value(g, enc_graph_input(g)), *ov = enc_graph_value(g, out);
    double flops = graph_flops(g);
    if (dump_in) {
        /* 3 random images in [-1, 1] and the output for them, raw little-endian f32 (NHWC). */
        int n = 3;
        size_t isz = (size_t)n * in->h * in->w * in->c, osz = (size_t)n * ov->h * ov->w * ov->c;
        float *x = malloc(isz * sizeof(float)), *y = malloc(osz * sizeof(float));
        for (size_t i = 0; i < isz; i++) x[i] = (float)(imcap_rng_uniform(&g_rng) * 2 - 1);
        if (enc_graph_run(g, x, n, &out, 1, &y)) {
            fprintf(stderr, "bench_encoder: %s\n", imcap_last_error());
            return 1;
        }
        FILE *fi = fopen(dump_in, "wb"), *fo = fopen(dump_out, "wb");
        if (!fi || !fo || fwrite(x, sizeof(float), isz, fi) != isz || fwrite(y, sizeof(float), osz, fo) != osz ||
            fclose(fi) || fclose(fo)) {
            fprintf(stderr, "bench_encoder: cannot write %s / %s\n", dump_in, dump_out);
            return 1;
        }
        printf("wrote %d inputs to %s and their '%s' to %s\n", n, dump_in, output, dump_out);
        free(x);
        free(y);
        enc_graph_free(g);
        return 0;
    }
    printf("encoder %s: input %dx%dx%d, output '%s' %dx%dx%d, %.3f GFLOP/image, %d threads, %s (%s kernels)\n",
           enc_graph_name(g), in->h, in->w, in->c, output, ov->h, ov->w, ov->c, flops / 1e9, ops_threads(),
           enc_precision_name(enc_graph_precision(g)),
           enc_graph_precision(g) == ENC_PREC_INT8 ? q_kernels_active()->name : cpu_isa_name(cpu_isa_active()));
    for (const char *p = batches; *p;) {
        int n = atoi(p);
        if (n < 1) break;
        size_t isz = (size_t)in->h * in->w * in->c, osz = (size_t)ov->h * ov->w * ov->c;
        float *x = malloc((size_t)n * isz * sizeof(float)), *y = malloc((size_t)n * osz * sizeof(float));
        for (size_t i = 0; i < (size_t)n * isz; i++) x[i] = (float)(imcap_rng_uniform(&g_rng) * 2 - 1);
        if (enc_graph_run(g, x, n, &out, 1, &y)) { /* warm-up */
            fprintf(stderr, "bench_encoder: %s\n", imcap_last_error());
            return 1;
        }
        int runs = 0;
        if (profile) enc_graph_set_profiler(prof_cb, NULL);
        double t0 = imcap_now(), t;
        double c0 = thread_cpu();
        do {
            g_cpu_last = thread_cpu();
            enc_graph_run(g, x, n, &out, 1, &y);
            runs++;
            t = imcap_now() - t0;
        } while (t < seconds);
        if (g_cpu_mode) printf("calling thread CPU: %.2f ms/batch\n", 1e3 * (thread_cpu() - c0) / runs);
        double ips = runs * n / t;
        printf("batch %d: %.2f images/s (%.2f ms/batch, %d runs), %.1f GFLOP/s\n", n, ips, 1e3 * t / runs, runs,
               ips * flops / 1e9);
        if (profile) {
            enc_graph_set_profiler(NULL, NULL);
            prof_print(g, runs, top);
        }
        free(x);
        free(y);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    enc_graph_free(g);
    return 0;
}
