/*
 * test_report_cli.c - `imcap report` with the tiny fixture model: a
 * self-contained page (photos as data URIs, escaped captions, loss plot),
 * and a missing photo reported and skipped.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_quiet(const char *cmd, char *err, size_t cap)
{
    char full[8192];
    snprintf(full, sizeof full, "IMCAP_QUIET=1 %s", cmd);
    return test_run(full, NULL, 0, err, cap);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fputs(text, fp);
    fclose(fp);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

TEST(report_cli_self_contained_page)
{
    struct stat st;
    if (stat("data/flickr8k/images/1000268201_693b08cb0e.jpg", &st) != 0) SKIP("Flickr8k images not set up");
    char model[600], enc[600], dir[700], p[800], cmd[4096], err[8192];
    fixture_captioner(test_tmpdir(), 1, 2, model, enc);
    snprintf(dir, sizeof dir, "%s/images", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    const char *imgs[2] = {"1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg"};
    for (int i = 0; i < 2; i++) {
        char src[300], *d;
        size_t n;
        snprintf(src, sizeof src, "data/flickr8k/images/%s", imgs[i]);
        REQUIRE_OK(imcap_read_file(src, 1 << 26, &d, &n));
        snprintf(p, sizeof p, "%s/%s", dir, imgs[i]);
        FILE *fp = fopen(p, "wb");
        REQUIRE(fp && fwrite(d, 1, n, fp) == n);
        fclose(fp);
        free(d);
    }
    char caps[800], split[800], svg[800], out[800];
    snprintf(caps, sizeof caps, "%s/captions.csv", test_tmpdir());
    snprintf(split, sizeof split, "%s/split.txt", test_tmpdir());
    snprintf(svg, sizeof svg, "%s/loss.svg", test_tmpdir());
    snprintf(out, sizeof out, "%s/report.html", test_tmpdir());
    write_text(caps, "image,caption\n"
                     "1000268201_693b08cb0e.jpg,A child in a pink dress <climbing> stairs .\n"
                     "1000268201_693b08cb0e.jpg,\"A girl going into a wooden building , \"\"hello\"\" .\"\n"
                     "1001773457_577c3a7d70.jpg,A black dog and a spotted dog are fighting\n"
                     "missing_photo.jpg,a photo that is not there\n");
    write_text(split, "1000268201_693b08cb0e.jpg\nmissing_photo.jpg\n1001773457_577c3a7d70.jpg\n");
    write_text(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>\n");
    snprintf(cmd, sizeof cmd, "'%s' report --model '%s' --split '%s' --captions '%s' -n 3 --out '%s' --history '%s'",
             test_imcap_bin(), model, split, caps, out, svg);
    CHECK(run_quiet(cmd, err, sizeof err) == 1); /* one photo is missing */
    CHECK(strstr(err, "missing_photo.jpg") != NULL);
    char *html;
    size_t len;
    REQUIRE_OK(imcap_read_file(out, 1 << 26, &html, &len));
    CHECK(!strncmp(html, "<!DOCTYPE html>", 15));
    CHECK(count(html, "src=\"data:image/jpeg;base64,") == 2);
    CHECK(count(html, "data:image/svg+xml;base64,") == 1);
    CHECK(strstr(html, "&lt;climbing&gt;") != NULL && strstr(html, "<climbing>") == NULL);
    CHECK(strstr(html, "&quot;hello&quot;") != NULL);
    CHECK(strstr(html, "spotted dog are fighting") != NULL);
    CHECK(strstr(html, "beam search, 2 beams") != NULL);
    CHECK(strstr(html, "CIDEr-D") != NULL && strstr(html, "%CIDER") == NULL);
    /* Self-contained: nothing is fetched from elsewhere. */
    CHECK(strstr(html, "src=\"http") == NULL && strstr(html, "href=") == NULL && strstr(html, "src=\"/") == NULL);
    free(html);

    /* Without a loss history the page says so; with all photos present the exit status is 0. */
    write_text(split, "1000268201_693b08cb0e.jpg\n");
    snprintf(cmd, sizeof cmd, "'%s' report --model '%s' --split '%s' --captions '%s' --out '%s'", test_imcap_bin(), model,
             split, caps, out);
    CHECK(run_quiet(cmd, err, sizeof err) == 0);
    REQUIRE_OK(imcap_read_file(out, 1 << 26, &html, &len));
    CHECK(strstr(html, "No loss history found") != NULL);
    CHECK(count(html, "src=\"data:image/jpeg;base64,") == 1);
    free(html);

    /* Bad inputs: clear errors, no page. */
    snprintf(cmd, sizeof cmd, "'%s' report --model '%s' --split '%s/nope.txt' --captions '%s' --out '%s/x.html'",
             test_imcap_bin(), model, test_tmpdir(), caps, test_tmpdir());
    CHECK(run_quiet(cmd, err, sizeof err) == 1 && strstr(err, "nope.txt") != NULL);
    snprintf(p, sizeof p, "%s/x.html", test_tmpdir());
    CHECK(stat(p, &st) != 0);
}
