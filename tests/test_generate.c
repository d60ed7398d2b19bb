/*
 * test_generate.c - greedy, sampling and beam search on small random
 * decoders: beam 1 == greedy, beam search against exhaustive enumeration,
 * T -> 0 sampling == greedy, seeds, and sampling frequencies against the
 * model's distribution.
 */
#include "test.h"
#include "cpu_paths.h"
#include "generate.h"

#include <math.h>

enum { PAD = 0, UNK = 1, START = 2, END = 3 };

static gen_special specials(void)
{
    gen_special sp = {.start_id = START, .end_id = END, .n_masked = 3, .masked = {PAD, START, UNK}};
    return sp;
}

/* A decoder over a vocabulary of 4 specials + n_words words with weights
 * scaled up so that the distributions are far from uniform. */
static dec_model *toy_model(int n_words, uint64_t seed, float scale, float *img)
{
    dec_config c = {.n_img = 6, .n_img1 = 5, .n_hid = 8, .n_emb = 4, .n_out1 = 7, .n_vocab = 4 + n_words,
                    .pad_id = 0};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&c, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    dec_model_init(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(scale * imcap_rng_normal(&rng));
    for (int i = 0; i < c.n_img; i++) img[i] = (float)imcap_rng_normal(&rng);
    return m;
}

/* Reference log-probability of a sequence, computed here from dec_step and
 * an independent masked log-softmax. */
static double ref_logprob(const dec_model *m, const float *img, const int32_t *w, int n, int ended)
{
    const dec_config *c = &m->cfg;
    float st[128], logits[64], scratch[1024];
    REQUIRE(dec_state_floats(m) <= 128 && c->n_vocab <= 64 && dec_step_scratch_floats(m, 1) <= 1024);
    REQUIRE_OK(dec_init_state(m, img, 1, NULL, st));
    int32_t tok = START;
    double lp = 0;
    for (int t = 0; t < n + ended; t++) {
        int32_t next = t < n ? w[t] : END;
        dec_step(m, NULL, true, &tok, 1, st, logits, st, NULL, scratch);
        double s = 0;
        for (int v = 4; v < c->n_vocab; v++) s += exp(logits[v]);
        if (t > 0) s += exp(logits[END]);
        lp += logits[next] - log(s);
        tok = next;
    }
    return lp;
}

typedef struct ref_hyp {
    int32_t w[8];
    int n, ended;
    double lp, score;
} ref_hyp;

static int cmp_ref(const void *a, const void *b)
{
    const ref_hyp *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

/* All captions of up to max_len words: ended ones (1..max_len-1 words +
 * END) and cut ones (max_len words). Sorted best first. */
static int enumerate(const dec_model *m, const float *img, int n_words, int max_len, double alpha, ref_hyp *out)
{
    int n_out = 0;
    for (int len = 1; len <= max_len; len++) {
        int total = 1;
        for (int i = 0; i < len; i++) total *= n_words;
        for (int code = 0; code < total; code++) {
            ref_hyp r = {.n = len};
            for (int i = 0, k = code; i < len; i++, k /= n_words) r.w[i] = 4 + k % n_words;
            r.ended = len < max_len;
            r.lp = ref_logprob(m, img, r.w, len, r.ended);
            r.score = r.lp / pow(len + r.ended, alpha);
            out[n_out++] = r;
        }
    }
    qsort(out, (size_t)n_out, sizeof *out, cmp_ref);
    return n_out;
}

static bool same_words(const gen_hyp *h, const int32_t *w, int n)
{
    return h->n_words == n && !memcmp(h->words, w, sizeof *w * (size_t)n);
}

TEST(generate_beam_search_matches_exhaustive_enumeration)
{
    /* 3 words, 3 tokens: 3 + 9 ended + 27 cut = 39 captions; 2 words, 5
     * tokens: 30 ended + 32 cut = 62. A beam of 64 keeps them all, so the
     * whole ranked list must equal the enumeration. */
    const int cases[2][2] = {{3, 3}, {2, 5}};
    const double alphas[3] = {0.0, 0.7, 1.0};
    for (int ci = 0; ci < 2; ci++)
        for (int ai = 0; ai < 3; ai++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                int W = cases[ci][0], L = cases[ci][1];
                float img[6];
                dec_model *m = toy_model(W, seed * 7 + (uint64_t)ci, 0.8f, img);
                ref_hyp ref[64];
                int n_ref = enumerate(m, img, W, L, alphas[ai], ref);
                gen_special sp = specials();
                imcap_gen_params p = imcap_gen_default_params();
                p.beam = 64;
                p.n_best = n_ref;
                p.max_len = L;
                p.length_alpha = (float)alphas[ai];
                gen_hyp out[64];
                int n_out;
                REQUIRE_OK(gen_caption(m, img, &sp, &p, out, &n_out));
                CHECK(n_out == n_ref);
                for (int i = 0; i < n_out && i < n_ref; i++) {
                    CHECK_NEAR(out[i].score, ref[i].score, 1e-5);
                    CHECK_NEAR(out[i].logprob, ref[i].lp, 1e-5);
                    /* Words must match unless two scores tie within rounding. */
                    bool tie = (i > 0 && fabs(ref[i].score - ref[i - 1].score) < 1e-9) ||
                               (i + 1 < n_ref && fabs(ref[i].score - ref[i + 1].score) < 1e-9);
                    if (!tie) CHECK(same_words(&out[i], ref[i].w, ref[i].n) && out[i].ended == ref[i].ended);
                }
                /* And a beam of 4 finds the true best caption on these models. */
                p.beam = 4;
                p.n_best = 1;
                REQUIRE_OK(gen_caption(m, img, &sp, &p, out, &n_out));
                CHECK(n_out == 1);
                CHECK_NEAR(out[0].score, ref[0].score, 1e-6);
                dec_model_free(m);
            }
}

TEST(generate_beam_one_equals_greedy)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        float img[6];
        dec_model *m = toy_model(12, seed, 0.5f, img);
        gen_special sp = specials();
        imcap_gen_params g = imcap_gen_default_params();
        g.max_len = 8;
        gen_hyp hg, hb;
        int ng, nb;
        REQUIRE_OK(gen_caption(m, img, &sp, &g, &hg, &ng));
        /* The beam-search code with K = 1 against the greedy code. */
        REQUIRE_OK(gen_beam_search(m, img, &sp, &g, &hb, &nb));
        CHECK(nb == 1 && ng == 1);
        CHECK(same_words(&hb, hg.words, hg.n_words) && hb.ended == hg.ended);
        CHECK_NEAR(hb.logprob, hg.logprob, 1e-9);
        CHECK_NEAR(hb.score, hg.score, 1e-9);
        /* Greedy's log-probability is the sum of its steps. */
        CHECK_NEAR(hg.logprob, ref_logprob(m, img, hg.words, hg.n_words, hg.ended), 1e-6);
        dec_model_free(m);
    }
}

TEST(generate_batched_greedy_matches_single_greedy)
{
    enum { N = 5, L = 9 };
    float imgs[N * 6];
    dec_model *m = toy_model(12, 77, 0.5f, imgs);
    imcap_rng rng;
    imcap_rng_seed(&rng, 3);
    for (int i = 0; i < N * 6; i++) imgs[i] = (float)imcap_rng_normal(&rng);
    gen_special sp = specials();
    int32_t out[N * L];
    int lens[N];
    REQUIRE_OK(gen_greedy_batch(m, imgs, N, &sp, L, out, lens));
    imcap_gen_params p = imcap_gen_default_params();
    p.max_len = L;
    for (int i = 0; i < N; i++) {
        gen_hyp h;
        int n;
        REQUIRE_OK(gen_caption(m, imgs + 6 * i, &sp, &p, &h, &n));
        CHECK(same_words(&h, out + i * L, lens[i]));
    }
    dec_model_free(m);
}

TEST(generate_never_emits_masked_tokens)
{
    /* Make PAD, START and UNK the most likely outputs by far. */
    float img[6];
    dec_model *m = toy_model(5, 3, 0.3f, img);
    for (int v = 0; v < 3; v++) m->p.out2_b[v] += 50.0f;
    gen_special sp = specials();
    imcap_gen_params p = imcap_gen_default_params();
    p.max_len = 10;
    for (int mode = 0; mode < 3; mode++) {
        p.beam = mode == 2 ? 5 : 1;
        p.n_best = mode == 0 ? 1 : 5;
        p.temperature = mode == 1 ? 1.0f : 0.0f;
        gen_hyp out[5];
        int n;
        REQUIRE_OK(gen_caption(m, img, &sp, &p, out, &n));
        REQUIRE(n >= 1);
        for (int i = 0; i < n; i++) {
            CHECK(out[i].n_words >= 1);
            for (int k = 0; k < out[i].n_words; k++) CHECK(out[i].words[k] >= 4);
        }
    }
    dec_model_free(m);
}

/* Smallest gap between the best and second-best allowed log-probability
 * along a caption's path. */
static double min_top2_gap(const dec_model *m, const float *img, const gen_hyp *g)
{
    const dec_config *c = &m->cfg;
    float st[128], logits[64], scratch[1024];
    REQUIRE(dec_state_floats(m) <= 128 && c->n_vocab <= 64 && dec_step_scratch_floats(m, 1) <= 1024);
    REQUIRE_OK(dec_init_state(m, img, 1, NULL, st));
    int32_t tok = START;
    double gap = INFINITY;
    for (int t = 0; t < g->n_words + g->ended; t++) {
        dec_step(m, NULL, true, &tok, 1, st, logits, st, NULL, scratch);
        double b1 = -INFINITY, b2 = -INFINITY;
        for (int v = 3; v < c->n_vocab; v++) {
            if (v == END && t == 0) continue;
            if (logits[v] > b1) {
                b2 = b1;
                b1 = logits[v];
            } else if (logits[v] > b2) {
                b2 = logits[v];
            }
        }
        gap = fmin(gap, b1 - b2);
        tok = t < g->n_words ? g->words[t] : END;
    }
    return gap;
}

TEST(generate_low_temperature_sampling_is_greedy)
{
    for (uint64_t seed = 1; seed <= 10; seed++) {
        float img[6];
        dec_model *m = toy_model(10, seed, 0.5f, img);
        gen_special sp = specials();
        imcap_gen_params p = imcap_gen_default_params();
        p.max_len = 8;
        gen_hyp g, s;
        int n;
        REQUIRE_OK(gen_caption(m, img, &sp, &p, &g, &n));
        /* With T = gap / 40 a non-greedy word has probability < 10 e^-40 per step. */
        double gap = min_top2_gap(m, img, &g);
        REQUIRE(gap > 0);
        p.temperature = (float)(gap / 40);
        for (uint64_t k = 0; k < 5; k++) {
            p.seed = seed * 100 + k;
            REQUIRE_OK(gen_caption(m, img, &sp, &p, &s, &n));
            CHECK(same_words(&s, g.words, g.n_words) && s.ended == g.ended);
            CHECK_NEAR(s.logprob, g.logprob, 1e-9);
        }
        dec_model_free(m);
    }
}

TEST(generate_sampling_is_deterministic_under_seed)
{
    float img[6];
    dec_model *m = toy_model(20, 5, 0.2f, img);
    gen_special sp = specials();
    imcap_gen_params p = imcap_gen_default_params();
    p.temperature = 1.0f;
    p.n_best = 8;
    p.max_len = 12;
    p.seed = 42;
    gen_hyp a[8], b[8];
    int na, nb;
    REQUIRE_OK(gen_caption(m, img, &sp, &p, a, &na));
    REQUIRE_OK(gen_caption(m, img, &sp, &p, b, &nb));
    REQUIRE(na == 8 && nb == 8);
    for (int i = 0; i < 8; i++) CHECK(same_words(&a[i], b[i].words, b[i].n_words) && a[i].logprob == b[i].logprob);
    /* Sorted by score, and some other seed gives another set of captions. */
    for (int i = 1; i < 8; i++) CHECK(a[i - 1].score >= a[i].score);
    int differs = 0;
    for (uint64_t s = 43; s < 48 && !differs; s++) {
        p.seed = s;
        REQUIRE_OK(gen_caption(m, img, &sp, &p, b, &nb));
        for (int i = 0; i < 8; i++) differs |= !same_words(&a[i], b[i].words, b[i].n_words);
    }
    CHECK(differs);
    dec_model_free(m);
}

/* One step: the first word's sampling frequencies against p^(1/T)
 * renormalised over the allowed words (END is not allowed first). */
static void check_frequencies(float T)
{
    enum { W = 6, N = 20000 };
    float img[6];
    dec_model *m = toy_model(W, 11, 0.4f, img);
    float st[16], logits[4 + W], scratch[256];
    REQUIRE(dec_step_scratch_floats(m, 1) <= 256 && dec_state_floats(m) <= 16);
    REQUIRE_OK(dec_init_state(m, img, 1, NULL, st));
    int32_t tok = START;
    dec_step(m, NULL, true, &tok, 1, st, logits, st, NULL, scratch);
    double q[W], s = 0;
    for (int k = 0; k < W; k++) s += (q[k] = exp(logits[4 + k] / (double)T));
    for (int k = 0; k < W; k++) q[k] /= s;

    gen_special sp = specials();
    imcap_gen_params p = imcap_gen_default_params();
    p.temperature = T;
    p.max_len = 1;
    int count[W] = {0};
    for (int i = 0; i < N; i++) {
        p.seed = 1000 + (uint64_t)i;
        gen_hyp out;
        int n;
        REQUIRE_OK(gen_caption(m, img, &sp, &p, &out, &n));
        REQUIRE(out.n_words == 1 && out.words[0] >= 4 && out.words[0] < 4 + W);
        count[out.words[0] - 4]++;
    }
    double chi2 = 0;
    for (int k = 0; k < W; k++) {
        double e = N * q[k];
        chi2 += (count[k] - e) * (count[k] - e) / e;
    }
    /* 5 degrees of freedom: P(chi2 > 20.5) = 0.001. */
    CHECK(chi2 < 20.5);
    /* The test has power: the distribution is far from uniform. */
    double qmax = 0;
    for (int k = 0; k < W; k++) qmax = q[k] > qmax ? q[k] : qmax;
    CHECK(qmax > 1.5 / W);
    dec_model_free(m);
}

TEST(generate_sampling_frequencies_match_model_distribution)
{
    check_frequencies(1.0f);
    check_frequencies(0.5f);
}

TEST(generate_parameter_checks)
{
    imcap_gen_params p = imcap_gen_default_params();
    REQUIRE_OK(imcap_gen_params_check(&p));
    p.beam = 3;
    p.temperature = 0.5f;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG && strstr(imcap_last_error(), "beam 1"));
    p = imcap_gen_default_params();
    p.n_best = 3;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG && strstr(imcap_last_error(), "n-best"));
    p.beam = 2;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG && strstr(imcap_last_error(), "beam width"));
    p = imcap_gen_default_params();
    p.max_len = 0;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG && strstr(imcap_last_error(), "max length"));
    p = imcap_gen_default_params();
    p.temperature = -1;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG);
    p = imcap_gen_default_params();
    p.length_alpha = NAN;
    CHECK(imcap_gen_params_check(&p) == IMCAP_E_ARG);

    float img[6];
    dec_model *m = toy_model(3, 1, 0.1f, img);
    gen_special sp = specials();
    sp.end_id = 99;
    gen_hyp out;
    int n;
    p = imcap_gen_default_params();
    CHECK(gen_caption(m, img, &sp, &p, &out, &n) == IMCAP_E_ARG);
    sp = specials();
    sp.masked[0] = END;
    CHECK(gen_caption(m, img, &sp, &p, &out, &n) == IMCAP_E_ARG);
    dec_model_free(m);
}

TEST(generate_sequence_logprob_matches_reference)
{
    float img[6];
    dec_model *m = toy_model(7, 9, 0.5f, img);
    gen_special sp = specials();
    int32_t w[4] = {5, 9, 4, 10};
    double lp;
    REQUIRE_OK(gen_sequence_logprob(m, img, &sp, w, 4, true, &lp));
    CHECK_NEAR(lp, ref_logprob(m, img, w, 4, 1), 1e-6);
    REQUIRE_OK(gen_sequence_logprob(m, img, &sp, w, 3, false, &lp));
    CHECK_NEAR(lp, ref_logprob(m, img, w, 3, 0), 1e-6);
    dec_model_free(m);
}

/* ---- golden from the PyTorch implementation (scripts/golden_generate.py) ---- */

#include <cjson/cJSON.h>

static cJSON *load_golden(void)
{
    char *text;
    size_t len;
    REQUIRE_OK(imcap_read_file("tests/data/generate_golden.json", 1 << 22, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    REQUIRE(j);
    return j;
}

static int jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    REQUIRE(cJSON_IsNumber(v));
    return v->valueint;
}

static void generate_golden_all(void)
{
    cJSON *j = load_golden();
    const cJSON *cfgj = cJSON_GetObjectItem(j, "config");
    dec_config cf = {.n_img = jint(cfgj, "n_img"), .n_img1 = jint(cfgj, "n_img1"), .n_hid = jint(cfgj, "n_hid"),
                     .n_emb = jint(cfgj, "n_emb"), .n_out1 = jint(cfgj, "n_out1"),
                     .n_vocab = jint(cfgj, "n_vocab"), .pad_id = jint(cfgj, "pad_id")};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    const cJSON *w = cJSON_GetObjectItem(j, "weights");
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info ti = dec_tensor_at(&cf, i);
        const cJSON *arr = cJSON_GetObjectItem(w, ti.name);
        REQUIRE(cJSON_IsArray(arr) && (size_t)cJSON_GetArraySize(arr) == ti.size);
        size_t k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, arr) m->params[ti.offset + k++] = (float)x->valuedouble;
    }
    /* Vocabulary order of the golden: #END# #PAD# #START# #UNK# then the words. */
    gen_special sp = {.start_id = 2, .end_id = 0, .n_masked = 3, .masked = {1, 2, 3}};
    const struct { const char *name; int beam, n_best; float alpha; } settings[] = {
        {"greedy", 1, 1, 0.7f}, {"beam3_alpha0.7", 3, 3, 0.7f}, {"beam5_alpha0", 5, 2, 0.0f},
        {"beam4_alpha1", 4, 4, 1.0f}};
    const cJSON *embs = cJSON_GetObjectItem(j, "embeddings"), *results = cJSON_GetObjectItem(j, "results");
    int n_img = cJSON_GetArraySize(embs), compared = 0;
    REQUIRE(n_img == 6 && cJSON_GetArraySize(results) == n_img);
    for (int e = 0; e < n_img; e++) {
        float img[64];
        int k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetArrayItem(embs, e)) img[k++] = (float)x->valuedouble;
        REQUIRE(k == cf.n_img);
        for (int s = 0; s < 4; s++) {
            imcap_gen_params p = imcap_gen_default_params();
            p.beam = settings[s].beam;
            p.n_best = settings[s].n_best;
            p.length_alpha = settings[s].alpha;
            p.max_len = jint(j, "max_len");
            gen_hyp out[8];
            int n;
            REQUIRE_OK(gen_caption(m, img, &sp, &p, out, &n));
            const cJSON *want = cJSON_GetObjectItem(cJSON_GetArrayItem(results, e), settings[s].name);
            REQUIRE(cJSON_IsArray(want));
            CHECK(n == cJSON_GetArraySize(want));
            for (int h = 0; h < n && h < cJSON_GetArraySize(want); h++) {
                const cJSON *wh = cJSON_GetArrayItem(want, h), *ww = cJSON_GetObjectItem(wh, "words");
                int32_t words[GEN_MAX_LEN];
                int nw = 0;
                cJSON_ArrayForEach(x, ww) words[nw++] = x->valueint;
                bool ok = same_words(&out[h], words, nw) &&
                          out[h].ended == cJSON_IsTrue(cJSON_GetObjectItem(wh, "ended"));
                CHECK(ok);
                if (!ok) fprintf(stderr, "    image %d, %s, hypothesis %d differs\n", e, settings[s].name, h);
                CHECK_NEAR(out[h].logprob, cJSON_GetObjectItem(wh, "logprob")->valuedouble, 1e-4);
                CHECK_NEAR(out[h].score, cJSON_GetObjectItem(wh, "score")->valuedouble, 1e-4);
                compared++;
            }
        }
    }
    CHECK(compared == 6 * (1 + 3 + 2 + 4));
    dec_model_free(m);
    cJSON_Delete(j);
}

TEST(generate_matches_pytorch_golden) { CHECK(each_cpu_path(generate_golden_all) >= 1); }
