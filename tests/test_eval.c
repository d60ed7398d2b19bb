/*
 * test_eval.c - imcap_eval on a tiny captioner: the table equals imcap_score
 * of the captions the captioner gives photo by photo; the embeddings route
 * (decoder file + precomputed embeddings) gives the same captions and
 * scores, and a captioner file with embeddings keeps its stored settings;
 * generation overrides apply; missing photos and embeddings and a decoder of
 * the wrong input size are clear errors; the CLI prints the table, JSON and a
 * results file that `imcap score` reads back to the same numbers.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

static const char *photos[] = {"owl.jpg", "parrot.jpg", "hot_dog.jpg", "pets.jpg", "face.jpg"};
enum { N_PHOTOS = 5 };

typedef struct eval_fixture {
    char dir[600], images[700], model[600], enc[600], dec[700], emb[700], csv[700], split[700];
} eval_fixture;

/* Photos linked into <tmp>/images, a captioner and the same decoder as a
 * decoder file, reference captions (2-3 per photo) and a split of all. */
static void make_fixture(eval_fixture *f, int beam)
{
    struct stat st;
    if (stat("data/images/owl.jpg", &st) != 0) SKIP("sample photos (data/images) are not set up");
    snprintf(f->dir, sizeof f->dir, "%s", test_tmpdir());
    snprintf(f->images, sizeof f->images, "%s/images", f->dir);
    REQUIRE(mkdir(f->images, 0755) == 0);
    char cwd[512];
    REQUIRE(getcwd(cwd, sizeof cwd));
    for (int i = 0; i < N_PHOTOS; i++) {
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s/data/images/%s", cwd, photos[i]);
        snprintf(dst, sizeof dst, "%s/%s", f->images, photos[i]);
        REQUIRE(symlink(src, dst) == 0);
    }
    fixture_captioner(f->dir, 7, beam, f->model, f->enc);

    /* The same decoder as a decoder file, rebuilt with fixture_captioner's recipe. */
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a",    "ball", "cat",
                                        "dog",   "grass", "man",     "on",    "red", "runs", "the"};
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_from_words(words, 14, &v));
    dec_config cf = {.n_img = 6, .n_img1 = 5, .n_hid = 8, .n_emb = 4, .n_out1 = 7, .n_vocab = 14,
                     .pad_id = imcap_vocab_pad(v)};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, 8);
    dec_model_init(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.7 * imcap_rng_normal(&rng));
    snprintf(f->dec, sizeof f->dec, "%s/decoder.gguf", f->dir);
    REQUIRE_OK(dec_save(f->dec, m, v));
    dec_model_free(m);
    imcap_vocab_free(v);

    /* Embeddings of the photos through the captioner's encoder. */
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(f->model, NULL, &c));
    float rows[N_PHOTOS * 6];
    for (int i = 0; i < N_PHOTOS; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", f->images, photos[i]);
        imcap_image img;
        REQUIRE_OK(imcap_image_load(p, &img));
        REQUIRE(imcap_captioner_embedding_size(c) == 6);
        REQUIRE_OK(imcap_captioner_embed(c, &img, rows + i * 6));
        imcap_image_free(&img);
    }
    imcap_captioner_free(c);
    snprintf(f->emb, sizeof f->emb, "%s/emb.f32", f->dir);
    REQUIRE_OK(imcap_embfile_write(f->emb, 6, "tiny", N_PHOTOS, photos, rows));

    snprintf(f->csv, sizeof f->csv, "%s/captions.csv", f->dir);
    FILE *fp = fopen(f->csv, "w");
    REQUIRE(fp);
    fprintf(fp, "image,caption\n"
                "owl.jpg,A cat runs on the grass .\nowl.jpg,\"the red ball, on grass\"\n"
                "parrot.jpg,a man runs\nparrot.jpg,The dog on the red ball.\nparrot.jpg,a cat\n"
                "hot_dog.jpg,a red ball on the grass\nhot_dog.jpg,the red dog runs\n"
                "pets.jpg,A dog and a cat on the grass\npets.jpg,a man on a red ball\n"
                "face.jpg,the man\nface.jpg,a man runs on grass\nunused.jpg,a dog\n");
    REQUIRE(fclose(fp) == 0);
    snprintf(f->split, sizeof f->split, "%s/split.txt", f->dir);
    fp = fopen(f->split, "w");
    REQUIRE(fp);
    for (int i = 0; i < N_PHOTOS; i++) fprintf(fp, "%s\n", photos[i]);
    REQUIRE(fclose(fp) == 0);
}

static int count_calls(void *user, uint64_t done, uint64_t total, const char *what)
{
    int *n = user;
    (*n)++;
    return done > total || strcmp(what, "images") != 0; /* never stops a correct run */
}

/* The scores of the captions the captioner gives one photo at a time. */
static void direct_scores(const eval_fixture *f, const imcap_gen_params *gp, char texts[N_PHOTOS][512],
                          imcap_scores *s)
{
    imcap_captions *all, *refs;
    REQUIRE_OK(imcap_captions_load(f->csv, &all));
    REQUIRE_OK(imcap_captions_restrict(all, f->split, &refs));
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(f->model, f->enc, &c));
    imcap_score_item items[N_PHOTOS];
    const char *r[N_PHOTOS][4];
    for (int i = 0; i < N_PHOTOS; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", f->images, photos[i]);
        imcap_caption *cap;
        REQUIRE_OK(imcap_caption_file(c, p, gp, &cap));
        snprintf(texts[i], 512, "%s", cap->alt[0].text);
        imcap_caption_free(cap);
        items[i].candidate = texts[i];
        items[i].n_refs = imcap_captions_count(refs, (size_t)i);
        for (size_t k = 0; k < items[i].n_refs; k++) r[i][k] = imcap_captions_text(refs, (size_t)i, k);
        items[i].refs = r[i];
    }
    REQUIRE_OK(imcap_score(items, N_PHOTOS, 1, s, NULL, NULL));
    imcap_captioner_free(c);
    imcap_captions_free(refs);
    imcap_captions_free(all);
}

static void same_scores(const imcap_scores *a, const imcap_scores *b)
{
    for (int m = 0; m < IMCAP_N_METRICS; m++) CHECK(imcap_metric_value(a, m) == imcap_metric_value(b, m));
    CHECK(a->n_images == b->n_images);
}

TEST(eval_photos_and_embeddings_agree_with_direct_scoring)
{
    eval_fixture f;
    make_fixture(&f, 1);
    for (int beam = 1; beam <= 3; beam += 2) {
        imcap_gen_params gp = imcap_gen_default_params();
        gp.beam = beam;
        gp.max_len = 12; /* the fixture model's setting */
        char texts[N_PHOTOS][512];
        imcap_scores want;
        direct_scores(&f, &gp, texts, &want);
        CHECK(want.bleu[0] > 0);

        imcap_eval_params p = imcap_eval_default_params();
        p.model = f.model;
        p.split = f.split;
        p.captions = f.csv;
        p.beam = beam == 1 ? 0 : beam; /* 0: the model's (greedy) setting */
        int calls = 0;
        p.progress = count_calls;
        p.progress_user = &calls;
        imcap_eval_result r;
        REQUIRE_OK(imcap_eval(&p, &r)); /* photos in images/ beside the split file */
        CHECK(calls == N_PHOTOS);
        REQUIRE(r.n == N_PHOTOS);
        CHECK(r.gen.beam == beam && r.gen.max_len == 12);
        for (int i = 0; i < N_PHOTOS; i++) {
            CHECK_STR(r.names[i], photos[i]);
            CHECK_STR(r.captions[i], texts[i]);
        }
        same_scores(&r.scores, &want);
        CHECK(r.scores.n_images == N_PHOTOS);
        imcap_eval_result_free(&r);

        /* Decoder file + embeddings: no encoder, same captions (max_len given: the decoder has no setting). */
        p.model = f.dec;
        p.embeddings = f.emb;
        p.beam = beam;
        p.max_len = 12;
        p.threads = 3;
        REQUIRE_OK(imcap_eval(&p, &r));
        REQUIRE(r.n == N_PHOTOS);
        for (int i = 0; i < N_PHOTOS; i++) CHECK_STR(r.captions[i], texts[i]);
        same_scores(&r.scores, &want);
        imcap_eval_result_free(&r);
    }
}

/* A captioner file with precomputed embeddings generates with the settings
 * it stores (beam 3 here), as it does from photos, unless overridden. */
TEST(eval_embeddings_use_the_captioners_stored_settings)
{
    eval_fixture f;
    make_fixture(&f, 3);
    imcap_gen_params gp = imcap_gen_default_params();
    gp.beam = 3;
    gp.max_len = 12;
    char texts[N_PHOTOS][512];
    imcap_scores want;
    direct_scores(&f, &gp, texts, &want);

    imcap_eval_params p = imcap_eval_default_params();
    p.model = f.model;
    p.embeddings = f.emb;
    p.split = f.split;
    p.captions = f.csv;
    imcap_eval_result r;
    REQUIRE_OK(imcap_eval(&p, &r));
    REQUIRE(r.n == N_PHOTOS);
    CHECK(r.gen.beam == 3 && r.gen.max_len == 12);
    for (int i = 0; i < N_PHOTOS; i++) CHECK_STR(r.captions[i], texts[i]);
    same_scores(&r.scores, &want);
    imcap_eval_result_free(&r);

    p.beam = 1; /* an override still wins */
    REQUIRE_OK(imcap_eval(&p, &r));
    CHECK(r.gen.beam == 1 && r.gen.max_len == 12);
    imcap_eval_result_free(&r);
}

TEST(eval_errors_name_the_missing_piece)
{
    eval_fixture f;
    make_fixture(&f, 1);
    imcap_eval_params p = imcap_eval_default_params();
    imcap_eval_result r;
    CHECK(imcap_eval(&p, &r) == IMCAP_E_ARG);
    p.model = f.model;
    p.split = f.split;
    p.captions = f.csv;

    /* A photo missing from the image directory. */
    char gone[1024];
    snprintf(gone, sizeof gone, "%s/pets.jpg", f.images);
    REQUIRE(unlink(gone) == 0);
    CHECK(imcap_eval(&p, &r) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "pets.jpg") != NULL);
    CHECK(r.n == 0 && r.captions == NULL);

    /* A split image without an embedding row. */
    float row[6] = {0};
    const char *one[] = {"owl.jpg"};
    char emb1[800];
    snprintf(emb1, sizeof emb1, "%s/one.f32", f.dir);
    REQUIRE_OK(imcap_embfile_write(emb1, 6, "tiny", 1, one, row));
    p.model = f.dec;
    p.embeddings = emb1;
    CHECK(imcap_eval(&p, &r) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "parrot.jpg") != NULL || strstr(imcap_last_error(), "missing") != NULL);

    /* Embeddings of another size than the decoder reads. */
    float rows7[N_PHOTOS * 7] = {0};
    char emb7[800];
    snprintf(emb7, sizeof emb7, "%s/seven.f32", f.dir);
    REQUIRE_OK(imcap_embfile_write(emb7, 7, "other", N_PHOTOS, photos, rows7));
    p.embeddings = emb7;
    CHECK(imcap_eval(&p, &r) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "7 floats") != NULL);

    /* A split naming an image without references. */
    char split2[800];
    snprintf(split2, sizeof split2, "%s/bad-split.txt", f.dir);
    FILE *fp = fopen(split2, "w");
    REQUIRE(fp);
    fprintf(fp, "owl.jpg\nnot-there.jpg\n");
    REQUIRE(fclose(fp) == 0);
    p.embeddings = f.emb;
    p.split = split2;
    CHECK(imcap_eval(&p, &r) != IMCAP_OK);
    CHECK(strstr(imcap_last_error(), "not-there.jpg") != NULL);
}

static int run_cli(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(eval_cli_table_json_and_results_file)
{
    struct stat st;
    if (stat("build/imcap", &st) != 0) SKIP("build/imcap is not built");
    eval_fixture f;
    make_fixture(&f, 1);
    char cmd[4096], out[800], res[800], refs[800];
    snprintf(out, sizeof out, "%s/out.txt", f.dir);
    snprintf(res, sizeof res, "%s/results.json", f.dir);
    snprintf(refs, sizeof refs, "%s/refs.json", f.dir);
    snprintf(cmd, sizeof cmd,
             "build/imcap eval --model %s --embeddings %s --split %s --captions %s --max-len 12 --beam 3 --quiet "
             "--json --results-out %s > %s",
             f.dec, f.emb, f.split, f.csv, res, out);
    REQUIRE(run_cli(cmd) == 0);
    char *text;
    size_t len;
    REQUIRE_OK(imcap_read_file(out, 1 << 20, &text, &len));
    CHECK(strstr(text, "\"Bleu_4\"") && strstr(text, "\"CIDEr\"") && strstr(text, "\"beam\":\t3"));
    free(text);

    /* The results file, scored by imcap_score_coco_files against the same references, gives the same table. */
    imcap_captions *all, *sub;
    REQUIRE_OK(imcap_captions_load(f.csv, &all));
    REQUIRE_OK(imcap_captions_restrict(all, f.split, &sub));
    FILE *fp = fopen(refs, "w");
    REQUIRE(fp);
    fprintf(fp, "{\"annotations\": [");
    int first = 1;
    for (size_t i = 0; i < imcap_captions_n_images(sub); i++)
        for (size_t k = 0; k < imcap_captions_count(sub, i); k++) {
            fprintf(fp, "%s{\"image_id\": \"%s\", \"caption\": \"", first ? "" : ",", imcap_captions_image(sub, i));
            for (const char *c = imcap_captions_text(sub, i, k); *c; c++) {
                if (*c == '"' || *c == '\\') fputc('\\', fp);
                fputc(*c, fp);
            }
            fprintf(fp, "\"}");
            first = 0;
        }
    fprintf(fp, "]}\n");
    REQUIRE(fclose(fp) == 0);
    imcap_scores from_file;
    REQUIRE_OK(imcap_score_coco_files(res, refs, &from_file));
    imcap_eval_params p = imcap_eval_default_params();
    p.model = f.dec;
    p.embeddings = f.emb;
    p.split = f.split;
    p.captions = f.csv;
    p.max_len = 12;
    p.beam = 3;
    imcap_eval_result r;
    REQUIRE_OK(imcap_eval(&p, &r));
    same_scores(&from_file, &r.scores);
    imcap_eval_result_free(&r);
    imcap_captions_free(sub);
    imcap_captions_free(all);

    /* The table: one line per metric with the toolkit's names; bad options are usage errors. */
    snprintf(cmd, sizeof cmd, "build/imcap eval --model %s --split %s --captions %s --quiet > %s", f.model, f.split,
             f.csv, out);
    REQUIRE(run_cli(cmd) == 0);
    REQUIRE_OK(imcap_read_file(out, 1 << 20, &text, &len));
    CHECK(strstr(text, "images: 5, decoding: greedy") && strstr(text, "\nBleu_1: ") && strstr(text, "\nROUGE_L: ") &&
          strstr(text, "\nCIDEr: "));
    free(text);
    snprintf(cmd, sizeof cmd, "build/imcap eval --model %s --split %s --captions %s --beam 0 2>/dev/null", f.model,
             f.split, f.csv);
    CHECK(run_cli(cmd) == 2);
    snprintf(cmd, sizeof cmd, "build/imcap eval --model %s/nope.imcap --split %s --captions %s --quiet 2>%s", f.dir,
             f.split, f.csv, out);
    CHECK(run_cli(cmd) == 1);
    REQUIRE_OK(imcap_read_file(out, 1 << 20, &text, &len));
    CHECK(strstr(text, "nope.imcap") != NULL);
    free(text);
}

TEST(embcat_joins_rows_by_name)
{
    const char *dir = test_tmpdir();
    char a[600], b[600], c[600], out[600];
    snprintf(a, sizeof a, "%s/a.f32", dir);
    snprintf(b, sizeof b, "%s/b.f32", dir);
    snprintf(c, sizeof c, "%s/c.f32", dir);
    snprintf(out, sizeof out, "%s/out.f32", dir);
    const char *na[] = {"x.jpg", "y.jpg", "z.jpg"}, *nb[] = {"z.jpg", "x.jpg", "y.jpg"};
    float ra[] = {1, 2, 3, 4, 5, 6}, rb[] = {30, 31, 32, 10, 11, 12, 20, 21, 22};
    REQUIRE_OK(imcap_embfile_write(a, 2, "enc_a", 3, na, ra));
    REQUIRE_OK(imcap_embfile_write(b, 3, "enc_b", 3, nb, rb));
    const char *in[] = {a, b};
    REQUIRE_OK(imcap_embfile_concat(in, 2, out));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(out, &f));
    REQUIRE(imcap_embfile_count(f) == 3 && imcap_embfile_dim(f) == 5);
    CHECK_STR(imcap_embfile_encoder(f), "enc_a+enc_b");
    const float want[3][5] = {{1, 2, 10, 11, 12}, {3, 4, 20, 21, 22}, {5, 6, 30, 31, 32}};
    for (int r = 0; r < 3; r++) {
        CHECK_STR(imcap_embfile_name(f, (size_t)r), na[r]);
        for (int k = 0; k < 5; k++) CHECK(imcap_embfile_row(f, (size_t)r)[k] == want[r][k]);
    }
    imcap_embfile_close(f);

    /* An image missing from the second file; a different row count; output = input. */
    const char *nc[] = {"x.jpg", "y.jpg", "w.jpg"};
    REQUIRE_OK(imcap_embfile_write(c, 3, "enc_c", 3, nc, rb));
    const char *in2[] = {a, c};
    CHECK(imcap_embfile_concat(in2, 2, out) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "z.jpg") != NULL);
    REQUIRE_OK(imcap_embfile_write(c, 3, "enc_c", 2, nc, rb));
    CHECK(imcap_embfile_concat(in2, 2, out) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "2 rows") != NULL);
    const char *in3[] = {a, out};
    CHECK(imcap_embfile_concat(in3, 2, out) == IMCAP_E_ARG);
}
