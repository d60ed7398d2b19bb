/* test_tflite.c - the TFLite importer: the two real MobileNets import with the
 * expected structure; truncated and corrupted files fail cleanly; unsupported
 * operators and options are named; and the float execution agrees with
 * TensorFlow Lite's own runtime (goldens from scripts/golden_tflite.sh). */
#include "cpu_paths.h"
#include "graph.h"
#include "qgraph.h"
#include "qops.h"
#include "test.h"
#include "tflite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define V2 "data/models/mobilenet_v2_1.0_224_quant.tflite"
#define TPU "data/models/mobilenet_edgetpu_224_1.0_uint8.tflite"

static uint8_t *read_all(const char *path, size_t *n)
{
    char *d;
    if (imcap_read_file(path, (size_t)1 << 30, &d, n)) return NULL;
    return (uint8_t *)d;
}

static void check_output(const enc_graph *g, const char *name, int c)
{
    int id = enc_graph_output(g, name);
    REQUIRE(id >= 0);
    const enc_value *v = enc_graph_value(g, id);
    REQUIRE(v);
    CHECK(v->h == 1 && v->w == 1 && v->c == c);
}

TEST(tflite_import_mobilenets)
{
    enc_graph *g;
    REQUIRE_OK(tflite_import(V2, &g));
    check_output(g, "embedding", 1280);
    check_output(g, "logits", 1001);
    check_output(g, "probs", 1001);
    const enc_preproc *pp = enc_graph_preproc(g);
    /* input quantization scale 1/128, zero point 128: x = pixel/128 - 1 */
    CHECK(pp->in_h == 224 && pp->in_w == 224);
    CHECK_NEAR(pp->scale[0], 255.0 / 128.0, 1e-6);
    CHECK_NEAR(pp->bias[2], -1.0, 1e-6);
    /* 36 CONV_2D + 17 DEPTHWISE + 10 ADD + 1 AVERAGE_POOL + SOFTMAX; RESHAPE is a renaming */
    CHECK(enc_graph_n_nodes(g) == 65);
    enc_graph_free(g);

    /* The EdgeTPU variant stores no activation shapes and has SQUEEZE + RESHAPE. */
    REQUIRE_OK(tflite_import(TPU, &g));
    check_output(g, "embedding", 1280);
    check_output(g, "probs", 1001);
    pp = enc_graph_preproc(g);
    CHECK_NEAR(pp->bias[0], -128.0 * 0.0078740157, 1e-5);
    enc_graph_free(g);
}

/* "grid" is the 7x7x1280 map the embedding's average pool reads: its mean
 * over the 49 positions is the embedding. */
TEST(tflite_grid_is_the_map_the_embedding_pools)
{
    const char *files[2] = {V2, TPU};
    for (int f = 0; f < 2; f++) {
        enc_graph *g;
        REQUIRE_OK(tflite_import(files[f], &g));
        REQUIRE_OK(enc_graph_set_precision(g, ENC_PREC_FLOAT)); /* int8 rounds the pooled mean */
        int ids[2] = {enc_graph_output(g, "grid"), enc_graph_output(g, "embedding")};
        REQUIRE(ids[0] >= 0);
        const enc_value *v = enc_graph_value(g, ids[0]);
        CHECK(v->h == 7 && v->w == 7 && v->c == 1280);
        float *x = malloc(224 * 224 * 3 * sizeof(float)), *grid = malloc(49 * 1280 * sizeof(float)), emb[1280];
        REQUIRE(x && grid);
        for (int i = 0; i < 224 * 224 * 3; i++) x[i] = (float)((i * 7919) % 255) / 127.5f - 1.0f;
        float *outs[2] = {grid, emb};
        REQUIRE_OK(enc_graph_run(g, x, 1, ids, 2, outs));
        double worst = 0, scale = 0;
        for (int c = 0; c < 1280; c++) {
            double s = 0;
            for (int p = 0; p < 49; p++) s += grid[p * 1280 + c];
            worst = fmax(worst, fabs(s / 49 - emb[c]));
            scale = fmax(scale, fabs(emb[c]));
        }
        CHECK(scale > 0.1 && worst <= 1e-5 * scale);
        free(x);
        free(grid);
        enc_graph_free(g);
    }
}

/* A converted encoder file gives exactly the imported graph's outputs. */
TEST(tflite_convert_roundtrip)
{
    enc_graph *g, *h;
    REQUIRE_OK(tflite_import(V2, &g));
    char path[512];
    snprintf(path, sizeof path, "%s/v2.gguf", test_tmpdir());
    REQUIRE_OK(enc_graph_save(g, path));
    REQUIRE_OK(enc_graph_load(path, &h));
    CHECK(enc_graph_checksum(g) == enc_graph_checksum(h));
    CHECK(enc_graph_n_nodes(g) == enc_graph_n_nodes(h));
    const enc_preproc *pg = enc_graph_preproc(g), *ph = enc_graph_preproc(h);
    CHECK(memcmp(pg, ph, sizeof *pg) == 0);
    size_t n = 224 * 224 * 3;
    float *x = malloc(n * sizeof(float)), a[1001 + 1280], b[1001 + 1280];
    imcap_rng r;
    imcap_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) x[i] = (float)(imcap_rng_uniform(&r) * 2 - 1);
    int ig[2] = {enc_graph_output(g, "probs"), enc_graph_output(g, "embedding")};
    int ih[2] = {enc_graph_output(h, "probs"), enc_graph_output(h, "embedding")};
    float *oa[2] = {a, a + 1001}, *ob[2] = {b, b + 1001};
    REQUIRE_OK(enc_graph_run(g, x, 1, ig, 2, oa));
    REQUIRE_OK(enc_graph_run(h, x, 1, ih, 2, ob));
    CHECK(memcmp(a, b, sizeof a) == 0);
    free(x);
    enc_graph_free(g);
    enc_graph_free(h);
}

TEST(tflite_missing_and_not_tflite)
{
    enc_graph *g;
    CHECK(tflite_import("data/models/no_such_model.tflite", &g) == IMCAP_E_IO);
    CHECK(g == NULL);
    CHECK(strstr(imcap_last_error(), "no_such_model.tflite") != NULL);
    CHECK(tflite_import("data/models/imagenet_labels.txt", &g) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "TFL3") != NULL);
}

/* Where the flatbuffer ends: the v2 file carries a zip archive (TFLite
 * metadata's associated label file) after it, which the model never uses. */
static size_t flatbuffer_end(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (d[i] == 'P' && d[i + 1] == 'K' && d[i + 2] == 3 && d[i + 3] == 4) return i;
    return n;
}

static void truncations(const char *path)
{
    size_t n;
    uint8_t *d = read_all(path, &n);
    REQUIRE(d);
    size_t end = flatbuffer_end(d, n);
    size_t cuts[] = {0, 3, 4, 8, 12, 40, 1000, end / 4, end / 2, end - 70000, end - 30000, end - 4096,
                     end - 1000, end - 100, end - 17, end - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        uint8_t *copy = malloc(cuts[i] + 1); /* exact size, so ASan sees any overread */
        memcpy(copy, d, cuts[i]);
        enc_graph *g = (enc_graph *)1;
        imcap_status s = tflite_import_mem(copy, cuts[i], "cut.tflite", &g);
        if (s != IMCAP_E_FORMAT) fprintf(stderr, "    cut at %zu: status %d\n", cuts[i], s);
        CHECK(s == IMCAP_E_FORMAT);
        CHECK(g == NULL);
        CHECK(strstr(imcap_last_error(), "cut.tflite") != NULL);
        free(copy);
    }
    if (end < n) { /* a cut inside the appended archive leaves the model intact */
        enc_graph *g;
        CHECK(tflite_import_mem(d, end + (n - end) / 2, "cut.tflite", &g) == IMCAP_OK);
        enc_graph_free(g);
    }
    free(d);
}

TEST(tflite_truncated_files_fail_cleanly)
{
    truncations(V2);
    truncations(TPU);
}

/* Random byte changes where the flatbuffer tables live (the end of the v2
 * file, the start of the EdgeTPU file): any status but never a crash, and a
 * message on failure. */
static void fuzz(const char *path, size_t lo_len, size_t hi_len, int trials, uint64_t seed)
{
    size_t n;
    uint8_t *d = read_all(path, &n);
    REQUIRE(d);
    uint8_t *copy = malloc(n);
    imcap_rng r;
    imcap_rng_seed(&r, seed);
    int ok = 0, bad = 0;
    for (int t = 0; t < trials; t++) {
        memcpy(copy, d, n);
        int flips = 1 + (int)imcap_rng_below(&r, 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = imcap_rng_below(&r, 2) ? imcap_rng_below(&r, lo_len)
                                                : n - 1 - imcap_rng_below(&r, hi_len);
            copy[pos] = (uint8_t)imcap_rng_below(&r, 256);
        }
        enc_graph *g = NULL;
        imcap_status s = tflite_import_mem(copy, n, "fuzz.tflite", &g);
        CHECK(s == IMCAP_OK || s == IMCAP_E_FORMAT || s == IMCAP_E_UNSUPPORTED);
        if (s == IMCAP_OK) {
            ok++;
            CHECK(g != NULL);
            enc_graph_free(g);
        } else {
            bad++;
            CHECK(g == NULL && strstr(imcap_last_error(), "fuzz.tflite") != NULL);
        }
    }
    CHECK(bad > 0);
    fprintf(stderr, "    %s: %d trials, %d imported, %d refused\n", path, trials, ok, bad);
    free(copy);
    free(d);
}

TEST(tflite_corrupted_bytes_fail_cleanly)
{
    int trials = getenv("IMCAP_SANITIZED") ? 15 : 80;
    fuzz(V2, 1024, 65000, trials, 1);
    fuzz(TPU, 2860, 256, trials, 2);
}

/* Minimal reader for the known-good v2 file, to patch it in place. */
static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static size_t fb_field(const uint8_t *b, size_t tab, int id)
{
    size_t vt = tab - (size_t)(int32_t)u32(b + tab);
    unsigned vlen = b[vt] | b[vt + 1] << 8;
    if (4 + 2 * (unsigned)id >= vlen) return 0;
    unsigned off = b[vt + 4 + 2 * id] | b[vt + 5 + 2 * id] << 8;
    return off ? tab + off : 0;
}
static size_t fb_deref(const uint8_t *b, size_t f) { return f + u32(b + f); }
static size_t fb_elem(const uint8_t *b, size_t vec, size_t i) { return fb_deref(b, vec + 4 + 4 * i); }

/* Table of operator k of subgraph 0 and of its operator code. */
static void find_op(const uint8_t *b, size_t k, size_t *op, size_t *code)
{
    size_t model = u32(b);
    size_t sg = fb_elem(b, fb_deref(b, fb_field(b, model, 2)), 0);
    *op = fb_elem(b, fb_deref(b, fb_field(b, sg, 3)), k);
    uint32_t oc = u32(b + fb_field(b, *op, 0));
    *code = fb_elem(b, fb_deref(b, fb_field(b, model, 1)), oc);
}

TEST(tflite_unsupported_op_and_option_are_named)
{
    size_t n, op, code;
    uint8_t *d = read_all(V2, &n);
    REQUIRE(d);
    enc_graph *g;
    /* Operator 65 is the SOFTMAX: turn its code into MUL (18). */
    find_op(d, 65, &op, &code);
    size_t dep = fb_field(d, code, 0), bc = fb_field(d, code, 3);
    REQUIRE(dep && d[dep] == 25);
    d[dep] = 18;
    if (bc) d[bc] = 18;
    CHECK(tflite_import_mem(d, n, "patched.tflite", &g) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "patched.tflite: operator 65 (MUL)") != NULL);
    d[dep] = 25;
    if (bc) d[bc] = 25;
    /* Operator 0 is a CONV_2D with fused RELU6 (Conv2DOptions field 3): make it TANH. */
    find_op(d, 0, &op, &code);
    size_t opts = fb_deref(d, fb_field(d, op, 4)), act = fb_field(d, opts, 3);
    REQUIRE(act && d[act] == 3);
    d[act] = 4;
    CHECK(tflite_import_mem(d, n, "patched.tflite", &g) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "operator 0 (CONV_2D): fused activation TANH") != NULL);
    d[act] = 3;
    /* Dilation 2 (field 4). The field may be absent (default 1): then skip that part. */
    size_t dil = fb_field(d, opts, 4);
    if (dil) {
        d[dil] = 2;
        CHECK(tflite_import_mem(d, n, "patched.tflite", &g) == IMCAP_E_UNSUPPORTED);
        CHECK(strstr(imcap_last_error(), "dilation") != NULL);
        d[dil] = 1;
    }
    REQUIRE_OK(tflite_import_mem(d, n, "patched.tflite", &g));
    enc_graph_free(g);
    free(d);
}

/* ---------------------------------------------------------------- goldens */

typedef struct golden_img {
    char name[256];
    uint32_t crc;
    int probs[1001], logits[1001], emb[1280];
} golden_img;

static int parse_ints(char *s, int *dst, int n)
{
    int k = 0;
    for (char *t = strtok(s, " \n"); t && k < n; t = strtok(NULL, " \n")) dst[k++] = atoi(t);
    return k;
}

static double cosine(const float *a, const double *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Top-k agreement with a peer whose probabilities are uint8 (steps of
 * 1/256, so ties are common). Strict: every class the peer ranks strictly
 * above its k-th value is in our top k, and each of ours is at least at the
 * peer's k-th value. Near: the same with a margin of delta in probability on
 * both sides (swaps between classes whose probabilities differ by less than
 * delta near the k-th place). */
static void topk_agree(const float *ours, const double *peer, int n, int k, double delta, bool *strict,
                       bool *near)
{
    double pk = 0, ok = 0;
    bool in_ours[1001] = {false};
    for (int i = 0; i < k; i++) { /* k-th values by repeated selection */
        int b = -1;
        for (int c = 0; c < n; c++)
            if (!in_ours[c] && (b < 0 || ours[c] > ours[b])) b = c;
        in_ours[b] = true;
        ok = ours[b];
    }
    double sorted[1001];
    memcpy(sorted, peer, sizeof(double) * (size_t)n);
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < n; j++)
            if (sorted[j] > sorted[i]) {
                double t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    pk = sorted[k - 1];
    *strict = *near = true;
    for (int c = 0; c < n; c++) {
        if (in_ours[c] && peer[c] < pk) *strict = false;
        if (in_ours[c] && peer[c] < pk - delta) *near = false;
        if (peer[c] > pk && !in_ours[c]) *strict = false;
        if (peer[c] > pk && !in_ours[c] && ours[c] < ok - delta) *near = false;
    }
}

/* int8 execution against the same goldens, in quantization steps: the
 * largest difference and how many of the values are equal. */
typedef struct qstats {
    int max_p, max_l, max_e;
    long eq_p, eq_l, eq_e, n_p, n_l, n_e;
} qstats;

static void qcompare(const float *ours, const int *peer, int n, double scale, int zp, int *max_d, long *eq, long *cnt)
{
    for (int i = 0; i < n; i++) {
        int q = (int)lrint(ours[i] / scale) + zp, d = abs(q - peer[i]);
        *max_d = d > *max_d ? d : *max_d;
        *eq += d == 0;
        ++*cnt;
    }
}

static void golden_run(const char *model, const char *golden_path, enc_precision prec, double tol_prob,
                       double tol_cos, bool all_strict, qstats *qs)
{
    size_t len;
    char *text;
    REQUIRE_OK(imcap_read_file(golden_path, (size_t)4 << 20, &text, &len));
    enc_graph *g;
    REQUIRE_OK(tflite_import(model, &g));
    REQUIRE_OK(enc_graph_set_precision(g, prec));
    REQUIRE(enc_graph_precision(g) == prec);
    const enc_preproc *pp = enc_graph_preproc(g);
    size_t npx = (size_t)pp->in_h * (size_t)pp->in_w;
    uint8_t *px = malloc(npx * 3);
    float *x = malloc(npx * 3 * sizeof(float));
    float emb[1280], logits[1001], probs[1001];
    float *outs[3] = {emb, logits, probs};
    int ids[3] = {enc_graph_output(g, "embedding"), enc_graph_output(g, "logits"), enc_graph_output(g, "probs")};
    golden_img *gi = calloc(1, sizeof *gi);
    double ps = 0, lsc = 0, es = 0;
    int pz = 0, lz = 0, ez = 0, n_img = 0, n_strict = 0;
    double max_dp = 0, min_cos = 1, max_dl = 0;
    int max_images = getenv("IMCAP_SANITIZED") ? 2 : 1000;
    bool have = false;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "quant ", 6)) {
            REQUIRE(sscanf(line, "quant probs %lf %d logits %lf %d embedding %lf %d", &ps, &pz, &lsc, &lz, &es,
                           &ez) == 6);
        } else if (!strncmp(line, "image ", 6)) {
            REQUIRE(sscanf(line, "image %255s crc32 %u", gi->name, &gi->crc) == 2);
            for (int c = 0; c < 1001; c++) gi->probs[c] = pz;
            have = false;
        } else if (!strncmp(line, "probs", 5)) {
            for (char *t = line + 5; (t = strchr(t, ' '));) {
                int c, q;
                t++;
                if (sscanf(t, "%d:%d", &c, &q) == 2 && c >= 0 && c < 1001) gi->probs[c] = q;
            }
        } else if (!strncmp(line, "logits ", 7)) {
            REQUIRE(parse_ints(line + 7, gi->logits, 1001) == 1001);
        } else if (!strncmp(line, "embedding ", 10)) {
            REQUIRE(parse_ints(line + 10, gi->emb, 1280) == 1280);
            have = true;
        }
        if (!have || n_img >= max_images) continue;
        have = false;
        /* The record is complete: run our pipeline on the same photo. */
        char path[512];
        snprintf(path, sizeof path, "data/images/%s", gi->name);
        FILE *fp = fopen(path, "rb");
        if (!fp) snprintf(path, sizeof path, "data/images/imagenet-val/%s", gi->name);
        else fclose(fp);
        imcap_image img;
        REQUIRE_OK(imcap_image_load(path, &img));
        REQUIRE_OK(imcap_image_prepare(&img, pp->in_h, pp->in_w, px));
        imcap_image_free(&img);
        uint32_t crc = imcap_crc32(0, px, npx * 3);
        if (crc != gi->crc)
            fprintf(stderr, "    %s: the preprocessed input changed since the golden was made: rerun "
                            "scripts/golden_tflite.sh\n", path);
        REQUIRE(crc == gi->crc);
        imcap_image_to_float(px, npx, pp->scale, pp->bias, x);
        REQUIRE_OK(enc_graph_run(g, x, 1, ids, 3, outs));
        double pe[1280], pp_[1001], dp = 0, dl = 0;
        for (int i = 0; i < 1280; i++) pe[i] = es * (gi->emb[i] - ez);
        for (int c = 0; c < 1001; c++) {
            pp_[c] = ps * (gi->probs[c] - pz);
            dp = fmax(dp, fabs(probs[c] - pp_[c]));
            dl = fmax(dl, fabs(logits[c] - lsc * (gi->logits[c] - lz)));
        }
        double cs = cosine(emb, pe, 1280);
        if (qs) {
            qcompare(probs, gi->probs, 1001, ps, pz, &qs->max_p, &qs->eq_p, &qs->n_p);
            qcompare(logits, gi->logits, 1001, lsc, lz, &qs->max_l, &qs->eq_l, &qs->n_l);
            qcompare(emb, gi->emb, 1280, es, ez, &qs->max_e, &qs->eq_e, &qs->n_e);
        }
        bool strict, near;
        topk_agree(probs, pp_, 1001, 5, 0.025, &strict, &near);
        if (!strict || getenv("IMCAP_VERBOSE"))
            fprintf(stderr, "    %s: top-5 %s, max|dprob| %.4f, max|dlogit| %.3f, embedding cosine %.5f\n",
                    gi->name, strict ? "same" : near ? "same up to near-ties" : "DIFFERENT", dp, dl, cs);
        CHECK(near);
        CHECK(strict || !all_strict);
        n_strict += strict;
        max_dp = fmax(max_dp, dp);
        max_dl = fmax(max_dl, dl);
        min_cos = fmin(min_cos, cs);
        n_img++;
    }
    fprintf(stderr,
            "    %s: %d photos vs TFLite: top-5 strictly equal on %d, max|dprob| %.4f, max|dlogit| %.3f, "
            "min embedding cosine %.5f\n",
            model, n_img, n_strict, max_dp, max_dl, min_cos);
    CHECK(n_img >= (getenv("IMCAP_SANITIZED") ? 2 : 17));
    /* Float execution vs TFLite's uint8 kernels, whose activations are
     * rounded and saturated to 8 bits after every layer; the measured values
     * are in the callers' comments. */
    CHECK(max_dp <= tol_prob);
    CHECK(min_cos >= tol_cos);
    if (qs)
        fprintf(stderr,
                "    %s int8 (%s) vs TFLite, in quantization steps: probs max %d, %ld/%ld equal; logits max %d, "
                "%ld/%ld equal; embedding max %d, %ld/%ld equal\n",
                model, q_kernels_active()->name, qs->max_p, qs->eq_p, qs->n_p, qs->max_l, qs->eq_l, qs->n_l, qs->max_e,
                qs->eq_e, qs->n_e);
    free(gi);
    free(px);
    free(x);
    free(text);
    enc_graph_free(g);
}

static void golden(const char *model, const char *golden_path, double tol_prob, double tol_cos, bool all_strict)
{
    golden_run(model, golden_path, ENC_PREC_FLOAT, tol_prob, tol_cos, all_strict, NULL);
}

TEST(tflite_mobilenet_v2_matches_tflite_runtime)
{
    /* Measured on the 17 photos: top-5 strictly equal on all, max|dprob|
     * 0.043, min cosine 0.9977. */
    golden(V2, "tests/data/tflite_mobilenet_v2_1.0_224_quant.golden", 0.06, 0.995, true);
}

TEST(tflite_mobilenet_edgetpu_matches_tflite_runtime)
{
    /* Measured on the 17 photos: top-5 strictly equal on 15, the 2 others
     * swap 4th/5th-place classes of probability < 0.04 that differ by
     * < 0.025; max|dprob| 0.094, min cosine 0.980. */
    golden(TPU, "tests/data/tflite_mobilenet_edgetpu_224_1.0_uint8.golden", 0.12, 0.975, false);
}

/* int8 execution on every kernel path this CPU has gives TFLite's own bytes:
 * measured, every uint8 probability, logit and embedding value of the 17
 * photos equal to the runtime's on both models (the issue asked for one
 * quantization step; the test holds the measured exactness). */
static const char *g_qmodel, *g_qgolden;

static void int8_golden_path(void)
{
    qstats qs = {0};
    golden_run(g_qmodel, g_qgolden, ENC_PREC_INT8, 0.0079, 0.999, true, &qs);
    CHECK(qs.max_p == 0);
    CHECK(qs.max_l == 0);
    CHECK(qs.max_e == 0);
}

TEST(tflite_int8_mobilenet_v2_matches_tflite_runtime)
{
    g_qmodel = V2;
    g_qgolden = "tests/data/tflite_mobilenet_v2_1.0_224_quant.golden";
    CHECK(each_cpu_path(int8_golden_path) >= 1);
}

TEST(tflite_int8_mobilenet_edgetpu_matches_tflite_runtime)
{
    g_qmodel = TPU;
    g_qgolden = "tests/data/tflite_mobilenet_edgetpu_224_1.0_uint8.golden";
    CHECK(each_cpu_path(int8_golden_path) >= 1);
}

/* The encoder file keeps the int8 program (version 2): the loaded file runs
 * int8 with the imported graph's bytes; a damaged int8 tensor is caught by
 * the first int8 run; a float-only file stays version 1 and refuses int8
 * with the reason; an unknown version is refused by name. */
TEST(tflite_int8_program_survives_the_encoder_file)
{
    enc_graph *g, *h;
    REQUIRE_OK(tflite_import(V2, &g));
    REQUIRE(enc_graph_int8_missing(g) == NULL);
    /* auto: int8 where the int8 kernels are the faster (AVX-512 VNNI), else float */
    CHECK(enc_graph_precision(g) == (!strcmp(q_kernels_active()->name, "avx512-vnni") ? ENC_PREC_INT8 : ENC_PREC_FLOAT));
    char path[512], bad[600], cmd[1400];
    snprintf(path, sizeof path, "%s/v2.gguf", test_tmpdir());
    REQUIRE_OK(enc_graph_save(g, path));
    REQUIRE_OK(enc_graph_load(path, &h));
    CHECK(enc_graph_checksum(g) == enc_graph_checksum(h)); /* the captioners' identity: the float graph's */
    REQUIRE_OK(enc_graph_set_precision(g, ENC_PREC_INT8));
    REQUIRE_OK(enc_graph_set_precision(h, ENC_PREC_INT8));
    size_t n = 224 * 224 * 3;
    float *x = malloc(2 * n * sizeof(float)), a[2 * 1001], b[2 * 1001];
    for (size_t i = 0; i < 2 * n; i++) x[i] = (float)((int)((i * 7919) % 256) - 128) / 128.0f;
    int ig = enc_graph_output(g, "logits"), ih = enc_graph_output(h, "logits");
    float *oa = a, *ob = b;
    REQUIRE_OK(enc_graph_run(g, x, 2, &ig, 1, &oa));
    REQUIRE_OK(enc_graph_run(h, x, 2, &ih, 1, &ob));
    CHECK(memcmp(a, b, sizeof a) == 0);
    enc_graph_free(h);

    /* one byte of the last int8 tensor (the classifier's bias) flipped */
    size_t len;
    uint8_t *d = read_all(path, &len);
    REQUIRE(d && len > 64);
    d[len - 40] ^= 0x55;
    snprintf(bad, sizeof bad, "%s/bad.gguf", test_tmpdir());
    FILE *f = fopen(bad, "wb");
    REQUIRE(f && fwrite(d, 1, len, f) == len && fclose(f) == 0);
    free(d);
    REQUIRE_OK(enc_graph_load(bad, &h));
    REQUIRE_OK(enc_graph_set_precision(h, ENC_PREC_INT8));
    CHECK(enc_graph_run(h, x, 1, &ih, 1, &ob) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "checksum mismatch") != NULL);
    enc_graph_free(h);

    /* without the program: version 1, float only, the reason kept */
    enc_qgraph_disable(g, "test: no program");
    REQUIRE_OK(enc_graph_save(g, path));
    REQUIRE_OK(enc_graph_load(path, &h));
    CHECK(enc_graph_precision(h) == ENC_PREC_FLOAT);
    CHECK(enc_graph_set_precision(h, ENC_PREC_INT8) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "test: no program") != NULL);
    enc_graph_free(h);
    snprintf(cmd, sizeof cmd, "'%s' classify --precision int8 --encoder %s data/images/parrot.jpg", test_imcap_bin(), path);
    char err[2048];
    CHECK(test_run(cmd, NULL, 0, err, sizeof err) == 1 && strstr(err, "no int8 execution") != NULL);
    free(x);
    enc_graph_free(g);
}

/* --precision on the CLI: int8 classifies with TFLite's bytes (parrot.jpg:
 * macaw at 255/256, TFLite's uint8 probability), float as before; a bad
 * value is refused naming the flag. */
TEST(tflite_cli_precision_flag)
{
    char cmd[1400], out[4096], err[2048];
    snprintf(cmd, sizeof cmd, "'%s' classify --precision int8 --tflite %s --top 1 data/images/parrot.jpg", test_imcap_bin(), V2);
    REQUIRE(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(strstr(out, "0.9961    89  macaw") != NULL);
    snprintf(cmd, sizeof cmd, "'%s' classify --precision float --tflite %s --top 1 data/images/parrot.jpg", test_imcap_bin(), V2);
    REQUIRE(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(strstr(out, "macaw") != NULL && strstr(out, "0.9961") == NULL);
    snprintf(cmd, sizeof cmd, "'%s' classify --precision int4 --tflite %s data/images/parrot.jpg", test_imcap_bin(), V2);
    CHECK(test_run(cmd, NULL, 0, err, sizeof err) == 2 && strstr(err, "--precision expects int8, float, bf16 or auto") != NULL);
}

/* The library API: imcap_encoder_set_precision switches a converted
 * MobileNet between its int8 program and its float graph; the int8
 * embedding is the dequantized uint8 one (values on the 1/scale grid),
 * close to the float one. */
TEST(tflite_encoder_api_precision)
{
    enc_graph *g;
    REQUIRE_OK(tflite_import(TPU, &g));
    char path[512];
    snprintf(path, sizeof path, "%s/tpu.gguf", test_tmpdir());
    REQUIRE_OK(enc_graph_save(g, path));
    float es;
    int32_t ez;
    REQUIRE(enc_qgraph_value(g, enc_graph_output(g, "embedding"), &es, &ez));
    enc_graph_free(g);
    imcap_encoder *e;
    REQUIRE_OK(imcap_encoder_load(path, &e));
    CHECK(imcap_encoder_precision(e) == IMCAP_PRECISION_FLOAT); /* auto */
    imcap_image img;
    REQUIRE_OK(imcap_image_load("data/images/parrot.jpg", &img));
    float f[1280], q[1280];
    REQUIRE_OK(imcap_encoder_embed(e, &img, 1, "embedding", f));
    REQUIRE_OK(imcap_encoder_set_precision(e, IMCAP_PRECISION_INT8));
    CHECK(imcap_encoder_precision(e) == IMCAP_PRECISION_INT8);
    REQUIRE_OK(imcap_encoder_embed(e, &img, 1, "embedding", q));
    double ab = 0, aa = 0, bb = 0;
    int off_grid = 0;
    for (int i = 0; i < 1280; i++) {
        ab += (double)f[i] * q[i];
        aa += (double)f[i] * f[i];
        bb += (double)q[i] * q[i];
        double k = q[i] / es;
        off_grid += fabs(k - round(k)) > 1e-3;
    }
    CHECK(off_grid == 0);
    CHECK(ab / sqrt(aa * bb) > 0.99);
    imcap_image_free(&img);
    imcap_encoder_free(e);
}
