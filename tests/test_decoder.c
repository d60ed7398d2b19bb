/*
 * test_decoder.c - the LSTM decoder and Adam: finite-difference gradient
 * checks, consistency of the step-by-step inference API with the batched
 * forward, the PyTorch golden file, and an overfit run on real captions.
 */
#include "test.h"
#include "cpu_paths.h"
#include "dec_check.h"
#include "decoder.h"
#include "generate.h"
#include "optimizer.h"

#include <math.h>

/* Tiny but nontrivial sizes: every dimension different. */
static dec_config tiny_config(void)
{
    dec_config c = {.n_img = 5, .n_img1 = 4, .n_hid = 3, .n_emb = 4, .n_out1 = 5, .n_vocab = 7, .pad_id = 0};
    return c;
}

/* 4 sequences of 7 tokens (pad 0): different lengths, an interior PAD
 * target, and one sequence with no target at all. */
static const int32_t tiny_tokens[4 * 7] = {
    2, 4, 5, 6, 3, 0, 0, /* length 4 */
    2, 6, 3, 0, 0, 0, 0, /* length 2 */
    2, 5, 0, 4, 6, 1, 3, /* length 6, interior PAD target */
    2, 0, 0, 0, 0, 0, 0, /* no target */
};

static void random_model(dec_model *m, imcap_rng *rng, float scale)
{
    dec_model_init(m, rng);
    /* make biases and all weights nonzero and larger so that every path matters */
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(scale * imcap_rng_normal(rng));
}

/* The tiny model with random weights (seed), a workspace for 4 x 7 tokens
 * and 4 random image embeddings. */
static void tiny_setup(bool grads, uint64_t seed, dec_model **m, dec_work **w, float img[4 * 5])
{
    dec_config c = tiny_config();
    REQUIRE_OK(dec_model_new(&c, grads, m));
    REQUIRE_OK(dec_work_new(&c, 4, 7, w));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    random_model(*m, &rng, 0.3f);
    for (int i = 0; i < 20; i++) img[i] = (float)imcap_rng_normal(&rng);
}

/* The loss of a pass; with train, a training pass (dropout applies; the
 * gradients are overwritten). */
static double loss_of(dec_model *m, dec_work *w, const float *img, int b, int t1, bool train)
{
    float loss;
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, NULL, b, t1, train, NULL, &loss, NULL));
    return loss;
}

static double loss_at(dec_model *m, dec_work *w, const float *img, int b, int t1)
{
    return loss_of(m, w, img, b, t1, false);
}

/* Central differences (dec_check.h) of every tensor and of the input;
 * drop > 0: through a training pass with that dropout (a fixed mask). */
static void gradcheck(float drop)
{
    const bool train = drop > 0.0f;
    dec_model *m;
    dec_work *w;
    float img[4 * 5], dimg[4 * 5];
    tiny_setup(true, 7, &m, &w, img);
    dec_work_set_dropout(w, drop, 99);
    float loss;
    int64_t nt;
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, NULL, 4, 7, true, dimg, &loss, &nt));
    CHECK(nt == 4 + 2 + 5);
    CHECK(loss > 0.5f);
    if (train) CHECK(fabs(loss - loss_at(m, w, img, 4, 7)) > 1e-3); /* the mask changes the loss */
    float *grads = malloc(m->n_params * sizeof(float));
    REQUIRE(grads);
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    dec_batch bt = {m, w, img, tiny_tokens, NULL, 4, 7, train};
    fd_check_tensors(m, grads, dec_batch_loss, &bt);
    /* the input embedding: rows with targets get a gradient, the last none */
    CHECK(fd_check(img, dimg, 20, "img", dec_batch_loss, &bt) > 1e-3);
    for (int k = 15; k < 20; k++) CHECK(dimg[k] == 0.0f);
    free(grads);
    dec_work_free(w);
    dec_model_free(m);
}

static void gradcheck_plain(void) { gradcheck(0.0f); }
TEST(decoder_gradcheck_every_tensor_and_input) { CHECK(each_cpu_path(gradcheck_plain) >= 1); }

/* Dropout on h_t: the same check through training passes with a fixed mask
 * (half the units dropped); one seed gives one mask, another seed another,
 * and p = 0 is the evaluation pass. */
TEST(decoder_gradcheck_with_dropout)
{
    gradcheck(0.5f);
    dec_model *m;
    dec_work *w;
    float img[4 * 5];
    tiny_setup(true, 3, &m, &w, img);
    dec_work_set_dropout(w, 0.3f, 1);
    double a = loss_of(m, w, img, 4, 7, true), a2 = loss_of(m, w, img, 4, 7, true);
    dec_work_set_dropout(w, 0.3f, 2);
    double b = loss_of(m, w, img, 4, 7, true);
    dec_work_set_dropout(w, 0.0f, 2);
    double off = loss_of(m, w, img, 4, 7, true);
    CHECK(a == a2);                        /* same seed, same mask */
    CHECK(a != b);                         /* another seed, another mask */
    CHECK(off == loss_at(m, w, img, 4, 7)); /* p = 0: no dropout */
    dec_work_free(w);
    dec_model_free(m);
}

/* Per-row loss weights (what SCST needs): all ones is the unweighted pass
 * bit for bit; loss and gradients are linear in the weights, each row's part
 * being that row's loss over the batch's targets; non-finite weights are
 * refused. */
TEST(decoder_row_weights_scale_each_rows_loss)
{
    dec_model *m;
    dec_work *w;
    float img[4 * 5];
    tiny_setup(true, 5, &m, &w, img);
    const size_t n = m->n_params;
    float *g_plain = malloc(n * sizeof(float)), *g_sum = calloc(n, sizeof(float));
    REQUIRE(g_plain && g_sum);
    float loss, l1;
    int64_t nt, nt1;
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, NULL, 4, 7, true, NULL, &loss, &nt));
    memcpy(g_plain, m->grads, n * sizeof(float));
    const float ones[4] = {1, 1, 1, 1};
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, ones, 4, 7, true, NULL, &l1, &nt1));
    CHECK(l1 == loss && nt1 == nt);
    CHECK(memcmp(g_plain, m->grads, n * sizeof(float)) == 0);
    const float wts[4] = {0.5f, -1.5f, 2.0f, 3.0f};
    double want = 0;
    for (int r = 0; r < 4; r++) {
        float e[4] = {0, 0, 0, 0}, lr;
        e[r] = 1.0f;
        REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, e, 4, 7, true, NULL, &lr, &nt1));
        CHECK(nt1 == nt); /* targets are counted whatever the weights */
        want += wts[r] * lr;
        for (size_t k = 0; k < n; k++) g_sum[k] += wts[r] * m->grads[k];
    }
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, wts, 4, 7, true, NULL, &loss, &nt1));
    CHECK_NEAR(loss, want, 1e-5);
    double worst = 0;
    for (size_t k = 0; k < n; k++) worst = fmax(worst, fabs(m->grads[k] - g_sum[k]));
    CHECK(worst < 1e-5);
    const float bad[4] = {1, NAN, 1, 1};
    CHECK(dec_forward_backward(m, w, img, tiny_tokens, bad, 4, 7, true, NULL, &loss, NULL) == IMCAP_E_ARG);
    free(g_plain);
    free(g_sum);
    dec_work_free(w);
    dec_model_free(m);
}

/* The inference API (init_state + step) gives the same loss as the batched,
 * packed training forward for each sequence on its own. */
static void step_api_all(void)
{
    dec_model *m;
    dec_work *w;
    float img[4 * 5];
    tiny_setup(false, 11, &m, &w, img);
    float batch_loss;
    int64_t nt;
    REQUIRE_OK(dec_forward_backward(m, w, img, tiny_tokens, NULL, 4, 7, false, NULL, &batch_loss, &nt));
    /* step all 4 sequences together through 6 steps */
    float st[4 * 6], logits[4 * 7];
    REQUIRE(dec_state_floats(m) == 6 && dec_context_floats(m) == 0);
    float *scratch = malloc(sizeof(float) * dec_step_scratch_floats(m, 4));
    REQUIRE(scratch);
    REQUIRE_OK(dec_init_state(m, img, 4, NULL, st));
    double total = 0;
    int n = 0;
    for (int t = 0; t < 6; t++) {
        int32_t tok[4];
        for (int r = 0; r < 4; r++) tok[r] = tiny_tokens[r * 7 + t];
        dec_step(m, NULL, false, tok, 4, st, logits, st, NULL, scratch);
        for (int r = 0; r < 4; r++) {
            int tg = tiny_tokens[r * 7 + t + 1];
            if (tg == 0) continue;
            total += dec_check_xent(logits + r * 7, 7, tg);
            n++;
        }
    }
    CHECK(n == nt);
    CHECK_NEAR(total / n, batch_loss, 1e-5);
    free(scratch);
    dec_work_free(w);
    dec_model_free(m);
}

TEST(decoder_step_api_matches_batched_forward) { CHECK(each_cpu_path(step_api_all) >= 1); }

TEST(decoder_rejects_bad_arguments)
{
    dec_config c = tiny_config();
    dec_model *m;
    dec_work *w;
    REQUIRE_OK(dec_model_new(&c, true, &m));
    REQUIRE_OK(dec_work_new(&c, 2, 7, &w));
    float img[4 * 5] = {0}, loss;
    CHECK(dec_forward_backward(m, w, img, tiny_tokens, NULL, 4, 7, true, NULL, &loss, NULL) == IMCAP_E_ARG);
    int32_t bad[7] = {2, 9, 3, 0, 0, 0, 0};
    CHECK(dec_forward_backward(m, w, img, bad, NULL, 1, 7, true, NULL, &loss, NULL) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "outside the vocabulary") != NULL);
    dec_config bc = c;
    bc.pad_id = 7;
    dec_model *m2;
    CHECK(dec_model_new(&bc, false, &m2) == IMCAP_E_ARG);
    dec_work_free(w);
    dec_model_free(m);
}

/* Adam against values computed by hand with PyTorch's formulas (two steps),
 * and clipping of the global norm. */
TEST(adam_matches_pytorch_formula_and_clips)
{
    adam a;
    adam_params p = adam_default_params();
    p.lr = 0.1f;
    REQUIRE_OK(adam_init(&a, &p, 2));
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f};
    adam_step(&a, w, g);
    /* step 1: m = 0.1 g, v = 0.001 g^2, m^ = g, v^ = g^2 -> w -= lr * sign(g) (up to eps) */
    CHECK_NEAR(w[0], 0.9, 1e-6);
    CHECK_NEAR(w[1], -1.9, 1e-6);
    float g2[2] = {-1.0f, 0.0f};
    adam_step(&a, w, g2);
    double m0 = 0.9 * 0.05 + 0.1 * -1.0, v0 = 0.999 * 0.00025 + 0.001 * 1.0;
    double m1 = 0.9 * -0.025, v1 = 0.999 * 0.0000625;
    double bc1 = 1 - 0.81, bc2 = 1 - 0.999 * 0.999;
    CHECK_NEAR(w[0], 0.9 - 0.1 / bc1 * m0 / (sqrt(v0) / sqrt(bc2) + 1e-8), 1e-6);
    CHECK_NEAR(w[1], -1.9 - 0.1 / bc1 * m1 / (sqrt(v1) / sqrt(bc2) + 1e-8), 1e-6);
    adam_free(&a);

    p.clip = 1.0f;
    REQUIRE_OK(adam_init(&a, &p, 2));
    float g3[2] = {3.0f, 4.0f};
    float norm = adam_step(&a, w, g3);
    CHECK_NEAR(norm, 5.0, 1e-6);
    CHECK_NEAR(g3[0], 0.6, 1e-6);
    CHECK_NEAR(g3[1], 0.8, 1e-6);
    adam_free(&a);
    p.lr = -1;
    CHECK(adam_init(&a, &p, 2) == IMCAP_E_ARG);
}

/* ---- PyTorch golden file (scripts/golden_decoder.py) ---- */

/* Tolerances (dec_check.h): float32 on both sides with different summation
 * orders. loss: 1e-5 relative; gradients: |c - torch| <= 2e-6 + 1e-4 * |torch|
 * (plus 1e-4 * the tensor's largest gradient); Adam losses 1e-5 relative,
 * weights after 10 steps 1e-5 absolute. */
static void pytorch_golden_all(void)
{
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file(test_path("tests/data/decoder_golden.bin"), 1 << 20, &data, &len));
    golden r = {data, data + len};
    REQUIRE(memcmp(golden_take(&r, 8), "IMCDGLD1", 8) == 0);
    dec_config c = {0};
    c.n_img = golden_i32(&r);
    c.n_img1 = golden_i32(&r);
    c.n_hid = golden_i32(&r);
    c.n_emb = golden_i32(&r);
    c.n_out1 = golden_i32(&r);
    c.n_vocab = golden_i32(&r);
    c.pad_id = golden_i32(&r);
    int B = golden_i32(&r), T1 = golden_i32(&r), n_steps = golden_i32(&r);
    float lr = golden_f32(&r), clip = golden_f32(&r);
    REQUIRE(B > 0 && B < 100 && T1 > 1 && T1 < 100 && n_steps > 0 && n_steps < 100);
    dec_model *m;
    dec_work *w;
    REQUIRE_OK(dec_model_new(&c, true, &m));
    REQUIRE_OK(dec_work_new(&c, B, T1, &w));
    int32_t *tok = malloc(sizeof(int32_t) * B * T1);
    float *img = malloc(sizeof(float) * B * c.n_img), *dimg = malloc(sizeof(float) * B * c.n_img);
    REQUIRE(tok && img && dimg);
    memcpy(tok, golden_take(&r, sizeof(int32_t) * B * T1), sizeof(int32_t) * B * T1);
    memcpy(img, golden_take(&r, sizeof(float) * B * c.n_img), sizeof(float) * B * c.n_img);
    golden_weights(&r, m);
    const dec_batch bt = {m, w, img, tok, NULL, B, T1, true};
    golden_check_backward(&r, &bt, dimg);
    const int clipped = golden_check_adam(&r, &bt, lr, clip, n_steps);
    CHECK(clipped > 0 && clipped < n_steps); /* the golden run clips some steps, not all */
    CHECK(r.p == r.end);
    free(tok);
    free(img);
    free(dimg);
    free(data);
    dec_work_free(w);
    dec_model_free(m);
}

TEST(decoder_matches_pytorch_golden) { CHECK(each_cpu_path(pytorch_golden_all) >= 1); }

/* ---- overfit: a few real captions are learned and regenerated exactly ---- */

TEST(decoder_overfits_real_captions_and_greedy_regenerates_them)
{
    const dec_config c = {.n_img = 16, .n_img1 = 32, .n_hid = 64, .n_emb = 32, .n_out1 = 48};
    dec_overfit_check(c, 0.0f, 0.01f);
}

/* Model files record the architecture; files from before it was recorded
 * (no key) load as recipe models. */
TEST(decoder_file_records_the_architecture)
{
    dec_model *m, *m2;
    dec_work *w;
    float img[4 * 5];
    tiny_setup(false, 4, &m, &w, img);
    const char *words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a", "dog", "runs"};
    imcap_vocab *v, *v2;
    REQUIRE_OK(imcap_vocab_from_words(words, 7, &v));
    m->cfg.pad_id = imcap_vocab_pad(v);
    char path[600];
    snprintf(path, sizeof path, "%s/arch.gguf", test_tmpdir());
    REQUIRE_OK(dec_save(path, m, v));
    gguf_file *f;
    REQUIRE_OK(gguf_open(path, &f));
    const char *arch;
    REQUIRE_OK(gguf_get_str(f, "imcap.decoder.arch", &arch));
    CHECK(strcmp(arch, "recipe") == 0);
    gguf_close(f);
    REQUIRE_OK(dec_load(path, &m2, &v2));
    CHECK(m2->cfg.arch == DEC_ARCH_RECIPE && m2->n_params == m->n_params);
    for (int i = 0; i < dec_n_tensors(&m->cfg); i++) {
        dec_tensor_info ti = dec_tensor_at(&m->cfg, i);
        CHECK(memcmp(m2->params + ti.offset, m->params + ti.offset, ti.size * sizeof(float)) == 0);
    }
    CHECK(dec_arch_from_name("recipe") == DEC_ARCH_RECIPE && dec_arch_from_name("nope") < 0);
    dec_model_free(m2);
    imcap_vocab_free(v2);
    imcap_vocab_free(v);
    dec_work_free(w);
    dec_model_free(m);
}
