/*
 * test_faults_cli.c - writers of the CLI under injected faults
 * (IMCAP_TEST_FAULT=KIND:N, tools/cli.c): the HTML report, eval's results
 * file and caption's WAV. A failed open / write /
 * fsync / rename exits non-zero with a message naming the file, the
 * previous file stays as it was and no temp file is left behind.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs(text, fp);
    REQUIRE(fclose(fp) == 0);
}

static int temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    REQUIRE(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* Runs cmd (which writes out) under each fault kind at the first matching
 * operation after the previous contents "OLD" were put in place. */
static void sweep(const char *cmd, const char *out)
{
    static const char *const kinds[] = {"open", "write", "fsync", "rename"};
    char full[8192], err[8192];
    for (int k = 0; k < 4; k++) {
        write_text(out, "OLD\n");
        snprintf(full, sizeof full, "IMCAP_QUIET=1 IMCAP_TEST_FAULT=%s:1 %s", kinds[k], cmd);
        int rc = test_run(full, NULL, 0, err, sizeof err);
        if (rc == 0 || !strstr(err, out))
            test_fail_at(__FILE__, __LINE__, "%s fault: exit %d, stderr \"%s\"", kinds[k], rc, err);
        char *d;
        size_t n;
        REQUIRE_OK(imcap_read_file(out, 1 << 20, &d, &n));
        if (strcmp(d, "OLD\n")) test_fail_at(__FILE__, __LINE__, "%s fault: %s was changed", kinds[k], out);
        free(d);
        if (temp_files(test_tmpdir())) test_fail_at(__FILE__, __LINE__, "%s fault left a temp file", kinds[k]);
    }
    snprintf(full, sizeof full, "IMCAP_QUIET=1 %s", cmd);
    CHECK(test_run(full, NULL, 0, err, sizeof err) == 0);
    char *d;
    size_t n;
    REQUIRE_OK(imcap_read_file(out, 1 << 26, &d, &n));
    CHECK(n > 10 && strcmp(d, "OLD\n"));
    free(d);
}

TEST(faults_cli_report_eval_wav)
{
    struct stat st;
    if (stat("data/images/owl.jpg", &st) != 0) SKIP("sample photos not set up");
    char model[600], enc[600], dir[700], caps[800], split[800], out[800], cmd[6000];
    fixture_captioner(test_tmpdir(), 1, 2, model, enc);
    snprintf(dir, sizeof dir, "%s/images", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    char *d;
    size_t n;
    REQUIRE_OK(imcap_read_file("data/images/owl.jpg", 1 << 26, &d, &n));
    snprintf(out, sizeof out, "%s/owl.jpg", dir);
    FILE *fp = fopen(out, "wb");
    REQUIRE(fp && fwrite(d, 1, n, fp) == n && fclose(fp) == 0);
    free(d);
    snprintf(caps, sizeof caps, "%s/captions.csv", test_tmpdir());
    snprintf(split, sizeof split, "%s/split.txt", test_tmpdir());
    write_text(caps, "image,caption\nowl.jpg,an owl on a branch .\n");
    write_text(split, "owl.jpg\n");

    snprintf(out, sizeof out, "%s/report.html", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' report --model '%s' --split '%s' --captions '%s' --images '%s' -n 1 --out '%s'",
             test_imcap_bin(), model, split, caps, dir, out);
    sweep(cmd, out);

    snprintf(out, sizeof out, "%s/results.json", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' eval --model '%s' --split '%s' --captions '%s' --images '%s' --results-out '%s'",
             test_imcap_bin(), model, split, caps, dir, out);
    sweep(cmd, out);

    /* an output that cannot be written is refused before the work */
    char sub[800];
    snprintf(sub, sizeof sub, "%s/adir", test_tmpdir());
    REQUIRE(mkdir(sub, 0755) == 0);
    for (int k = 0; k < 2; k++) {
        char e2[8192];
        if (k == 0)
            snprintf(cmd, sizeof cmd, "IMCAP_QUIET=1 '%s' eval --model '%s' --split '%s' --captions '%s' --images '%s' "
                     "--results-out '%s'", test_imcap_bin(), model, split, caps, dir, sub);
        else
            snprintf(cmd, sizeof cmd, "IMCAP_QUIET=1 '%s' report --model '%s' --split '%s' --captions '%s' --images '%s' "
                     "-n 1 --out '%s'", test_imcap_bin(), model, split, caps, dir, sub);
        CHECK(test_run(cmd, NULL, 0, e2, sizeof e2) != 0);
        CHECK(strstr(e2, sub) && strstr(e2, "directory"));
    }

    snprintf(out, sizeof out, "%s/say.wav", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' caption --model '%s' --wav '%s' '%s/owl.jpg'", test_imcap_bin(), model, out, dir);
    sweep(cmd, out);
}
