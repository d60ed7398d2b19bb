#define _GNU_SOURCE
/*
 * test_ops.c - every encoder op against a naive reference loop written here
 * (double accumulation, padding computed from TF's definition), through the
 * graph builder and executor: SAME/VALID, strides 1 and 2, odd sizes,
 * 1x1 .. 5x5 and 1x7/7x1 windows, depth multipliers, batches, and a small
 * multi-op graph.
 */
#include "test.h"
#include "cpu_paths.h"
#include "gguf.h"
#include "graph.h"
#include "ops.h"

#include <pthread.h>

static imcap_rng g_rng;

static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) p[i] = (float)(imcap_rng_uniform(&g_rng) * 2.0 - 1.0);
    return p;
}

static double ref_act(double v, enc_act a)
{
    switch (a) {
    case ENC_ACT_RELU: return v > 0 ? v : 0;
    case ENC_ACT_RELU6: return v < 0 ? 0 : v > 6 ? 6 : v;
    case ENC_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    default: return v;
    }
}

/* TF padding: output size and padding before. */
static void ref_pad(int in, int k, int s, int same, int *out, int *before)
{
    if (same) {
        *out = (in + s - 1) / s;
        int total = (*out - 1) * s + k - in;
        *before = total > 0 ? total / 2 : 0;
    } else {
        *out = (in - k) / s + 1;
        *before = 0;
    }
}

/* |got - want| <= tol (1 + |want|) + tol_sum * sum[i], where sum (or NULL)
 * holds sum |x w| of each output: the scale of a dot product's rounding
 * error, which Winograd convolution amplifies by its transforms. */
static int compare_sum(const float *got, const double *want, const double *sum, size_t n, double tol,
                       double tol_sum, const char *what)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= tol * (1.0 + fabs(want[i])) + (sum ? tol_sum * sum[i] : 0.0))) {
            if (bad < 5) fprintf(stderr, "    %s[%zu]: got %.7g want %.7g\n", what, i, got[i], want[i]);
            bad++;
        }
    }
    return bad;
}

static int compare(const float *got, const double *want, size_t n, double tol, const char *what)
{
    return compare_sum(got, want, NULL, n, tol, 0.0, what);
}

/* One windowed-op case. */
typedef struct wcase {
    enc_op op;
    int n, h, w, c, cout, kh, kw, sh, sw, same, mult;
    enc_act act;
    int bias;
} wcase;

static void run_window_case(const wcase *t)
{
    int oh, ow, pt, pl;
    ref_pad(t->h, t->kh, t->sh, t->same, &oh, &pt);
    ref_pad(t->w, t->kw, t->sw, t->same, &ow, &pl);
    int oc = t->op == ENC_CONV2D ? t->cout : t->op == ENC_DWCONV2D ? t->c * t->mult : t->c;
    size_t nin = (size_t)t->n * t->h * t->w * t->c, nout = (size_t)t->n * oh * ow * oc;
    float *x = rand_buf(nin);
    enc_graph *g = enc_graph_new("case");
    REQUIRE(g);
    int in = enc_graph_add_input(g, "in", t->h, t->w, t->c);
    REQUIRE(in == 0);
    enc_node nd = {.op = t->op, .n_inputs = 1, .inputs = {in}, .kh = t->kh, .kw = t->kw, .sh = t->sh,
                   .sw = t->sw, .pad = t->same ? ENC_PAD_SAME : ENC_PAD_VALID, .act = t->act,
                   .mult = t->mult, .weight = -1, .bias = -1};
    float *w = NULL, *b = NULL;
    if (t->op == ENC_CONV2D) {
        int shape[4] = {t->kh, t->kw, t->c, t->cout};
        w = rand_buf((size_t)t->kh * t->kw * t->c * t->cout);
        nd.weight = enc_graph_add_param(g, "w", 4, shape, w);
    } else if (t->op == ENC_DWCONV2D) {
        int shape[3] = {t->kh, t->kw, t->c * t->mult};
        w = rand_buf((size_t)t->kh * t->kw * t->c * t->mult);
        nd.weight = enc_graph_add_param(g, "w", 3, shape, w);
    }
    if (t->bias) {
        b = rand_buf((size_t)oc);
        nd.bias = enc_graph_add_param(g, "b", 1, &oc, b);
    }
    int out = enc_graph_add_node(g, &nd, "out");
    if (out < 0) fprintf(stderr, "    %s\n", imcap_last_error());
    REQUIRE(out > 0);
    const enc_value *v = enc_graph_value(g, out);
    CHECK(v->h == oh && v->w == ow && v->c == oc);
    double *want = calloc(nout, sizeof(double)), *sum = calloc(nout, sizeof(double));
    for (int i = 0; i < t->n; i++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int o = 0; o < oc; o++) {
                    double acc = 0, mx = -INFINITY, abs_sum = 0;
                    int cnt = 0;
                    for (int ky = 0; ky < t->kh; ky++)
                        for (int kx = 0; kx < t->kw; kx++) {
                            int iy = oy * t->sh - pt + ky, ix = ox * t->sw - pl + kx;
                            if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w) continue;
                            const float *px = x + (((size_t)i * t->h + iy) * t->w + ix) * t->c;
                            cnt++;
                            if (t->op == ENC_CONV2D) {
                                for (int ci = 0; ci < t->c; ci++) {
                                    double p = (double)px[ci] * w[(((size_t)ky * t->kw + kx) * t->c + ci) * t->cout + o];
                                    acc += p;
                                    abs_sum += fabs(p);
                                }
                            } else if (t->op == ENC_DWCONV2D) {
                                acc += (double)px[o / t->mult] * w[((size_t)ky * t->kw + kx) * oc + o];
                            } else {
                                acc += px[o];
                                if (px[o] > mx) mx = px[o];
                            }
                        }
                    double r = t->op == ENC_AVGPOOL ? acc / cnt : t->op == ENC_MAXPOOL ? mx : acc;
                    if (b) r += b[o];
                    want[(((size_t)i * oh + oy) * ow + ox) * oc + o] = ref_act(r, t->act);
                    sum[(((size_t)i * oh + oy) * ow + ox) * oc + o] = abs_sum;
                }
    float *got = malloc(nout * sizeof(float));
    REQUIRE_OK(enc_graph_run(g, x, t->n, &out, 1, &got));
    /* Winograd F(4x4, 3x3) (ops_winograd_ok) errs by up to ~2e-6 of sum |x w|;
     * a wrong transform coefficient or tile offset errs by ~0.1 of it. */
    int bad = compare_sum(got, want, sum, nout, 2e-5, 4e-6, enc_op_name(t->op));
    if (bad)
        fprintf(stderr, "    [%s path] case %s n%d %dx%dx%d k%dx%d s%dx%d %s mult%d act%d: %d bad\n", cpu_path_now(),
                enc_op_name(t->op), t->n, t->h, t->w, t->c, t->kh, t->kw, t->sh, t->sw, t->same ? "SAME" : "VALID",
                t->mult, t->act, bad);
    CHECK(bad == 0);
    free(x);
    free(w);
    free(b);
    free(want);
    free(sum);
    free(got);
    enc_graph_free(g);
}

static const wcase conv_cases[] = {
    {ENC_CONV2D, 1, 7, 5, 3, 4, 3, 3, 1, 1, 1, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 1, 7, 5, 3, 4, 3, 3, 1, 1, 0, 0, ENC_ACT_RELU, 1},
        {ENC_CONV2D, 2, 7, 5, 3, 4, 3, 3, 2, 2, 1, 0, ENC_ACT_RELU6, 0},
        {ENC_CONV2D, 1, 7, 5, 3, 4, 3, 3, 2, 2, 0, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 3, 7, 5, 6, 5, 1, 1, 1, 1, 1, 0, ENC_ACT_RELU, 1},
        {ENC_CONV2D, 1, 7, 5, 6, 5, 1, 1, 2, 2, 1, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 1, 9, 8, 5, 3, 5, 5, 1, 1, 1, 0, ENC_ACT_SIGMOID, 1},
        {ENC_CONV2D, 1, 9, 8, 5, 3, 5, 5, 2, 2, 0, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 2, 8, 7, 4, 6, 1, 7, 1, 1, 1, 0, ENC_ACT_RELU, 1},
        {ENC_CONV2D, 2, 8, 7, 4, 6, 7, 1, 1, 1, 1, 0, ENC_ACT_RELU, 1},
        {ENC_CONV2D, 1, 8, 7, 4, 6, 7, 1, 1, 2, 0, 0, ENC_ACT_NONE, 0},
        {ENC_CONV2D, 1, 10, 10, 3, 8, 3, 3, 2, 2, 1, 0, ENC_ACT_RELU6, 1}, /* even input, SAME s2 */
        {ENC_CONV2D, 1, 4, 3, 70, 90, 3, 3, 1, 1, 1, 0, ENC_ACT_NONE, 1},  /* few rows: split by columns */
        {ENC_CONV2D, 2, 64, 40, 32, 24, 3, 3, 1, 1, 1, 0, ENC_ACT_RELU, 1},/* im2col in several blocks */
        {ENC_CONV2D, 1, 1, 1, 16, 10, 1, 1, 1, 1, 0, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 1, 9, 11, 300, 37, 1, 1, 1, 1, 1, 0, ENC_ACT_RELU, 1}, /* K > one GEMM K block, N tail */
        {ENC_CONV2D, 1, 5, 5, 40, 250, 3, 3, 1, 1, 1, 0, ENC_ACT_RELU6, 1},/* N > one GEMM N block */
        /* Winograd F(4x4, 3x3): partial tiles, channel counts off the vector width, batches */
        {ENC_CONV2D, 3, 17, 19, 20, 21, 3, 3, 1, 1, 1, 0, ENC_ACT_SIGMOID, 1},
        {ENC_CONV2D, 1, 18, 21, 16, 40, 3, 3, 1, 1, 0, 0, ENC_ACT_RELU, 1},
        {ENC_CONV2D, 2, 30, 23, 41, 17, 3, 3, 1, 1, 1, 0, ENC_ACT_NONE, 0},
        {ENC_CONV2D, 1, 41, 37, 336, 24, 3, 3, 1, 1, 1, 0, ENC_ACT_RELU, 1}, /* c over one GEMM K block */
        /* odd panel counts and row tails for every path's register tile (AVX-512: 12 rows x 2 panels) */
        {ENC_CONV2D, 1, 5, 7, 24, 48, 1, 1, 1, 1, 0, 0, ENC_ACT_RELU6, 1},
        {ENC_CONV2D, 2, 13, 3, 7, 80, 3, 3, 2, 1, 1, 0, ENC_ACT_NONE, 1},
        {ENC_CONV2D, 1, 23, 19, 24, 56, 3, 3, 1, 1, 1, 0, ENC_ACT_RELU, 0},
};

static void conv_cases_all(void)
{
    imcap_rng_seed(&g_rng, 1);
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) run_window_case(&conv_cases[i]);
}

TEST(ops_conv2d_matches_reference) { CHECK(each_cpu_path(conv_cases_all) >= 1); }

/* Which convolutions take the Winograd path (the cases above cover both
 * sides of each rule); IMCAP_WINOGRAD=0 turns it off. */
TEST(ops_winograd_applies_where_documented)
{
    /* n, h, w, c, oh, ow, oc, kh, kw, sh, sw, pt, pl, mult */
    ops_win g = {1, 17, 19, 20, 17, 19, 21, 3, 3, 1, 1, 1, 1, 0};
    CHECK(ops_winograd_ok(&g));
    ops_win s2 = g;
    s2.sh = s2.sw = 2, s2.oh = 9, s2.ow = 10;
    CHECK(!ops_winograd_ok(&s2));
    ops_win k5 = g;
    k5.kh = k5.kw = 5, k5.pt = k5.pl = 2;
    CHECK(!ops_winograd_ok(&k5));
    ops_win few_c = g;
    few_c.c = 3;
    CHECK(!ops_winograd_ok(&few_c));
    ops_win few_oc = g;
    few_oc.oc = 8;
    CHECK(!ops_winograd_ok(&few_oc));
    ops_win small = {1, 8, 8, 448, 8, 8, 384, 3, 3, 1, 1, 1, 1, 0}; /* InceptionV3's 8x8 blocks */
    CHECK(!ops_winograd_ok(&small));
    CHECK(ops_winograd_floats(20, 21) == 36 * ops_packed_floats(20, 21));
    CHECK(ops_packed_floats(20, 21) == 20 * 32);
}

TEST(ops_winograd_off_by_environment)
{
    setenv("IMCAP_WINOGRAD", "0", 1);
    ops_win g = {1, 17, 19, 20, 17, 19, 21, 3, 3, 1, 1, 1, 1, 0};
    CHECK(!ops_winograd_ok(&g));
    /* and the direct path computes those cases to the reference, on every kernel path */
    CHECK(each_cpu_path(conv_cases_all) >= 1);
}

TEST(ops_conv2d_openblas_path_matches_reference)
{
    setenv("IMCAP_GEMM", "openblas", 1);
    CHECK(each_cpu_path(conv_cases_all) >= 1);
}

static void dw_cases_all(void)
{
    imcap_rng_seed(&g_rng, 2);
    static const wcase cases[] = {
        {ENC_DWCONV2D, 1, 7, 5, 45, 0, 3, 3, 1, 1, 1, 1, ENC_ACT_RELU6, 1},
        {ENC_DWCONV2D, 2, 7, 5, 45, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 7, 5, 8, 0, 3, 3, 2, 2, 0, 1, ENC_ACT_RELU, 0},
        {ENC_DWCONV2D, 1, 9, 8, 32, 0, 5, 5, 1, 1, 1, 1, ENC_ACT_SIGMOID, 1},
        {ENC_DWCONV2D, 1, 9, 8, 13, 0, 5, 5, 2, 2, 1, 1, ENC_ACT_SIGMOID, 1},
        {ENC_DWCONV2D, 1, 7, 5, 3, 0, 3, 3, 1, 1, 1, 2, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 2, 7, 5, 5, 0, 3, 3, 2, 1, 0, 3, ENC_ACT_RELU, 1},
        {ENC_DWCONV2D, 1, 8, 7, 16, 0, 1, 7, 1, 1, 1, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 8, 7, 16, 0, 7, 1, 1, 1, 1, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 6, 6, 24, 0, 1, 1, 1, 1, 0, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 10, 10, 40, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_RELU6, 1},
        /* the 3x3 multiplier-1 row kernel: wide rows, borders, tiny images */
        {ENC_DWCONV2D, 2, 13, 17, 16, 0, 3, 3, 1, 1, 1, 1, ENC_ACT_RELU6, 1},
        {ENC_DWCONV2D, 1, 13, 17, 24, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_SIGMOID, 1},
        {ENC_DWCONV2D, 1, 14, 18, 8, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_NONE, 0},
        {ENC_DWCONV2D, 1, 13, 17, 16, 0, 3, 3, 1, 1, 0, 1, ENC_ACT_RELU, 1},
        {ENC_DWCONV2D, 1, 13, 17, 16, 0, 3, 3, 2, 2, 0, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 2, 9, 8, 0, 3, 3, 1, 1, 1, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 1, 1, 8, 0, 3, 3, 1, 1, 1, 1, ENC_ACT_NONE, 1},
        {ENC_DWCONV2D, 1, 2, 2, 8, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_NONE, 1},
        /* channels a multiple of 4 but not of the vector width: the partial chunk */
        {ENC_DWCONV2D, 1, 9, 11, 12, 0, 3, 3, 1, 1, 1, 1, ENC_ACT_RELU6, 1},
        {ENC_DWCONV2D, 2, 9, 11, 20, 0, 3, 3, 2, 2, 1, 1, ENC_ACT_SIGMOID, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_window_case(&cases[i]);
}

TEST(ops_dwconv2d_matches_reference) { CHECK(each_cpu_path(dw_cases_all) >= 1); }

static void pool_cases_all(void)
{
    imcap_rng_seed(&g_rng, 3);
    static const wcase cases[] = {
        {ENC_AVGPOOL, 1, 7, 5, 11, 0, 3, 3, 1, 1, 1, 0, ENC_ACT_NONE, 0},
        {ENC_AVGPOOL, 2, 7, 5, 11, 0, 3, 3, 2, 2, 1, 0, ENC_ACT_NONE, 0},
        {ENC_AVGPOOL, 1, 7, 5, 11, 0, 3, 3, 2, 2, 0, 0, ENC_ACT_RELU, 0},
        {ENC_AVGPOOL, 1, 7, 7, 16, 0, 7, 7, 1, 1, 0, 0, ENC_ACT_NONE, 0},
        {ENC_AVGPOOL, 1, 8, 8, 9, 0, 2, 2, 2, 2, 1, 0, ENC_ACT_NONE, 0},
        {ENC_MAXPOOL, 1, 7, 5, 11, 0, 3, 3, 2, 2, 0, 0, ENC_ACT_NONE, 0},
        {ENC_MAXPOOL, 2, 7, 5, 19, 0, 3, 3, 2, 2, 1, 0, ENC_ACT_NONE, 0},
        {ENC_MAXPOOL, 1, 9, 9, 8, 0, 3, 3, 1, 1, 1, 0, ENC_ACT_NONE, 0},
        {ENC_MAXPOOL, 1, 8, 7, 4, 0, 1, 7, 1, 1, 1, 0, ENC_ACT_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_window_case(&cases[i]);
}

TEST(ops_pools_match_reference) { CHECK(each_cpu_path(pool_cases_all) >= 1); }

TEST(ops_avgpool_same_excludes_padding)
{
    /* A 2x2 image of ones: every SAME 3x3 average is exactly 1 (padding not counted). */
    enc_graph *g = enc_graph_new("t");
    int in = enc_graph_add_input(g, "in", 2, 2, 1);
    enc_node nd = {.op = ENC_AVGPOOL, .n_inputs = 1, .inputs = {in}, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                   .pad = ENC_PAD_SAME, .weight = -1, .bias = -1};
    int out = enc_graph_add_node(g, &nd, "p");
    REQUIRE(out > 0);
    float x[4] = {1, 1, 1, 1}, y[4] = {0};
    float *o = y;
    REQUIRE_OK(enc_graph_run(g, x, 1, &out, 1, &o));
    for (int i = 0; i < 4; i++) CHECK(y[i] == 1.0f);
    enc_graph_free(g);
}

/* Reference for the pixel-wise ops on a 3x5x6 input batch of 2. */
static void pixelwise_all(void)
{
    imcap_rng_seed(&g_rng, 4);
    int n = 2, h = 3, w = 5, c = 6, co = 9;
    size_t pix = (size_t)n * h * w;
    float *a = rand_buf(pix * c), *b2 = rand_buf(pix * c), *sc = rand_buf(c), *bi = rand_buf(c);
    float *dw = rand_buf((size_t)c * co), *db = rand_buf(co);
    for (size_t i = 0; i < pix * c; i++) a[i] *= 8.0f; /* reach both sides of relu6 */
    enc_graph *g = enc_graph_new("t");
    int in = enc_graph_add_input(g, "in", h, w, c);
    int shp_c = c, shp_d[2] = {c, co};
    int p_sc = enc_graph_add_param(g, "sc", 1, &shp_c, sc), p_bi = enc_graph_add_param(g, "bi", 1, &shp_c, bi);
    int p_dw = enc_graph_add_param(g, "dw", 2, shp_d, dw), p_db = enc_graph_add_param(g, "db", 1, &co, db);
    enc_node relu6 = {.op = ENC_ACT, .n_inputs = 1, .inputs = {in}, .act = ENC_ACT_RELU6, .weight = -1, .bias = -1};
    enc_node sig = relu6;
    sig.act = ENC_ACT_SIGMOID;
    enc_node aff = {.op = ENC_AFFINE, .n_inputs = 1, .inputs = {in}, .weight = p_sc, .bias = p_bi};
    enc_node den = {.op = ENC_DENSE, .n_inputs = 1, .inputs = {in}, .act = ENC_ACT_RELU, .weight = p_dw, .bias = p_db};
    enc_node gap = {.op = ENC_GAP, .n_inputs = 1, .inputs = {in}, .weight = -1, .bias = -1};
    enc_node smx = {.op = ENC_SOFTMAX, .n_inputs = 1, .inputs = {in}, .weight = -1, .bias = -1};
    int v_relu6 = enc_graph_add_node(g, &relu6, "relu6"), v_sig = enc_graph_add_node(g, &sig, "sig");
    int v_aff = enc_graph_add_node(g, &aff, "aff"), v_den = enc_graph_add_node(g, &den, "dense");
    int v_gap = enc_graph_add_node(g, &gap, "gap"), v_smx = enc_graph_add_node(g, &smx, "softmax");
    REQUIRE(v_relu6 > 0 && v_sig > 0 && v_aff > 0 && v_den > 0 && v_gap > 0 && v_smx > 0);
    (void)b2;
    int ids[6] = {v_relu6, v_sig, v_aff, v_den, v_gap, v_smx};
    float *outs[6];
    size_t sizes[6] = {pix * c, pix * c, pix * c, pix * co, (size_t)n * c, pix * c};
    double *want[6];
    for (int i = 0; i < 6; i++) {
        outs[i] = malloc(sizes[i] * sizeof(float));
        want[i] = calloc(sizes[i], sizeof(double));
    }
    for (size_t p = 0; p < pix; p++) {
        const float *xp = a + p * c;
        double mx = -INFINITY, s = 0;
        for (int k = 0; k < c; k++) mx = xp[k] > mx ? xp[k] : mx;
        for (int k = 0; k < c; k++) s += exp(xp[k] - mx);
        for (int k = 0; k < c; k++) {
            want[0][p * c + k] = ref_act(xp[k], ENC_ACT_RELU6);
            want[1][p * c + k] = ref_act(xp[k], ENC_ACT_SIGMOID);
            want[2][p * c + k] = (double)xp[k] * sc[k] + bi[k];
            want[5][p * c + k] = exp(xp[k] - mx) / s;
            want[4][(p / (size_t)(h * w)) * c + k] += xp[k] / (double)(h * w);
        }
        for (int o = 0; o < co; o++) {
            double acc = db[o];
            for (int k = 0; k < c; k++) acc += (double)xp[k] * dw[(size_t)k * co + o];
            want[3][p * co + o] = ref_act(acc, ENC_ACT_RELU);
        }
    }
    REQUIRE_OK(enc_graph_run(g, a, n, ids, 6, outs));
    const char *names[6] = {"relu6", "sigmoid", "affine", "dense", "gap", "softmax"};
    for (int i = 0; i < 6; i++) CHECK(compare(outs[i], want[i], sizes[i], 1e-5, names[i]) == 0);
    for (int i = 0; i < 6; i++) {
        free(outs[i]);
        free(want[i]);
    }
    free(a);
    free(b2);
    free(sc);
    free(bi);
    free(dw);
    free(db);
    enc_graph_free(g);
}

TEST(ops_pixelwise_ops_match_reference) { CHECK(each_cpu_path(pixelwise_all) >= 1); }

/* in -> conv a (relu) -> dw b (relu6) -> add(a, b) -> concat(add, a, in) -> maxpool -> gap -> dense -> softmax.
 * Values feed several consumers; only requested outputs' ancestors run. */
typedef struct mini {
    enc_graph *g;
    int v_conv, v_dw, v_add, v_cat, v_pool, v_gap, v_logits, v_probs;
} mini;

static mini build_mini(void)
{
    mini m;
    m.g = enc_graph_new("mini");
    enc_graph *g = m.g;
    int in = enc_graph_add_input(g, "in", 9, 7, 3);
    float *w1 = rand_buf(3 * 3 * 3 * 8), *b1 = rand_buf(8), *w2 = rand_buf(3 * 3 * 8), *b2 = rand_buf(8);
    float *w3 = rand_buf(19 * 5), *b3 = rand_buf(5);
    int s1[4] = {3, 3, 3, 8}, s2[3] = {3, 3, 8}, s3[2] = {19, 5}, n8 = 8, n5 = 5;
    int p1 = enc_graph_add_param(g, "w1", 4, s1, w1), q1 = enc_graph_add_param(g, "b1", 1, &n8, b1);
    int p2 = enc_graph_add_param(g, "w2", 3, s2, w2), q2 = enc_graph_add_param(g, "b2", 1, &n8, b2);
    int p3 = enc_graph_add_param(g, "w3", 2, s3, w3), q3 = enc_graph_add_param(g, "b3", 1, &n5, b3);
    enc_node conv = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .sh = 1, .sw = 1, .pad = ENC_PAD_SAME,
                     .act = ENC_ACT_RELU, .weight = p1, .bias = q1};
    m.v_conv = enc_graph_add_node(g, &conv, "conv");
    enc_node dw = {.op = ENC_DWCONV2D, .n_inputs = 1, .inputs = {m.v_conv}, .pad = ENC_PAD_SAME,
                   .act = ENC_ACT_RELU6, .weight = p2, .bias = q2};
    m.v_dw = enc_graph_add_node(g, &dw, "dw");
    enc_node add = {.op = ENC_ADD, .n_inputs = 2, .inputs = {m.v_conv, m.v_dw}, .weight = -1, .bias = -1};
    m.v_add = enc_graph_add_node(g, &add, "add");
    enc_node cat = {.op = ENC_CONCAT, .n_inputs = 3, .inputs = {m.v_add, m.v_conv, in}, .weight = -1, .bias = -1};
    m.v_cat = enc_graph_add_node(g, &cat, "cat");
    enc_node pool = {.op = ENC_MAXPOOL, .n_inputs = 1, .inputs = {m.v_cat}, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                     .pad = ENC_PAD_VALID, .weight = -1, .bias = -1};
    m.v_pool = enc_graph_add_node(g, &pool, "pool");
    enc_node gap = {.op = ENC_GAP, .n_inputs = 1, .inputs = {m.v_pool}, .weight = -1, .bias = -1};
    m.v_gap = enc_graph_add_node(g, &gap, "gap");
    enc_node den = {.op = ENC_DENSE, .n_inputs = 1, .inputs = {m.v_gap}, .weight = p3, .bias = q3};
    m.v_logits = enc_graph_add_node(g, &den, "logits");
    enc_node smx = {.op = ENC_SOFTMAX, .n_inputs = 1, .inputs = {m.v_logits}, .weight = -1, .bias = -1};
    m.v_probs = enc_graph_add_node(g, &smx, "probs");
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    free(w3);
    free(b3);
    return m;
}

/* Reference of the mini graph, op by op, using the graph's own parameters. */
static void ref_mini(const mini *m, const float *x, int n, double *gap_out, double *probs)
{
    const enc_graph *g = m->g;
    const float *w1 = enc_graph_param_data(g, 0), *b1 = enc_graph_param_data(g, 1);
    const float *w2 = enc_graph_param_data(g, 2), *b2 = enc_graph_param_data(g, 3);
    const float *w3 = enc_graph_param_data(g, 4), *b3 = enc_graph_param_data(g, 5);
    for (int i = 0; i < n; i++) {
        static double conv[9][7][8], dwv[9][7][8], cat[9][7][19];
        const float *xi = x + (size_t)i * 9 * 7 * 3;
        for (int y = 0; y < 9; y++)
            for (int xx = 0; xx < 7; xx++)
                for (int o = 0; o < 8; o++) {
                    double a = b1[o];
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = y - 1 + ky, ix = xx - 1 + kx;
                            if (iy < 0 || iy >= 9 || ix < 0 || ix >= 7) continue;
                            for (int c = 0; c < 3; c++)
                                a += (double)xi[(iy * 7 + ix) * 3 + c] * w1[((ky * 3 + kx) * 3 + c) * 8 + o];
                        }
                    conv[y][xx][o] = ref_act(a, ENC_ACT_RELU);
                }
        for (int y = 0; y < 9; y++)
            for (int xx = 0; xx < 7; xx++)
                for (int o = 0; o < 8; o++) {
                    double a = b2[o];
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = y - 1 + ky, ix = xx - 1 + kx;
                            if (iy < 0 || iy >= 9 || ix < 0 || ix >= 7) continue;
                            a += conv[iy][ix][o] * w2[(ky * 3 + kx) * 8 + o];
                        }
                    dwv[y][xx][o] = ref_act(a, ENC_ACT_RELU6);
                }
        for (int y = 0; y < 9; y++)
            for (int xx = 0; xx < 7; xx++) {
                for (int o = 0; o < 8; o++) cat[y][xx][o] = conv[y][xx][o] + dwv[y][xx][o];
                for (int o = 0; o < 8; o++) cat[y][xx][8 + o] = conv[y][xx][o];
                for (int o = 0; o < 3; o++) cat[y][xx][16 + o] = xi[(y * 7 + xx) * 3 + o];
            }
        /* VALID 3x3 s2 on 9x7: 4x3 outputs. */
        double *gp = gap_out + (size_t)i * 19;
        for (int o = 0; o < 19; o++) {
            double s = 0;
            for (int py = 0; py < 4; py++)
                for (int px = 0; px < 3; px++) {
                    double mx = -INFINITY;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++)
                            if (cat[py * 2 + ky][px * 2 + kx][o] > mx) mx = cat[py * 2 + ky][px * 2 + kx][o];
                    s += mx;
                }
            gp[o] = s / 12.0;
        }
        double lg[5], mx = -INFINITY, s = 0;
        for (int o = 0; o < 5; o++) {
            lg[o] = b3[o];
            for (int k = 0; k < 19; k++) lg[o] += gp[k] * w3[k * 5 + o];
            if (lg[o] > mx) mx = lg[o];
        }
        for (int o = 0; o < 5; o++) s += exp(lg[o] - mx);
        for (int o = 0; o < 5; o++) probs[i * 5 + o] = exp(lg[o] - mx) / s;
    }
}

static void multi_op_all(void)
{
    imcap_rng_seed(&g_rng, 5);
    mini m = build_mini();
    REQUIRE(m.v_probs > 0);
    const enc_value *vp = enc_graph_value(m.g, m.v_pool);
    CHECK(vp->h == 4 && vp->w == 3 && vp->c == 19);
    REQUIRE_OK(enc_graph_set_output(m.g, "embedding", m.v_gap));
    REQUIRE_OK(enc_graph_set_output(m.g, "probs", m.v_probs));
    CHECK(enc_graph_output(m.g, "probs") == m.v_probs);
    CHECK(enc_graph_output(m.g, "nope") == -1);
    int n = 3;
    float *x = rand_buf((size_t)n * 9 * 7 * 3);
    double gap_ref[3 * 19], probs_ref[3 * 5];
    ref_mini(&m, x, n, gap_ref, probs_ref);
    float gap[3 * 19], probs[3 * 5];
    float *outs[2] = {probs, gap};
    int ids[2] = {m.v_probs, m.v_gap};
    REQUIRE_OK(enc_graph_run(m.g, x, n, ids, 2, outs));
    CHECK(compare(gap, gap_ref, 3 * 19, 1e-5, "gap") == 0);
    CHECK(compare(probs, probs_ref, 3 * 5, 1e-5, "probs") == 0);
    /* Only the embedding, image by image: same numbers. */
    for (int i = 0; i < n; i++) {
        float one[19];
        float *o1 = one;
        REQUIRE_OK(enc_graph_run(m.g, x + (size_t)i * 9 * 7 * 3, 1, &m.v_gap, 1, &o1));
        CHECK(compare(one, gap_ref + i * 19, 19, 1e-5, "gap1") == 0);
    }
    free(x);
    enc_graph_free(m.g);
}

TEST(ops_multi_op_graph_matches_reference) { CHECK(each_cpu_path(multi_op_all) >= 1); }

typedef struct thr_arg {
    const enc_graph *g;
    const float *x;
    int id;
    float out[4 * 5];
    int st;
} thr_arg;

static void *thr_run(void *p)
{
    thr_arg *a = p;
    float *o = a->out;
    for (int k = 0; k < 20 && a->st == 0; k++) a->st = enc_graph_run(a->g, a->x, 4, &a->id, 1, &o);
    return NULL;
}

TEST(ops_concurrent_runs_on_one_graph_agree)
{
    imcap_rng_seed(&g_rng, 6);
    mini m = build_mini();
    float *x = rand_buf(4 * 9 * 7 * 3);
    float want[4 * 5];
    float *o = want;
    REQUIRE_OK(enc_graph_run(m.g, x, 4, &m.v_probs, 1, &o));
    thr_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (thr_arg){.g = m.g, .x = x, .id = m.v_probs};
        REQUIRE(pthread_create(&th[i], NULL, thr_run, &args[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].st == 0);
        CHECK(memcmp(args[i].out, want, sizeof want) == 0);
    }
    free(x);
    enc_graph_free(m.g);
}

TEST(ops_builder_rejects_bad_nodes)
{
    enc_graph *g = enc_graph_new("bad");
    int in = enc_graph_add_input(g, "in", 5, 5, 3);
    CHECK(enc_graph_add_input(g, "again", 5, 5, 3) < 0);
    float w[3 * 3 * 4 * 2] = {0};
    int s_ok[4] = {3, 3, 3, 2}, s_bad[4] = {3, 3, 4, 2}, n2 = 2, n3 = 3;
    int p_ok = enc_graph_add_param(g, "w", 4, s_ok, w), p_bad = enc_graph_add_param(g, "wbad", 4, s_bad, w);
    int b2 = enc_graph_add_param(g, "b2", 1, &n2, w), b3 = enc_graph_add_param(g, "b3", 1, &n3, w);
    int zero[1] = {0};
    CHECK(enc_graph_add_param(g, "z", 1, zero, w) < 0);
    CHECK(enc_graph_add_param(g, "z", 5, s_ok, w) < 0);
    enc_node conv = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .pad = ENC_PAD_VALID, .weight = p_bad, .bias = b2};
    CHECK(enc_graph_add_node(g, &conv, "c") < 0);
    CHECK(strstr(imcap_last_error(), "wbad") != NULL);
    conv.weight = p_ok;
    conv.bias = b3;
    CHECK(enc_graph_add_node(g, &conv, "c") < 0);
    CHECK(strstr(imcap_last_error(), "bias") != NULL);
    conv.bias = b2;
    conv.inputs[0] = 7;
    CHECK(enc_graph_add_node(g, &conv, "c") < 0);
    conv.inputs[0] = in;
    conv.kh = conv.kw = 7;
    CHECK(enc_graph_add_node(g, &conv, "c") < 0); /* window vs weight */
    enc_node pool = {.op = ENC_MAXPOOL, .n_inputs = 1, .inputs = {in}, .kh = 7, .kw = 7, .pad = ENC_PAD_VALID,
                     .weight = -1, .bias = -1};
    CHECK(enc_graph_add_node(g, &pool, "p") < 0);
    CHECK(strstr(imcap_last_error(), "does not fit") != NULL);
    pool.pad = ENC_PAD_SAME;
    int pv = enc_graph_add_node(g, &pool, "p");
    CHECK(pv > 0);
    enc_node add = {.op = ENC_ADD, .n_inputs = 2, .inputs = {in, pv}, .weight = -1, .bias = -1};
    CHECK(enc_graph_add_node(g, &add, "a") > 0);
    conv.kh = conv.kw = 0;
    int cv = enc_graph_add_node(g, &conv, "c");
    CHECK(cv > 0);
    add.inputs[1] = cv;
    CHECK(enc_graph_add_node(g, &add, "a") < 0);
    enc_node cat = {.op = ENC_CONCAT, .n_inputs = 2, .inputs = {in, cv}, .weight = -1, .bias = -1};
    CHECK(enc_graph_add_node(g, &cat, "cat") < 0);
    enc_node act = {.op = ENC_ACT, .n_inputs = 1, .inputs = {in}, .act = (enc_act)9, .weight = -1, .bias = -1};
    CHECK(enc_graph_add_node(g, &act, "x") < 0);
    act.act = ENC_ACT_RELU;
    act.weight = p_ok;
    CHECK(enc_graph_add_node(g, &act, "x") < 0);
    CHECK(enc_graph_set_output(g, "o", 99) != IMCAP_OK);
    float x[75] = {0}, y[75];
    float *o = y;
    int bad_id = 99;
    CHECK(enc_graph_run(g, x, 1, &bad_id, 1, &o) != IMCAP_OK);
    CHECK(enc_graph_run(g, x, 0, &pv, 1, &o) != IMCAP_OK);
    enc_graph_free(g);
}

/* ------------------------------------------------------ native file (GGUF) */

static void mini_with_outputs(mini *m)
{
    *m = build_mini();
    REQUIRE(m->v_probs > 0);
    REQUIRE_OK(enc_graph_set_output(m->g, "embedding", m->v_gap));
    REQUIRE_OK(enc_graph_set_output(m->g, "probs", m->v_probs));
    enc_preproc pre = {9, 7, {2.0f, 2.0f, 2.0f}, {-1.0f, -1.0f, -1.0f}};
    enc_graph_set_preproc(m->g, &pre);
}

/* The mini graph (random weights from seed) saved to <tmp>/enc.gguf. */
static void mini_saved(mini *m, uint64_t seed, char *path, size_t cap)
{
    imcap_rng_seed(&g_rng, seed);
    mini_with_outputs(m);
    snprintf(path, cap, "%s/enc.gguf", test_tmpdir());
    REQUIRE_OK(enc_graph_save(m->g, path));
}

TEST(graph_save_load_round_trip_is_bit_identical)
{
    mini m;
    char path[600];
    mini_saved(&m, 7, path, sizeof path);
    enc_graph *l = NULL;
    REQUIRE_OK(enc_graph_load(path, &l));
    CHECK_STR(enc_graph_name(l), "mini");
    CHECK(enc_graph_n_nodes(l) == enc_graph_n_nodes(m.g) && enc_graph_n_params(l) == enc_graph_n_params(m.g));
    CHECK(enc_graph_output(l, "embedding") == m.v_gap && enc_graph_output(l, "probs") == m.v_probs);
    CHECK(enc_graph_checksum(l) == enc_graph_checksum(m.g));
    const enc_preproc *pre = enc_graph_preproc(l);
    REQUIRE(pre);
    CHECK(pre->in_h == 9 && pre->in_w == 7 && pre->scale[1] == 2.0f && pre->bias[2] == -1.0f);
    CHECK_STR(enc_graph_value(l, m.v_dw)->name, "dw");
    CHECK_STR(enc_graph_node(l, 1)->name, enc_graph_node(m.g, 1)->name);
    float *x = rand_buf(2 * 9 * 7 * 3);
    float a[2 * 5], b[2 * 5], ea[2 * 19], eb[2 * 19];
    float *oa[2] = {a, ea}, *ob[2] = {b, eb};
    int ids[2] = {m.v_probs, m.v_gap};
    REQUIRE_OK(enc_graph_run(m.g, x, 2, ids, 2, oa));
    REQUIRE_OK(enc_graph_run(l, x, 2, ids, 2, ob));
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(ea, eb, sizeof ea) == 0);
    /* Saving the loaded graph again gives the same bytes. */
    char path2[600];
    snprintf(path2, sizeof path2, "%s/enc2.gguf", test_tmpdir());
    REQUIRE_OK(enc_graph_save(l, path2));
    char *d1, *d2;
    size_t n1, n2;
    REQUIRE_OK(imcap_read_file(path, 1 << 24, &d1, &n1));
    REQUIRE_OK(imcap_read_file(path2, 1 << 24, &d2, &n2));
    CHECK(n1 == n2 && memcmp(d1, d2, n1) == 0);
    /* A changed weight changes the checksum. */
    enc_graph *g2 = build_mini().g;
    CHECK(enc_graph_checksum(g2) != enc_graph_checksum(m.g));
    enc_graph_free(g2);
    free(d1);
    free(d2);
    free(x);
    enc_graph_free(l);
    enc_graph_free(m.g);
}

/* Offset of the payload of KV key in a GGUF image (after key, type and,
 * for arrays, element type and count). */
static size_t kv_payload(const char *buf, size_t len, const char *key, int is_arr)
{
    size_t kl = strlen(key);
    for (size_t i = 8; i + kl + 8 < len; i++) {
        uint64_t l;
        memcpy(&l, buf + i - 8, 8);
        if (l == kl && memcmp(buf + i, key, kl) == 0) return i + kl + 4 + (is_arr ? 12 : 0);
    }
    return 0;
}

static void expect_load_fails(const char *path, const char *buf, size_t len, const char *what)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(buf, 1, len, fp) == len && fclose(fp) == 0);
    enc_graph *l = (enc_graph *)1;
    imcap_status s = enc_graph_load(path, &l);
    if (s == IMCAP_OK || l != NULL || !strstr(imcap_last_error(), path))
        test_fail_at(__FILE__, __LINE__, "%s: load gave %d, message '%s'", what, s, imcap_last_error());
    if (what[0] == '!' && !strstr(imcap_last_error(), what + 1))
        test_fail_at(__FILE__, __LINE__, "message '%s' lacks '%s'", imcap_last_error(), what + 1);
}

TEST(graph_load_refuses_truncated_and_edited_files)
{
    mini m;
    char path[600], bad[600];
    mini_saved(&m, 8, path, sizeof path);
    snprintf(bad, sizeof bad, "%s/bad.gguf", test_tmpdir());
    char *orig;
    size_t len;
    REQUIRE_OK(imcap_read_file(path, 1 << 24, &orig, &len));
    char *buf = malloc(len);
    for (size_t cut = 0; cut < len; cut += len / 37 + 1) expect_load_fails(bad, orig, cut, "truncated");
    size_t nodes = kv_payload(orig, len, "imcap.encoder.nodes", 1);
    size_t ver = kv_payload(orig, len, "imcap.encoder.version", 0);
    size_t shapes = kv_payload(orig, len, "imcap.encoder.value_shapes", 1);
    size_t outs = kv_payload(orig, len, "imcap.encoder.output_values", 1);
    REQUIRE(nodes && ver && shapes && outs);
    struct { size_t off; int32_t v; const char *what; } edits[] = {
        {ver, 3, "!version 3"},
        {ver, 2, "!int8.value_scales"},                  /* version 2 without the int8 program */
        {nodes + 0 * 4, 77, "!op 77"},                    /* node 0 op */
        {nodes + 2 * 4, 40, "!not defined yet"},          /* node 0 input */
        {nodes + 11 * 4, 5, "!weight"},                   /* node 0 kh */
        {nodes + 18 * 4, 1000, "!weight parameter"},      /* node 0 weight id */
        {nodes + 19 * 4, 0, "!bias"},                     /* node 0 bias -> the weight */
        {nodes + (20 + 17) * 4, 2, "!weight"},            /* node 1 (dw) multiplier */
        {nodes + (40 + 1) * 4, 1, "!inputs"},             /* node 2 (add) n_inputs */
        {nodes + (20 + 13) * 4, 2, "!stored as"},         /* node 1 stride: shape changes */
        {nodes + (20 + 12) * 4, 0, "!bad window"},        /* node 1 kw */
        {nodes + 17 * 4, 3, "!inconsistent"},             /* node 0 (conv) multiplier: not as the builder stores it */
        {nodes + (20 + 16) * 4, 0, "!checksum"},          /* node 1 act: valid but edited */
        {shapes + 4 * 4, 3, "!stored as"},                /* value 1 width */
        {outs + 4, 1234, "!output"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        memcpy(buf, orig, len);
        memcpy(buf + edits[i].off, &edits[i].v, 4);
        expect_load_fails(bad, buf, len, edits[i].what);
    }
    /* A GGUF file that is not an encoder. */
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "imcap.decoder");
    REQUIRE_OK(gguf_write(w, bad));
    gguf_writer_free(w);
    enc_graph *l = NULL;
    CHECK(enc_graph_load(bad, &l) != IMCAP_OK && strstr(imcap_last_error(), "not an imcap encoder"));
    CHECK(enc_graph_load("/nonexistent/enc.gguf", &l) == IMCAP_E_IO);
    free(buf);
    free(orig);
    enc_graph_free(m.g);
}

/* The structure is checked on load, the weights by the first run (which
 * reads them all to pack them): one flipped bit in a weight fails that run
 * and every later one with a message naming the file, never a skewed result. */
TEST(graph_first_run_refuses_damaged_weights)
{
    mini m;
    char path[600];
    mini_saved(&m, 10, path, sizeof path);
    const enc_param *p0 = enc_graph_param(m.g, 0);
    const float *w0 = enc_graph_param_data(m.g, 0);
    REQUIRE(p0 && p0->count >= 4);
    char *buf;
    size_t len;
    REQUIRE_OK(imcap_read_file(path, 1 << 24, &buf, &len));
    char *at = memmem(buf, len, w0, 4 * sizeof(float));
    REQUIRE(at != NULL);
    const enc_value *iv = enc_graph_value(m.g, enc_graph_input(m.g));
    size_t nin = (size_t)iv->h * iv->w * iv->c;
    float *x = rand_buf(nin), *y = malloc(4096 * sizeof(float));
    int out = enc_graph_output(m.g, enc_graph_output_name(m.g, 0));
    REQUIRE(out >= 0 && (size_t)enc_graph_value(m.g, out)->h * enc_graph_value(m.g, out)->w * enc_graph_value(m.g, out)->c <= 4096);
    enc_graph *l = NULL;
    REQUIRE_OK(enc_graph_load(path, &l));
    CHECK(enc_graph_run(l, x, 1, &out, 1, &y) == IMCAP_OK); /* intact */
    enc_graph_free(l);
    at[5] ^= 0x10;
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(buf, 1, len, fp) == len && fclose(fp) == 0);
    l = NULL;
    REQUIRE_OK(enc_graph_load(path, &l)); /* the structure is intact */
    for (int i = 0; i < 2; i++) {
        CHECK(enc_graph_run(l, x, 1, &out, 1, &y) == IMCAP_E_FORMAT);
        CHECK(strstr(imcap_last_error(), path) && strstr(imcap_last_error(), "checksum"));
    }
    enc_graph_free(l);
    free(x);
    free(y);
    free(buf);
    enc_graph_free(m.g);
}

/* Large per-image values run image-chunk by image-chunk (2 MB per image here:
 * chunks of 2 images for a batch of 3); results equal image-by-image runs,
 * including a requested value from inside the chunked segment. */
TEST(ops_chunked_batch_equals_single_images)
{
    imcap_rng_seed(&g_rng, 9);
    enc_graph *g = enc_graph_new("chunks");
    int in = enc_graph_add_input(g, "in", 128, 128, 8);
    float *w1 = rand_buf(3 * 3 * 8 * 32), *w2 = rand_buf(3 * 3 * 32), *w3 = rand_buf(32 * 32), *b = rand_buf(32);
    int s1[4] = {3, 3, 8, 32}, s2[3] = {3, 3, 32}, s3[4] = {1, 1, 32, 32}, n32 = 32;
    int p1 = enc_graph_add_param(g, "w1", 4, s1, w1), p2 = enc_graph_add_param(g, "w2", 3, s2, w2);
    int p3 = enc_graph_add_param(g, "w3", 4, s3, w3), pb = enc_graph_add_param(g, "b", 1, &n32, b);
    enc_node a = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .pad = ENC_PAD_SAME, .act = ENC_ACT_RELU, .weight = p1, .bias = pb};
    int va = enc_graph_add_node(g, &a, "a");
    enc_node d = {.op = ENC_DWCONV2D, .n_inputs = 1, .inputs = {va}, .pad = ENC_PAD_SAME, .act = ENC_ACT_RELU6, .weight = p2, .bias = pb};
    int vd = enc_graph_add_node(g, &d, "dw");
    enc_node c = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {vd}, .pad = ENC_PAD_SAME, .weight = p3, .bias = -1};
    int vc = enc_graph_add_node(g, &c, "pw");
    enc_node s = {.op = ENC_ADD, .n_inputs = 2, .inputs = {va, vc}, .weight = -1, .bias = -1};
    int vs = enc_graph_add_node(g, &s, "sum");
    enc_node p = {.op = ENC_MAXPOOL, .n_inputs = 1, .inputs = {vs}, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .weight = -1, .bias = -1};
    int vp = enc_graph_add_node(g, &p, "pool");
    enc_node q = {.op = ENC_CONCAT, .n_inputs = 2, .inputs = {vp, vp}, .weight = -1, .bias = -1};
    int vq = enc_graph_add_node(g, &q, "cat");
    enc_node m = {.op = ENC_GAP, .n_inputs = 1, .inputs = {vq}, .weight = -1, .bias = -1};
    int vm = enc_graph_add_node(g, &m, "gap");
    REQUIRE(vm > 0);
    int n = 3;
    size_t isz = 128 * 128 * 8, dsz = 128 * 128 * 32;
    float *x = rand_buf(n * isz), *dw_all = malloc(n * dsz * sizeof(float)), gap_all[3 * 64];
    int ids[2] = {vd, vm};
    float *outs[2] = {dw_all, gap_all};
    REQUIRE_OK(enc_graph_run(g, x, n, ids, 2, outs));
    float *dw1 = malloc(dsz * sizeof(float)), gap1[64];
    for (int i = 0; i < n; i++) {
        float *o1[2] = {dw1, gap1};
        REQUIRE_OK(enc_graph_run(g, x + i * isz, 1, ids, 2, o1));
        CHECK(memcmp(dw1, dw_all + i * dsz, dsz * sizeof(float)) == 0);
        CHECK(memcmp(gap1, gap_all + i * 64, sizeof gap1) == 0);
    }
    free(x);
    free(dw_all);
    free(dw1);
    free(w1);
    free(w2);
    free(w3);
    free(b);
    enc_graph_free(g);
}

/* ZeroPadding2D (ENC_PAD, asymmetric), then what ResNet-50 does with it: a
 * VALID max pool that sees the zeros (negative inputs, so they matter), a
 * VALID strided convolution with bias, and an Add with a fused ReLU. */
TEST(ops_zero_pad_padded_pool_conv_and_add_relu_match_reference)
{
    imcap_rng_seed(&g_rng, 9);
    enum { N = 2, H = 5, W = 6, C = 3, T = 1, B = 2, L = 3, R = 0, PH = H + T + B, PW = W + L + R, CO = 4 };
    float *x = rand_buf((size_t)N * H * W * C), *cw = rand_buf(3 * 3 * C * CO), *cb = rand_buf(CO);
    for (int i = 0; i < N * H * W * C; i++) x[i] -= 0.5f; /* mostly negative: padded zeros win max pools */
    enc_graph *g = enc_graph_new("pad");
    int in = enc_graph_add_input(g, "in", H, W, C);
    int wshape[4] = {3, 3, C, CO}, bshape = CO;
    int pw = enc_graph_add_param(g, "w", 4, wshape, cw), pb = enc_graph_add_param(g, "b", 1, &bshape, cb);
    enc_node pad = {.op = ENC_PAD, .n_inputs = 1, .inputs = {in}, .kh = T, .sh = B, .kw = L, .sw = R, .weight = -1,
                    .bias = -1};
    int vp = enc_graph_add_node(g, &pad, "pad");
    REQUIRE(vp > 0);
    const enc_value *pv = enc_graph_value(g, vp);
    CHECK(pv->h == PH && pv->w == PW && pv->c == C);
    enc_node mp = {.op = ENC_MAXPOOL, .n_inputs = 1, .inputs = {vp}, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                   .pad = ENC_PAD_VALID, .weight = -1, .bias = -1};
    enc_node cv = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {vp}, .sh = 2, .sw = 2, .pad = ENC_PAD_VALID,
                   .weight = pw, .bias = pb};
    enc_node add = {.op = ENC_ADD, .n_inputs = 2, .inputs = {vp, vp}, .act = ENC_ACT_RELU, .weight = -1, .bias = -1};
    int vm = enc_graph_add_node(g, &mp, "mp"), vc = enc_graph_add_node(g, &cv, "conv"), va = enc_graph_add_node(g, &add, "add");
    REQUIRE(vm > 0 && vc > 0 && va > 0);
    const int OH = (PH - 3) / 2 + 1, OW = (PW - 3) / 2 + 1;
    CHECK(enc_graph_value(g, vm)->h == OH && enc_graph_value(g, vm)->w == OW && enc_graph_value(g, vc)->c == CO);
    float *yp = malloc(sizeof(float) * N * PH * PW * C), *ym = malloc(sizeof(float) * N * OH * OW * C);
    float *yc = malloc(sizeof(float) * N * OH * OW * CO), *ya = malloc(sizeof(float) * N * PH * PW * C);
    int ids[4] = {vp, vm, vc, va};
    float *outs[4] = {yp, ym, yc, ya};
    REQUIRE_OK(enc_graph_run(g, x, N, ids, 4, outs));
    /* naive references on an explicitly zero-padded copy */
    static double P[N][PH][PW][C];
    for (int n = 0; n < N; n++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++)
                for (int k = 0; k < C; k++) {
                    int si = i - T, sj = j - L;
                    P[n][i][j][k] = si >= 0 && si < H && sj >= 0 && sj < W ? x[((n * H + si) * W + sj) * C + k] : 0.0;
                }
    int bad = 0, zeros_won = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++)
                for (int k = 0; k < C; k++) {
                    size_t o = (((size_t)n * PH + i) * PW + j) * C + k;
                    bad += yp[o] != (float)P[n][i][j][k];
                    bad += ya[o] != (float)ref_act(2 * P[n][i][j][k], ENC_ACT_RELU);
                }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                for (int k = 0; k < C; k++) {
                    double m = -INFINITY;
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++) m = fmax(m, P[n][2 * i + a][2 * j + b][k]);
                    zeros_won += m == 0.0;
                    bad += ym[(((size_t)n * OH + i) * OW + j) * C + k] != (float)m;
                }
                for (int o = 0; o < CO; o++) {
                    double s = cb[o];
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                            for (int k = 0; k < C; k++) s += P[n][2 * i + a][2 * j + b][k] * cw[((a * 3 + b) * C + k) * CO + o];
                    bad += fabs(yc[(((size_t)n * OH + i) * OW + j) * CO + o] - s) > 1e-5 * (1 + fabs(s));
                }
            }
    CHECK(bad == 0);
    CHECK(zeros_won > 0);
    /* bad paddings are refused */
    enc_node neg = pad;
    neg.kw = -1;
    CHECK(enc_graph_add_node(g, &neg, "neg") < 0);
    CHECK(strstr(imcap_last_error(), "bad padding") != NULL);
    free(x), free(cw), free(cb), free(yp), free(ym), free(yc), free(ya);
    enc_graph_free(g);
}
