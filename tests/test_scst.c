/*
 * test_scst.c - self-critical sequence training: CIDEr-D rewards against
 * imcap_score, the policy-gradient backward against finite differences,
 * a toy task where the reward prefers a rare word, exact resumption.
 */
#define _GNU_SOURCE
#include "test.h"
#include "cider.h"
#include "decoder.h"
#include "generate.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Rewards of id sequences equal imcap_score's per-image CIDEr-D of the same
 * captions as text (PTB tokenization, df over the same reference sets). */
static void rewards_match_score(const imcap_captions *refs, const imcap_vocab *v, uint64_t seed)
{
    cider_refs *cr;
    REQUIRE_OK(cider_refs_new(refs, v, &cr));
    const size_t n = imcap_captions_n_images(refs), V = imcap_vocab_size(v);
    REQUIRE(cider_refs_n_images(cr) == n);
    imcap_score_item *items = calloc(n, sizeof *items);
    char **cand = calloc(n, sizeof *cand);
    double *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    REQUIRE(items && cand && want && got);
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        int32_t words[24];
        int nw = 0;
        const int kind = (int)(i % 4);
        if (kind < 2) { /* a reference (known words only), cut short for kind 1 */
            int32_t *ids;
            size_t ni;
            REQUIRE_OK(imcap_vocab_encode(v, imcap_captions_text(refs, i, i % imcap_captions_count(refs, i)), &ids, &ni));
            for (size_t k = 0; k < ni && nw < (kind ? 4 : 20); k++)
                if (ids[k] != imcap_vocab_unk(v) && ids[k] != imcap_vocab_start(v) && ids[k] != imcap_vocab_end(v) &&
                    ids[k] != imcap_vocab_pad(v))
                    words[nw++] = ids[k];
            free(ids);
        } else if (kind == 2) { /* random words, repeats likely */
            nw = 1 + (int)imcap_rng_below(&rng, 15);
            for (int k = 0; k < nw; k++) words[k] = 4 + (int32_t)imcap_rng_below(&rng, V - 4 < 6 ? V - 4 : 6);
        } else { /* a repeated bigram and any word */
            nw = 6;
            words[0] = words[2] = words[4] = 4 + (int32_t)(i % (V - 4));
            words[1] = words[3] = 4 + (int32_t)((i + 1) % (V - 4));
            words[5] = 4 + (int32_t)imcap_rng_below(&rng, V - 4);
        }
        if (i == 5) nw = 0; /* the empty caption */
        REQUIRE_OK(cider_reward(cr, i, words, nw, &got[i]));
        REQUIRE_OK(imcap_vocab_decode(v, words, (size_t)nw, &cand[i]));
        items[i].candidate = cand[i];
        items[i].n_refs = imcap_captions_count(refs, i);
        const char **r = calloc(items[i].n_refs, sizeof *r);
        REQUIRE(r);
        for (size_t k = 0; k < items[i].n_refs; k++) r[k] = imcap_captions_text(refs, i, k);
        items[i].refs = r;
    }
    imcap_scores sc;
    REQUIRE_OK(imcap_score(items, n, 1, &sc, want, NULL));
    int bad = 0, nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(got[i] - want[i]) <= 1e-9 * fmax(1.0, fabs(want[i])))) {
            if (bad++ < 5) test_fail_at(__FILE__, __LINE__, "image %zu '%s': reward %.12f, imcap_score %.12f", i,
                                        cand[i], got[i], want[i]);
        }
        nonzero += want[i] > 0.05;
        free((void *)items[i].refs);
        free(cand[i]);
    }
    CHECK(bad == 0);
    CHECK(nonzero > (int)n / 4);
    double r;
    CHECK(cider_reward(cr, n, NULL, 0, &r) == IMCAP_E_ARG);
    int32_t badw = (int32_t)V;
    CHECK(cider_reward(cr, 0, &badw, 1, &r) == IMCAP_E_ARG);
    free(items);
    free(cand);
    free(want);
    free(got);
    cider_refs_free(cr);
}

TEST(scst_rewards_equal_imcap_score_cider)
{
    const char *dir = test_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/c.csv", dir);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fprintf(fp, "image,caption\n"
                "a.jpg,A dog runs on the grass .\n"
                "a.jpg,\"The brown dog is running, on green grass.\"\n"
                "a.jpg,A dog's ball is red\n"
                "b.jpg,A man rides a bike on the road .\n"
                "b.jpg,Two men ride bikes .\n"
                "c.jpg,A cat sits on a red mat\n"
                "c.jpg,\"a cat on a mat , sitting\"\n"
                "c.jpg,The cat is on the mat .\n"
                "d.jpg,a red ball on green grass\n"
                "e.jpg,man and dog on the grass\n"
                "f.jpg,A child in a red shirt runs .\n"
                "f.jpg,a kid runs on the road\n");
    fclose(fp);
    imcap_captions *c;
    REQUIRE_OK(imcap_captions_load(path, &c));
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_build(c, 1, &v));
    rewards_match_score(c, v, 3);
    imcap_vocab_free(v);
    imcap_captions_free(c);
}

TEST(scst_rewards_equal_imcap_score_cider_on_flickr8k_dev)
{
    imcap_captions *all, *dev;
    if (imcap_captions_load(test_path("data/flickr8k/captions.csv"), &all))
        SKIP("data/flickr8k/captions.csv is not present (scripts/get-data.sh)");
    REQUIRE_OK(imcap_captions_restrict(all, test_path("data/flickr8k/dev.txt"), &dev));
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_build(dev, 5, &v));
    rewards_match_score(dev, v, 4);
    imcap_vocab_free(v);
    imcap_captions_free(dev);
    imcap_captions_free(all);
}
