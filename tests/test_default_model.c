/*
 * test_default_model.c - the committed models/default.imcap works with the
 * encoder a fresh machine converts from the public TFLite file (setup.sh's
 * path): the recorded encoder checksum must match what our converter writes.
 */
#include "test.h"
#include "internal.h"

#include <sys/stat.h>

TEST(default_model_captions_with_a_freshly_converted_encoder)
{
    char tflite[1024], enc[700], cmd[4096], out[4096], err[4096];
    snprintf(tflite, sizeof tflite, "data/models/mobilenet_edgetpu_224_1.0_uint8.tflite");
    struct stat st;
    REQUIRE(stat("models/default.imcap", &st) == 0);
    REQUIRE(stat(tflite, &st) == 0);
    snprintf(enc, sizeof enc, "%s/mobilenet_edgetpu_224_1.0_uint8.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tflite %s --out %s", test_imcap_bin(), tflite, enc);
    REQUIRE(test_run(cmd, NULL, 0, err, sizeof err) == 0);
    snprintf(cmd, sizeof cmd, "IMCAP_QUIET=1 '%s' caption --model models/default.imcap --encoder %s "
             "data/images/pets.jpg data/images/grace_hopper.bmp", test_imcap_bin(), enc);
    int rc = test_run(cmd, out, sizeof out, err, sizeof err);
    if (rc != 0) fprintf(stderr, "    %s\n", err);
    REQUIRE(rc == 0);
    /* Two lines "path<TAB>caption" with a caption of a few words each. */
    char *pets = strstr(out, "data/images/pets.jpg\t");
    char *grace = strstr(out, "data/images/grace_hopper.bmp\t");
    REQUIRE(pets && grace);
    char *words = pets + strlen("data/images/pets.jpg\t");
    int n = 0;
    for (char *p = words; *p && *p != '\n'; p++) n += (*p == ' ');
    CHECK(n >= 2);
    /* The pets photo shows dogs and cats; the model knows dogs. */
    CHECK(strstr(words, "dog") != NULL);
}

/* The decoder interface changed nothing: the committed model gives exactly
 * the captions recorded in tests/data/default_model_captions.txt (greedy,
 * then beam 3, for the sample photos) before the interface existed. */
TEST(default_model_captions_are_unchanged)
{
    char tflite[1024], enc[700], cmd[4096], err[4096];
    static char out[16384];
    snprintf(tflite, sizeof tflite, "data/models/mobilenet_edgetpu_224_1.0_uint8.tflite");
    struct stat st;
    REQUIRE(stat("models/default.imcap", &st) == 0);
    REQUIRE(stat(tflite, &st) == 0);
    snprintf(enc, sizeof enc, "%s/mobilenet_edgetpu_224_1.0_uint8.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tflite %s --out %s", test_imcap_bin(), tflite, enc);
    REQUIRE(test_run(cmd, NULL, 0, err, sizeof err) == 0);
    snprintf(cmd, sizeof cmd,
             "export IMCAP_QUIET=1; '%s' caption --threads 1 --beam 1 --model models/default.imcap --encoder %s "
             "data/images/ && '%s' caption --threads 1 --beam 3 --model models/default.imcap --encoder %s data/images/",
             test_imcap_bin(), enc, test_imcap_bin(), enc);
    int rc = test_run(cmd, out, sizeof out, err, sizeof err);
    if (rc != 0) fprintf(stderr, "    %s\n", err);
    REQUIRE(rc == 0);
    char *want;
    size_t len;
    REQUIRE_OK(imcap_read_file(test_path("tests/data/default_model_captions.txt"), 1 << 20, &want, &len));
    if (strcmp(out, want) != 0) fprintf(stderr, "    got:\n%s    want:\n%s", out, want);
    CHECK(strcmp(out, want) == 0);
    free(want);
}
