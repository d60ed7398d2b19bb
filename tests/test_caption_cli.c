/*
 * test_caption_cli.c - `imcap caption` end to end with the tiny fixture
 * model: text and JSON output, directories and stdin lists, a corrupt image
 * among good ones, WAV files, speech without an audio device, bad flags.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void need_photos(void)
{
    struct stat st;
    if (stat("data/images/owl.jpg", &st) != 0) SKIP("sample photos (data/images) are not set up");
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Copies src to dst (for a directory of known content). */
static void copy_file(const char *src, const char *dst)
{
    char *d;
    size_t n;
    REQUIRE_OK(imcap_read_file(src, 1 << 26, &d, &n));
    FILE *fp = fopen(dst, "wb");
    REQUIRE(fp && fwrite(d, 1, n, fp) == n);
    fclose(fp);
    free(d);
}

TEST(caption_cli_text_skips_a_corrupt_image_and_fails)
{
    need_photos();
    char model[600], enc[600], bad[700], cmd[4096], out[16384], err[8192];
    fixture_captioner(test_tmpdir(), 1, 1, model, enc);
    snprintf(bad, sizeof bad, "%s/corrupt.jpg", test_tmpdir());
    FILE *fp = fopen(bad, "wb");
    REQUIRE(fp);
    fputs("\xff\xd8\xff\xe0 truncated", fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' data/images/owl.jpg '%s' data/images/parrot.jpg",
             test_imcap_bin(), model, bad);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1);
    CHECK(count_lines(out) == 2);
    CHECK(!strncmp(out, "data/images/owl.jpg\t", 20));
    CHECK(strstr(out, "\ndata/images/parrot.jpg\t") != NULL);
    CHECK(strstr(err, "corrupt.jpg") != NULL);
    CHECK(strstr(err, "1 of 3 images failed") != NULL);

    /* The caption is the library's. */
    imcap_captioner *c;
    imcap_caption *cap;
    REQUIRE_OK(imcap_captioner_load(model, NULL, &c));
    REQUIRE_OK(imcap_caption_file(c, "data/images/owl.jpg", NULL, &cap));
    char line[600];
    snprintf(line, sizeof line, "data/images/owl.jpg\t%s\n", cap->alt[0].text);
    CHECK(!strncmp(out, line, strlen(line)));
    imcap_caption_free(cap);
    imcap_captioner_free(c);

    /* All good: exit status 0. */
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --threads 1 data/images/owl.jpg", test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(count_lines(out) == 1);
}

TEST(caption_cli_directory_and_stdin_list)
{
    need_photos();
    char model[600], enc[600], dir[700], cmd[4096], out[16384], err[8192], p[800];
    fixture_captioner(test_tmpdir(), 2, 1, model, enc);
    snprintf(dir, sizeof dir, "%s/photos", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    const char *names[3] = {"b.JPG", "a.jpg", "c.bmp"};
    const char *src[3] = {"data/images/owl.jpg", "data/images/parrot.jpg", "data/images/grace_hopper.bmp"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        copy_file(src[i], p);
    }
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    copy_file("data/flickr8k/dev.txt", p); /* not an image name: ignored */
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' '%s'", test_imcap_bin(), model, dir);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(count_lines(out) == 3);
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/a.jpg\t", dir);
    snprintf(b, sizeof b, "%s/b.JPG\t", dir);
    char *pa = strstr(out, a), *pb = strstr(out, b);
    CHECK(pa == out && pb && pb > pa); /* sorted by name */

    snprintf(cmd, sizeof cmd, "printf 'data/images/owl.jpg\\n\\n  data/images/pets.jpg\\r\\n' | '%s' caption --model '%s' -",
             test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(count_lines(out) == 2 && strstr(out, "data/images/pets.jpg\t") != NULL);
}

TEST(caption_cli_json_with_alternatives_and_timings)
{
    need_photos();
    char model[600], enc[600], cmd[4096], out[32768], err[8192];
    fixture_captioner(test_tmpdir(), 3, 1, model, enc);
    snprintf(cmd, sizeof cmd,
             "'%s' caption --model '%s' --json --n-best 3 data/images/owl.jpg nonexistent.jpg data/images/pets.jpg",
             test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(err, "nonexistent.jpg") != NULL);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j && cJSON_IsArray(j));
    CHECK(cJSON_GetArraySize(j) == 2);
    cJSON *o = cJSON_GetArrayItem(j, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "path")), "data/images/pets.jpg");
    cJSON *alts = cJSON_GetObjectItem(o, "alternatives");
    REQUIRE(cJSON_GetArraySize(alts) == 3);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "caption")),
              cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 0), "caption")));
    double s0 = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 0), "score"));
    double s2 = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(alts, 2), "score"));
    CHECK(s0 >= s2);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "logprob")) < 0);
    cJSON *t = cJSON_GetObjectItem(o, "timings_ms");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "total")) > 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "encode")) > 0);
    cJSON_Delete(j);

    /* Text with n-best: rank and log-probability columns. */
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --beam 4 --n-best 2 data/images/owl.jpg", test_imcap_bin(),
             model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(count_lines(out) == 2 && !strncmp(out, "data/images/owl.jpg\t1\t-", 23));
    CHECK(strstr(out, "\ndata/images/owl.jpg\t2\t-") != NULL);

    /* Sampling: same seed, same output; JSON of a single failure is an empty array. */
    char out2[32768];
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --temperature 1.5 --seed 9 --n-best 3 data/images/owl.jpg",
             test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(test_run(cmd, out2, sizeof out2, err, sizeof err) == 0);
    CHECK_STR(out, out2);
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --json nothing.png", test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1);
    j = cJSON_Parse(out);
    CHECK(j && cJSON_IsArray(j) && cJSON_GetArraySize(j) == 0);
    cJSON_Delete(j);
}

static long wav_samples(const char *path)
{
    char *d;
    size_t n;
    if (imcap_read_file(path, 1 << 26, &d, &n)) return -1;
    long r = n > 44 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WAVE", 4) ? (long)(n - 44) / 2 : -1;
    free(d);
    return r;
}

TEST(caption_cli_wav_files_and_speech_errors)
{
    need_photos();
    char model[600], enc[600], cmd[4096], out[16384], err[8192], p[800];
    fixture_captioner(test_tmpdir(), 4, 1, model, enc);
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --wav '%s/say.wav' --voice en-us --rate 200 "
             "data/images/owl.jpg data/images/pets.jpg", test_imcap_bin(), model, test_tmpdir());
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    snprintf(p, sizeof p, "%s/say-1.wav", test_tmpdir());
    CHECK(wav_samples(p) > 22050 / 2);
    snprintf(p, sizeof p, "%s/say-2.wav", test_tmpdir());
    CHECK(wav_samples(p) > 22050 / 2);
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --wav '%s/cap-%%03d.wav' data/images/owl.jpg",
             test_imcap_bin(), model, test_tmpdir());
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    snprintf(p, sizeof p, "%s/cap-001.wav", test_tmpdir());
    CHECK(wav_samples(p) > 0);
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --wav '%s/x%%s.wav' data/images/owl.jpg", test_imcap_bin(),
             model, test_tmpdir());
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 2 && strstr(err, "%d"));
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --wav '%s/v.wav' --voice zz-nonexistent data/images/owl.jpg",
             test_imcap_bin(), model, test_tmpdir());
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1 && strstr(err, "zz-nonexistent"));
    CHECK(count_lines(out) == 1); /* the caption is still printed */

    struct stat st;
    if (stat("/dev/snd", &st) == 0) SKIP("this machine has sound devices");
    snprintf(cmd, sizeof cmd, "env -u PULSE_SERVER XDG_RUNTIME_DIR='%s' '%s' caption --model '%s' --speak "
             "data/images/owl.jpg data/images/pets.jpg", test_tmpdir(), test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(err, "no audio output device") != NULL);
    CHECK(count_lines(out) == 2);
}

TEST(caption_cli_bad_usage_and_missing_model)
{
    char model[600], enc[600], cmd[4096], out[8192], err[8192];
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s/none.imcap' data/images/owl.jpg", test_imcap_bin(), test_tmpdir());
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(err, "no captioning model at") != NULL && strstr(err, "none.imcap") != NULL);
    fixture_captioner(test_tmpdir(), 5, 1, model, enc);
    const char *bad[] = {"--beam 0", "--beam 3 --temperature 0.5", "--max-len 0", "--temperature -1",
                         "--n-best 5 --beam 2", "--seed -3", "--rate 5", "--frobnicate 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' %s data/images/owl.jpg", test_imcap_bin(), model, bad[i]);
        int rc = test_run(cmd, out, sizeof out, err, sizeof err);
        CHECK(rc == 2);
        if (rc != 2) fprintf(stderr, "    flags: %s\n", bad[i]);
        CHECK(out[0] == 0 && err[0] != 0);
    }
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s'", test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 2 && strstr(err, "no images"));
}

TEST(export_cli_makes_a_model_caption_can_use)
{
    need_photos();
    char ckpt[700], enc[700], model[700], cmd[4096], out[8192], err[8192];
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 3, &v);
    snprintf(ckpt, sizeof ckpt, "%s/decoder.gguf", test_tmpdir());
    snprintf(enc, sizeof enc, "%s/tiny.gguf", test_tmpdir());
    snprintf(model, sizeof model, "%s/m.imcap", test_tmpdir());
    REQUIRE_OK(dec_save(ckpt, m, v));
    enc_graph *g = fixture_encoder("tiny", 2);
    REQUIRE_OK(enc_graph_save(g, enc));
    enc_graph_free(g);
    dec_model_free(m);
    imcap_vocab_free(v);

    snprintf(cmd, sizeof cmd, "'%s' export --checkpoint '%s' --encoder '%s' --beam 2 --max-len 7 --out '%s'",
             test_imcap_bin(), ckpt, enc, model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(strstr(err, "7-word vocabulary") != NULL && strstr(err, "default beam 2") != NULL);
    /* The encoder sits next to the model, so caption finds it by name. */
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --json data/images/owl.jpg", test_imcap_bin(), model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j && cJSON_GetArraySize(j) == 1);
    const cJSON *alt = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "alternatives"), 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(alt, "words")) <= 7);
    cJSON_Delete(j);

    snprintf(cmd, sizeof cmd, "'%s' export --checkpoint '%s' --out '%s'", test_imcap_bin(), ckpt, model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 2 && strstr(err, "required"));
    snprintf(cmd, sizeof cmd, "'%s' export --checkpoint '%s/none.gguf' --encoder '%s' --out '%s'", test_imcap_bin(),
             test_tmpdir(), enc, model);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 1 && strstr(err, "none.gguf"));
}
