#define _DEFAULT_SOURCE
#include "test.h"
#include "imcap.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

/* Writes text to a file in the test's temporary directory; returns its path. */
static const char *write_tmp(const char *name, const char *text, size_t len)
{
    static char paths[8][700];
    static int k;
    char *p = paths[k++ & 7];
    snprintf(p, 700, "%s/%s", test_tmpdir(), name);
    FILE *fp = fopen(p, "wb");
    REQUIRE(fp);
    REQUIRE(fwrite(text, 1, len, fp) == len);
    fclose(fp);
    return p;
}
#define WRITE_TMP(name, lit) write_tmp(name, lit, sizeof(lit) - 1)

/* Loads with fn and expects IMCAP_E_FORMAT with every needle in the message. */
static void expect_format_error(imcap_status (*fn)(const char *, imcap_captions **), const char *path,
                                const char *n1, const char *n2)
{
    imcap_captions *c = (imcap_captions *)1;
    imcap_status st = fn(path, &c);
    CHECK(st == IMCAP_E_FORMAT);
    CHECK(c == NULL);
    const char *msg = imcap_last_error();
    if (!strstr(msg, path) || !strstr(msg, n1) || (n2 && !strstr(msg, n2)))
        test_fail_at(__FILE__, __LINE__, "message '%s' lacks '%s' / '%s'", msg, n1, n2 ? n2 : "");
}

/* ------------------------------------------------------------ tokenizer */

static void check_tokens(const char *text, size_t n, const char *const *want)
{
    char **tok;
    size_t got;
    REQUIRE_OK(imcap_tokenize(text, &tok, &got));
    CHECK(got == n);
    for (size_t i = 0; i < n && i < got; i++) CHECK_STR(tok[i], want[i]);
    CHECK(tok[got] == NULL);
    free(tok);
}

TEST(text_tokenizer_recipe_rules)
{
    check_tokens("A child in a pink dress .", 6, (const char *[]){"a", "child", "in", "a", "pink", "dress"});
    check_tokens("  Hello,World!! it's  a_b-c 42x ", 7,
                 (const char *[]){"hello", "world", "it", "s", "a_b", "c", "42x"});
    check_tokens("", 0, NULL);
    check_tokens(" .,;!? \t\r\n", 0, NULL);
    check_tokens("DOG\nCat", 2, (const char *[]){"dog", "cat"});
}

TEST(text_tokenizer_utf8_is_never_split)
{
    /* "Caf\u00e9 na\u00efve \u00dcn\u00efcode \u65e5\u672c-\u30c6": non-ASCII bytes are word bytes,
     * ASCII letters are lowercased, multi-byte characters are left as they are. */
    check_tokens("Caf\xC3\xA9 na\xC3\xAFve \xC3\x9Cn\xC3\xAF" "code \xE6\x97\xA5\xE6\x9C\xAC-\xE3\x83\x86", 5,
                 (const char *[]){"caf\xC3\xA9", "na\xC3\xAFve", "\xC3\x9Cn\xC3\xAF" "code", "\xE6\x97\xA5\xE6\x9C\xAC",
                                  "\xE3\x83\x86"});
    check_tokens("\xF0\x9F\x90\xB6 dog", 2, (const char *[]){"\xF0\x9F\x90\xB6", "dog"});
}

/* ------------------------------------------------------------- loaders */

TEST(text_csv_rfc4180)
{
    const char *p = WRITE_TMP("c.csv", "image,caption\r\n"
                                       "a.jpg,A dog runs .\r\n"
                                       "b.jpg,\"Two dogs , one \"\"big\"\" .\"\r\n"
                                       "\n"
                                       "a.jpg,\"Line one\nline two\"\n"
                                       "c.jpg,\n"
                                       "b.jpg,Caf\xC3\xA9");
    imcap_captions *c;
    REQUIRE_OK(imcap_captions_load_csv(p, &c));
    CHECK(imcap_captions_n_images(c) == 3);
    CHECK(imcap_captions_n_total(c) == 5);
    CHECK_STR(imcap_captions_image(c, 0), "a.jpg");
    CHECK_STR(imcap_captions_image(c, 1), "b.jpg");
    CHECK_STR(imcap_captions_image(c, 2), "c.jpg");
    CHECK(imcap_captions_count(c, 0) == 2 && imcap_captions_count(c, 1) == 2 && imcap_captions_count(c, 2) == 1);
    CHECK_STR(imcap_captions_text(c, 0, 0), "A dog runs .");
    CHECK_STR(imcap_captions_text(c, 0, 1), "Line one\nline two");
    CHECK_STR(imcap_captions_text(c, 1, 0), "Two dogs , one \"big\" .");
    CHECK_STR(imcap_captions_text(c, 1, 1), "Caf\xC3\xA9");
    CHECK_STR(imcap_captions_text(c, 2, 0), "");
    CHECK(imcap_captions_text(c, 2, 1) == NULL);
    CHECK(imcap_captions_find(c, "b.jpg") == 1);
    CHECK(imcap_captions_find(c, "nope.jpg") == -1);
    imcap_captions_free(c);
    /* Quotes at the edges of a quoted field, an empty quoted field, no final newline. */
    p = WRITE_TMP("d.csv", "image,caption\n\"x.jpg\",\"\"\"Hi\"\"\"\n\"y,z.jpg\",\"\"\n\"w.jpg\",\"\"\"\"");
    REQUIRE_OK(imcap_captions_load_csv(p, &c));
    CHECK(imcap_captions_n_images(c) == 3);
    CHECK_STR(imcap_captions_text(c, 0, 0), "\"Hi\"");
    CHECK_STR(imcap_captions_image(c, 1), "y,z.jpg");
    CHECK_STR(imcap_captions_text(c, 1, 0), "");
    CHECK_STR(imcap_captions_text(c, 2, 0), "\"");
    imcap_captions_free(c);
    p = WRITE_TMP("c2.csv", "image,caption\r\na.jpg,A dog runs .\r\n");
    /* imcap_captions_load picks the CSV loader by extension. */
    REQUIRE_OK(imcap_captions_load(p, &c));
    CHECK(imcap_captions_n_total(c) == 1);
    imcap_captions_free(c);
}

TEST(text_csv_malformed_inputs_name_file_line_problem)
{
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("q.csv", "image,caption\na.jpg,ok\nb.jpg,\"open\nmore\n"),
                        ":5:", "unterminated quoted field (opened on line 3)");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("f.csv", "image,caption\na.jpg,x\nb.jpg,y,z\n"), ":3:",
                        "expected 2 fields (image,caption), found 3");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("g.csv", "image,caption\na.jpg\n"), ":2:", "found 1");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("h.csv", "name,text\na.jpg,x\n"), ":1:",
                        "header line 'image,caption'");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("e.csv", ""), ":1:", "empty file");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("a.csv", "image,caption\na.jpg,\"x\"y\n"), ":2:",
                        "after a closing quote");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("u.csv", "image,caption\na.jpg,say \"hi\"\n"), ":2:",
                        "quote inside an unquoted field");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("n.csv", "image,caption\n,x\n"), ":2:", "empty image name");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("b.csv", "image,caption\na.jpg,caf\xC3(\n"), ":2:",
                        "invalid UTF-8");
    expect_format_error(imcap_captions_load_csv, write_tmp("z.csv", "image,caption\na.jpg,x\0y\n", 22), ":2:", "NUL byte");
    expect_format_error(imcap_captions_load_csv, WRITE_TMP("o.csv", "image,caption\n"), "no captions", NULL);
    /* A caption longer than the limit is refused, not truncated. */
    size_t n = IMCAP_CAPTION_MAX + 100;
    char *big = malloc(n + 40);
    REQUIRE(big);
    int h = sprintf(big, "image,caption\na.jpg,");
    memset(big + h, 'x', n);
    expect_format_error(imcap_captions_load_csv, write_tmp("l.csv", big, (size_t)h + n), ":2:", "longer than");
    free(big);
    imcap_captions *c;
    CHECK(imcap_captions_load_csv("/nonexistent/x.csv", &c) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "/nonexistent/x.csv") != NULL);
}

TEST(text_token_file)
{
    const char *p = WRITE_TMP("t.txt", "a.jpg#0\tA dog .\r\n"
                                       "a.jpg#1\tThe dog # runs\t!\r\n"
                                       "\r\n"
                                       "b#c.jpg#0\tCat\n");
    imcap_captions *c;
    REQUIRE_OK(imcap_captions_load_tokens(p, &c));
    CHECK(imcap_captions_n_images(c) == 2);
    CHECK_STR(imcap_captions_text(c, 0, 1), "The dog # runs\t!");
    CHECK_STR(imcap_captions_image(c, 1), "b#c.jpg");
    CHECK_STR(imcap_captions_text(c, 1, 0), "Cat");
    imcap_captions_free(c);
    expect_format_error(imcap_captions_load_tokens, WRITE_TMP("t1.txt", "a.jpg#0\tx\na.jpg#1 no tab\n"), ":2:",
                        "missing tab");
    expect_format_error(imcap_captions_load_tokens, WRITE_TMP("t2.txt", "a.jpg\tx\n"), ":1:", "expected 'image#index'");
    expect_format_error(imcap_captions_load_tokens, WRITE_TMP("t3.txt", "\n\na.jpg#x\tx\n"), ":3:", "is not a number");
    expect_format_error(imcap_captions_load_tokens, WRITE_TMP("t4.txt", "#0\tx\n"), ":1:", "empty image name");
}

TEST(text_coco_json)
{
    const char *p = WRITE_TMP("c.json",
                              "{\"info\": {}, \"images\": [{\"id\": 42, \"file_name\": \"x.jpg\"},\n"
                              " {\"id\": 7, \"file_name\": \"y.jpg\"}, {\"id\": 9, \"file_name\": \"unused.jpg\"}],\n"
                              " \"annotations\": [{\"image_id\": 7, \"id\": 1, \"caption\": \"A \\\"cat\\\" \\u00e9.\"},\n"
                              "  {\"image_id\": 42, \"caption\": \"first\"}, {\"image_id\": 7, \"caption\": \"second\"}]}");
    imcap_captions *c;
    REQUIRE_OK(imcap_captions_load(p, &c));
    CHECK(imcap_captions_n_images(c) == 2);
    CHECK_STR(imcap_captions_image(c, 0), "x.jpg");
    CHECK_STR(imcap_captions_image(c, 1), "y.jpg");
    CHECK(imcap_captions_count(c, 1) == 2);
    CHECK_STR(imcap_captions_text(c, 1, 0), "A \"cat\" \xC3\xA9.");
    CHECK_STR(imcap_captions_text(c, 1, 1), "second");
    CHECK(imcap_captions_find(c, "unused.jpg") == -1);
    imcap_captions_free(c);
    expect_format_error(imcap_captions_load_coco, WRITE_TMP("b1.json", "{\"images\": [],\n \"annotations\": [,]}"),
                        ":2:", "invalid JSON");
    expect_format_error(imcap_captions_load_coco,
                        WRITE_TMP("b2.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a\"}], \"annotations\": "
                                             "[{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 5, \"caption\": \"y\"}]}"),
                        "annotations[1]", "unknown image_id 5");
    expect_format_error(imcap_captions_load_coco, WRITE_TMP("b3.json", "{\"images\": [{\"id\": 1}], \"annotations\": []}"),
                        "images[0]", "file_name");
    expect_format_error(imcap_captions_load_coco, WRITE_TMP("b4.json", "{\"annotations\": []}"), "\"images\"", NULL);
    expect_format_error(imcap_captions_load_coco,
                        WRITE_TMP("b5.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a\"}, {\"id\": 1, \"file_name\": "
                                             "\"b\"}], \"annotations\": []}"),
                        "same id 1", NULL);
    expect_format_error(imcap_captions_load_coco,
                        WRITE_TMP("b6.json", "{\"images\": [{\"id\": 1.5, \"file_name\": \"a\"}], \"annotations\": []}"),
                        "non-integer \"id\"", NULL);
    expect_format_error(imcap_captions_load_coco,
                        WRITE_TMP("b7.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a\"}, {\"id\": 2, \"file_name\": "
                                             "\"a\"}], \"annotations\": [{\"image_id\": 1, \"caption\": \"x\"}, "
                                             "{\"image_id\": 2, \"caption\": \"y\"}]}"),
                        "same file_name 'a'", NULL);
    expect_format_error(imcap_captions_load_coco, WRITE_TMP("b8.json", "[1,2]"), "top level", NULL);
}

TEST(text_split_and_restrict)
{
    const char *csv = WRITE_TMP("c.csv", "image,caption\na.jpg,one\nb.jpg,two\nc.jpg,three\nb.jpg,four\n");
    const char *split = WRITE_TMP("s.txt", "c.jpg\r\n\r\n  b.jpg \n");
    imcap_captions *all, *sub;
    REQUIRE_OK(imcap_captions_load_csv(csv, &all));
    char **names;
    size_t n;
    REQUIRE_OK(imcap_split_load(split, &names, &n));
    CHECK(n == 2);
    CHECK_STR(names[0], "c.jpg");
    CHECK_STR(names[1], "b.jpg");
    free(names);
    REQUIRE_OK(imcap_captions_restrict(all, split, &sub));
    CHECK(imcap_captions_n_images(sub) == 2 && imcap_captions_n_total(sub) == 3);
    CHECK_STR(imcap_captions_image(sub, 0), "c.jpg");
    CHECK_STR(imcap_captions_text(sub, 1, 1), "four");
    imcap_captions_free(sub);
    const char *bad = WRITE_TMP("bad.txt", "a.jpg\n\nzzz.jpg\n");
    CHECK(imcap_captions_restrict(all, bad, &sub) == IMCAP_E_MISMATCH && sub == NULL);
    CHECK(strstr(imcap_last_error(), "bad.txt:3: image 'zzz.jpg' has no captions in") != NULL);
    const char *dup = WRITE_TMP("dup.txt", "a.jpg\nb.jpg\na.jpg\n");
    CHECK(imcap_split_load(dup, &names, &n) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "dup.txt:3: image 'a.jpg' is listed twice (first on line 1)") != NULL);
    CHECK(imcap_split_load(WRITE_TMP("empty.txt", "\n\n"), &names, &n) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "no image names") != NULL);
    imcap_captions_free(all);
}

/* -------------------------------------------------------------- vocab */

static imcap_captions *small_dataset(void)
{
    imcap_captions *c;
    const char *p = WRITE_TMP("v.csv", "image,caption\n"
                                       "a.jpg,The dog runs .\n"
                                       "a.jpg,A dog runs fast\n"
                                       "b.jpg,The cat sleeps\n"
                                       "b.jpg,the Dog and the cat\n"
                                       "c.jpg,Caf\xC3\xA9 dog\n");
    if (imcap_captions_load_csv(p, &c)) {
        test_fail_at(__FILE__, __LINE__, "%s", imcap_last_error());
        exit(1);
    }
    return c;
}

TEST(text_vocab_build_sorted_with_specials)
{
    imcap_captions *c = small_dataset();
    imcap_vocab *v;
    /* counts: the 4, dog 4, runs 2, cat 2, a/fast/sleeps/and/café 1 */
    REQUIRE_OK(imcap_vocab_build(c, 2, &v));
    const char *want[] = {"#END#", "#PAD#", "#START#", "#UNK#", "cat", "dog", "runs", "the"};
    REQUIRE(imcap_vocab_size(v) == 8);
    for (int i = 0; i < 8; i++) {
        CHECK_STR(imcap_vocab_words(v)[i], want[i]);
        CHECK(imcap_vocab_find(v, want[i]) == i);
    }
    CHECK(imcap_vocab_end(v) == 0 && imcap_vocab_pad(v) == 1 && imcap_vocab_start(v) == 2 && imcap_vocab_unk(v) == 3);
    CHECK(imcap_vocab_find(v, "fast") == -1);
    CHECK(imcap_vocab_word(v, 8) == NULL && imcap_vocab_word(v, -1) == NULL);
    int32_t *ids;
    size_t n;
    REQUIRE_OK(imcap_vocab_encode(v, "The DOG flies!", &ids, &n));
    CHECK(n == 5);
    int32_t expect[] = {2, 7, 5, 3, 0};
    for (size_t i = 0; i < 5 && i < n; i++) CHECK(ids[i] == expect[i]);
    char *text;
    REQUIRE_OK(imcap_vocab_decode(v, ids, n, &text));
    CHECK_STR(text, "the dog #UNK#");
    free(text);
    free(ids);
    int32_t bad[] = {2, 99};
    CHECK(imcap_vocab_decode(v, bad, 2, &text) == IMCAP_E_ARG);
    imcap_vocab_free(v);
    /* min_count 1 keeps everything; "caf\xC3\xA9" sorts before "cat" by bytes. */
    REQUIRE_OK(imcap_vocab_build(c, 1, &v));
    CHECK(imcap_vocab_size(v) == 13);
    CHECK_STR(imcap_vocab_word(v, 6), "caf\xC3\xA9");
    CHECK_STR(imcap_vocab_word(v, 7), "cat");
    CHECK_STR(imcap_vocab_word(v, 12), "the");
    imcap_vocab_free(v);
    CHECK(imcap_vocab_build(c, 0, &v) == IMCAP_E_ARG);
    imcap_captions_free(c);
}

TEST(text_vocab_words_roundtrip_and_validation)
{
    imcap_captions *c = small_dataset();
    imcap_vocab *v, *w;
    REQUIRE_OK(imcap_vocab_build(c, 2, &v));
    REQUIRE_OK(imcap_vocab_from_words(imcap_vocab_words(v), imcap_vocab_size(v), &w));
    CHECK(imcap_vocab_size(w) == imcap_vocab_size(v));
    for (size_t i = 0; i < imcap_vocab_size(v); i++) CHECK_STR(imcap_vocab_word(w, (int32_t)i), imcap_vocab_word(v, (int32_t)i));
    imcap_vocab_free(w);
    char path[700];
    snprintf(path, sizeof path, "%s/vocab.txt", test_tmpdir());
    REQUIRE_OK(imcap_vocab_save_txt(v, path));
    REQUIRE_OK(imcap_vocab_load_txt(path, &w));
    CHECK(imcap_vocab_size(w) == 8 && imcap_vocab_find(w, "the") == 7);
    imcap_vocab_free(w);
    /* Order of a stored list is kept as is (indices must not move). */
    const char *mixed[] = {"zebra", "#UNK#", "#PAD#", "#END#", "apple", "#START#"};
    REQUIRE_OK(imcap_vocab_from_words(mixed, 6, &w));
    CHECK(imcap_vocab_pad(w) == 2 && imcap_vocab_unk(w) == 1 && imcap_vocab_end(w) == 3 && imcap_vocab_start(w) == 5);
    CHECK(imcap_vocab_find(w, "zebra") == 0);
    imcap_vocab_free(w);
    const char *dup[] = {"#PAD#", "#UNK#", "#START#", "#END#", "a", "a"};
    CHECK(imcap_vocab_from_words(dup, 6, &w) == IMCAP_E_FORMAT && w == NULL);
    CHECK(strstr(imcap_last_error(), "'a' appears twice") != NULL);
    CHECK(imcap_vocab_from_words(dup + 1, 4, &w) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "#PAD# is missing") != NULL);
    const char *sp[] = {"#PAD#", "#UNK#", "#START#", "#END#", "a b"};
    CHECK(imcap_vocab_from_words(sp, 5, &w) == IMCAP_E_FORMAT);
    CHECK(imcap_vocab_load_txt(WRITE_TMP("v1.txt", "#PAD#\n#UNK#\n#START#\n#END#\ndog\n\ncat\n"), &w) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "v1.txt:6: empty word") != NULL);
    CHECK(imcap_vocab_load_txt(WRITE_TMP("v2.txt", "#PAD#\n#UNK#\n#START#\n#END#\ndog\ndog\n"), &w) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "v2.txt:6: word 'dog' repeats line 5") != NULL);
    CHECK(imcap_vocab_load_txt(WRITE_TMP("v3.txt", "#PAD#\r\n#UNK#\r\n#START#\r\n#END#\r\n"), &w) == IMCAP_OK);
    CHECK(imcap_vocab_size(w) == 4);
    imcap_vocab_free(w);
    imcap_vocab_free(v);
    imcap_captions_free(c);
}

/* ------------------------------------------------------------ batching */

TEST(text_pad_batch_recipe_examples)
{
    const int32_t r0[] = {1, 2, 3}, r1[] = {4, 5};
    const int32_t *rows[] = {r0, r1};
    const size_t lens[] = {3, 2};
    const int32_t PAD = 99;
    int32_t out[6];
    size_t w;
    REQUIRE_OK(imcap_pad_batch(rows, lens, 2, 0, PAD, NULL, &w));
    CHECK(w == 3);
    REQUIRE_OK(imcap_pad_batch(rows, lens, 2, 0, PAD, out, &w));
    const int32_t want[] = {1, 2, 3, 4, 5, PAD};
    CHECK(w == 3 && memcmp(out, want, sizeof want) == 0);
    REQUIRE_OK(imcap_pad_batch(rows, lens, 2, 2, PAD, out, &w));
    const int32_t want2[] = {1, 2, 4, 5};
    CHECK(w == 2 && memcmp(out, want2, sizeof want2) == 0);
    /* max_len larger than the longest row does not widen the matrix. */
    REQUIRE_OK(imcap_pad_batch(rows, lens, 2, 10, PAD, out, &w));
    CHECK(w == 3 && memcmp(out, want, sizeof want) == 0);
}

TEST(text_batcher_samples_distinct_images_deterministically)
{
    imcap_captions *c = small_dataset();
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_build(c, 2, &v));
    imcap_batcher *b1, *b2;
    REQUIRE_OK(imcap_batcher_new(c, v, 4, 1234, &b1));
    REQUIRE_OK(imcap_batcher_new(c, v, 4, 1234, &b2));
    CHECK(imcap_batcher_n_images(b1) == 3 && imcap_batcher_max_len(b1) == 4);
    int32_t im1[3], im2[3], t1[3 * IMCAP_BATCH_MAX_LEN], t2[3 * IMCAP_BATCH_MAX_LEN];
    size_t w1, w2;
    int seen_caption[3][2] = {{0}};
    for (int it = 0; it < 200; it++) {
        REQUIRE_OK(imcap_batcher_next(b1, 3, im1, t1, &w1));
        REQUIRE_OK(imcap_batcher_next(b2, 3, im2, t2, &w2));
        CHECK(w1 == w2 && memcmp(im1, im2, sizeof im1) == 0 && memcmp(t1, t2, 3 * w1 * sizeof *t1) == 0);
        CHECK(w1 <= 4 && w1 >= 3);
        /* distinct images, each row a prefix of one of the image's encoded captions */
        CHECK(im1[0] != im1[1] && im1[0] != im1[2] && im1[1] != im1[2]);
        for (int r = 0; r < 3; r++) {
            REQUIRE(im1[r] >= 0 && im1[r] < 3);
            int match = 0;
            for (size_t k = 0; k < imcap_captions_count(c, (size_t)im1[r]); k++) {
                int32_t *ids;
                size_t n;
                REQUIRE_OK(imcap_vocab_encode(v, imcap_captions_text(c, (size_t)im1[r], k), &ids, &n));
                int ok = 1;
                for (size_t j = 0; j < w1; j++) {
                    int32_t want = j < n ? ids[j] : imcap_vocab_pad(v);
                    if (j < 4 && t1[r * (int)w1 + (int)j] != want) ok = 0;
                }
                if (ok) {
                    match = 1;
                    seen_caption[im1[r]][k] = 1;
                }
                free(ids);
            }
            CHECK(match);
            CHECK(t1[r * (int)w1] == imcap_vocab_start(v));
        }
    }
    /* Both captions of the two-caption images were drawn at some point. */
    CHECK(seen_caption[0][0] && seen_caption[0][1] && seen_caption[1][0] && seen_caption[1][1]);
    /* State save/restore replays the same batches; another seed differs. */
    uint64_t st[4];
    imcap_batcher_get_state(b1, st);
    int32_t ref_t[10 * 2 * 4], ref_i[10 * 2];
    for (int it = 0; it < 10; it++) REQUIRE_OK(imcap_batcher_next(b1, 2, ref_i + 2 * it, ref_t + 8 * it, &w1));
    imcap_batcher_set_state(b2, st);
    int32_t got_t[10 * 2 * 4], got_i[10 * 2];
    for (int it = 0; it < 10; it++) REQUIRE_OK(imcap_batcher_next(b2, 2, got_i + 2 * it, got_t + 8 * it, &w2));
    CHECK(memcmp(ref_i, got_i, sizeof ref_i) == 0);
    imcap_batcher *b3;
    REQUIRE_OK(imcap_batcher_new(c, v, 0, 99, &b3));
    CHECK(imcap_batcher_max_len(b3) == IMCAP_BATCH_MAX_LEN);
    int differs = 0;
    imcap_batcher_set_state(b2, st);
    for (int it = 0; it < 10; it++) {
        REQUIRE_OK(imcap_batcher_next(b3, 2, im1, t1, &w1));
        REQUIRE_OK(imcap_batcher_next(b2, 2, im2, t2, &w2));
        differs |= memcmp(im1, im2, 2 * sizeof *im1) != 0;
    }
    CHECK(differs);
    CHECK(imcap_batcher_next(b1, 4, im1, t1, &w1) == IMCAP_E_ARG);
    CHECK(imcap_batcher_next(b1, 0, im1, t1, &w1) == IMCAP_E_ARG);
    imcap_batcher_free(b1);
    imcap_batcher_free(b2);
    imcap_batcher_free(b3);
    imcap_vocab_free(v);
    imcap_captions_free(c);
}

/* ------------------------------------------------------ real Flickr8k */

TEST(text_flickr8k_real_data)
{
    const char *csv = "data/flickr8k/captions.csv";
    FILE *fp = fopen(csv, "rb");
    if (!fp) SKIP("data/flickr8k not present (scripts/get-data.sh)");
    fclose(fp);
    imcap_captions *all, *train, *dev;
    REQUIRE_OK(imcap_captions_load_csv(csv, &all));
    CHECK(imcap_captions_n_total(all) == 35000);
    CHECK(imcap_captions_n_images(all) == 7000);
    REQUIRE_OK(imcap_captions_restrict(all, "data/flickr8k/train.txt", &train));
    REQUIRE_OK(imcap_captions_restrict(all, "data/flickr8k/dev.txt", &dev));
    CHECK(imcap_captions_n_images(train) == 6000);
    CHECK(imcap_captions_n_images(dev) == 1000);
    for (size_t i = 0; i < imcap_captions_n_images(dev); i++)
        CHECK(imcap_captions_find(train, imcap_captions_image(dev, i)) < 0);
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_build(train, IMCAP_VOCAB_MIN_COUNT, &v));
    size_t nv = imcap_vocab_size(v);
    fprintf(stderr, "    flickr8k: %zu captions, train %zu images / %zu captions, vocabulary %zu words (min_count %d)\n",
            imcap_captions_n_total(all), imcap_captions_n_images(train), imcap_captions_n_total(train), nv,
            IMCAP_VOCAB_MIN_COUNT);
    /* The same list as the recipe's Python (scripts/golden-vocab.py). */
    imcap_vocab *py;
    REQUIRE_OK(imcap_vocab_load_txt("tests/data/flickr8k_vocab_min5.txt", &py));
    CHECK(imcap_vocab_size(py) == nv);
    for (size_t i = 0; i < nv && i < imcap_vocab_size(py); i++)
        CHECK_STR(imcap_vocab_word(v, (int32_t)i), imcap_vocab_word(py, (int32_t)i));
    imcap_vocab_free(py);
    CHECK(nv >= 1900 && nv <= 3000);
    CHECK(imcap_vocab_pad(v) == 1 && imcap_vocab_end(v) == 0);
    /* Deterministic: a second build gives the same list. */
    imcap_vocab *v2;
    REQUIRE_OK(imcap_vocab_build(train, IMCAP_VOCAB_MIN_COUNT, &v2));
    REQUIRE(imcap_vocab_size(v2) == nv);
    for (size_t i = 0; i < nv; i++) CHECK(strcmp(imcap_vocab_words(v)[i], imcap_vocab_words(v2)[i]) == 0);
    for (size_t i = 1; i < nv; i++) CHECK(strcmp(imcap_vocab_words(v)[i - 1], imcap_vocab_words(v)[i]) < 0);
    imcap_batcher *b;
    REQUIRE_OK(imcap_batcher_new(train, v, 0, 1, &b));
    int32_t im[64], tok[64 * IMCAP_BATCH_MAX_LEN];
    size_t w;
    REQUIRE_OK(imcap_batcher_next(b, 64, im, tok, &w));
    CHECK(w >= 8 && w <= IMCAP_BATCH_MAX_LEN);
    imcap_batcher_free(b);
    imcap_vocab_free(v);
    imcap_vocab_free(v2);
    imcap_captions_free(dev);
    imcap_captions_free(train);
    imcap_captions_free(all);
}

/* The real Flickr8k captions written as a token file and as COCO JSON load
 * back to the same dataset as from the CSV. */
TEST(text_flickr8k_formats_agree)
{
    const char *csv = "data/flickr8k/captions.csv";
    FILE *fp = fopen(csv, "rb");
    if (!fp) SKIP("data/flickr8k not present (scripts/get-data.sh)");
    fclose(fp);
    imcap_captions *a, *t, *j;
    REQUIRE_OK(imcap_captions_load_csv(csv, &a));
    char tok_path[700], json_path[700];
    snprintf(tok_path, sizeof tok_path, "%s/Flickr8k.token.txt", test_tmpdir());
    snprintf(json_path, sizeof json_path, "%s/captions.json", test_tmpdir());
    fp = fopen(tok_path, "wb");
    REQUIRE(fp);
    cJSON *root = cJSON_CreateObject(), *images = cJSON_AddArrayToObject(root, "images"),
          *anns = cJSON_AddArrayToObject(root, "annotations");
    REQUIRE(root && images && anns);
    size_t n = imcap_captions_n_images(a);
    for (size_t i = 0; i < n; i++) {
        cJSON *im = cJSON_CreateObject();
        cJSON_AddNumberToObject(im, "id", (double)(1000 + 7 * (n - i)));
        cJSON_AddStringToObject(im, "file_name", imcap_captions_image(a, i));
        cJSON_AddItemToArray(images, im);
    }
    /* Annotations interleaved across images (k outer): grouping must restore file order. */
    for (size_t k = 0; k < 5; k++)
        for (size_t i = 0; i < n; i++) {
            if (k >= imcap_captions_count(a, i)) continue;
            fprintf(fp, "%s#%zu\t%s\r\n", imcap_captions_image(a, i), k, imcap_captions_text(a, i, k));
            cJSON *an = cJSON_CreateObject();
            cJSON_AddNumberToObject(an, "image_id", (double)(1000 + 7 * (n - i)));
            cJSON_AddStringToObject(an, "caption", imcap_captions_text(a, i, k));
            cJSON_AddItemToArray(anns, an);
        }
    fclose(fp);
    char *text = cJSON_PrintUnformatted(root);
    REQUIRE(text);
    fp = fopen(json_path, "wb");
    REQUIRE(fp);
    fputs(text, fp);
    fclose(fp);
    free(text);
    cJSON_Delete(root);
    REQUIRE_OK(imcap_captions_load(tok_path, &t));
    REQUIRE_OK(imcap_captions_load(json_path, &j));
    const imcap_captions *other[2] = {t, j};
    for (int o = 0; o < 2; o++) {
        const imcap_captions *b = other[o];
        REQUIRE(imcap_captions_n_images(b) == n);
        CHECK(imcap_captions_n_total(b) == imcap_captions_n_total(a));
        size_t diffs = 0;
        for (size_t i = 0; i < n; i++) {
            diffs += strcmp(imcap_captions_image(a, i), imcap_captions_image(b, i)) != 0;
            diffs += imcap_captions_count(a, i) != imcap_captions_count(b, i);
            for (size_t k = 0; k < imcap_captions_count(a, i); k++) {
                const char *y = imcap_captions_text(b, i, k);
                diffs += !y || strcmp(imcap_captions_text(a, i, k), y) != 0;
            }
        }
        CHECK(diffs == 0);
    }
    imcap_captions_free(a);
    imcap_captions_free(t);
    imcap_captions_free(j);
}

TEST(text_batcher_get_walks_every_caption_in_order)
{
    imcap_captions *c = small_dataset();
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_build(c, 2, &v));
    imcap_batcher *b;
    REQUIRE_OK(imcap_batcher_new(c, v, 5, 7, &b));
    REQUIRE(imcap_batcher_n_captions(b) == 5);
    uint64_t before[4], after[4];
    imcap_batcher_get_state(b, before);
    /* Captions in order: (image, k) = (0,0) (0,1) (1,0) (1,1) (2,0); read in chunks of 2. */
    const size_t pairs[5][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}};
    int32_t *ids[5];
    size_t lens[5], seen = 0;
    for (int q = 0; q < 5; q++) {
        REQUIRE_OK(imcap_vocab_encode(v, imcap_captions_text(c, pairs[q][0], pairs[q][1]), &ids[q], &lens[q]));
        if (lens[q] > 5) lens[q] = 5;
    }
    for (size_t first = 0; first < 5; first += 2) {
        size_t count = first + 2 <= 5 ? 2 : 1, w, want_w = 0;
        int32_t im[2], tok[2 * 5];
        REQUIRE_OK(imcap_batcher_get(b, first, count, im, tok, &w));
        for (size_t r = 0; r < count; r++)
            if (lens[first + r] > want_w) want_w = lens[first + r];
        CHECK(w == want_w);
        for (size_t r = 0; r < count; r++, seen++) {
            CHECK(im[r] == (int32_t)pairs[seen][0]);
            for (size_t j = 0; j < w; j++)
                CHECK(tok[r * w + j] == (j < lens[seen] ? ids[seen][j] : imcap_vocab_pad(v)));
        }
    }
    for (int q = 0; q < 5; q++) free(ids[q]);
    CHECK(seen == 5);
    imcap_batcher_get_state(b, after);
    CHECK(memcmp(before, after, sizeof before) == 0);
    int32_t im[8], tok[8 * 5];
    size_t w;
    CHECK(imcap_batcher_get(b, 4, 2, im, tok, &w) == IMCAP_E_ARG);
    CHECK(imcap_batcher_get(b, 0, 0, im, tok, &w) == IMCAP_E_ARG);
    CHECK(imcap_batcher_get(b, 6, 1, im, tok, &w) == IMCAP_E_ARG);
    REQUIRE_OK(imcap_batcher_get(b, 0, 5, im, tok, &w));
    CHECK(w == 5); /* "a dog runs fast" = 6 tokens, cut at max_len 5 */
    CHECK(tok[1 * 5 + 4] != imcap_vocab_end(v) && tok[1 * 5 + 4] != imcap_vocab_pad(v));
    imcap_batcher_free(b);
    imcap_vocab_free(v);
    imcap_captions_free(c);
}

/* Random byte edits, insertions and cuts of valid files: every loader either
 * succeeds or fails with IMCAP_E_FORMAT and a message naming the file (the
 * ASan build checks that nothing reads or writes out of bounds). */

static void mutate_and_load(const char *name, const char *good, imcap_status (*fn)(const char *, imcap_captions **),
                            int rounds)
{
    static const char alphabet[] = "\",\n\r\t#:{}[]\"0aZ \x80\xC3\xA9\xFF";
    imcap_rng rng;
    imcap_rng_seed(&rng, 12345);
    size_t n = strlen(good);
    char *buf = malloc(n + 16);
    REQUIRE(buf);
    int ok = 0, bad = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, good, n);
        size_t len = n;
        int edits = 1 + (int)imcap_rng_below(&rng, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)imcap_rng_below(&rng, len);
            char ch = alphabet[imcap_rng_below(&rng, sizeof alphabet - 1)];
            switch (imcap_rng_below(&rng, 3)) {
            case 0: buf[at] = ch; break;
            case 1:
                if (len < n + 15) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = ch;
                    len++;
                }
                break;
            default: len = at + 1; break;
            }
        }
        const char *p = write_tmp(name, buf, len);
        imcap_captions *c = NULL;
        imcap_status st = fn(p, &c);
        if (st == IMCAP_OK) {
            ok++;
            CHECK(c != NULL && imcap_captions_n_total(c) > 0);
            imcap_captions_free(c);
        } else {
            bad++;
            CHECK(st == IMCAP_E_FORMAT && c == NULL);
            CHECK(strstr(imcap_last_error(), p) != NULL);
        }
    }
    fprintf(stderr, "    %s: %d mutants loaded, %d refused\n", name, ok, bad);
    free(buf);
}

TEST(text_loaders_survive_mutations)
{
    int rounds = getenv("IMCAP_SANITIZED") ? 100 : 250;
    mutate_and_load("m.csv", "image,caption\na.jpg,A dog .\nb.jpg,\"Two, \"\"big\"\"\ndogs\"\r\nc.jpg,x\n", imcap_captions_load_csv,
                    rounds);
    mutate_and_load("m.txt", "a.jpg#0\tA dog .\r\na.jpg#1\tTwo\nb.jpg#0\tCat\n", imcap_captions_load_tokens, rounds);
    mutate_and_load("m.json",
                    "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}, {\"id\": 2, \"file_name\": \"b.jpg\"}], "
                    "\"annotations\": [{\"image_id\": 2, \"caption\": \"x \\u00e9\"}, {\"image_id\": 1, \"caption\": \"y\"}]}",
                    imcap_captions_load_coco, rounds);
}

/* `imcap vocab` end to end (the binary next to this test runner). */
static int run_imcap(const char *args, char *out, size_t cap)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", test_imcap_bin(), args);
    return test_run(cmd, out, cap, NULL, 0);
}

TEST(text_cli_vocab)
{
    imcap_captions *c = small_dataset(); /* writes v.csv */
    imcap_captions_free(c);
    const char *split = WRITE_TMP("split.txt", "a.jpg\nb.jpg\n");
    char args[3000], out[4096];
    snprintf(args, sizeof args, "vocab --captions '%s/v.csv' --split '%s' --min-count 2 --out '%s/w.txt'", test_tmpdir(),
             split, test_tmpdir());
    CHECK(run_imcap(args, out, sizeof out) == 0);
    CHECK(strstr(out, "8 words (min count 2, 4 special tokens) from 2 images / 4 captions") != NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/w.txt", test_tmpdir());
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_load_txt(path, &v));
    /* a.jpg, b.jpg: the 4, dog 3, runs 2, cat 2 -> 4 words + 4 specials */
    CHECK(imcap_vocab_size(v) == 8 && imcap_vocab_find(v, "runs") == 6);
    imcap_vocab_free(v);
    const char *bad = WRITE_TMP("bad.txt", "a.jpg\nq.jpg\n");
    snprintf(args, sizeof args, "vocab --captions '%s/v.csv' --split '%s' --out '%s/x.txt'", test_tmpdir(), bad,
             test_tmpdir());
    CHECK(run_imcap(args, out, sizeof out) == 1);
    CHECK(strstr(out, "bad.txt:2: image 'q.jpg' has no captions in") != NULL);
    CHECK(run_imcap("vocab --captions x.csv --min-count 0 --out y", out, sizeof out) == 2);
    CHECK(strstr(out, "--min-count") != NULL);
    CHECK(run_imcap("vocab --out y", out, sizeof out) == 2);
    CHECK(run_imcap("vocab --help", out, sizeof out) == 0 && strstr(out, "usage: imcap vocab") != NULL);
}

/* The tokenizer against the recipe's Python on 1207 captions (raw COCO
 * references and UTF-8 cases; scripts/golden-tokens.py). */
TEST(text_tokenizer_matches_python)
{
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file("tests/data/recipe_tokens.json", 1 << 22, &data, &len));
    cJSON *root = cJSON_ParseWithLength(data, len);
    free(data);
    REQUIRE(cJSON_IsArray(root));
    int n = 0, mismatches = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        const cJSON *raw = cJSON_GetArrayItem(it, 0), *want = cJSON_GetArrayItem(it, 1);
        REQUIRE(cJSON_IsString(raw) && cJSON_IsArray(want));
        char **tok;
        size_t nt;
        REQUIRE_OK(imcap_tokenize(raw->valuestring, &tok, &nt));
        int same = (int)nt == cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < nt; i++) same = strcmp(tok[i], cJSON_GetArrayItem(want, (int)i)->valuestring) == 0;
        if (!same && mismatches++ < 5) test_fail_at(__FILE__, __LINE__, "tokens of \"%s\" differ", raw->valuestring);
        free(tok);
        n++;
    }
    CHECK(n == 1207);
    CHECK(mismatches == 0);
    cJSON_Delete(root);
}
