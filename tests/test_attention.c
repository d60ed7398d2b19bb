#define _GNU_SOURCE
/*
 * test_attention.c - the soft-attention decoder: finite-difference checks of
 * every tensor and of the grid input (with and without dropout, with the
 * doubly stochastic regulariser), the step API against the batched forward,
 * the attention weights, model files, and an overfit run on real captions.
 */
#include "test.h"
#include "cpu_paths.h"
#include "dec_check.h"
#include "decoder.h"
#include "fixture.h"
#include "generate.h"
#include "train_fixture.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TB = 4, TT1 = 7, TD = 3, TL = 4 };

/* Every dimension different: D 3, grid 2x2, attention 5, H 4, E 2, O 6, V 7. */
static dec_config att_config(void)
{
    dec_config c = {.n_img = TD, .n_hid = 4, .n_emb = 2, .n_out1 = 6, .n_vocab = 7, .pad_id = 0,
                    .arch = DEC_ARCH_ATTENTION, .grid_h = 2, .grid_w = 2, .n_att = 5};
    return c;
}

/* 4 sequences of 7 tokens: different lengths, an interior PAD target, one
 * without any target. */
static const int32_t att_tokens[TB * TT1] = {
    2, 4, 5, 6, 3, 0, 0, /* length 4 */
    2, 6, 3, 0, 0, 0, 0, /* length 2 */
    2, 5, 0, 4, 6, 1, 3, /* length 6, interior PAD target */
    2, 0, 0, 0, 0, 0, 0, /* no target */
};

static void att_setup(bool grads, uint64_t seed, dec_model **m, dec_work **w, float img[TB * TL * TD])
{
    dec_config c = att_config();
    REQUIRE_OK(dec_model_new(&c, grads, m));
    REQUIRE_OK(dec_work_new(&c, TB, TT1, w));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    dec_model_init(*m, &rng);
    for (size_t i = 0; i < (*m)->n_params; i++) (*m)->params[i] += (float)(0.3 * imcap_rng_normal(&rng));
    for (int i = 0; i < TB * TL * TD; i++) img[i] = (float)imcap_rng_normal(&rng);
}

static double att_loss(dec_model *m, dec_work *w, float *img, const float *row_w, bool train)
{
    dec_batch bt = {m, w, img, att_tokens, row_w, TB, TT1, train};
    return dec_batch_loss(&bt);
}

/* Central differences (dec_check.h) of every tensor and of the grid. */
static void att_gradcheck(float drop, float lambda, const float *row_w)
{
    const bool train = drop > 0.0f;
    dec_model *m;
    dec_work *w;
    float img[TB * TL * TD], dimg[TB * TL * TD];
    att_setup(true, 7, &m, &w, img);
    dec_work_set_dropout(w, drop, 99);
    dec_work_set_attention_reg(w, lambda);
    float loss;
    int64_t nt;
    REQUIRE_OK(dec_forward_backward(m, w, img, att_tokens, row_w, TB, TT1, true, dimg, &loss, &nt));
    CHECK(nt == 4 + 2 + 5);
    CHECK(loss > 0.5f);
    if (train) CHECK(fabs(loss - att_loss(m, w, img, row_w, false)) > 1e-3);
    float *grads = malloc(m->n_params * sizeof(float));
    REQUIRE(grads);
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    dec_batch bt = {m, w, img, att_tokens, row_w, TB, TT1, train};
    fd_check_tensors(m, grads, dec_batch_loss, &bt);
    /* the grid: rows with targets get a gradient, the last row none */
    CHECK(fd_check(img, dimg, TB * TL * TD, "grid", dec_batch_loss, &bt) > 1e-3);
    for (int k = 3 * TL * TD; k < TB * TL * TD; k++) CHECK(dimg[k] == 0.0f);
    free(grads);
    dec_work_free(w);
    dec_model_free(m);
}

static void att_gradcheck_plain(void) { att_gradcheck(0.0f, 0.0f, NULL); }
TEST(attention_gradcheck_every_tensor_and_the_grid) { CHECK(each_cpu_path(att_gradcheck_plain) >= 1); }

TEST(attention_gradcheck_with_dropout) { att_gradcheck(0.5f, 0.0f, NULL); }

TEST(attention_gradcheck_with_the_regulariser_and_row_weights)
{
    const float wts[TB] = {0.5f, -1.5f, 2.0f, 3.0f};
    att_gradcheck(0.0f, 0.7f, wts);
}

/* Loss, gradients and grid gradient of a 9-row batch (odd, so the two
 * shards differ in size) with dropout and the regulariser, computed in a
 * child process whose worker pool has `threads` threads, into path. */
enum { SB = 9, ST1 = 12 };

static void att_shard_child(const char *threads, const char *path)
{
    setenv("IMCAP_THREADS", threads, 1);
    dec_config c = att_config();
    c.n_vocab = 30;
    dec_model *m;
    dec_work *w;
    if (dec_model_new(&c, true, &m) || dec_work_new(&c, SB, ST1, &w)) _exit(2);
    imcap_rng rng;
    imcap_rng_seed(&rng, 5);
    dec_model_init(m, &rng);
    static float img[SB * TL * TD], dimg[SB * TL * TD];
    static int32_t tok[SB * ST1];
    for (int i = 0; i < SB * TL * TD; i++) img[i] = (float)imcap_rng_normal(&rng);
    for (int r = 0; r < SB; r++) {
        const int len = 2 + r % (ST1 - 1);
        for (int t = 0; t < ST1; t++) tok[r * ST1 + t] = t == 0 ? 2 : t < len ? 4 + (r * 7 + t * 3) % 26 : 0;
    }
    dec_work_set_dropout(w, 0.3f, 17);
    dec_work_set_attention_reg(w, 0.4f);
    float loss;
    int64_t nt;
    if (dec_forward_backward(m, w, img, tok, NULL, SB, ST1, true, dimg, &loss, &nt)) _exit(3);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&loss, sizeof loss, 1, f) != 1 || fwrite(m->grads, sizeof(float), m->n_params, f) != m->n_params ||
        fwrite(dimg, sizeof dimg, 1, f) != 1 || fclose(f))
        _exit(4);
    _exit(0);
}

/* The batch is cut into shards by its size alone: one worker thread or
 * two give the same bits. */
TEST(attention_training_is_bit_identical_on_one_and_two_threads)
{
    const char *dir = test_tmpdir();
    static char p1[1100], p2[1100];
    snprintf(p1, sizeof p1, "%s/t1.bin", dir);
    snprintf(p2, sizeof p2, "%s/t2.bin", dir);
    const char *paths[2] = {p1, p2}, *threads[2] = {"1", "2"};
    for (int k = 0; k < 2; k++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) att_shard_child(threads[k], paths[k]);
        int st;
        REQUIRE(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_SAME_FILE(p1, p2);
    struct stat sb;
    CHECK(stat(p1, &sb) == 0 && sb.st_size > (off_t)(sizeof(float) * SB * TL * TD));
}

/* The regulariser adds lambda * mean over rows with targets and regions of
 * (1 - sum_t alpha)^2, computed here from the step API's attention weights. */
TEST(attention_regulariser_and_step_api_match_the_batched_forward)
{
    dec_model *m;
    dec_work *w;
    float img[TB * TL * TD];
    att_setup(false, 11, &m, &w, img);
    const float lambda = 0.3f;
    float ce;
    int64_t nt;
    REQUIRE_OK(dec_forward_backward(m, w, img, att_tokens, NULL, TB, TT1, false, NULL, &ce, &nt));
    dec_work_set_attention_reg(w, lambda);
    float with_reg;
    REQUIRE_OK(dec_forward_backward(m, w, img, att_tokens, NULL, TB, TT1, false, NULL, &with_reg, NULL));
    const size_t S = dec_state_floats(m), CF = dec_context_floats(m);
    REQUIRE(CF == (size_t)TL * (TD + 5));
    float st[TB * 8], logits[TB * 7], attn[TB * TL], *ctx = malloc(sizeof(float) * TB * CF);
    float *scratch = malloc(sizeof(float) * dec_step_scratch_floats(m, TB));
    REQUIRE(S == 8 && ctx && scratch);
    REQUIRE_OK(dec_init_state(m, img, TB, ctx, st));
    double total = 0, sum_alpha[TB][TL] = {{0}};
    int n = 0;
    const int len[TB] = {4, 2, 6, 0};
    for (int t = 0; t < 6; t++) {
        int32_t tok[TB];
        for (int r = 0; r < TB; r++) tok[r] = att_tokens[r * 7 + t];
        dec_step(m, ctx, false, tok, TB, st, logits, st, attn, scratch);
        for (int r = 0; r < TB; r++) {
            double s = 0;
            for (int i = 0; i < TL; i++) s += attn[r * TL + i];
            CHECK_NEAR(s, 1.0, 1e-5);
            if (t < len[r])
                for (int i = 0; i < TL; i++) sum_alpha[r][i] += attn[r * TL + i];
            int tg = att_tokens[r * 7 + t + 1];
            if (tg == 0) continue;
            total += dec_check_xent(logits + r * 7, 7, tg);
            n++;
        }
    }
    CHECK(n == nt);
    CHECK_NEAR(total / n, ce, 1e-5);
    double reg = 0;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < TL; i++) reg += (1 - sum_alpha[r][i]) * (1 - sum_alpha[r][i]);
    reg *= lambda / (3.0 * TL);
    CHECK(reg > 1e-3);
    CHECK_NEAR(with_reg, ce + reg, 1e-5);
    free(ctx);
    free(scratch);
    dec_work_free(w);
    dec_model_free(m);
}

/* Bad configurations are refused; files record the architecture and load
 * back the same weights. */
TEST(attention_config_checks_and_model_file)
{
    dec_config c = att_config(), bad = c;
    dec_model *m, *m2;
    bad.n_img1 = 3;
    CHECK(dec_model_new(&bad, false, &m) == IMCAP_E_ARG);
    bad = c;
    bad.grid_w = 0;
    CHECK(dec_model_new(&bad, false, &m) == IMCAP_E_ARG);
    bad = c;
    bad.n_att = 0;
    CHECK(dec_model_new(&bad, false, &m) == IMCAP_E_ARG);
    CHECK(dec_input_floats(&c) == (size_t)TL * TD && dec_regions(&c) == TL);
    dec_work *w;
    float img[TB * TL * TD];
    att_setup(false, 2, &m, &w, img);
    const char *words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a", "dog", "runs"};
    imcap_vocab *v, *v2;
    REQUIRE_OK(imcap_vocab_from_words(words, 7, &v));
    m->cfg.pad_id = imcap_vocab_pad(v);
    char path[600];
    snprintf(path, sizeof path, "%s/att.gguf", test_tmpdir());
    REQUIRE_OK(dec_save(path, m, v));
    REQUIRE_OK(dec_load(path, &m2, &v2));
    CHECK(m2->cfg.arch == DEC_ARCH_ATTENTION && m2->cfg.grid_h == 2 && m2->cfg.grid_w == 2 && m2->cfg.n_att == 5);
    for (int i = 0; i < dec_n_tensors(&c); i++) {
        dec_tensor_info ti = dec_tensor_at(&c, i);
        CHECK(memcmp(m2->params + ti.offset, m->params + ti.offset, ti.size * sizeof(float)) == 0);
    }
    dec_model_free(m2);
    imcap_vocab_free(v2);
    imcap_vocab_free(v);
    dec_work_free(w);
    dec_model_free(m);
}

/* Beam search with beam 1 is greedy decoding, and greedy decoding of a batch
 * is greedy decoding of each photo, for an attention model too. */
TEST(attention_generation_agrees_across_decoders)
{
    dec_model *m;
    dec_work *w;
    float img[TB * TL * TD];
    att_setup(false, 21, &m, &w, img);
    gen_special sp = {.start_id = 2, .end_id = 3, .n_masked = 2, .masked = {0, 1}};
    int32_t out[TB * 10];
    int lens[TB];
    REQUIRE_OK(gen_greedy_batch(m, img, TB, &sp, 10, out, lens));
    imcap_gen_params gp = imcap_gen_default_params();
    gp.max_len = 10;
    for (int r = 0; r < TB; r++) {
        gen_hyp g, bh;
        int n1, n2;
        REQUIRE_OK(gen_caption(m, img + r * TL * TD, &sp, &gp, &g, &n1));
        REQUIRE_OK(gen_beam_search(m, img + r * TL * TD, &sp, &gp, &bh, &n2));
        CHECK(n1 == 1 && n2 == 1);
        CHECK(g.n_words == lens[r] && memcmp(g.words, out + r * 10, sizeof(int32_t) * g.n_words) == 0);
        CHECK(bh.n_words == g.n_words && memcmp(bh.words, g.words, sizeof(int32_t) * g.n_words) == 0);
        double lp;
        REQUIRE_OK(gen_sequence_logprob(m, img + r * TL * TD, &sp, g.words, g.n_words, g.ended, &lp));
        CHECK_NEAR(lp, g.logprob, 1e-6);
    }
    dec_work_free(w);
    dec_model_free(m);
}

/* ---- overfit: a few real captions are learned and regenerated exactly ---- */

TEST(attention_overfits_real_captions_and_greedy_regenerates_them)
{
    const dec_config c = {.n_img = 8, .n_hid = 64, .n_emb = 32, .n_out1 = 48, .arch = DEC_ARCH_ATTENTION,
                          .grid_h = 3, .grid_w = 3, .n_att = 16};
    dec_overfit_check(c, 0.1f, 0.05f);
}

/* ---- PyTorch golden (scripts/golden_attention.py) ---- */

/* Tolerances: float32 on both sides, different summation orders and our
 * polynomial exp/tanh: loss 1e-5 relative; gradients |c - torch| <= 2e-6 +
 * 1e-4 (|torch| + the tensor's largest); Adam losses 1e-5 relative, weights
 * after 10 steps 1e-5 absolute; greedy captions identical. */
static void att_golden_all(void)
{
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file(test_path("tests/data/attention_golden.bin"), 1 << 20, &data, &len));
    golden r = {data, data + len};
    REQUIRE(memcmp(golden_take(&r, 8), "IMCAGLD1", 8) == 0);
    dec_config c = {.arch = DEC_ARCH_ATTENTION};
    c.n_img = golden_i32(&r);
    c.grid_h = golden_i32(&r);
    c.grid_w = golden_i32(&r);
    c.n_att = golden_i32(&r);
    c.n_hid = golden_i32(&r);
    c.n_emb = golden_i32(&r);
    c.n_out1 = golden_i32(&r);
    c.n_vocab = golden_i32(&r);
    c.pad_id = golden_i32(&r);
    int B = golden_i32(&r), T1 = golden_i32(&r), n_steps = golden_i32(&r), gen_len = golden_i32(&r);
    float lr = golden_f32(&r), clip = golden_f32(&r), lambda = golden_f32(&r);
    REQUIRE(B > 0 && B < 100 && T1 > 1 && T1 < 100 && n_steps > 0 && n_steps < 100 && gen_len > 0 && gen_len < 50);
    dec_model *m;
    dec_work *w;
    REQUIRE_OK(dec_model_new(&c, true, &m));
    REQUIRE_OK(dec_work_new(&c, B, T1, &w));
    dec_work_set_attention_reg(w, lambda);
    const size_t nin = (size_t)B * dec_input_floats(&c);
    int32_t *tok = malloc(sizeof(int32_t) * B * T1);
    float *rw = malloc(sizeof(float) * B), *img = malloc(sizeof(float) * nin), *dimg = malloc(sizeof(float) * nin);
    REQUIRE(tok && rw && img && dimg);
    memcpy(tok, golden_take(&r, sizeof(int32_t) * B * T1), sizeof(int32_t) * B * T1);
    memcpy(rw, golden_take(&r, sizeof(float) * B), sizeof(float) * B);
    memcpy(img, golden_take(&r, sizeof(float) * nin), sizeof(float) * nin);
    golden_weights(&r, m);
    /* greedy captions of the initial model (at the end of the file) */
    gen_special sp = {.start_id = 2, .end_id = 3, .n_masked = 3, .masked = {0, 1, 2}};
    int32_t *out = malloc(sizeof(int32_t) * B * gen_len);
    int *olen = malloc(sizeof(int) * B);
    REQUIRE(out && olen);
    REQUIRE_OK(gen_greedy_batch(m, img, B, &sp, gen_len, out, olen));
    /* n-gram blocking: this random model repeats words; with blocking no
     * caption of the beam repeats a bigram (unigram for n = 1), without it
     * one does */
    int repeats_off = 0;
    for (int n = 0; n <= 2; n++) {
        imcap_gen_params gp = imcap_gen_default_params();
        gp.beam = 3;
        gp.n_best = 3;
        gp.max_len = gen_len;
        gp.block_ngram = n;
        for (int b = 0; b < B; b++) {
            gen_hyp hy[3];
            int nh;
            REQUIRE_OK(gen_beam_search(m, img + (size_t)b * dec_input_floats(&c), &sp, &gp, hy, &nh));
            for (int k = 0; k < nh; k++)
                for (int i = 0; i + 1 < hy[k].n_words; i++)
                    for (int j = i + 1; j + (n == 1 ? 0 : 1) < hy[k].n_words; j++) {
                        bool same = n == 1 ? hy[k].words[i] == hy[k].words[j]
                                           : hy[k].words[i] == hy[k].words[j] && hy[k].words[i + 1] == hy[k].words[j + 1];
                        if (n == 0) repeats_off += same;
                        else if (same) test_fail_at(__FILE__, __LINE__, "photo %d: %d-gram repeated at %d, %d", b, n, i, j);
                    }
        }
    }
    CHECK(repeats_off > 0);

    const dec_batch bt = {m, w, img, tok, rw, B, T1, true};
    golden_check_backward(&r, &bt, dimg);
    golden_check_adam(&r, &bt, lr, clip, n_steps);
    for (int b = 0; b < B; b++) {
        int n = golden_i32(&r);
        const int32_t *words = golden_take(&r, sizeof(int32_t) * gen_len);
        CHECK(olen[b] == n && memcmp(out + (size_t)b * gen_len, words, sizeof(int32_t) * n) == 0);
    }
    CHECK(r.p == r.end);
    free(out);
    free(olen);
    free(tok);
    free(rw);
    free(img);
    free(dimg);
    free(data);
    dec_work_free(w);
    dec_model_free(m);
}

TEST(attention_matches_pytorch_golden) { CHECK(each_cpu_path(att_golden_all) >= 1); }

/* ---- an attention captioner end to end: API, --json, report ---- */

/* <dir>/encoders/tiny.gguf (the fixture encoder with its 8x8x8 conv map as
 * "grid") and <dir>/att.imcap, a random attention decoder over that grid. */
static void attention_captioner(const char *dir, char *model, char *enc)
{
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a",    "ball", "cat",
                                        "dog",   "grass", "man",     "on",    "red", "runs", "the"};
    char encdir[600];
    snprintf(encdir, sizeof encdir, "%s/encoders", dir);
    mkdir(encdir, 0755);
    snprintf(enc, 600, "%s/tiny.gguf", encdir);
    snprintf(model, 600, "%s/att.imcap", dir);
    enc_graph *g = fixture_encoder("tiny", 5);
    const enc_value *cv = enc_graph_value(g, 1); /* the conv map (node 0 makes value 1) */
    REQUIRE(cv && cv->h == 8 && cv->w == 8 && cv->c == 8);
    REQUIRE(enc_graph_output(g, "grid") < 0); /* the fixture pools before its dense layer */
    REQUIRE_OK(enc_graph_set_output(g, "grid", 1));
    REQUIRE_OK(enc_graph_save(g, enc));
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_from_words(words, 14, &v));
    dec_config cf = {.n_img = 8, .n_hid = 8, .n_emb = 4, .n_out1 = 7, .n_vocab = 14, .pad_id = imcap_vocab_pad(v),
                     .arch = DEC_ARCH_ATTENTION, .grid_h = 8, .grid_w = 8, .n_att = 6};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, 6);
    dec_model_init(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.7 * imcap_rng_normal(&rng));
    captioner_spec s = {.dec = m, .vocab = v, .n_encoders = 1, .encoders = {g}, .encoder_files = {enc},
                        .encoder_outputs = {"embedding"}, .gen = imcap_gen_default_params(), .source = "test"};
    s.gen.max_len = 8;
    CHECK(captioner_write(&s, model) == IMCAP_E_MISMATCH); /* a pooled vector is not the grid */
    s.encoder_outputs[0] = "grid";
    s.gen.block_ngram = 2;
    REQUIRE_OK(captioner_write(&s, model));
    dec_model_free(m);
    imcap_vocab_free(v);
    enc_graph_free(g);
}

TEST(attention_captioner_gives_attention_maps)
{
    char model[600], enc[600], cmd[4096], err[4096];
    static char out[1 << 16];
    attention_captioner(test_tmpdir(), model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, enc, &c));
    CHECK(imcap_captioner_gen_params(c).block_ngram == 2); /* the stored default */
    imcap_caption *cap;
    REQUIRE_OK(imcap_caption_file(c, test_path("data/images/pets.jpg"), NULL, &cap));
    CHECK(cap->grid_rows == 8 && cap->grid_cols == 8);
    REQUIRE(cap->alt[0].attention && cap->alt[0].n_words >= 1);
    for (int i = 0; i < cap->alt[0].n_words; i++) {
        double s = 0;
        for (int k = 0; k < 64; k++) s += cap->alt[0].attention[i * 64 + k];
        CHECK_NEAR(s, 1.0, 1e-5);
    }

    snprintf(cmd, sizeof cmd, "IMCAP_QUIET=1 '%s' caption --json --beam 2 --model %s --encoder %s data/images/pets.jpg",
             test_imcap_bin(), model, enc);
    REQUIRE(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j && cJSON_GetArraySize(j) == 1);
    cJSON *o = cJSON_GetArrayItem(j, 0), *grid = cJSON_GetObjectItem(o, "grid"), *att = cJSON_GetObjectItem(o, "attention");
    REQUIRE(grid && cJSON_GetArraySize(grid) == 2 && cJSON_GetArrayItem(grid, 0)->valueint == 8);
    const char *caption = cJSON_GetObjectItem(o, "caption")->valuestring;
    REQUIRE(att && cJSON_GetArraySize(att) >= 1);
    char rebuilt[1024] = "";
    for (int i = 0; i < cJSON_GetArraySize(att); i++) {
        cJSON *w = cJSON_GetArrayItem(att, i), *wt = cJSON_GetObjectItem(w, "weights");
        REQUIRE(wt && cJSON_GetArraySize(wt) == 64);
        double s = 0;
        for (int k = 0; k < 64; k++) s += cJSON_GetArrayItem(wt, k)->valuedouble;
        CHECK_NEAR(s, 1.0, 1e-4);
        size_t l = strlen(rebuilt);
        snprintf(rebuilt + l, sizeof rebuilt - l, "%s%s", i ? " " : "", cJSON_GetObjectItem(w, "word")->valuestring);
    }
    CHECK(strcmp(rebuilt, caption) == 0);
    cJSON_Delete(j);

    /* imcap report draws the maps: per word a tile, the square view lit by its weights */
    char split[700], html[700], caps[700];
    snprintf(split, sizeof split, "%s/split.txt", test_tmpdir());
    snprintf(caps, sizeof caps, "%s/caps.csv", test_tmpdir());
    FILE *cf = fopen(caps, "w");
    REQUIRE(cf);
    fprintf(cf, "image,caption\npets.jpg,a dog and a cat on the grass .\n");
    fclose(cf);
    snprintf(html, sizeof html, "%s/report.html", test_tmpdir());
    FILE *fp = fopen(split, "w");
    REQUIRE(fp);
    fprintf(fp, "pets.jpg\n");
    fclose(fp);
    snprintf(cmd, sizeof cmd,
             "IMCAP_QUIET=1 '%s' report --model %s --encoder %s --split %s --images data/images --captions %s "
             "-n 1 --out %s",
             test_imcap_bin(), model, enc, split, caps, html);
    int rc = test_run(cmd, NULL, 0, err, sizeof err);
    if (rc != 0) fprintf(stderr, "    %s\n", err);
    char *page;
    size_t len;
    REQUIRE_OK(imcap_read_file(html, 1 << 24, &page, &len));
    imcap_image photo;
    REQUIRE_OK(imcap_image_load(test_path("data/images/pets.jpg"), &photo));
    uint8_t view[96 * 96 * 3];
    REQUIRE_OK(imcap_image_prepare(&photo, 96, 96, view));
    imcap_image_free(&photo);
    const char *tag = "<figure><img width=\"96\" height=\"96\"";
    int tiles = 0, lit = 0;
    for (const char *p = page; (p = strstr(p, tag)); p++, tiles++) {
        const char *b64 = strstr(p, "base64,"), *end = b64 ? strchr(b64, '"') : NULL;
        REQUIRE(b64 && end && tiles < cap->alt[0].n_words);
        b64 += 7;
        size_t n64 = (size_t)(end - b64), nb = 0;
        unsigned char *jpg = malloc(n64);
        REQUIRE(jpg);
        for (size_t i = 0; i + 4 <= n64; i += 4) { /* base64 -> bytes */
            uint32_t v = 0;
            int pad = 0;
            for (int k = 0; k < 4; k++) {
                const char ch = b64[i + k];
                const int d = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                            : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' ? 62 : ch == '/' ? 63 : (pad++, 0);
                v = v << 6 | (uint32_t)d;
            }
            for (int k = 0; k < 3 - pad; k++) jpg[nb++] = (unsigned char)(v >> (16 - 8 * k));
        }
        imcap_image tile;
        REQUIRE_OK(imcap_image_decode(jpg, nb, "tile", &tile));
        free(jpg);
        REQUIRE(tile.w == 96 && tile.h == 96);
        /* at the centres of the most and the least attended regions, tile / view
         * is 1 and 0.15 + 0.85 * min / max (JPEG: within 0.1) */
        const float *w = cap->alt[0].attention + (size_t)tiles * 64;
        int hi = 0, lo = 0;
        for (int k = 1; k < 64; k++) hi = w[k] > w[hi] ? k : hi, lo = w[k] < w[lo] ? k : lo;
        double ratio[2];
        int bright = 1;
        for (int q = 0; q < 2; q++) {
            const int k = q ? lo : hi, cy = 6 + 12 * (k / 8), cx = 6 + 12 * (k % 8);
            double st = 0, sv = 0;
            for (int y = cy - 1; y <= cy; y++)
                for (int x = cx - 1; x <= cx; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        st += tile.rgb[((size_t)y * 96 + x) * 3 + ch];
                        sv += view[((size_t)y * 96 + x) * 3 + ch];
                    }
            bright &= sv > 12 * 60.0;
            ratio[q] = st / (sv > 0 ? sv : 1);
        }
        if (bright) {
            lit++;
            CHECK_NEAR(ratio[0], 1.0, 0.1);
            CHECK_NEAR(ratio[1], 0.15 + 0.85 * w[lo] / w[hi], 0.1);
        }
        imcap_image_free(&tile);
    }
    CHECK(tiles == cap->alt[0].n_words && lit >= 1);
    free(page);
    imcap_caption_free(cap);
    imcap_captioner_free(c);
}
