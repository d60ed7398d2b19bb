/*
 * test_bf16.c - the bf16 precision (ops_bf16.h): rounding, the GEMM against
 * a scalar reference on bf16-rounded operands (both kernels: AMX tiles and
 * vdpbf16ps), and ResNet-50 / InceptionV3 in bf16 against float on the
 * sample photos. Skipped where the CPU lacks AVX512_BF16.
 */
#include "test.h"
#include "cpu.h"
#include "fixture.h"
#include "graph.h"
#include "ops_bf16.h"
#include "qgraph.h"

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

TEST(bf16_round_to_nearest_even)
{
    CHECK(ops_bf16_round(1.0f) == 0x3f80);
    CHECK(ops_bf16_round(1.0f + 0x1p-8f) == 0x3f80);        /* tie: stays even */
    CHECK(ops_bf16_round(1.0f + 3 * 0x1p-8f) == 0x3f82);    /* tie: up to even */
    CHECK(ops_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
    CHECK(ops_bf16_round(-2.0f) == 0xc000);
    CHECK(ops_bf16_round(0x1.ffp127f) == 0x7f80); /* tie past the largest bf16: to even, infinity */
    CHECK(isnan(ops_bf16_float(ops_bf16_round(NAN))));
    CHECK(isinf(ops_bf16_float(ops_bf16_round(INFINITY))));
}

static float bfr(float v) { return ops_bf16_float(ops_bf16_round(v)); }

static float urand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* One GEMM (dense when cv is NULL, else the convolution cv) against the
 * double sums of the bf16-rounded operands; the bound is 1e-5 of the sum
 * of |products| (bf16 rounding of the operands alone would be ~4e-3). */
static void gemm_case(const ops_win *cv, int m, int k, int n, enc_act act, unsigned seed)
{
    size_t xn = cv ? (size_t)cv->n * cv->h * cv->w * cv->c : (size_t)m * k;
    float *x = malloc(xn * sizeof(float)), *w = malloc((size_t)k * n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)m * n * sizeof(float)), *arow = malloc((size_t)k * sizeof(float));
    uint16_t *wp = imcap_alloc(ops_bf16_packed(k, n), sizeof(uint16_t));
    REQUIRE(x && w && b && y && arow && wp);
    for (size_t i = 0; i < xn; i++) x[i] = urand(&seed);
    for (size_t i = 0; i < (size_t)k * n; i++) w[i] = urand(&seed);
    for (int i = 0; i < n; i++) b[i] = urand(&seed);
    ops_bf16_pack(k, n, w, wp);
    ops_gemm_bf16(x, (size_t)(cv ? cv->c : k), cv, wp, b, act, y, m, k, n);
    int bad = 0;
    for (int r = 0; r < m; r++) {
        if (cv) {
            int ox = r % cv->ow, oy = (r / cv->ow) % cv->oh, im = r / (cv->ow * cv->oh);
            for (int t = 0; t < cv->kh * cv->kw; t++)
                for (int c = 0; c < cv->c; c++) {
                    int iy = oy * cv->sh - cv->pt + t / cv->kw, ix = ox * cv->sw - cv->pl + t % cv->kw;
                    bool in = iy >= 0 && iy < cv->h && ix >= 0 && ix < cv->w;
                    arow[t * cv->c + c] = in ? x[(((size_t)im * cv->h + iy) * cv->w + ix) * cv->c + c] : 0.0f;
                }
        } else {
            for (int i = 0; i < k; i++) arow[i] = x[(size_t)r * k + i];
        }
        for (int j = 0; j < n; j++) {
            double s = b[j], mag = fabs(b[j]);
            for (int i = 0; i < k; i++) {
                double p = (double)bfr(arow[i]) * bfr(w[(size_t)i * n + j]);
                s += p;
                mag += fabs(p);
            }
            if (act == ENC_ACT_RELU && s < 0) s = 0;
            double got = y[(size_t)r * n + j];
            if (!(fabs(got - s) <= 1e-5 * mag + 1e-6) && bad++ < 3)
                fprintf(stderr, "    %s m %d k %d n %d: y[%d][%d] = %.7g, reference %.7g\n", cpu_has_amx_bf16() ? "amx" : "avx512-bf16",
                        m, k, n, r, j, got, s);
        }
    }
    CHECK(bad == 0);
    free(x);
    free(w);
    free(b);
    free(y);
    free(arow);
    imcap_free(wp);
}

static void gemm_cases(void)
{
    static const int dense[][3] = {{1, 1, 1}, {13, 7, 17}, {12, 32, 16}, {37, 301, 45}, {33, 515, 70}, {70, 64, 33}};
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++)
        gemm_case(NULL, dense[i][0], dense[i][1], dense[i][2], i % 2 ? ENC_ACT_RELU : ENC_ACT_NONE, 7u + (unsigned)i);
    /* 3x3 stride 2 padded, 7 channels (K = 63); 1x1 of 300 channels over 2 images */
    ops_win c3 = {.n = 2, .h = 9, .w = 11, .c = 7, .oh = 5, .ow = 6, .oc = 19, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .pt = 1, .pl = 1, .mult = 1};
    gemm_case(&c3, 2 * 5 * 6, 63, 19, ENC_ACT_RELU, 99u);
    ops_win c1 = {.n = 2, .h = 5, .w = 4, .c = 300, .oh = 5, .ow = 4, .oc = 35, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .mult = 1};
    gemm_case(&c1, 2 * 5 * 4, 300, 35, ENC_ACT_NONE, 5u);
}

TEST(bf16_gemm_matches_reference)
{
    if (!cpu_has_avx512_bf16()) SKIP("this CPU lacks AVX512_BF16");
    bool amx = cpu_has_amx_bf16();
    gemm_cases();
    if (amx) {
        /* and the vdpbf16ps kernel */
        cpu_amx_allow(false);
        gemm_cases();
        cpu_amx_allow(true);
    } else {
        fprintf(stderr, "    AMX-BF16: not usable here, its kernel not checked\n");
    }
}

TEST(bf16_refused_without_the_cpu_feature)
{
    enc_graph *g = enc_graph_new("t");
    REQUIRE(g);
    enc_precision p;
    REQUIRE_OK(enc_precision_parse("bf16", &p));
    CHECK(p == ENC_PREC_BF16 && !strcmp(enc_precision_name(p), "bf16"));
    if (cpu_has_avx512_bf16()) {
        CHECK(enc_graph_set_precision(g, p) == IMCAP_OK && enc_graph_precision(g) == ENC_PREC_BF16);
    } else {
        CHECK(enc_graph_set_precision(g, p) == IMCAP_E_UNSUPPORTED);
        CHECK(strstr(imcap_last_error(), "AVX512_BF16") != NULL);
    }
    enc_graph_free(g);
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* top-5 of p[n] (n >= 5) into t, best first */
static void top5(const float *p, int n, int *t)
{
    for (int k = 0; k < 5; k++) {
        t[k] = -1;
        for (int c = 0; c < n; c++) {
            bool seen = false;
            for (int j = 0; j < k; j++) seen |= t[j] == c;
            if (!seen && (t[k] < 0 || p[c] > p[t[k]])) t[k] = c;
        }
    }
}

static bool same_set5(const int *a, const int *b)
{
    for (int i = 0; i < 5; i++) {
        bool f = false;
        for (int j = 0; j < 5; j++) f |= a[i] == b[j];
        if (!f) return false;
    }
    return true;
}

/* The encoder in float and bf16 on the sample photos present: top-1 equal,
 * top-5 sets equal on all photos but at most one, embedding cosine >= 0.999. */
static void model_bf16_vs_float(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "    %s not present, not checked\n", path);
        return;
    }
    static const char *const photos[] = {"parrot.jpg", "cat_720p.jpg", "grace_hopper.bmp", "hot_dog.jpg",
                                         "owl.jpg",    "pets.jpg",     "face.jpg"};
    enc_graph *g;
    REQUIRE_OK(enc_graph_load(path, &g));
    const enc_preproc *pp = enc_graph_preproc(g);
    int ids[2] = {enc_graph_output(g, "embedding"), enc_graph_output(g, "probs")};
    REQUIRE(ids[0] >= 0 && ids[1] >= 0);
    int ne = enc_graph_value(g, ids[0])->c, np = enc_graph_value(g, ids[1])->c;
    REQUIRE(np >= 5);
    size_t px = (size_t)pp->in_h * pp->in_w * 3;
    int max_n = getenv("IMCAP_SANITIZED") ? 1 : 7, n = 0, top5_differ = 0;
    float *x = malloc(7 * px * sizeof(float)), *o[2][2];
    REQUIRE(x);
    n = fixture_photos(photos, 7, max_n, pp, x, NULL);
    REQUIRE(n >= 1);
    for (int pr = 0; pr < 2; pr++) {
        o[pr][0] = malloc((size_t)n * ne * sizeof(float));
        o[pr][1] = malloc((size_t)n * np * sizeof(float));
        REQUIRE(o[pr][0] && o[pr][1]);
        REQUIRE_OK(enc_graph_set_precision(g, pr ? ENC_PREC_BF16 : ENC_PREC_FLOAT));
        REQUIRE_OK(enc_graph_run(g, x, n, ids, 2, o[pr]));
    }
    double min_cos = 1;
    for (int i = 0; i < n; i++) {
        int tf[5], tb[5];
        top5(o[0][1] + (size_t)i * np, np, tf);
        top5(o[1][1] + (size_t)i * np, np, tb);
        double c = cosine(o[0][0] + (size_t)i * ne, o[1][0] + (size_t)i * ne, ne);
        if (c < min_cos) min_cos = c;
        CHECK(tf[0] == tb[0]);
        top5_differ += !same_set5(tf, tb);
    }
    fprintf(stderr, "    %s: %d photos, min embedding cosine bf16/float %.6f, top-5 sets differ on %d\n", path, n,
            min_cos, top5_differ);
    CHECK(min_cos >= 0.999);
    CHECK(top5_differ <= 1);
    for (int pr = 0; pr < 2; pr++) free(o[pr][0]), free(o[pr][1]);
    free(x);
    enc_graph_free(g);
}

TEST(bf16_encoders_match_float)
{
    if (!cpu_has_avx512_bf16()) SKIP("this CPU lacks AVX512_BF16");
    model_bf16_vs_float("models/encoders/resnet50.gguf");
    model_bf16_vs_float("models/encoders/inception_v3.gguf");
}
