/* test_qops.c - the int8 kernels on every path this CPU has (portable,
 * AVX2, AVX-512 VNNI) against naive loops over the definitions, bit for
 * bit: convolutions (1x1 read in place, im2col, 3x3 strided with SAME
 * padding, odd sizes, channel counts off the vector widths), depthwise
 * (multipliers 1 and 2), per-tensor and per-channel weight zero points and
 * scales, random zero points, fused activations, saturation at both ends;
 * the add, pools and softmax; the int8 program's validation. */
#include "cpu.h"
#include "graph.h"
#include "qgraph.h"
#include "qops.h"
#include "test.h"

#include <stdint.h>

typedef struct qcase {
    int n, h, w, c, oc, kh, kw, sh, sw;
    enc_pad pad;
    enc_act act;
    int mult;            /* depthwise: channel multiplier (0: a convolution) */
    bool per_channel;
    bool extreme;        /* inputs and weights at their limits, large biases: saturation */
} qcase;

static uint32_t g_seed;
static uint32_t rnd(void)
{
    g_seed = g_seed * 1664525u + 1013904223u;
    return g_seed >> 8;
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_f(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 100000) / 100000.0f; }

static int out_size(int in, int k, int s, enc_pad pad) { return pad == ENC_PAD_SAME ? (in + s - 1) / s : (in - k) / s + 1; }

static void run_case(const qcase *t)
{
    bool dw = t->mult > 0;
    int oc = dw ? t->c * t->mult : t->oc;
    int oh = out_size(t->h, t->kh, t->sh, t->pad), ow = out_size(t->w, t->kw, t->sw, t->pad);
    size_t wcount = dw ? (size_t)t->kh * t->kw * oc : (size_t)t->kh * t->kw * t->c * oc;
    enc_graph *g = enc_graph_new("qtest");
    REQUIRE(g);
    int in = enc_graph_add_input(g, "x", t->h, t->w, t->c);
    float *wf = calloc(wcount, sizeof(float)), *bf = calloc((size_t)oc, sizeof(float));
    int ws3[3] = {t->kh, t->kw, oc}, ws4[4] = {t->kh, t->kw, t->c, oc};
    int wid = dw ? enc_graph_add_param(g, "w", 3, ws3, wf) : enc_graph_add_param(g, "w", 4, ws4, wf);
    int bid = enc_graph_add_param(g, "b", 1, &oc, bf);
    enc_node nd = {.op = dw ? ENC_DWCONV2D : ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .sh = t->sh, .sw = t->sw,
                   .pad = t->pad, .act = t->act, .mult = t->mult, .weight = wid, .bias = bid};
    snprintf(nd.name, sizeof nd.name, "y");
    int yv = enc_graph_add_node(g, &nd, "y");
    REQUIRE(yv > 0);

    /* Zero points anywhere for the saturation cases; else near the middle
     * and an output scale that spreads the accumulators over the range. */
    float xs = rnd_f(0.01f, 0.1f), ys = rnd_f(0.02f, 0.5f);
    int32_t xz = t->extreme ? rnd_in(0, 255) : rnd_in(100, 156), yz = t->extreme ? rnd_in(0, 255) : rnd_in(90, 166);
    int nq = t->per_channel ? oc : 1;
    int8_t *w8 = malloc(wcount);
    int32_t *wz = malloc((size_t)nq * 4), *bias = malloc((size_t)oc * 4);
    float *wsc = malloc((size_t)nq * 4), *scale = malloc((size_t)oc * 4);
    int32_t *zwo = malloc((size_t)oc * 4);
    for (size_t i = 0; i < wcount; i++) w8[i] = (int8_t)(t->extreme ? (rnd() & 1 ? 127 : -128) : rnd_in(-128, 127));
    for (int i = 0; i < nq; i++) {
        wz[i] = t->extreme ? (i & 1 ? -128 : 127) : rnd_in(-20, 20);
        wsc[i] = rnd_f(0.001f, 0.02f) * (t->extreme ? 20.0f : 1.0f);
    }
    if (!t->extreme) { /* accumulator spread ~ sqrt(taps) * 74^2 -> about 40 output steps */
        double taps = (double)t->kh * t->kw * (dw ? 1 : t->c);
        if (t->act == ENC_ACT_RELU6) { /* as in the MobileNets: [0, 6] over about 255 steps */
            ys = rnd_f(0.022f, 0.03f);
            yz = rnd_in(0, 8);
            for (int i = 0; i < nq; i++) wsc[i] = (float)(40.0 * ys / (xs * sqrt(taps) * 5500.0)) * rnd_f(0.8f, 1.2f);
        } else {
            ys = (float)(xs * 0.01 * sqrt(taps) * 5500.0 / 40.0);
        }
    }
    for (int i = 0; i < oc; i++) {
        bias[i] = t->extreme ? rnd_in(-(1 << 22), 1 << 22) : rnd_in(-30000, 30000);
        zwo[i] = wz[t->per_channel ? i : 0];
        scale[i] = xs * wsc[t->per_channel ? i : 0] / ys;
    }
    REQUIRE_OK(enc_qgraph_set_value(g, in, xs, xz));
    REQUIRE_OK(enc_qgraph_set_value(g, yv, ys, yz));
    enc_qnode qn = {enc_qgraph_add_tensor(g, ENC_QT_I8, wcount, w8), enc_qgraph_add_tensor(g, ENC_QT_I32, (size_t)nq, wz),
                    enc_qgraph_add_tensor(g, ENC_QT_F32, (size_t)nq, wsc), enc_qgraph_add_tensor(g, ENC_QT_I32, (size_t)oc, bias)};
    REQUIRE_OK(enc_qgraph_set_node(g, 0, &qn));
    REQUIRE_OK(enc_qgraph_finish(g));
    REQUIRE_OK(enc_graph_set_precision(g, ENC_PREC_INT8));

    size_t xn = (size_t)t->n * t->h * t->w * t->c, yn = (size_t)t->n * oh * ow * oc;
    uint8_t *xq = malloc(xn), *ref = malloc(yn);
    float *x = malloc(xn * sizeof(float)), *y = malloc(yn * sizeof(float));
    for (size_t i = 0; i < xn; i++) {
        xq[i] = (uint8_t)(t->extreme ? (rnd() & 1 ? 255 : 0) : rnd_in(0, 255));
        x[i] = xs * (float)((int)xq[i] - xz);
    }
    ops_win win = {t->n, t->h, t->w, t->c, oh, ow, oc, t->kh, t->kw, t->sh, t->sw, 0, 0, dw ? t->mult : 0};
    if (t->pad == ENC_PAD_SAME) {
        int th = (oh - 1) * t->sh + t->kh - t->h, tw = (ow - 1) * t->sw + t->kw - t->w;
        win.pt = th > 0 ? th / 2 : 0;
        win.pl = tw > 0 ? tw / 2 : 0;
    }
    int32_t lo, hi;
    q_act_range(t->act, ys, yz, &lo, &hi);
    if (dw) qref_dwconv2d(&win, xq, xz, w8, zwo, bias, scale, yz, lo, hi, ref);
    else qref_conv2d(&win, xq, xz, w8, zwo, bias, scale, yz, lo, hi, ref);
    int n_lo = 0, n_hi = 0, n_mid = 0;
    for (size_t i = 0; i < yn; i++) {
        n_lo += ref[i] == lo;
        n_hi += ref[i] == hi;
        n_mid += ref[i] > lo && ref[i] < hi;
    }
    /* The case exercises what it is meant to: saturation, or a spread of values. */
    if (t->extreme) CHECK(n_lo > 0 && n_hi > 0);
    else if (n_mid <= (int)(yn / 4)) {
        fprintf(stderr, "    case %dx%dx%d k%d mult %d: %d of %zu outputs inside (%d, %d)\n", t->h, t->w, t->c, t->kh, t->mult, n_mid, yn, lo, hi);
        CHECK(n_mid > (int)(yn / 4));
    }

    cpu_isa prev = cpu_isa_active();
    for (int isa = 0; isa < CPU_N_ISA; isa++) {
        if (!cpu_isa_supported((cpu_isa)isa)) continue;
        cpu_isa_force((cpu_isa)isa);
        int yid = yv;
        REQUIRE_OK(enc_graph_run(g, x, t->n, &yid, 1, &y));
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < yn; i++) {
            int q = (int)lrintf(y[i] / ys) + yz;
            if (q != ref[i] && !bad++) first = i;
        }
        if (bad)
            fprintf(stderr, "    %s %dx%dx%d k%dx%d s%d oc %d, path %s: %zu of %zu differ (first %zu)\n", dw ? "dwconv" : "conv",
                    t->h, t->w, t->c, t->kh, t->kw, t->sh, oc, q_kernels_active()->name, bad, yn, first);
        CHECK(bad == 0);
    }
    cpu_isa_force(prev);
    enc_graph_free(g);
    free(wf);
    free(bf);
    free(w8);
    free(wz);
    free(bias);
    free(wsc);
    free(scale);
    free(zwo);
    free(xq);
    free(ref);
    free(x);
    free(y);
}

TEST(qops_conv2d_matches_naive_loops_on_every_path)
{
    const qcase cases[] = {
        /* 1x1 stride 1, channels a multiple of 4: the GEMM reads x in place */
        {2, 7, 9, 16, 24, 1, 1, 1, 1, ENC_PAD_SAME, ENC_ACT_RELU6, 0, false, false},
        {1, 5, 5, 96, 17, 1, 1, 1, 1, ENC_PAD_VALID, ENC_ACT_NONE, 0, true, false},
        {3, 4, 3, 64, 70, 1, 1, 1, 1, ENC_PAD_VALID, ENC_ACT_RELU, 0, false, false},
        /* channels not a multiple of 4, strided 1x1, 3x3 stride 2 SAME (the first layer), odd windows */
        {1, 6, 7, 3, 32, 3, 3, 2, 2, ENC_PAD_SAME, ENC_ACT_RELU6, 0, false, false},
        {2, 9, 8, 5, 16, 1, 1, 2, 2, ENC_PAD_VALID, ENC_ACT_NONE, 0, true, false},
        {1, 8, 9, 12, 40, 3, 3, 1, 1, ENC_PAD_SAME, ENC_ACT_NONE, 0, true, false},
        {1, 9, 10, 7, 33, 5, 3, 2, 1, ENC_PAD_SAME, ENC_ACT_RELU, 0, false, false},
        {1, 10, 8, 20, 1, 3, 2, 3, 2, ENC_PAD_VALID, ENC_ACT_NONE, 0, false, false},
        /* the classifier head: one pixel, many inputs and outputs */
        {4, 1, 1, 1280, 1001, 1, 1, 1, 1, ENC_PAD_VALID, ENC_ACT_NONE, 0, false, false},
        /* saturation: extreme inputs, weights and zero points, large biases */
        {2, 6, 6, 32, 48, 1, 1, 1, 1, ENC_PAD_VALID, ENC_ACT_NONE, 0, true, true},
        {1, 7, 7, 9, 20, 3, 3, 2, 2, ENC_PAD_SAME, ENC_ACT_RELU6, 0, false, true},
    };
    g_seed = 11;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

TEST(qops_dwconv2d_matches_naive_loops_on_every_path)
{
    const qcase cases[] = {
        {2, 9, 9, 32, 0, 3, 3, 1, 1, ENC_PAD_SAME, ENC_ACT_RELU6, 1, false, false},
        {1, 10, 11, 144, 0, 3, 3, 2, 2, ENC_PAD_SAME, ENC_ACT_RELU6, 1, true, false},
        {1, 7, 6, 19, 0, 3, 3, 1, 1, ENC_PAD_SAME, ENC_ACT_NONE, 1, true, false},
        {2, 12, 9, 40, 0, 5, 5, 2, 2, ENC_PAD_SAME, ENC_ACT_RELU, 1, false, false},
        {1, 8, 8, 6, 0, 3, 3, 1, 1, ENC_PAD_VALID, ENC_ACT_NONE, 2, true, false},
        {1, 6, 6, 48, 0, 3, 3, 1, 1, ENC_PAD_SAME, ENC_ACT_NONE, 1, true, true},
    };
    g_seed = 12;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* The runtime's uint8 add against the real-number sum: within one step, and
 * every path gives the reference's bytes (counts off the vector widths). */
TEST(qops_add_matches_reference_on_every_path)
{
    g_seed = 13;
    for (int rep = 0; rep < 6; rep++) {
        float sa = rnd_f(0.01f, 0.3f), sb = rnd_f(0.01f, 0.3f), sy = rnd_f(0.02f, 0.4f);
        int32_t za = rnd_in(0, 255), zb = rnd_in(0, 255), zy = rnd_in(0, 255), lo = rep == 2 ? zy : 0, hi = 255;
        q_add p;
        REQUIRE(q_add_init(&p, sa, za, sb, zb, sy, zy, lo, hi));
        size_t n = 1000 + (size_t)rep * 37;
        uint8_t *a = malloc(n), *b = malloc(n), *ref = malloc(n), *y = malloc(n);
        for (size_t i = 0; i < n; i++) {
            a[i] = (uint8_t)(i < 4 ? (int)(i & 1) * 255 : rnd_in(0, 255));
            b[i] = (uint8_t)(i < 4 ? (int)(i >> 1) * 255 : rnd_in(0, 255));
        }
        qref_add(&p, a, b, ref, n);
        for (size_t i = 0; i < n; i++) {
            double r = (sa * (a[i] - za) + sb * (b[i] - zb)) / sy + zy;
            r = r < lo ? lo : r > hi ? hi : r;
            CHECK(fabs(ref[i] - r) <= 0.51);
        }
        cpu_isa prev = cpu_isa_active();
        for (int isa = 0; isa < CPU_N_ISA; isa++) {
            if (!cpu_isa_supported((cpu_isa)isa)) continue;
            cpu_isa_force((cpu_isa)isa);
            memset(y, 0, n);
            q_addv(&p, a, b, y, n);
            CHECK(memcmp(y, ref, n) == 0);
        }
        cpu_isa_force(prev);
        free(a);
        free(b);
        free(ref);
        free(y);
    }
    q_add p;
    CHECK(!q_add_init(&p, 1.0f, 0, 1e-4f, 0, 1.0f, 0, 0, 255)); /* ratio below 2^-10 */
    CHECK(!q_add_init(&p, 300.0f, 0, 1.0f, 0, 1.0f, 0, 0, 255)); /* ratio at least 2^8 */
}

/* Pools: (sum + count/2) / count over the window's cells inside the image,
 * the max over them, then the activation clamp; worked by hand. */
TEST(qops_pools_round_and_clamp_as_tflite)
{
    /* 1 image 3x3x1, window 2x2 stride 2 SAME: windows of 4, 2, 2 and 1 cells */
    const uint8_t x[9] = {10, 11, 200, 13, 15, 250, 7, 8, 9};
    ops_win g = {1, 3, 3, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 0};
    uint8_t y[4];
    q_avgpool(&g, x, y, 0, 255);
    CHECK(y[0] == 12 && y[1] == 225 && y[2] == 8 && y[3] == 9); /* (49+2)/4, (450+1)/2, (15+1)/2, 9 */
    q_avgpool(&g, x, y, 9, 200);
    CHECK(y[0] == 12 && y[1] == 200 && y[2] == 9 && y[3] == 9);
    q_maxpool(&g, x, y, 0, 255);
    CHECK(y[0] == 15 && y[1] == 250 && y[2] == 8 && y[3] == 9);
}

/* Softmax: probabilities in steps of 1/256 within one step of the exact
 * ones, the largest input gets the largest output, saturation at 255. */
TEST(qops_softmax_within_a_step_of_exact)
{
    g_seed = 14;
    uint8_t x[1001], y[1001];
    for (int i = 0; i < 1001; i++) x[i] = (uint8_t)rnd_in(0, 120);
    x[17] = 200;
    float s = 0.1f;
    q_softmax(1, 1001, s, x, y);
    double sum = 0;
    for (int i = 0; i < 1001; i++) sum += exp(s * (x[i] - 200.0));
    for (int i = 0; i < 1001; i++) CHECK(fabs(y[i] - 256.0 * exp(s * (x[i] - 200.0)) / sum) <= 1.0);
    for (int i = 0; i < 1001; i++) CHECK(y[i] <= y[17]);
    uint8_t one[3] = {255, 0, 0}, out[3];
    q_softmax(1, 3, 1.0f, one, out);
    CHECK(out[0] == 255 && out[1] == 0 && out[2] == 0);
}

/* The program's validation names what it refuses; the graph keeps running
 * in float. */
TEST(qgraph_refuses_what_int8_cannot_run)
{
    enc_graph *g = enc_graph_new("qbad");
    int in = enc_graph_add_input(g, "x", 4, 4, 2);
    float w[2] = {1, 1};
    int c2 = 2;
    int wid = enc_graph_add_param(g, "w", 1, &c2, w);
    enc_node nd = {.op = ENC_AFFINE, .n_inputs = 1, .inputs = {in}, .weight = wid, .bias = -1};
    snprintf(nd.name, sizeof nd.name, "bn");
    int v = enc_graph_add_node(g, &nd, "bn");
    REQUIRE_OK(enc_qgraph_set_value(g, in, 0.1f, 3));
    REQUIRE_OK(enc_qgraph_set_value(g, v, 0.1f, 3));
    CHECK(enc_qgraph_finish(g) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "AFFINE has no int8 kernel") != NULL);
    CHECK(enc_graph_set_precision(g, ENC_PREC_INT8) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "no int8 execution") != NULL);
    CHECK(enc_graph_precision(g) == ENC_PREC_FLOAT);
    enc_precision p;
    CHECK(enc_precision_parse("int4", &p) == IMCAP_E_ARG);
    REQUIRE_OK(enc_precision_parse("int8", &p));
    CHECK(p == ENC_PREC_INT8);
    enc_graph_free(g);
}
