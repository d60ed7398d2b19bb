/*
 * test_library.c - the public API the shared library and the Python binding
 * add: the encoder API (imcap_encoder_*) against the graph run directly and
 * against the captioner's own embedding, batching, errors; the default
 * model lookup (environment, current directory, beside the binary); the
 * captioner's vocabulary; the version.
 */
#define _XOPEN_SOURCE 700
#include "fixture.h"
#include "test.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A w x h image of a smooth pattern depending on seed (caller frees rgb). */
static imcap_image pattern(int w, int h, int seed)
{
    imcap_image img = {w, h, malloc((size_t)w * h * 3)};
    REQUIRE(img.rgb);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                img.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * (c + 1) * 7 + y * (seed + 3) * 5 + seed * 31) & 255);
    return img;
}

static const char *write_tiny_encoder(void)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/tiny.gguf", test_tmpdir());
    enc_graph *g = fixture_encoder("tiny", 5);
    REQUIRE_OK(enc_graph_save(g, path));
    enc_graph_free(g);
    return path;
}

TEST(encoder_api_matches_the_graph_and_batches)
{
    const char *path = write_tiny_encoder();
    imcap_encoder *e;
    REQUIRE_OK(imcap_encoder_load(path, &e));
    CHECK(!strcmp(imcap_encoder_name(e), "tiny"));
    int h, w;
    imcap_encoder_input_size(e, &h, &w);
    CHECK(h == 16 && w == 16);
    REQUIRE(imcap_encoder_n_outputs(e) == 1);
    CHECK(!strcmp(imcap_encoder_output_name(e, 0), "embedding"));
    CHECK(imcap_encoder_output_name(e, 1) == NULL);
    REQUIRE(imcap_encoder_output_size(e, "embedding") == 6);
    CHECK(imcap_encoder_output_size(e, NULL) == 6);

    enum { N = 11 }; /* more than one batch of 8 */
    imcap_image imgs[N];
    for (int i = 0; i < N; i++) imgs[i] = pattern(20 + 3 * i, 17 + i, i);
    float all[N * 6], one[6];
    REQUIRE_OK(imcap_encoder_embed(e, imgs, N, NULL, all));

    enc_graph *g;
    REQUIRE_OK(enc_graph_load(path, &g));
    const enc_preproc *pre = enc_graph_preproc(g);
    int id = enc_graph_output(g, "embedding");
    for (int i = 0; i < N; i++) {
        uint8_t px[16 * 16 * 3];
        float x[16 * 16 * 3], ref[6], *outs[1] = {ref};
        REQUIRE_OK(imcap_image_prepare(&imgs[i], 16, 16, px));
        imcap_image_to_float(px, 16 * 16, pre->scale, pre->bias, x);
        REQUIRE_OK(enc_graph_run(g, x, 1, &id, 1, outs));
        REQUIRE_OK(imcap_encoder_embed(e, &imgs[i], 1, "embedding", one));
        for (int k = 0; k < 6; k++) {
            CHECK(fabsf(all[i * 6 + k] - ref[k]) <= 1e-5f * (1 + fabsf(ref[k])));
            CHECK(fabsf(one[k] - ref[k]) <= 1e-5f * (1 + fabsf(ref[k])));
        }
    }
    /* Images differ, so must their rows. */
    CHECK(memcmp(all, all + 6, 6 * sizeof(float)) != 0);
    enc_graph_free(g);
    for (int i = 0; i < N; i++) free(imgs[i].rgb);
    imcap_encoder_free(e);
}

TEST(encoder_api_errors_name_the_file_and_problem)
{
    imcap_encoder *e = (imcap_encoder *)1;
    char missing[700];
    snprintf(missing, sizeof missing, "%s/none.gguf", test_tmpdir());
    CHECK(imcap_encoder_load(missing, &e) == IMCAP_E_IO && e == NULL);
    CHECK(strstr(imcap_last_error(), "none.gguf") != NULL);
    char junk[700];
    snprintf(junk, sizeof junk, "%s/junk.gguf", test_tmpdir());
    FILE *f = fopen(junk, "wb");
    REQUIRE(f);
    fputs("not a model", f);
    fclose(f);
    CHECK(imcap_encoder_load(junk, &e) == IMCAP_E_FORMAT && e == NULL);
    CHECK(strstr(imcap_last_error(), "junk.gguf") != NULL);

    REQUIRE_OK(imcap_encoder_load(write_tiny_encoder(), &e));
    CHECK(imcap_encoder_output_size(e, "mixed5") == 0);
    CHECK(strstr(imcap_last_error(), "no output 'mixed5'") != NULL);
    imcap_image img = pattern(8, 8, 1);
    float out[6];
    CHECK(imcap_encoder_embed(e, &img, 1, "mixed5", out) == IMCAP_E_ARG);
    imcap_image empty = {0, 0, NULL};
    CHECK(imcap_encoder_embed(e, &empty, 1, NULL, out) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "image 0 is empty") != NULL);
    CHECK(imcap_encoder_embed(e, NULL, 0, NULL, NULL) == IMCAP_OK);
    free(img.rgb);
    imcap_encoder_free(e);
    imcap_encoder_free(NULL);
}

/* The encoder API gives the captioner's embedding of a photo for the default model's own encoder. */
TEST(encoder_api_equals_the_captioner_embedding)
{
    struct stat st;
    if (stat("models/default.imcap", &st) != 0 || stat("data/images/owl.jpg", &st) != 0)
        SKIP("default model or sample photos not set up");
    imcap_captioner *c;
    if (imcap_captioner_load("models/default.imcap", NULL, &c) != IMCAP_OK) SKIP("encoders not converted (setup.sh)");
    const char *enc_path = imcap_captioner_encoder_path(c);
    REQUIRE(!strchr(enc_path, ','));
    imcap_encoder *e;
    REQUIRE_OK(imcap_encoder_load(enc_path, &e));
    size_t dim = (size_t)imcap_captioner_embedding_size(c);
    imcap_image img;
    REQUIRE_OK(imcap_image_load("data/images/owl.jpg", &img));
    float *a = malloc(dim * sizeof *a), *b = malloc(dim * sizeof *b);
    REQUIRE(a && b);
    REQUIRE_OK(imcap_captioner_embed(c, &img, a));
    /* The model reads the encoder's pooled "embedding", or its "grid" for attention decoders
     * (the default: ResNet-50's 7x7x2048; docs/FORMATS.md). */
    const char *out = imcap_encoder_output_size(e, "embedding") == dim ? "embedding" : "grid";
    REQUIRE(imcap_encoder_output_size(e, out) == dim);
    REQUIRE_OK(imcap_encoder_embed(e, &img, 1, out, b));
    double maxd = 0;
    for (size_t i = 0; i < dim; i++) maxd = fmax(maxd, fabs((double)a[i] - b[i]));
    CHECK(maxd <= 1e-5);
    free(a);
    free(b);
    imcap_image_free(&img);
    imcap_encoder_free(e);
    imcap_captioner_free(c);
}

TEST(default_model_path_env_cwd_and_binary_dir)
{
    char buf[PATH_MAX], cwd[PATH_MAX];
    REQUIRE(getcwd(cwd, sizeof cwd));
    setenv("IMCAP_MODEL", "/some/where/m.imcap", 1);
    REQUIRE_OK(imcap_default_model_path(buf, sizeof buf));
    CHECK(!strcmp(buf, "/some/where/m.imcap"));
    char tiny[8];
    CHECK(imcap_default_model_path(tiny, sizeof tiny) == IMCAP_E_ARG);
    unsetenv("IMCAP_MODEL");
    struct stat st;
    if (stat("models/default.imcap", &st) != 0) SKIP("models/default.imcap is missing");
    REQUIRE_OK(imcap_default_model_path(buf, sizeof buf));
    CHECK(!strcmp(buf, "models/default.imcap"));
    /* From elsewhere: beside the test binary (build/imcap_tests -> build/../models). */
    char expect[PATH_MAX + 32];
    snprintf(expect, sizeof expect, "%s/models/default.imcap", cwd);
    char real_expect[PATH_MAX];
    REQUIRE(realpath(expect, real_expect));
    REQUIRE(chdir(test_tmpdir()) == 0);
    REQUIRE_OK(imcap_default_model_path(buf, sizeof buf));
    CHECK(!strcmp(buf, real_expect));
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(NULL, NULL, &c));
    const imcap_vocab *v = imcap_captioner_vocab(c);
    CHECK((int)imcap_vocab_size(v) == imcap_captioner_vocab_size(c));
    CHECK(imcap_vocab_find(v, "dog") >= 0);
    CHECK(imcap_vocab_find(v, IMCAP_TOK_END) == imcap_vocab_end(v));
    imcap_captioner_free(c);
    REQUIRE(chdir(cwd) == 0);
}

TEST(default_model_missing_is_a_clear_error)
{
    /* A copy of the test binary in a folder with no models anywhere near. */
    char dir[700], bin[800], cmd[2400], out[4096], err[4096];
    snprintf(dir, sizeof dir, "%s/bin", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(bin, sizeof bin, "%s/imcap", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cd '%s' && env -u IMCAP_MODEL bin/imcap caption /dev/null", test_imcap_bin(),
             bin, test_tmpdir());
    int rc = test_run(cmd, out, sizeof out, err, sizeof err);
    CHECK(rc != 0);
    if (!strstr(err, "default model not found") || !strstr(err, "share/imcap/models/default.imcap"))
        test_fail_at(__FILE__, __LINE__, "unexpected message: %s", err);
}

TEST(library_version)
{
    CHECK(!strcmp(imcap_version(), IMCAP_VERSION_STRING));
}

TEST(abi_sizes_of_the_public_structs)
{
    CHECK(imcap_abi_sizeof("imcap_caption_alt") == sizeof(imcap_caption_alt));
    CHECK(imcap_abi_sizeof("imcap_caption") == sizeof(imcap_caption));
    CHECK(imcap_abi_sizeof("imcap_gen_params") == sizeof(imcap_gen_params));
    CHECK(imcap_abi_sizeof("imcap_image") == sizeof(imcap_image));
    CHECK(imcap_abi_sizeof("imcap_scores") == sizeof(imcap_scores));
    CHECK(imcap_abi_sizeof("imcap_score_item") == sizeof(imcap_score_item));
    CHECK(imcap_abi_sizeof("imcap_speech_params") == sizeof(imcap_speech_params));
    CHECK(imcap_abi_sizeof("imcap_nothing") == 0);
    CHECK(imcap_abi_sizeof(NULL) == 0);
}
