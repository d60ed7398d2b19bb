/*
 * test_captioner.c - the captioner file and API on a tiny encoder and a
 * random decoder: round trip, file vs memory vs pixels, n-best, refusal of
 * missing, truncated, mismatched and wrong-version files, and concurrent
 * captioning on one loaded model.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"
#include "generate.h"
#include "gguf.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *photos[] = {"data/images/owl.jpg", "data/images/parrot.jpg", "data/images/hot_dog.jpg",
                               "data/images/pets.jpg", "data/images/grace_hopper.bmp"};
enum { N_PHOTOS = 5 };

static void need_photos(void)
{
    struct stat st;
    if (stat(photos[0], &st) != 0) SKIP("sample photos (data/images) are not set up");
}

static bool is_vocab_word(const char *w)
{
    static const char *const words[] = {"a", "ball", "cat", "dog", "grass", "man", "on", "red", "runs", "the"};
    for (int i = 0; i < 10; i++)
        if (!strcmp(w, words[i])) return true;
    return false;
}

/* Every word of text is a vocabulary word (never a special token). */
static bool plain_words(const char *text)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    int n = 0;
    for (char *save, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save), n++)
        if (!is_vocab_word(w)) return false;
    return n > 0;
}

TEST(captioner_file_memory_and_pixels_agree)
{
    need_photos();
    char model[600], enc[600];
    fixture_captioner(test_tmpdir(), 1, 1, model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c)); /* encoder found in <dir>/encoders/ */
    CHECK_STR(imcap_captioner_encoder_path(c), enc);
    CHECK_STR(imcap_captioner_encoder_name(c), "tiny");
    CHECK(imcap_captioner_vocab_size(c) == 14 && imcap_captioner_embedding_size(c) == 6);
    imcap_gen_params gp = imcap_captioner_gen_params(c);
    CHECK(gp.beam == 1 && gp.max_len == 12);
    int distinct = 0;
    char first[512] = "";
    for (int i = 0; i < N_PHOTOS; i++) {
        imcap_caption *a, *b, *d;
        REQUIRE_OK(imcap_caption_file(c, photos[i], NULL, &a));
        REQUIRE(a->n_alt == 1);
        CHECK(plain_words(a->alt[0].text));
        CHECK(a->alt[0].n_words >= 1 && a->alt[0].n_words <= 12 && a->alt[0].logprob < 0);
        CHECK(a->t_decode > 0 && a->t_encode > 0 && a->t_generate > 0);
        char *data;
        size_t len;
        REQUIRE_OK(imcap_read_file(photos[i], 1 << 26, &data, &len));
        REQUIRE_OK(imcap_caption_memory(c, data, len, photos[i], NULL, &b));
        CHECK_STR(b->alt[0].text, a->alt[0].text);
        CHECK(b->alt[0].logprob == a->alt[0].logprob);
        imcap_image img;
        REQUIRE_OK(imcap_image_load(photos[i], &img));
        REQUIRE_OK(imcap_caption_image(c, &img, NULL, &d));
        CHECK_STR(d->alt[0].text, a->alt[0].text);
        imcap_image_free(&img);
        free(data);
        if (i == 0) snprintf(first, sizeof first, "%s", a->alt[0].text);
        else distinct |= strcmp(first, a->alt[0].text) != 0;
        imcap_caption_free(a);
        imcap_caption_free(b);
        imcap_caption_free(d);
    }
    CHECK(distinct); /* the image matters */
    imcap_captioner_free(c);
}

TEST(captioner_beam_n_best_alternatives)
{
    need_photos();
    char model[600], enc[600];
    fixture_captioner(test_tmpdir(), 2, 3, model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, enc, &c));
    imcap_gen_params p = imcap_captioner_gen_params(c);
    CHECK(p.beam == 3);
    p.beam = 5;
    p.n_best = 4;
    imcap_caption *cap;
    REQUIRE_OK(imcap_caption_file(c, photos[1], &p, &cap));
    REQUIRE(cap->n_alt == 4);
    for (int i = 0; i < 4; i++) {
        CHECK(plain_words(cap->alt[i].text));
        if (i) CHECK(cap->alt[i - 1].score >= cap->alt[i].score && strcmp(cap->alt[i - 1].text, cap->alt[i].text));
    }
    imcap_caption_free(cap);
    p.beam = 2;
    CHECK(imcap_caption_file(c, photos[1], &p, &cap) == IMCAP_E_ARG && cap == NULL);
    CHECK(strstr(imcap_last_error(), "n-best") != NULL);
    imcap_captioner_free(c);
}

TEST(captioner_bad_images_name_the_file)
{
    char model[600], enc[600], bad[700];
    fixture_captioner(test_tmpdir(), 3, 1, model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c));
    imcap_caption *cap;
    snprintf(bad, sizeof bad, "%s/broken.jpg", test_tmpdir());
    FILE *fp = fopen(bad, "wb");
    REQUIRE(fp);
    fputs("\xff\xd8\xff\xe0 this is not really a jpeg", fp);
    fclose(fp);
    CHECK(imcap_caption_file(c, bad, NULL, &cap) != IMCAP_OK && cap == NULL);
    CHECK(strstr(imcap_last_error(), "broken.jpg") != NULL);
    CHECK(imcap_caption_file(c, "no/such/photo.jpg", NULL, &cap) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "no/such/photo.jpg") != NULL);
    CHECK(imcap_caption_memory(c, "GIF89a....", 10, "upload-7", NULL, &cap) != IMCAP_OK);
    CHECK(strstr(imcap_last_error(), "upload-7") != NULL);
    imcap_captioner_free(c);
}

TEST(captioner_missing_files_are_clear_errors)
{
    char model[600], enc[600];
    imcap_captioner *c;
    CHECK(imcap_captioner_load("no/such/model.imcap", NULL, &c) == IMCAP_E_IO && c == NULL);
    CHECK(strstr(imcap_last_error(), "no/such/model.imcap") != NULL);
    fixture_captioner(test_tmpdir(), 4, 1, model, enc);
    CHECK(imcap_captioner_load(model, "no/such/encoder.gguf", &c) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "no/such/encoder.gguf") != NULL);
    REQUIRE(unlink(enc) == 0);
    CHECK(imcap_captioner_load(model, NULL, &c) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "encoder file 'tiny.gguf'") != NULL);
    /* The encoder file given as the model. */
    char other[700];
    snprintf(other, sizeof other, "%s/other.gguf", test_tmpdir());
    enc_graph *g = fixture_encoder("tiny", 4);
    REQUIRE_OK(enc_graph_save(g, other));
    enc_graph_free(g);
    CHECK(imcap_captioner_load(other, other, &c) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "not an imcap captioner model") != NULL);
}

TEST(captioner_refuses_mismatched_encoder)
{
    char model[600], enc[600], other[700];
    fixture_captioner(test_tmpdir(), 5, 1, model, enc);
    imcap_captioner *c;
    /* Same architecture and name, other weights: the checksum differs. */
    snprintf(other, sizeof other, "%s/retrained.gguf", test_tmpdir());
    enc_graph *g = fixture_encoder("tiny", 99);
    REQUIRE_OK(enc_graph_save(g, other));
    enc_graph_free(g);
    CHECK(imcap_captioner_load(model, other, &c) == IMCAP_E_MISMATCH && c == NULL);
    CHECK(strstr(imcap_last_error(), "checksum") != NULL);
    CHECK(strstr(imcap_last_error(), "retrained.gguf") != NULL);
}

/* Position of the u32 value of a GGUF u32 key in the file bytes. */
static size_t u32_value_at(const char *data, size_t len, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 8; i + kl + 8 <= len; i++)
        if (!memcmp(data + i, key, kl) && (unsigned char)data[i - 8] == kl) return i + kl + 4;
    return 0;
}

TEST(captioner_refuses_other_versions_and_truncated_files)
{
    char model[600], enc[600], path[700];
    fixture_captioner(test_tmpdir(), 6, 1, model, enc);
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file(model, 1 << 26, &data, &len));
    imcap_captioner *c;
    snprintf(path, sizeof path, "%s/encoders/edited.imcap", test_tmpdir());

    size_t at = u32_value_at(data, len, "imcap.captioner.version");
    REQUIRE(at > 0 && data[at] == 1);
    data[at] = 2;
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(data, 1, len, fp) == len);
    fclose(fp);
    CHECK(imcap_captioner_load(path, enc, &c) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "version 2") != NULL && strstr(imcap_last_error(), "newer") != NULL);
    data[at] = 1;

    /* A vocabulary size that does not fit the decoder. */
    at = u32_value_at(data, len, "imcap.captioner.decoder.n_vocab");
    REQUIRE(at > 0 && data[at] == 14);
    data[at] = 15;
    fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(data, 1, len, fp) == len);
    fclose(fp);
    CHECK(imcap_captioner_load(path, enc, &c) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "edited.imcap") != NULL);
    data[at] = 14;

    /* Every truncation is refused with a message naming the file (the
     * last 8 bytes are alignment padding after the last tensor). */
    const size_t cuts[] = {0, 3, 24, 100, len / 3, len / 2, len - 40, len - 9};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        fp = fopen(path, "wb");
        REQUIRE(fp);
        if (cuts[k]) REQUIRE(fwrite(data, 1, cuts[k], fp) == cuts[k]);
        fclose(fp);
        c = NULL;
        imcap_status st = imcap_captioner_load(path, enc, &c);
        CHECK(st == IMCAP_E_FORMAT && c == NULL);
        CHECK(strstr(imcap_last_error(), "edited.imcap") != NULL);
    }
    free(data);
}

TEST(captioner_writer_refuses_parts_that_do_not_fit)
{
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "dog"};
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_from_words(words, 5, &v));
    enc_graph *g = fixture_encoder("tiny", 1);
    dec_config cf = {.n_img = 7, .n_img1 = 3, .n_hid = 4, .n_emb = 3, .n_out1 = 3, .n_vocab = 5, .pad_id = 1};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    char path[700];
    snprintf(path, sizeof path, "%s/x.imcap", test_tmpdir());
    captioner_spec s = {.dec = m, .vocab = v, .n_encoders = 1, .encoders = {g}, .encoder_files = {"tiny.gguf"},
                        .encoder_outputs = {"embedding"}, .gen = imcap_gen_default_params()};
    CHECK(captioner_write(&s, path) == IMCAP_E_MISMATCH); /* embedding 6 != n_img 7 */
    CHECK(strstr(imcap_last_error(), "7-float") != NULL);
    s.encoder_outputs[0] = "logits";
    CHECK(captioner_write(&s, path) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "no output 'logits'") != NULL);
    struct stat st;
    CHECK(stat(path, &st) != 0);
    dec_model_free(m);
    enc_graph_free(g);
    imcap_vocab_free(v);
}

typedef struct job {
    const imcap_captioner *c;
    int beam;
    char text[N_PHOTOS][256];
    int failed;
} job;

static void *caption_all(void *arg)
{
    job *j = arg;
    imcap_gen_params p = imcap_captioner_gen_params(j->c);
    p.beam = j->beam;
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < N_PHOTOS; i++) {
            imcap_caption *cap;
            if (imcap_caption_file(j->c, photos[i], &p, &cap)) {
                j->failed = 1;
                continue;
            }
            if (rep == 0) snprintf(j->text[i], sizeof j->text[i], "%s", cap->alt[0].text);
            else if (strcmp(j->text[i], cap->alt[0].text)) j->failed = 1;
            imcap_caption_free(cap);
        }
    return NULL;
}

TEST(captioner_concurrent_calls_on_one_model)
{
    need_photos();
    char model[600], enc[600];
    fixture_captioner(test_tmpdir(), 7, 1, model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c));
    job ref[2] = {{.c = c, .beam = 1}, {.c = c, .beam = 3}};
    caption_all(&ref[0]);
    caption_all(&ref[1]);
    REQUIRE(!ref[0].failed && !ref[1].failed);
    enum { T = 4 };
    job jobs[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        memset(&jobs[t], 0, sizeof jobs[t]);
        jobs[t].c = c;
        jobs[t].beam = t % 2 ? 3 : 1;
        REQUIRE(pthread_create(&th[t], NULL, caption_all, &jobs[t]) == 0);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++) {
        CHECK(!jobs[t].failed);
        for (int i = 0; i < N_PHOTOS; i++) CHECK_STR(jobs[t].text[i], ref[t % 2].text[i]);
    }
    imcap_captioner_free(c);
}

TEST(captioner_export_from_checkpoint)
{
    need_photos();
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 5, &v);
    char ckpt[700], enc[700], out[700], emb[700];
    snprintf(ckpt, sizeof ckpt, "%s/decoder.gguf", test_tmpdir());
    snprintf(enc, sizeof enc, "%s/tiny.gguf", test_tmpdir());
    snprintf(out, sizeof out, "%s/model.imcap", test_tmpdir());
    snprintf(emb, sizeof emb, "%s/emb.f32", test_tmpdir());
    REQUIRE_OK(dec_save(ckpt, m, v));
    enc_graph *g = fixture_encoder("tiny", 8);
    REQUIRE_OK(enc_graph_save(g, enc));

    /* Embeddings made by another encoder are refused, and nothing is written. */
    const char *names[1] = {"x.jpg"};
    float row[6] = {0};
    REQUIRE_OK(imcap_embfile_write(emb, 6, "inception_v3 embedding 12345678", 1, names, row));
    imcap_gen_params gp = imcap_gen_default_params();
    gp.beam = 3;
    CHECK(imcap_captioner_export(ckpt, enc, "embedding", emb, &gp, out) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "inception_v3") != NULL);
    struct stat st;
    CHECK(stat(out, &st) != 0);
    char id[100];
    snprintf(id, sizeof id, "tiny embedding %08x", (unsigned)enc_graph_checksum(g));
    REQUIRE_OK(imcap_embfile_write(emb, 6, id, 1, names, row));
    REQUIRE_OK(imcap_captioner_export(ckpt, enc, "embedding", emb, &gp, out));

    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(out, enc, &c));
    CHECK_STR(imcap_captioner_checkpoint(c), ckpt);
    CHECK(imcap_captioner_gen_params(c).beam == 3);
    /* The stored decoder is the checkpoint's: same caption as generating directly. */
    imcap_image img;
    REQUIRE_OK(imcap_image_load(photos[0], &img));
    float e[6];
    REQUIRE_OK(imcap_captioner_embed(c, &img, e));
    imcap_caption *cap;
    REQUIRE_OK(imcap_caption_image(c, &img, NULL, &cap));
    gen_special sp = {.start_id = imcap_vocab_start(v), .end_id = imcap_vocab_end(v), .n_masked = 3,
                      .masked = {imcap_vocab_pad(v), imcap_vocab_start(v), imcap_vocab_unk(v)}};
    gen_hyp h;
    int n;
    REQUIRE_OK(gen_caption(m, e, &sp, &gp, &h, &n));
    CHECK(cap->alt[0].n_words == h.n_words && cap->alt[0].logprob == h.logprob);
    imcap_caption_free(cap);
    imcap_image_free(&img);
    imcap_captioner_free(c);

    /* A decoder whose input size is not the encoder's output is refused. */
    dec_config cf = m->cfg;
    cf.n_img = 9;
    dec_model *m9;
    REQUIRE_OK(dec_model_new(&cf, false, &m9));
    REQUIRE_OK(dec_save(ckpt, m9, v));
    CHECK(imcap_captioner_export(ckpt, enc, "embedding", NULL, NULL, out) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "9-float") != NULL);
    dec_model_free(m9);
    dec_model_free(m);
    imcap_vocab_free(v);
    enc_graph_free(g);
}

TEST(captioner_concatenates_two_encoders)
{
    need_photos();
    imcap_vocab *v;
    dec_model *m = fixture_decoder(12, 9, &v);
    char dir[700], e1[760], e2[760], model[760];
    snprintf(dir, sizeof dir, "%s/encoders", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(e1, sizeof e1, "%s/first.gguf", dir);
    snprintf(e2, sizeof e2, "%s/second.gguf", dir);
    snprintf(model, sizeof model, "%s/two.imcap", test_tmpdir());
    enc_graph *g1 = fixture_encoder("first", 1), *g2 = fixture_encoder("second", 2);
    REQUIRE_OK(enc_graph_save(g1, e1));
    REQUIRE_OK(enc_graph_save(g2, e2));
    captioner_spec s = {.dec = m, .vocab = v, .n_encoders = 2, .encoders = {g1, g2}, .encoder_files = {e1, e2},
                        .encoder_outputs = {"embedding", "embedding"}, .gen = imcap_gen_default_params()};
    REQUIRE_OK(captioner_write(&s, model));
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c));
    CHECK_STR(imcap_captioner_encoder_name(c), "first+second");
    CHECK(imcap_captioner_embedding_size(c) == 12);
    /* The embedding is the two encoders' outputs, in order. */
    imcap_image img;
    REQUIRE_OK(imcap_image_load(photos[0], &img));
    float got[12], want[12], x[16 * 16 * 3];
    uint8_t px[16 * 16 * 3];
    REQUIRE_OK(imcap_captioner_embed(c, &img, got));
    REQUIRE_OK(imcap_image_prepare(&img, 16, 16, px));
    const float sc[3] = {2, 2, 2}, bi[3] = {-1, -1, -1};
    imcap_image_to_float(px, 256, sc, bi, x);
    int id1 = enc_graph_output(g1, "embedding"), id2 = enc_graph_output(g2, "embedding");
    float *o1[1] = {want}, *o2[1] = {want + 6};
    REQUIRE_OK(enc_graph_run(g1, x, 1, &id1, 1, o1));
    REQUIRE_OK(enc_graph_run(g2, x, 1, &id2, 1, o2));
    for (int i = 0; i < 12; i++) CHECK(got[i] == want[i]);
    imcap_caption *cap;
    REQUIRE_OK(imcap_caption_image(c, &img, NULL, &cap));
    CHECK(cap->n_alt == 1 && cap->alt[0].n_words >= 1);
    imcap_caption_free(cap);
    imcap_captioner_free(c);

    /* Explicit files: one per encoder, in the model's order. */
    char list[1600];
    snprintf(list, sizeof list, "%s,%s", e1, e2);
    REQUIRE_OK(imcap_captioner_load(model, list, &c));
    imcap_captioner_free(c);
    CHECK(imcap_captioner_load(model, e1, &c) == IMCAP_E_ARG && strstr(imcap_last_error(), "2 encoders"));
    snprintf(list, sizeof list, "%s,%s", e2, e1);
    CHECK(imcap_captioner_load(model, list, &c) == IMCAP_E_MISMATCH && strstr(imcap_last_error(), "checksum"));

    /* Two parts from one encoder file: loaded once, run once, both slices filled. */
    captioner_spec s2 = {.dec = m, .vocab = v, .n_encoders = 2, .encoders = {g1, g1}, .encoder_files = {e1, e1},
                         .encoder_outputs = {"embedding", "embedding"}, .gen = imcap_gen_default_params()};
    REQUIRE_OK(captioner_write(&s2, model));
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c));
    REQUIRE_OK(imcap_captioner_embed(c, &img, got));
    for (int i = 0; i < 6; i++) CHECK(got[i] == want[i] && got[6 + i] == want[i]);
    imcap_captioner_free(c);
    imcap_image_free(&img);
    enc_graph_free(g1);
    enc_graph_free(g2);
    dec_model_free(m);
    imcap_vocab_free(v);
}
