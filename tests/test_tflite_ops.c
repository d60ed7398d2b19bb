/* test_tflite_ops.c - the importer's mapping of each TFLite operator and
 * option (weight layouts, per-channel int8 and per-tensor uint8 weights,
 * int32 bias scales, SAME/VALID padding, strides, depth multiplier, pools,
 * fused activations) on a tiny model written here as a flatbuffer, against a
 * naive float evaluation of the same TFLite semantics. */
#include "graph.h"
#include "test.h"
#include "tflite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ a small flatbuffer writer
 * Tables are written before what they reference (references point forward)
 * and patched when the target is written. Every table field takes 4 bytes. */
typedef struct fbw { uint8_t b[1 << 16]; size_t n; } fbw;

static void put32(fbw *w, size_t at, uint32_t v) { memcpy(w->b + at, &v, 4); }
static void align(fbw *w, size_t a) { while (w->n % a) w->b[w->n++] = 0; }

/* Table with nf 4-byte fields; present[i] says which exist; returns the
 * table position and each field's position in fpos. */
static size_t table(fbw *w, int nf, const int *present, const uint32_t *vals, size_t *fpos)
{
    align(w, 4);
    size_t vt = w->n, n_present = 0;
    for (int i = 0; i < nf; i++) n_present += present[i] != 0;
    uint16_t vlen = (uint16_t)(4 + 2 * nf), tlen = (uint16_t)(4 + 4 * n_present);
    memcpy(w->b + w->n, &vlen, 2);
    memcpy(w->b + w->n + 2, &tlen, 2);
    w->n += 4;
    uint16_t off = 4;
    for (int i = 0; i < nf; i++) {
        uint16_t o = present[i] ? off : 0;
        memcpy(w->b + w->n, &o, 2);
        w->n += 2;
        if (present[i]) off += 4;
    }
    align(w, 4);
    size_t t = w->n;
    put32(w, t, (uint32_t)(int32_t)(t - vt));
    w->n += 4;
    for (int i = 0; i < nf; i++) {
        fpos[i] = present[i] ? w->n : 0;
        if (present[i]) {
            put32(w, w->n, vals ? vals[i] : 0);
            w->n += 4;
        }
    }
    return t;
}

static void link(fbw *w, size_t field, size_t target) { put32(w, field, (uint32_t)(target - field)); }

static size_t vec(fbw *w, size_t elem, size_t count, const void *data)
{
    align(w, elem < 4 ? 4 : elem);
    if (elem == 8 && (w->n + 4) % 8) w->n += 4; /* keep 8-byte elements aligned */
    size_t at = w->n;
    put32(w, at, (uint32_t)count);
    memcpy(w->b + at + 4, data, elem * count);
    w->n += 4 + elem * count;
    return at;
}

/* ------------------------------------------------ the model description */
typedef struct ttensor {
    int type, rank, shape[4];
    const void *data;            /* constant contents or NULL */
    size_t data_bytes;
    int n_q, qdim;
    float scale[8];
    int64_t zp[8];
} ttensor;

typedef struct top {
    int code, opt_type;
    int in[3], n_in, out;
    int n_opt;
    int opt_present[7];
    uint32_t opt[7];
} top;

static size_t build(fbw *w, const ttensor *t, int nt, const top *ops, int nops, int input, int output)
{
    memset(w, 0, sizeof *w);
    w->n = 8;
    memcpy(w->b + 4, "TFL3", 4);
    int mp[5] = {1, 1, 1, 0, 1};
    uint32_t mv[5] = {3, 0, 0, 0, 0};
    size_t mf[5];
    size_t model = table(w, 5, mp, mv, mf);
    put32(w, 0, (uint32_t)model);

    /* operator codes: one per op, deprecated code only */
    size_t codes = vec(w, 4, (size_t)nops, (uint32_t[16]){0});
    link(w, mf[1], codes);
    for (int i = 0; i < nops; i++) {
        size_t f[1];
        size_t ct = table(w, 1, (int[]){1}, (uint32_t[]){(uint32_t)ops[i].code}, f);
        link(w, codes + 4 + 4 * (size_t)i, ct);
    }
    /* buffers: 0 empty, then one per tensor */
    size_t bufs = vec(w, 4, (size_t)nt + 1, (uint32_t[32]){0});
    link(w, mf[4], bufs);
    for (int i = 0; i <= nt; i++) {
        size_t f[1];
        bool has = i > 0 && t[i - 1].data;
        size_t bt = table(w, 1, (int[]){has}, NULL, f);
        link(w, bufs + 4 + 4 * (size_t)i, bt);
        if (has) link(w, f[0], vec(w, 1, t[i - 1].data_bytes, t[i - 1].data));
    }
    size_t sgs = vec(w, 4, 1, (uint32_t[1]){0});
    link(w, mf[2], sgs);
    size_t sf[5];
    size_t sg = table(w, 5, (int[]){1, 1, 1, 1, 0}, NULL, sf);
    link(w, sgs + 4, sg);
    link(w, sf[1], vec(w, 4, 1, &input));
    link(w, sf[2], vec(w, 4, 1, &output));
    size_t tv = vec(w, 4, (size_t)nt, (uint32_t[32]){0});
    link(w, sf[0], tv);
    for (int i = 0; i < nt; i++) {
        size_t f[5];
        uint32_t vals[5] = {0, (uint32_t)t[i].type, t[i].data ? (uint32_t)i + 1 : 0, 0, 0};
        size_t tt = table(w, 5, (int[]){t[i].rank > 0, 1, 1, 0, t[i].n_q > 0}, vals, f);
        link(w, tv + 4 + 4 * (size_t)i, tt);
        if (t[i].rank > 0) link(w, f[0], vec(w, 4, (size_t)t[i].rank, t[i].shape));
        if (t[i].n_q) {
            size_t qf[7];
            size_t qt = table(w, 7, (int[]){0, 0, 1, 1, 0, 0, 1}, (uint32_t[7]){0, 0, 0, 0, 0, 0, (uint32_t)t[i].qdim}, qf);
            link(w, f[4], qt);
            link(w, qf[2], vec(w, 4, (size_t)t[i].n_q, t[i].scale));
            link(w, qf[3], vec(w, 8, (size_t)t[i].n_q, t[i].zp));
        }
    }
    size_t ov = vec(w, 4, (size_t)nops, (uint32_t[16]){0});
    link(w, sf[3], ov);
    for (int i = 0; i < nops; i++) {
        size_t f[5];
        bool has_opt = ops[i].n_opt > 0;
        size_t ot = table(w, 5, (int[]){1, 1, 1, has_opt, has_opt},
                          (uint32_t[5]){(uint32_t)i, 0, 0, (uint32_t)ops[i].opt_type, 0}, f);
        link(w, ov + 4 + 4 * (size_t)i, ot);
        link(w, f[1], vec(w, 4, (size_t)ops[i].n_in, ops[i].in));
        link(w, f[2], vec(w, 4, 1, &ops[i].out));
        if (has_opt) {
            size_t of[7];
            size_t opt = table(w, ops[i].n_opt, ops[i].opt_present, ops[i].opt, of);
            link(w, f[4], opt);
        }
    }
    return w->n;
}

/* ------------------------------------------------ naive TFLite semantics */
static float act(float v, int a) { return a == 1 ? fmaxf(v, 0) : a == 3 ? fminf(fmaxf(v, 0), 6) : v; }

/* SAME: out = ceil(in / s), pad before = max((out-1)*s + k - in, 0) / 2 */
static void geom(int in, int k, int s, bool same, int *out, int *before)
{
    *out = same ? (in + s - 1) / s : (in - k) / s + 1;
    int total = (*out - 1) * s + k - in;
    *before = same && total > 0 ? total / 2 : 0;
}

/* conv (depthwise when mult > 0): x [h][w][cin]; w OHWI [cout][kh][kw][cin]
 * or depthwise [kh][kw][cin*mult]. */
static void conv_ref(const float *x, int h, int wd, int cin, const float *wt, const float *b, int cout, int kh,
                     int kw, int sh, int sw, bool same, int a, int mult, float *y, int *oh, int *ow)
{
    int ph, pw;
    geom(h, kh, sh, same, oh, &ph);
    geom(wd, kw, sw, same, ow, &pw);
    for (int oy = 0; oy < *oh; oy++)
        for (int ox = 0; ox < *ow; ox++)
            for (int oc = 0; oc < cout; oc++) {
                double s = b[oc];
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++) {
                        int iy = oy * sh + ky - ph, ix = ox * sw + kx - pw;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                        if (mult) {
                            s += x[(iy * wd + ix) * cin + oc / mult] * wt[(ky * kw + kx) * cout + oc];
                        } else {
                            for (int ic = 0; ic < cin; ic++)
                                s += x[(iy * wd + ix) * cin + ic] * wt[((oc * kh + ky) * kw + kx) * cin + ic];
                        }
                    }
                y[(oy * *ow + ox) * cout + oc] = act((float)s, a);
            }
}

static void pool_ref(const float *x, int h, int wd, int c, int kh, int kw, int sh, int sw, bool same, bool is_max,
                     float *y, int *oh, int *ow)
{
    int ph, pw;
    geom(h, kh, sh, same, oh, &ph);
    geom(wd, kw, sw, same, ow, &pw);
    for (int oy = 0; oy < *oh; oy++)
        for (int ox = 0; ox < *ow; ox++)
            for (int ch = 0; ch < c; ch++) {
                double s = is_max ? -1e30 : 0;
                int n = 0;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++) {
                        int iy = oy * sh + ky - ph, ix = ox * sw + kx - pw;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                        double v = x[(iy * wd + ix) * c + ch];
                        s = is_max ? fmax(s, v) : s + v;
                        n++;
                    }
                y[(oy * *ow + ox) * c + ch] = (float)(is_max ? s : s / n);
            }
}

enum { T_F32 = 0, T_I32 = 2, T_U8 = 3, T_I8 = 9 };

TEST(tflite_ops_tiny_model_matches_naive_reference)
{
    imcap_rng r;
    imcap_rng_seed(&r, 42);
    /* t0 input [1,5,7,3] uint8 (scale 0.02, zp 100) */
    /* op0 DEPTHWISE 3x3 mult 2, int8 per-channel weights (qdim 3), stride 2x1, SAME, RELU6 -> t3 [1,3,7,6] */
    int8_t w1[3 * 3 * 6];
    int32_t b1[6];
    for (size_t i = 0; i < sizeof w1; i++) w1[i] = (int8_t)((int)imcap_rng_below(&r, 255) - 127);
    for (int i = 0; i < 6; i++) b1[i] = (int32_t)imcap_rng_below(&r, 4000) - 2000;
    /* op1 CONV 2x2 uint8 per-tensor (scale 0.01, zp 120), VALID, stride 1, RELU -> t6 [1,2,6,4] */
    uint8_t w2[4 * 2 * 2 * 6];
    int32_t b2[4];
    for (size_t i = 0; i < sizeof w2; i++) w2[i] = (uint8_t)imcap_rng_below(&r, 256);
    for (int i = 0; i < 4; i++) b2[i] = (int32_t)imcap_rng_below(&r, 20000) - 10000;
    /* op2 ADD t6 + t6, RELU6 -> t7; op3 AVERAGE_POOL 2x2 s2 SAME -> t8 [1,1,3,4];
     * op4 MAX_POOL 1x2 s1 VALID -> t9 [1,1,2,4]; op5 AVERAGE_POOL 1x2 VALID (global) -> t10 [1,1,1,4];
     * op6 CONV 1x1 float weights [3,1,1,4] + float bias -> t13 [1,1,1,3];
     * op7 RESHAPE by the constant t16 = {1,-1} -> t14 (no stored shape); op8 SOFTMAX -> t15 [1,3] */
    float w3[12], b3[3];
    for (int i = 0; i < 12; i++) w3[i] = (float)imcap_rng_normal(&r);
    for (int i = 0; i < 3; i++) b3[i] = (float)imcap_rng_normal(&r);
    int32_t newshape[2] = {1, -1};
    float s1[6] = {0.011f, 0.02f, 0.005f, 0.03f, 0.017f, 0.008f};
    const float xs = 0.02f, s2 = 0.01f, s3 = 6.0f / 255;
    ttensor t[18] = {
        [0] = {T_U8, 4, {1, 5, 7, 3}, NULL, 0, 1, 0, {xs}, {100}},
        [1] = {T_I8, 4, {1, 3, 3, 6}, w1, sizeof w1, 6, 3, {0}, {0}},
        [2] = {T_I32, 1, {6}, b1, sizeof b1, 0, 0, {0}, {0}},
        [3] = {T_U8, 4, {1, 3, 7, 6}, NULL, 0, 1, 0, {s3}, {0}},
        [4] = {T_U8, 4, {4, 2, 2, 6}, w2, sizeof w2, 1, 0, {s2}, {120}},
        [5] = {T_I32, 1, {4}, b2, sizeof b2, 0, 0, {0}, {0}},
        [6] = {T_U8, 0, {0}, NULL, 0, 1, 0, {0.05f}, {0}}, /* no stored shape, as in the EdgeTPU file */
        [7] = {T_U8, 4, {1, 2, 6, 4}, NULL, 0, 1, 0, {0.05f}, {0}},
        [8] = {T_U8, 4, {1, 1, 3, 4}, NULL, 0, 1, 0, {0.05f}, {0}},
        [9] = {T_U8, 4, {1, 1, 2, 4}, NULL, 0, 1, 0, {0.05f}, {0}},
        [10] = {T_U8, 4, {1, 1, 1, 4}, NULL, 0, 1, 0, {0.05f}, {0}},
        [11] = {T_F32, 4, {3, 1, 1, 4}, w3, sizeof w3, 0, 0, {0}, {0}},
        [12] = {T_F32, 1, {3}, b3, sizeof b3, 0, 0, {0}, {0}},
        [13] = {T_F32, 4, {1, 1, 1, 3}, NULL, 0, 0, 0, {0}, {0}},
        [14] = {T_F32, 0, {0}, NULL, 0, 0, 0, {0}, {0}},
        [15] = {T_F32, 2, {1, 3}, NULL, 0, 0, 0, {0}, {0}},
        [16] = {T_I32, 1, {2}, newshape, sizeof newshape, 0, 0, {0}, {0}},
        [17] = {T_U8, 4, {1, 1, 2, 4}, NULL, 0, 1, 0, {0.04f}, {3}},
    };
    memcpy(t[1].scale, s1, sizeof s1);
    /* options: padding SAME=0 VALID=1; activation RELU=1 RELU6=3 */
    top ops[10] = {
        {4, 2, {0, 1, 2}, 3, 3, 5, {1, 1, 1, 1, 1}, {0, 1, 2, 2, 3}},  /* pad, sw, sh, mult, act */
        {3, 1, {3, 4, 5}, 3, 6, 4, {1, 1, 1, 1}, {1, 1, 1, 1}},        /* pad, sw, sh, act */
        {0, 11, {6, 6}, 2, 7, 1, {1}, {3}},
        {1, 5, {7}, 1, 8, 6, {1, 1, 1, 1, 1, 1}, {0, 2, 2, 2, 2, 0}},  /* pad, sw, sh, fw, fh, act */
        {17, 5, {8}, 1, 9, 6, {1, 1, 1, 1, 1, 1}, {1, 1, 1, 2, 1, 0}},
        {1, 5, {17}, 1, 10, 6, {1, 1, 1, 1, 1, 1}, {1, 1, 1, 2, 1, 0}},
        {3, 1, {10, 11, 12}, 3, 13, 4, {1, 1, 1, 1}, {1, 1, 1, 0}},
        {22, 0, {13, 16}, 2, 14, 0, {0}, {0}},
        {25, 9, {14}, 1, 15, 1, {1}, {0x3f800000u}},                   /* beta 1.0f */
        {114, 0, {9}, 1, 17, 0, {0}, {0}},                             /* QUANTIZE: a renaming in float */
    };
    /* operators in execution order: the QUANTIZE goes between the max and the average pool */
    top q = ops[9];
    memmove(ops + 6, ops + 5, 4 * sizeof ops[0]);
    ops[5] = q;

    static fbw w;
    size_t len = build(&w, t, 18, ops, 10, 0, 15);
    /* scripts/fuzz.sh takes this model as the TFLite fuzzer's seed */
    const char *seed = getenv("IMCAP_FUZZ_TFLITE_SEED");
    if (seed) {
        FILE *fp = fopen(seed, "wb");
        REQUIRE(fp && fwrite(w.b, 1, len, fp) == len && fclose(fp) == 0);
    }
    enc_graph *g;
    REQUIRE_OK(tflite_import_mem(w.b, len, "tiny.tflite", &g));
    const enc_preproc *pp = enc_graph_preproc(g);
    CHECK(pp->in_h == 5 && pp->in_w == 7);

    /* input pixels and the reference, in float */
    uint8_t px[5 * 7 * 3];
    float x[5 * 7 * 3], xin[5 * 7 * 3];
    for (int i = 0; i < 105; i++) {
        px[i] = (uint8_t)imcap_rng_below(&r, 256);
        x[i] = xs * ((float)px[i] - 100);
    }
    imcap_image_to_float(px, 35, pp->scale, pp->bias, xin);
    for (int i = 0; i < 105; i++) CHECK_NEAR(xin[i], x[i], 1e-5);

    float wd[54], bd[6], wc[96], bc[4];
    for (int i = 0; i < 54; i++) wd[i] = s1[i % 6] * w1[i];
    for (int c = 0; c < 6; c++) bd[c] = (float)b1[c] * xs * s1[c];
    for (int i = 0; i < 96; i++) wc[i] = s2 * ((float)w2[i] - 120);
    for (int c = 0; c < 4; c++) bc[c] = (float)b2[c] * s3 * s2;
    float a[200], b[200], c[200], d[200], e[200], f[8];
    int oh, ow, oh2, ow2;
    conv_ref(x, 5, 7, 3, wd, bd, 6, 3, 3, 2, 1, true, 3, 2, a, &oh, &ow);
    CHECK(oh == 3 && ow == 7);
    conv_ref(a, 3, 7, 6, wc, bc, 4, 2, 2, 1, 1, false, 1, 0, b, &oh2, &ow2);
    CHECK(oh2 == 2 && ow2 == 6);
    for (int i = 0; i < 48; i++) c[i] = fminf(fmaxf(2 * b[i], 0), 6);
    pool_ref(c, 2, 6, 4, 2, 2, 2, 2, true, false, d, &oh, &ow);
    CHECK(oh == 1 && ow == 3);
    pool_ref(d, 1, 3, 4, 1, 2, 1, 1, false, true, e, &oh, &ow);
    CHECK(oh == 1 && ow == 2);
    for (int ch = 0; ch < 4; ch++) f[ch] = (e[ch] + e[4 + ch]) / 2;
    float logits[3], probs[3], m = -1e30f, z = 0;
    for (int o = 0; o < 3; o++) {
        logits[o] = b3[o];
        for (int i = 0; i < 4; i++) logits[o] += w3[o * 4 + i] * f[i];
        m = fmaxf(m, logits[o]);
    }
    for (int o = 0; o < 3; o++) z += expf(logits[o] - m);
    for (int o = 0; o < 3; o++) probs[o] = expf(logits[o] - m) / z;

    float ge[4], gl[3], gp[3];
    float *outs[3] = {ge, gl, gp};
    int ids[3] = {enc_graph_output(g, "embedding"), enc_graph_output(g, "logits"), enc_graph_output(g, "probs")};
    REQUIRE(ids[0] >= 0 && ids[1] >= 0 && ids[2] >= 0);
    REQUIRE_OK(enc_graph_run(g, x, 1, ids, 3, outs));
    for (int i = 0; i < 4; i++) CHECK_NEAR(ge[i], f[i], 1e-4);
    for (int i = 0; i < 3; i++) CHECK_NEAR(gl[i], logits[i], 1e-4);
    for (int i = 0; i < 3; i++) CHECK_NEAR(gp[i], probs[i], 1e-5);
    enc_graph_free(g);

    /* An int8 input (q = pixel - 128) with zero point -28 means the same normalisation. */
    t[0].type = T_I8;
    t[0].zp[0] = -28;
    len = build(&w, t, 18, ops, 10, 0, 15);
    REQUIRE_OK(tflite_import_mem(w.b, len, "tiny.tflite", &g));
    imcap_image_to_float(px, 35, enc_graph_preproc(g)->scale, enc_graph_preproc(g)->bias, xin);
    for (int i = 0; i < 105; i++) CHECK_NEAR(xin[i], x[i], 1e-5);
    enc_graph_free(g);
    t[0].type = T_U8;
    t[0].zp[0] = 100;

    /* The same model with dilation 2 on the conv, or a TANH activation, is refused by name. */
    ops[1].n_opt = 5;
    ops[1].opt_present[4] = 1;
    ops[1].opt[4] = 2;
    len = build(&w, t, 18, ops, 10, 0, 15);
    CHECK(tflite_import_mem(w.b, len, "tiny.tflite", &g) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "tiny.tflite: operator 1 (CONV_2D): dilation") != NULL);
    ops[1].n_opt = 4;
    ops[3].opt[5] = 4; /* the first AVERAGE_POOL_2D is still operator 3 */
    len = build(&w, t, 18, ops, 10, 0, 15);
    CHECK(tflite_import_mem(w.b, len, "tiny.tflite", &g) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "operator 3 (AVERAGE_POOL_2D): fused activation TANH") != NULL);
}
