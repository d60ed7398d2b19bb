#include "test.h"
#include "gguf.h"

static void write_sample(const char *path)
{
    static float a[2][3] = {{1, 2, 3}, {4, 5, 6}};
    static int32_t b[5] = {7, 8, 9, 10, 11};
    const char *words[] = {"#PAD#", "dog", "caf\xc3\xa9"};
    int32_t ia[3] = {-1, 0, 1};
    float fa[2] = {0.5f, -2.0f};
    gguf_writer *w = gguf_writer_new();
    REQUIRE(w);
    REQUIRE_OK(gguf_set_str(w, "general.name", "sample"));
    REQUIRE_OK(gguf_set_u32(w, "u", 42));
    REQUIRE_OK(gguf_set_i32(w, "i", -42));
    REQUIRE_OK(gguf_set_u64(w, "big", 1ull << 40));
    REQUIRE_OK(gguf_set_f32(w, "f", 0.25f));
    REQUIRE_OK(gguf_set_arr_str(w, "words", words, 3));
    REQUIRE_OK(gguf_set_arr_i32(w, "ia", ia, 3));
    REQUIRE_OK(gguf_set_arr_f32(w, "fa", fa, 2));
    REQUIRE_OK(gguf_add_tensor(w, "a", GGUF_T_F32, 2, (int64_t[]){2, 3}, a));
    REQUIRE_OK(gguf_add_tensor(w, "b", GGUF_T_I32, 1, (int64_t[]){5}, b));
    REQUIRE_OK(gguf_write(w, path));
    gguf_writer_free(w);
}

TEST(gguf_round_trip)
{
    char path[600];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    write_sample(path);
    gguf_file *f;
    REQUIRE_OK(gguf_open(path, &f));
    const char *s;
    uint32_t u;
    int32_t i;
    uint64_t big;
    float fl;
    REQUIRE_OK(gguf_get_str(f, "general.name", &s));
    CHECK_STR(s, "sample");
    REQUIRE_OK(gguf_get_u32(f, "u", &u));
    CHECK(u == 42);
    REQUIRE_OK(gguf_get_i32(f, "i", &i));
    CHECK(i == -42);
    REQUIRE_OK(gguf_get_u64(f, "big", &big));
    CHECK(big == 1ull << 40);
    REQUIRE_OK(gguf_get_f32(f, "f", &fl));
    CHECK(fl == 0.25f);
    const char *const *words;
    const int32_t *ia;
    const float *fa;
    size_t n;
    REQUIRE_OK(gguf_get_arr_str(f, "words", &words, &n));
    CHECK(n == 3);
    CHECK_STR(words[2], "caf\xc3\xa9");
    REQUIRE_OK(gguf_get_arr_i32(f, "ia", &ia, &n));
    CHECK(n == 3 && ia[0] == -1 && ia[2] == 1);
    REQUIRE_OK(gguf_get_arr_f32(f, "fa", &fa, &n));
    CHECK(n == 2 && fa[1] == -2.0f);
    CHECK(gguf_get_u32(f, "i", &u) == IMCAP_E_FORMAT); /* wrong type */
    CHECK(strstr(imcap_last_error(), "key i has type i32") != NULL);
    CHECK(gguf_get_u32(f, "missing", &u) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "missing key missing") != NULL);
    CHECK(gguf_n_tensors(f) == 2);
    const gguf_tensor *t;
    REQUIRE_OK(gguf_expect_tensor(f, "a", GGUF_T_F32, 2, (int64_t[]){2, 3}, &t));
    CHECK(((const float *)t->data)[5] == 6.0f);
    CHECK(((uintptr_t)t->data % 32) == 0);
    REQUIRE_OK(gguf_expect_tensor(f, "b", GGUF_T_I32, 1, (int64_t[]){-1}, &t));
    CHECK(((const int32_t *)t->data)[4] == 11);
    CHECK(gguf_expect_tensor(f, "a", GGUF_T_F32, 2, (int64_t[]){3, 2}, &t) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "shape 2x3, expected 3x2") != NULL);
    gguf_close(f);
}

TEST(gguf_writer_refuses_duplicates)
{
    gguf_writer *w = gguf_writer_new();
    float x = 1;
    REQUIRE_OK(gguf_set_u32(w, "k", 1));
    CHECK(gguf_set_u32(w, "k", 2) == IMCAP_E_ARG);
    CHECK(gguf_add_tensor(w, "t", GGUF_T_F32, 1, (int64_t[]){1}, &x) == IMCAP_E_ARG); /* sticky error */
    char path[600];
    snprintf(path, sizeof path, "%s/never.gguf", test_tmpdir());
    CHECK(gguf_write(w, path) != IMCAP_OK);
    FILE *fp = fopen(path, "rb");
    CHECK(fp == NULL);
    if (fp) fclose(fp);
    gguf_writer_free(w);
}

/* Every truncation and many byte flips are refused or parsed, never a crash. */
TEST(gguf_truncated_and_corrupt_files_are_refused)
{
    char path[600], bad[600];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.gguf", test_tmpdir());
    write_sample(path);
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file(path, 1 << 20, &data, &len));
    for (size_t cut = 0; cut < len; cut++) {
        FILE *fp = fopen(bad, "wb");
        REQUIRE(fp);
        fwrite(data, 1, cut, fp);
        fclose(fp);
        gguf_file *f = NULL;
        imcap_status s = gguf_open(bad, &f);
        if (s == IMCAP_OK) {
            /* Only trailing tensor padding may be cut without losing data. */
            CHECK(cut >= len - 32);
            gguf_close(f);
        } else {
            CHECK(strstr(imcap_last_error(), bad) != NULL);
        }
    }
    imcap_rng rng;
    imcap_rng_seed(&rng, 7);
    for (int it = 0; it < 2000; it++) {
        char *copy = malloc(len);
        memcpy(copy, data, len);
        for (int k = 0; k < 3; k++) copy[imcap_rng_below(&rng, len)] ^= (char)(1 + imcap_rng_below(&rng, 255));
        FILE *fp = fopen(bad, "wb");
        fwrite(copy, 1, len, fp);
        fclose(fp);
        free(copy);
        gguf_file *f = NULL;
        if (gguf_open(bad, &f) == IMCAP_OK) {
            for (size_t i = 0; i < gguf_n_tensors(f); i++) {
                const gguf_tensor *t = gguf_tensor_at(f, i);
                volatile unsigned char sink = 0;
                for (size_t b = 0; b < t->n_bytes; b++) sink ^= ((const unsigned char *)t->data)[b];
                (void)sink;
            }
            gguf_close(f);
        }
    }
    free(data);
    gguf_file *f;
    CHECK(gguf_open("/nonexistent.gguf", &f) == IMCAP_E_IO);
    FILE *fp = fopen(bad, "wb");
    fputs("this is not a model file at all, really not", fp);
    fclose(fp);
    CHECK(gguf_open(bad, &f) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "bad magic") != NULL);
}
