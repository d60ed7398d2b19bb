/*
 * test_metrics.c - the COCO caption toolkit's tokenizer and metrics against
 * the published oracle (data/coco-fakecap, see its EXPECTED.md) and against
 * goldens of the independent Python peer scripts/coco_metrics_peer.py
 * (tests/data/coco_pairs_scores.json, tests/data/metrics_edge_golden.json).
 */
#define _POSIX_C_SOURCE 200809L
#include "imcap.h"
#include "internal.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define ORACLE_DIR "data/coco-fakecap"

static cJSON *load_json_file(const char *path)
{
    char *text;
    size_t len;
    if (imcap_read_file(path, (size_t)1 << 28, &text, &len) != IMCAP_OK) {
        test_fail_at(__FILE__, __LINE__, "%s", imcap_last_error());
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) test_fail_at(__FILE__, __LINE__, "%s: malformed JSON", path);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static char *tok(const char *s)
{
    char *out = NULL;
    if (imcap_ptb_tokenize(s, &out) != IMCAP_OK) {
        test_fail_at(__FILE__, __LINE__, "tokenize(%s): %s", s, imcap_last_error());
        exit(1);
    }
    return out;
}

#define CHECK_TOK(raw, want)                                                        \
    do {                                                                            \
        char *t_ = tok(raw);                                                        \
        CHECK_STR(t_, want);                                                        \
        free(t_);                                                                   \
    } while (0)

/* --------------------------------------------------------------- tokenizer */

TEST(ptb_tokenizer_all_oracle_pairs)
{
    cJSON *pairs = load_json_file(ORACLE_DIR "/tokenizer_pairs.json");
    REQUIRE(pairs && cJSON_IsArray(pairs));
    int n = 0, bad = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pairs)
    {
        const char *raw = jstr(p, "raw"), *ptb = jstr(p, "ptb");
        REQUIRE(raw && ptb);
        char *t = tok(raw);
        if (strcmp(t, ptb) != 0 && ++bad <= 10)
            fprintf(stderr, "    mismatch: raw \"%s\"\n      got  \"%s\"\n      want \"%s\"\n", raw, t, ptb);
        free(t);
        n++;
    }
    CHECK(n == 4005);
    if (bad) test_fail_at(__FILE__, __LINE__, "%d of %d pairs differ", bad, n);
    cJSON_Delete(pairs);
}

TEST(ptb_tokenizer_results_equal_oracle_test_fields)
{
    cJSON *res = load_json_file(ORACLE_DIR "/results.json");
    cJSON *refs = load_json_file(ORACLE_DIR "/refs_tokenized.json");
    REQUIRE(res && refs);
    int n = 0, bad = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, refs)
    {
        double id = jnum(e, "image_id");
        const char *want = jstr(e, "test");
        const cJSON *r;
        const char *raw = NULL;
        cJSON_ArrayForEach(r, res) if (jnum(r, "image_id") == id) raw = jstr(r, "caption");
        REQUIRE(raw && want);
        char *t = tok(raw);
        if (strcmp(t, want) != 0 && ++bad <= 10)
            fprintf(stderr, "    mismatch: raw \"%s\" got \"%s\" want \"%s\"\n", raw, t, want);
        free(t);
        n++;
    }
    CHECK(n == 1000);
    CHECK(bad == 0);
    cJSON_Delete(res);
    cJSON_Delete(refs);
}

TEST(ptb_tokenizer_rules)
{
    /* clitics, negation, possessive plural */
    CHECK_TOK("It doesn't matter; the dog's bone.", "it does n't matter the dog 's bone");
    CHECK_TOK("I can't and won't, they're here, we'll see", "i ca n't and wo n't they 're here we 'll see");
    CHECK_TOK("The dogs' toys", "the dogs toys");
    CHECK_TOK("Tell 'em", "tell 'em");
    CHECK_TOK("I cannot", "i can not");
    /* hyphens, numbers, times, slashes, ampersands */
    CHECK_TOK("A twin-hulled boat at 1:20 costs $3.50 (or 1,000 yen)",
              "a twin-hulled boat at 1:20 costs $ 3.50 -lrb- or 1,000 yen -rrb-");
    CHECK_TOK("a refrigerator/freezer -- AT&T's 50% -5", "a refrigerator/freezer at&t 's 50 % -5");
    CHECK_TOK("word - word", "word word");
    /* abbreviations and acronyms keep their period; other final periods go */
    CHECK_TOK("Morgan Rd. and 11th St.", "morgan rd. and 11th st.");
    CHECK_TOK("Fruit, bananas, etc. and the U.S. flag at 5 p.m.", "fruit bananas etc. and the u.s. flag at 5 p.m.");
    CHECK_TOK("A cat. A dog.", "a cat a dog");
    CHECK_TOK("I wash. He is from Wash.", "i wash he is from wash.");
    /* quotes, brackets, ellipses, other marks */
    CHECK_TOK("\"Hello,\" she said... `ok' [yes] {no}!", "hello she said ok -lrb- yes -rrb- -lcb- no -rcb-");
    CHECK_TOK("What?! Wow!!", "what ?! wow !!");
    CHECK_TOK("#25 @home *star*", "# 25 @ home * star *");
    CHECK_TOK("&amp; &lt;3", "& < 3");
    /* white space, empty input */
    CHECK_TOK("", "");
    CHECK_TOK("  \t\n ", "");
    CHECK_TOK(" ... ! ? ; : - ", "");
    CHECK_TOK("two\nlines\r\n", "two lines");
    /* Unicode: curly quotes and apostrophes, dashes, letters of other
     * scripts lower-cased, emoji dropped, invalid UTF-8 survives */
    CHECK_TOK("\xe2\x80\x9cIt\xe2\x80\x99s\xe2\x80\x9d o\xe2\x80\x99" "clock \xe2\x80\x94 fine\xe2\x80\xa6",
              "it 's o'clock fine");
    CHECK_TOK("Caf\xc3\x89 \xce\xa3\xce\x9f\xce\xa6\xce\x8a\xce\x91 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
              "caf\xc3\xa9 \xcf\x83\xce\xbf\xcf\x86\xce\xaf\xce\xb1 \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
    CHECK_TOK("a dog \xf0\x9f\x90\xb6 runs", "a dog runs");
    CHECK_TOK("\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xae\xe8\xa1\x97", "\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xae\xe8\xa1\x97");
    char *t = tok("bad \xff\xfe utf8 \xc3");
    CHECK(t != NULL);
    free(t);
    /* idempotent on its own output */
    const char *samples[] = {"A man's hat doesn't fit, etc.", "The U.S. flag (big) at 5:55 p.m.",
                             "Twin-hulled \"boat\" -- $5 & #3"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char *a = tok(samples[i]), *b = tok(a);
        CHECK_STR(b, a);
        free(a);
        free(b);
    }
    char *out = (char *)1;
    CHECK(imcap_ptb_tokenize(NULL, &out) == IMCAP_E_ARG && out == NULL);
    CHECK(imcap_ptb_tokenize("x", NULL) == IMCAP_E_ARG);
}

/* ----------------------------------------------------------------- metrics */

/* items from a JSON array of {"test"|"candidate", "refs"}; strings point
 * into the JSON. */
static imcap_score_item *items_from_json(const cJSON *arr, const char *cand_key, size_t *n)
{
    size_t count = (size_t)cJSON_GetArraySize(arr);
    imcap_score_item *items = calloc(count, sizeof *items);
    REQUIRE(items);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(e, "refs");
        REQUIRE(cJSON_IsArray(refs));
        size_t nr = (size_t)cJSON_GetArraySize(refs);
        const char **r = calloc(nr, sizeof *r);
        REQUIRE(r);
        size_t k = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, refs) r[k++] = s->valuestring;
        items[i].candidate = jstr(e, cand_key);
        items[i].refs = r;
        items[i].n_refs = nr;
        REQUIRE(items[i].candidate);
        i++;
    }
    *n = count;
    return items;
}

static void free_items(imcap_score_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) free((void *)items[i].refs);
    free(items);
}

/* Compare scores with a peer JSON object {"Bleu_1".., "bleu_internals"}. */
static void check_against(const imcap_scores *s, const cJSON *want, double tol)
{
    for (int m = 0; m < IMCAP_N_METRICS; m++) {
        double w = jnum(want, imcap_metric_name(m));
        double g = imcap_metric_value(s, m);
        if (!(fabs(g - w) <= tol))
            test_fail_at(__FILE__, __LINE__, "%s = %.10f, want %.10f", imcap_metric_name(m), g, w);
    }
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(want, "bleu_internals");
    REQUIRE(bi);
    CHECK(s->bleu_testlen == (uint64_t)jnum(bi, "testlen"));
    CHECK(s->bleu_reflen == (uint64_t)jnum(bi, "reflen"));
    for (int k = 0; k < 4; k++) {
        CHECK(s->bleu_guess[k] == (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(bi, "guess"), k)->valuedouble);
        CHECK(s->bleu_correct[k] ==
              (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(bi, "correct"), k)->valuedouble);
    }
}

TEST(metrics_reproduce_coco_oracle)
{
    cJSON *refs = load_json_file(ORACLE_DIR "/refs_tokenized.json");
    REQUIRE(refs);
    size_t n;
    imcap_score_item *items = items_from_json(refs, "test", &n);
    REQUIRE(n == 1000);
    imcap_scores s;
    double *cider = malloc(n * sizeof *cider), *rouge = malloc(n * sizeof *rouge);
    REQUIRE(cider && rouge);
    REQUIRE_OK(imcap_score(items, n, 0, &s, cider, rouge));
    /* EXPECTED.md: the toolkit's published output, recomputed to 7 digits */
    CHECK_NEAR(s.bleu[0], 0.5793996, 1e-6);
    CHECK_NEAR(s.bleu[1], 0.4043913, 1e-6);
    CHECK_NEAR(s.bleu[2], 0.2785364, 1e-6);
    CHECK_NEAR(s.bleu[3], 0.1908290, 1e-6);
    CHECK_NEAR(s.rouge_l, 0.3962527, 1e-6);
    CHECK_NEAR(s.cider_d, 0.5997905, 1e-6);
    CHECK(s.bleu_testlen == 9893);
    CHECK(s.bleu_reflen == 9855);
    const uint64_t guess[4] = {9893, 8893, 7893, 6893}, correct[4] = {5732, 2510, 1043, 423};
    for (int k = 0; k < 4; k++) {
        CHECK(s.bleu_guess[k] == guess[k]);
        CHECK(s.bleu_correct[k] == correct[k]);
    }
    CHECK(s.n_images == 1000);
    double cs = 0, rs = 0;
    for (size_t i = 0; i < n; i++) {
        cs += cider[i];
        rs += rouge[i];
    }
    CHECK_NEAR(cs / (double)n, s.cider_d, 1e-12);
    CHECK_NEAR(rs / (double)n, s.rouge_l, 1e-12);
    /* the published 3-digit table */
    const double published[IMCAP_N_METRICS] = {0.579, 0.404, 0.279, 0.191, 0.396, 0.600};
    for (int m = 0; m < IMCAP_N_METRICS; m++) CHECK_NEAR(imcap_metric_value(&s, m), published[m], 0.0005);
    free(cider);
    free(rouge);
    free_items(items, n);
    cJSON_Delete(refs);
}

TEST(metrics_edge_cases_match_peer)
{
    cJSON *g = load_json_file("tests/data/metrics_edge_golden.json");
    REQUIRE(g);
    int cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, g)
    {
        size_t n;
        imcap_score_item *items = items_from_json(cJSON_GetObjectItem(c, "items"), "candidate", &n);
        imcap_scores s;
        REQUIRE_OK(imcap_score(items, n, 0, &s, NULL, NULL));
        fprintf(stderr, "    case %s\n", c->string);
        check_against(&s, c, 1e-9);
        for (int m = 0; m < IMCAP_N_METRICS; m++) CHECK(isfinite(imcap_metric_value(&s, m)));
        free_items(items, n);
        cases++;
    }
    CHECK(cases == 6);
    cJSON_Delete(g);
}

TEST(metrics_edge_cases_by_hand)
{
    imcap_scores s;
    /* identical single image: BLEU and ROUGE 1; CIDEr-D 0 because with one
     * image every n-gram has idf log(1) - log(1) = 0 */
    const char *r1[] = {"a man rides a horse"};
    imcap_score_item one = {"a man rides a horse", r1, 1};
    REQUIRE_OK(imcap_score(&one, 1, 0, &s, NULL, NULL));
    for (int k = 0; k < 4; k++) CHECK_NEAR(s.bleu[k], 1.0, 1e-9);
    CHECK_NEAR(s.rouge_l, 1.0, 1e-12);
    CHECK(s.cider_d == 0.0);
    /* empty candidate: everything 0, nothing NaN */
    const char *r2[] = {"a dog", "the dog runs"};
    imcap_score_item two[2] = {{"", r2, 2}, {"  ", r1, 1}};
    REQUIRE_OK(imcap_score(two, 2, 0, &s, NULL, NULL));
    for (int m = 0; m < IMCAP_N_METRICS; m++) CHECK(imcap_metric_value(&s, m) == 0.0);
    CHECK(s.bleu_testlen == 0 && s.bleu_reflen == 2 + 5);
    /* longer than every reference: no brevity penalty, reference length =
     * the longest reference; ROUGE-L by hand: lcs 3, P = 3/6, R = 3/3 */
    const char *r3[] = {"a red bus", "red bus"};
    imcap_score_item three = {"a big red bus on road", r3, 2};
    REQUIRE_OK(imcap_score(&three, 1, 0, &s, NULL, NULL));
    CHECK(s.bleu_reflen == 3 && s.bleu_testlen == 6);
    CHECK(s.bleu_correct[0] == 3 && s.bleu_guess[0] == 6);
    CHECK_NEAR(s.bleu[0], 0.5, 1e-9);
    double p = 0.5, r = 1.0, b2 = 1.44;
    CHECK_NEAR(s.rouge_l, (1 + b2) * p * r / (r + b2 * p), 1e-12);
    /* tokenize = 1 runs the PTB tokenizer on raw text first */
    const char *r4[] = {"A red bus."};
    imcap_score_item four = {"A RED bus!", r4, 1};
    REQUIRE_OK(imcap_score(&four, 1, 1, &s, NULL, NULL));
    CHECK_NEAR(s.rouge_l, 1.0, 1e-12);
    REQUIRE_OK(imcap_score(&four, 1, 0, &s, NULL, NULL));
    CHECK(s.rouge_l < 0.5);
    /* bad arguments */
    CHECK(imcap_score(NULL, 1, 0, &s, NULL, NULL) == IMCAP_E_ARG);
    imcap_score_item norefs = {"a", r1, 0};
    CHECK(imcap_score(&norefs, 1, 0, &s, NULL, NULL) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "no references") != NULL);
    CHECK_STR(imcap_metric_name(0), "Bleu_1");
    CHECK_STR(imcap_metric_name(4), "ROUGE_L");
    CHECK_STR(imcap_metric_name(5), "CIDEr");
    CHECK(imcap_metric_name(6) == NULL);
}

/* ------------------------------------------------- COCO files end to end */

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    REQUIRE(fwrite(text, 1, strlen(text), fp) == strlen(text));
    REQUIRE(fclose(fp) == 0);
}

/* COCO-format files from RAW text only: references = tokenizer_pairs' raw
 * captions, results = results.json's raw captions (as written by a
 * captioner). Scores must equal the Python peer's on the toolkit-tokenized
 * forms (ptb side / refs_tokenized's test), so the tokenizer and the metrics
 * both have to be right. Returns the two paths. */
static void build_raw_coco_files(char *res_path, char *ref_path, size_t cap)
{
    cJSON *pairs = load_json_file(ORACLE_DIR "/tokenizer_pairs.json");
    REQUIRE(pairs);
    cJSON *coco = cJSON_CreateObject(), *images = cJSON_CreateArray(), *anns = cJSON_CreateArray();
    const cJSON *p;
    int k = 0;
    cJSON_ArrayForEach(p, pairs)
    {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "image_id", jnum(p, "image_id"));
        cJSON_AddNumberToObject(a, "id", k++);
        cJSON_AddStringToObject(a, "caption", jstr(p, "raw"));
        cJSON_AddItemToArray(anns, a);
    }
    cJSON_AddItemToObject(coco, "images", images);
    cJSON_AddItemToObject(coco, "annotations", anns);
    char *text = cJSON_PrintUnformatted(coco);
    REQUIRE(text);
    snprintf(ref_path, cap, "%s/refs_raw.json", test_tmpdir());
    write_file(ref_path, text);
    free(text);
    cJSON_Delete(coco);
    cJSON_Delete(pairs);
    snprintf(res_path, cap, "%s", ORACLE_DIR "/results.json");
}

TEST(score_coco_files_raw_text_end_to_end)
{
    char res[PATH_MAX], ref[PATH_MAX];
    build_raw_coco_files(res, ref, sizeof res);
    imcap_scores s;
    REQUIRE_OK(imcap_score_coco_files(res, ref, &s));
    cJSON *want = load_json_file("tests/data/coco_pairs_scores.json");
    REQUIRE(want);
    CHECK(s.n_images == 1000);
    check_against(&s, want, 1e-9);
    cJSON_Delete(want);
}

TEST(score_cli_text_and_json)
{
    char res[PATH_MAX], ref[PATH_MAX], cmd[3 * PATH_MAX], out[8192];
    build_raw_coco_files(res, ref, sizeof res);
    const char *bin = test_imcap_bin();
    cJSON *want = load_json_file("tests/data/coco_pairs_scores.json");
    REQUIRE(want);
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s' --json 2>&1", bin, res, ref);
    REQUIRE(test_run(cmd, out, sizeof out, NULL, 0) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    for (int m = 0; m < IMCAP_N_METRICS; m++)
        CHECK_NEAR(jnum(j, imcap_metric_name(m)), jnum(want, imcap_metric_name(m)), 1e-12);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s' 2>&1", bin, res, ref);
    REQUIRE(test_run(cmd, out, sizeof out, NULL, 0) == 0);
    for (int m = 0; m < IMCAP_N_METRICS; m++) {
        char line[64];
        snprintf(line, sizeof line, "%s: %.6f\n", imcap_metric_name(m), jnum(want, imcap_metric_name(m)));
        if (!strstr(out, line)) test_fail_at(__FILE__, __LINE__, "no line \"%s\" in:\n%s", line, out);
    }
    cJSON_Delete(want);
}

TEST(score_cli_errors_name_file_and_problem)
{
    const char *dir = test_tmpdir();
    const char *bin = test_imcap_bin();
    char refs[PATH_MAX], res[PATH_MAX], cmd[3 * PATH_MAX], out[8192];
    snprintf(refs, sizeof refs, "%s/refs.json", dir);
    snprintf(res, sizeof res, "%s/res.json", dir);
    write_file(refs, "{\"images\": [], \"annotations\": [{\"image_id\": 1, \"caption\": \"A dog.\"},"
                     " {\"image_id\": 2, \"caption\": \"A cat.\"}]}");
    static const struct { const char *results, *expect; } cases[] = {
        {"[{\"image_id\": 1, \"caption\": \"a dog\"},", "res.json:1:"},                /* malformed */
        {"[{\"image_id\": 3, \"caption\": \"a dog\"}]", "image_id 3 has no reference"},
        {"[{\"image_id\": 1, \"caption\": \"a\"}, {\"image_id\": 1, \"caption\": \"b\"}]", "both for image_id 1"},
        {"[{\"image_id\": 1}]", "has no \"caption\""},
        {"[{\"caption\": \"a dog\"}]", "has no \"image_id\""},
        {"[{\"image_id\": 1, \"caption\": 5}]", "\"caption\" is not a string"},
        {"{\"image_id\": 1}", "results file is a JSON array"},
        {"[]", "no results"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(res, cases[i].results);
        snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s' 2>&1", bin, res, refs);
        int rc = test_run(cmd, out, sizeof out, NULL, 0);
        CHECK(rc == 1);
        if (!strstr(out, cases[i].expect) || !strstr(out, "res.json"))
            test_fail_at(__FILE__, __LINE__, "case %zu: want \"%s\" naming res.json, got: %s", i,
                         cases[i].expect, out);
    }
    /* a bad references file is named too */
    write_file(res, "[{\"image_id\": 1, \"caption\": \"a dog\"}]");
    write_file(refs, "{\"annotations\": {}}");
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s' 2>&1", bin, res, refs);
    CHECK(test_run(cmd, out, sizeof out, NULL, 0) == 1);
    CHECK(strstr(out, "refs.json") && strstr(out, "\"annotations\" array"));
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s/missing.json' 2>&1", bin, res, dir);
    CHECK(test_run(cmd, out, sizeof out, NULL, 0) == 1);
    CHECK(strstr(out, "missing.json") != NULL);
    /* string image ids (Flickr-style file names) work; unused refs ignored */
    write_file(refs, "{\"annotations\": [{\"image_id\": \"a.jpg\", \"caption\": \"A dog runs.\"},"
                     " {\"image_id\": \"b.jpg\", \"caption\": \"A cat sits.\"}]}");
    write_file(res, "[{\"image_id\": \"a.jpg\", \"caption\": \"a dog runs\"}]");
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' --refs '%s' --json 2>&1", bin, res, refs);
    REQUIRE(test_run(cmd, out, sizeof out, NULL, 0) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_NEAR(jnum(j, "ROUGE_L"), 1.0, 1e-12);
    CHECK_NEAR(jnum(j, "Bleu_1"), 1.0, 1e-9);
    cJSON_Delete(j);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "'%s' score --results '%s' 2>&1", bin, res);
    CHECK(test_run(cmd, out, sizeof out, NULL, 0) == 2);
    CHECK(strstr(out, "--refs") != NULL);
}

/* Valid UTF-8 check for the tokenizer's output. */
static int valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        int k = *u < 0x80 ? 0 : (*u >= 0xC2 && *u <= 0xDF) ? 1 : (*u >= 0xE0 && *u <= 0xEF) ? 2
              : (*u >= 0xF0 && *u <= 0xF4) ? 3 : -1;
        if (k < 0) return 0;
        for (int j = 1; j <= k; j++)
            if ((u[j] & 0xC0) != 0x80) return 0;
        u += k + 1;
    }
    return 1;
}

TEST(ptb_tokenizer_random_input_invariants)
{
    static const char *const frags[] = {
        "a", "Dog", "n't", "'s", "'", "\"", "`", ".", "..", "...", ",", ":", ";", "!", "?", "-", "--", "(",
        ")", "[", "]", "{", "}", "&", "&amp;", "#", "$", "%", "/", "*", "1", "1:20", "3.5", "u.s.", "St.",
        "etc.", " ", "  ", "\t", "\n", "o'clock", "can't", "cannot", "-lrb-", "\xe2\x80\x99", "\xe2\x80\x94",
        "\xe2\x80\xa6", "\xc3\xa9", "\xce\xa3", "\xf0\x9f\x90\xb6", "\xff", "\xc3", "\xe2\x80", "\x01", "_",
        "=", "+", "@", "x-ray", "AT&T", "A.", "\xc2\xa0",
    };
    const size_t nf = sizeof frags / sizeof frags[0];
    imcap_rng rng;
    imcap_rng_seed(&rng, 1234);
    int iters = getenv("IMCAP_SANITIZED") ? 2000 : 20000;
    char buf[512];
    for (int it = 0; it < iters; it++) {
        size_t len = 0, parts = 1 + (size_t)imcap_rng_below(&rng, 24);
        for (size_t p = 0; p < parts; p++) {
            const char *f = frags[imcap_rng_below(&rng, nf)];
            size_t fl = strlen(f);
            if (len + fl >= sizeof buf) break;
            memcpy(buf + len, f, fl);
            len += fl;
        }
        buf[len] = 0;
        char *t = tok(buf);
        size_t tl = strlen(t);
        int ok = valid_utf8(t) && (tl == 0 || (t[0] != ' ' && t[tl - 1] != ' ')) && !strstr(t, "  ");
        /* no removed punctuation token survives */
        char *copy = imcap_strdup(t);
        REQUIRE(copy);
        for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            static const char *const punct[] = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"};
            for (size_t q = 0; q < sizeof punct / sizeof punct[0]; q++)
                if (!strcmp(w, punct[q])) ok = 0;
        }
        free(copy);
        if (!ok) {
            test_fail_at(__FILE__, __LINE__, "bad output \"%s\" for input \"%s\"", t, buf);
            free(t);
            return;
        }
        char *t2 = tok(t);
        free(t2);
        free(t);
    }
}
