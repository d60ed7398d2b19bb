/*
 * test_tflite_cli.c - `imcap convert --tflite` and `imcap classify` end to
 * end: the converted file classifies the sample photos like the direct
 * import, and bad arguments, labels and images give clear errors.
 */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs the tool with args; stdout into out, stderr into err; exit status. */
static int imcap(const char *args, char *out, size_t out_cap, char *err, size_t err_cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", test_imcap_bin(), args);
    return test_run(cmd, out, out_cap, err, err_cap);
}

TEST(tflite_cli_convert_then_classify)
{
    static char out[1 << 16], err[1 << 14], out2[1 << 16], args[4096];
    const char *dir = test_tmpdir();
    snprintf(args, sizeof args, "convert --tflite data/models/mobilenet_v2_1.0_224_quant.tflite --out %s/v2.gguf",
             dir);
    CHECK(imcap(args, out, sizeof out, err, sizeof err) == 0);
    CHECK(strstr(out, "output embedding  1x1x1280") != NULL);
    CHECK(strstr(out, "output logits     1x1x1001") != NULL);
    CHECK(strstr(out, "output probs      1x1x1001") != NULL);

    snprintf(args, sizeof args, "classify --encoder %s/v2.gguf data/images/parrot.jpg data/images/grace_hopper.bmp",
             dir);
    REQUIRE(imcap(args, out, sizeof out, err, sizeof err) == 0);
    /* image line, then 5 "prob index label" lines per image */
    const char *p = strstr(out, "data/images/parrot.jpg\n");
    REQUIRE(p);
    CHECK(strncmp(strchr(p, '\n') + 1, "  0.99", 6) == 0);
    CHECK(strstr(p, "89  macaw\n") != NULL);
    p = strstr(out, "data/images/grace_hopper.bmp\n");
    REQUIRE(p);
    CHECK(strstr(p, "653  military uniform\n") != NULL);

    /* The direct import prints the same. */
    CHECK(imcap("classify --tflite data/models/mobilenet_v2_1.0_224_quant.tflite data/images/parrot.jpg "
                "data/images/grace_hopper.bmp",
                out2, sizeof out2, err, sizeof err) == 0);
    CHECK_STR(out2, out);

    snprintf(args, sizeof args, "classify --encoder %s/v2.gguf --top 2 data/images/owl.jpg", dir);
    CHECK(imcap(args, out, sizeof out, err, sizeof err) == 0);
    int lines = 0;
    for (const char *s = out; *s; s++) lines += *s == '\n';
    CHECK(lines == 3);
}

TEST(tflite_cli_errors)
{
    static char out[1 << 14], err[1 << 14], args[4096];
    const char *dir = test_tmpdir();
    CHECK(imcap("classify --tflite data/models/mobilenet_v2_1.0_224_quant.tflite", out, sizeof out, err, sizeof err) == 2);
    CHECK(strstr(err, "no image") != NULL);
    CHECK(imcap("classify --tflite a.tflite --encoder b.gguf x.jpg", out, sizeof out, err, sizeof err) == 2);
    CHECK(imcap("classify --tflite data/models/mobilenet_v2_1.0_224_quant.tflite --top 0 data/images/owl.jpg", out,
                sizeof out, err, sizeof err) == 2);
    CHECK(strstr(err, "--top") != NULL);
    CHECK(imcap("classify --tflite data/models/no_such.tflite data/images/owl.jpg", out, sizeof out, err,
                sizeof err) == 1);
    CHECK(strstr(err, "no_such.tflite") != NULL);
    CHECK(imcap("convert --tflite data/models/imagenet_labels.txt --out x.gguf", out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(err, "imagenet_labels.txt: not a TFLite model") != NULL);
    CHECK(access("x.gguf", F_OK) != 0);
    CHECK(imcap("convert --out x.gguf", out, sizeof out, err, sizeof err) == 2);

    /* A labels file with the wrong number of lines. */
    char labels[600];
    snprintf(labels, sizeof labels, "%s/labels.txt", dir);
    FILE *fp = fopen(labels, "w");
    REQUIRE(fp);
    fputs("a\nb\nc\n", fp);
    fclose(fp);
    snprintf(args, sizeof args,
             "classify --tflite data/models/mobilenet_v2_1.0_224_quant.tflite --labels %s data/images/owl.jpg", labels);
    CHECK(imcap(args, out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(err, "labels.txt has 3 labels, the model has 1001 classes") != NULL);

    /* A corrupt image after a good one: the good one is printed, the error names the bad one. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.jpg", dir);
    fp = fopen(bad, "wb");
    REQUIRE(fp);
    fputs("\xff\xd8\xff\xe0 not really a jpeg", fp);
    fclose(fp);
    snprintf(args, sizeof args, "classify --tflite data/models/mobilenet_v2_1.0_224_quant.tflite data/images/owl.jpg %s",
             bad);
    CHECK(imcap(args, out, sizeof out, err, sizeof err) == 1);
    CHECK(strstr(out, "data/images/owl.jpg\n") != NULL);
    CHECK(strstr(err, "bad.jpg") != NULL);
}
