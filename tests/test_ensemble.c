/*
 * test_ensemble.c - decoder ensembles (ensemble.c): the step is the mixture
 * of the members' next-word distributions and the mean of their attention,
 * computed here independently in double from each member run alone; an
 * ensemble of a model with its copy generates as the model; model files keep
 * the members; mismatched members and training are refused.
 */
#include "test.h"
#include "captioner.h"
#include "decoder.h"
#include "generate.h"

#include <math.h>
#include <string.h>

enum { ED = 3, EL = 4, EV = 9, EN = 3 };

/* Attention members of different sizes on one 2x2 grid of 3 features. */
static dec_model *att_member(int hid, int att, uint64_t seed)
{
    dec_config c = {.n_img = ED, .n_hid = hid, .n_emb = 2, .n_out1 = 5, .n_vocab = EV, .pad_id = 0,
                    .arch = DEC_ARCH_ATTENTION, .grid_h = 2, .grid_w = 2, .n_att = att};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&c, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    dec_model_init(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.8 * imcap_rng_normal(&rng));
    return m;
}

static dec_model *copy_model(const dec_model *m)
{
    dec_model *c;
    REQUIRE_OK(dec_model_new(&m->cfg, false, &c));
    memcpy(c->params, m->params, sizeof(float) * m->n_params);
    return c;
}

/* Runs model m alone for `steps` steps on n hypotheses of n photos (or one
 * shared photo): logits [n][V] and attention [n][L] of the last step. */
static void run_alone(const dec_model *m, const float *img, bool shared, int steps, const int32_t *tok,
                      float *logits, float *attn)
{
    const int n_ctx = shared ? 1 : EN;
    const size_t S = dec_state_floats(m), C = dec_context_floats(m);
    float *ctx = malloc(sizeof(float) * (C ? C : 1) * n_ctx), *st = malloc(sizeof(float) * S * EN);
    float *scratch = malloc(sizeof(float) * dec_step_scratch_floats(m, EN));
    REQUIRE(ctx && st && scratch);
    REQUIRE_OK(dec_init_state(m, img, n_ctx, C ? ctx : NULL, st));
    if (shared)
        for (int r = 1; r < EN; r++) memcpy(st + r * S, st, sizeof(float) * S);
    for (int t = 0; t < steps; t++) dec_step(m, C ? ctx : NULL, shared, tok + t * EN, EN, st, logits, st, attn, scratch);
    free(ctx);
    free(st);
    free(scratch);
}

static void log_softmax_d(const float *z, int V, double *out)
{
    double mx = z[0], s = 0;
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++) s += exp(z[v] - mx);
    for (int v = 0; v < V; v++) out[v] = z[v] - mx - log(s);
}

TEST(ensemble_step_is_the_mixture_of_its_members)
{
    dec_model *mem[2] = {att_member(4, 5, 1), att_member(6, 3, 2)}, *e;
    REQUIRE_OK(dec_ensemble_new(mem, 2, &e));
    CHECK(e->cfg.arch == DEC_ARCH_ENSEMBLE && e->n_members == 2 && dec_has_grid(&e->cfg));
    CHECK(dec_state_floats(e) == 2 * 4 + 2 * 6);
    CHECK(dec_context_floats(e) == (size_t)EL * (ED + 5) + (size_t)EL * (ED + 3));
    float img[EN * EL * ED];
    imcap_rng rng;
    imcap_rng_seed(&rng, 3);
    for (int i = 0; i < EN * EL * ED; i++) img[i] = (float)imcap_rng_normal(&rng);
    const int32_t tok[4 * EN] = {2, 2, 2, 4, 5, 6, 7, 4, 8, 5, 5, 3};
    for (int shared = 0; shared < 2; shared++)
        for (int steps = 1; steps <= 4; steps += 3) {
            float le[EN * EV], ae[EN * EL], l0[EN * EV], a0[EN * EL], l1[EN * EV], a1[EN * EL];
            run_alone(e, img, shared, steps, tok, le, ae);
            run_alone(mem[0], img, shared, steps, tok, l0, a0);
            run_alone(mem[1], img, shared, steps, tok, l1, a1);
            for (int r = 0; r < EN; r++) {
                double p0[EV], p1[EV], sum = 0;
                log_softmax_d(l0 + r * EV, EV, p0);
                log_softmax_d(l1 + r * EV, EV, p1);
                for (int v = 0; v < EV; v++) {
                    const double want = log(0.5 * (exp(p0[v]) + exp(p1[v])));
                    CHECK_NEAR(le[r * EV + v], want, 2e-5);
                    sum += exp(le[r * EV + v]);
                }
                CHECK_NEAR(sum, 1.0, 1e-5); /* already normalised */
                for (int i = 0; i < EL; i++) CHECK_NEAR(ae[r * EL + i], 0.5 * (a0[r * EL + i] + a1[r * EL + i]), 1e-6);
            }
        }
    dec_model_free(e); /* frees the members */
}

TEST(ensemble_of_a_model_and_its_copy_generates_as_the_model)
{
    dec_model *m = att_member(5, 4, 7), *pair[2] = {copy_model(m), copy_model(m)}, *e;
    REQUIRE_OK(dec_ensemble_new(pair, 2, &e));
    const gen_special sp = {.start_id = 2, .end_id = 3, .n_masked = 2, .masked = {0, 1}};
    float img[EL * ED];
    imcap_rng rng;
    imcap_rng_seed(&rng, 8);
    for (int photo = 0; photo < 4; photo++) {
        for (int i = 0; i < EL * ED; i++) img[i] = (float)imcap_rng_normal(&rng);
        for (int beam = 1; beam <= 3; beam += 2) {
            imcap_gen_params p = imcap_gen_default_params();
            p.beam = beam;
            p.max_len = 8;
            gen_hyp a, b;
            int na, nb;
            REQUIRE_OK(gen_caption(m, img, &sp, &p, &a, &na));
            REQUIRE_OK(gen_caption(e, img, &sp, &p, &b, &nb));
            CHECK(na == nb && a.n_words == b.n_words && a.ended == b.ended);
            CHECK(!memcmp(a.words, b.words, sizeof(int32_t) * a.n_words));
            CHECK_NEAR(a.logprob, b.logprob, 1e-4);
            float att_a[8 * EL], att_b[8 * EL];
            REQUIRE_OK(gen_attention(m, img, &sp, a.words, a.n_words, att_a));
            REQUIRE_OK(gen_attention(e, img, &sp, a.words, a.n_words, att_b));
            for (int i = 0; i < a.n_words * EL; i++) CHECK_NEAR(att_a[i], att_b[i], 1e-6);
        }
    }
    /* greedy batches of several photos (per-photo contexts side by side) */
    float imgs[EN * EL * ED];
    for (int i = 0; i < EN * EL * ED; i++) imgs[i] = (float)imcap_rng_normal(&rng);
    int32_t wa[EN * 8], wb[EN * 8];
    int la[EN], lb[EN];
    REQUIRE_OK(gen_greedy_batch(m, imgs, EN, &sp, 8, wa, la));
    REQUIRE_OK(gen_greedy_batch(e, imgs, EN, &sp, 8, wb, lb));
    CHECK(!memcmp(la, lb, sizeof la));
    for (int r = 0; r < EN; r++) CHECK(!memcmp(wa + r * 8, wb + r * 8, sizeof(int32_t) * la[r]));
    dec_model_free(e);
    dec_model_free(m);
}

/* Tensor by tensor (the buffer's alignment gaps are not stored). */
static bool same_tensors(const dec_model *a, const dec_model *b)
{
    if (memcmp(&a->cfg, &b->cfg, sizeof a->cfg)) return false;
    for (int i = 0; i < dec_n_tensors(&a->cfg); i++) {
        const dec_tensor_info t = dec_tensor_at(&a->cfg, i);
        if (memcmp(a->params + t.offset, b->params + t.offset, sizeof(float) * t.size)) return false;
    }
    return true;
}

TEST(ensemble_files_keep_the_members)
{
    static const char *const words[EV] = {"#PAD#", "#UNK#", "#START#", "#END#", "a", "dog", "runs", "on", "grass"};
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_from_words(words, EV, &v));
    dec_model *mem[3] = {att_member(4, 5, 11), att_member(6, 3, 12), att_member(3, 2, 13)}, *e, *back;
    for (int k = 0; k < 3; k++) mem[k]->cfg.pad_id = imcap_vocab_pad(v);
    REQUIRE_OK(dec_ensemble_new(mem, 3, &e));
    char a[700], b[700], list[1500];
    snprintf(a, sizeof a, "%s/ens.gguf", test_tmpdir());
    REQUIRE_OK(dec_save(a, e, v));
    imcap_vocab *v2;
    REQUIRE_OK(dec_load(a, &back, &v2));
    REQUIRE(back->n_members == 3);
    for (int k = 0; k < 3; k++) CHECK(same_tensors(back->member[k], mem[k]));
    dec_model_free(back);
    imcap_vocab_free(v2);

    /* a comma list of decoder files loads as their ensemble */
    snprintf(b, sizeof b, "%s/one.gguf", test_tmpdir());
    REQUIRE_OK(dec_save(b, mem[1], v));
    snprintf(list, sizeof list, "%s,%s", b, b);
    REQUIRE_OK(captioner_read_decoder(list, &back, &v2));
    CHECK(back->n_members == 2 && same_tensors(back->member[0], mem[1]) && same_tensors(back->member[1], mem[1]));
    dec_model_free(back);
    imcap_vocab_free(v2);
    /* an ensemble in a list would nest: refused */
    snprintf(list, sizeof list, "%s,%s", b, a);
    CHECK(captioner_read_decoder(list, &back, &v2) == IMCAP_E_ARG && !back);
    CHECK(strstr(imcap_last_error(), "itself an ensemble") != NULL);

    /* members of another vocabulary are named */
    static const char *const other[EV] = {"#PAD#", "#UNK#", "#START#", "#END#", "a", "cat", "runs", "on", "grass"};
    imcap_vocab *vo;
    REQUIRE_OK(imcap_vocab_from_words(other, EV, &vo));
    char c[700];
    snprintf(c, sizeof c, "%s/other.gguf", test_tmpdir());
    REQUIRE_OK(dec_save(c, mem[1], vo));
    snprintf(list, sizeof list, "%s,%s", b, c);
    CHECK(captioner_read_decoder(list, &back, &v2) == IMCAP_E_MISMATCH && !back && !v2);
    CHECK(strstr(imcap_last_error(), c) && strstr(imcap_last_error(), "vocabulary"));
    snprintf(list, sizeof list, "%s,%s/missing.gguf", b, test_tmpdir());
    CHECK(captioner_read_decoder(list, &back, &v2) != IMCAP_OK && strstr(imcap_last_error(), "missing.gguf"));
    imcap_vocab_free(vo);
    imcap_vocab_free(v);
    dec_model_free(e);
}

TEST(ensemble_refuses_mismatched_members_and_training)
{
    dec_model *a = att_member(4, 5, 21), *b = att_member(4, 5, 22), *e = NULL;
    dec_model *pair[2] = {a, b};
    CHECK(dec_ensemble_new(pair, 1, &e) == IMCAP_E_ARG && !e);
    dec_model *many[DEC_MAX_MEMBERS + 1];
    for (int i = 0; i <= DEC_MAX_MEMBERS; i++) many[i] = a;
    CHECK(dec_ensemble_new(many, DEC_MAX_MEMBERS + 1, &e) == IMCAP_E_ARG && !e);
    /* another grid, another vocabulary: refused, members still the caller's */
    b->cfg.grid_w = 1;
    b->cfg.grid_h = 4;
    CHECK(dec_ensemble_new(pair, 2, &e) == IMCAP_E_MISMATCH && !e);
    CHECK(strstr(imcap_last_error(), "same image input") != NULL);
    b->cfg.grid_w = 2;
    b->cfg.grid_h = 2;
    b->cfg.n_vocab = EV - 1;
    CHECK(dec_ensemble_new(pair, 2, &e) == IMCAP_E_MISMATCH && strstr(imcap_last_error(), "vocabulary"));
    b->cfg.n_vocab = EV;
    REQUIRE_OK(dec_ensemble_new(pair, 2, &e));
    /* generation only: no training workspace */
    dec_work *w = NULL;
    CHECK(dec_work_new(&e->cfg, 2, 4, &w) == IMCAP_E_UNSUPPORTED && !w);
    CHECK(strstr(imcap_last_error(), "one member at a time") != NULL);
    dec_model *nested[2] = {e, a};
    dec_model *e2 = NULL;
    CHECK(dec_ensemble_new(nested, 2, &e2) == IMCAP_E_ARG && !e2);
    dec_model_free(e);
}
