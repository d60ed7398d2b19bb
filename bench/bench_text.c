/*
 * bench_text.c - the caption text pipeline on Flickr8k: load the CSV (35000
 * captions), restrict to the train split, build the vocabulary (min count 5),
 * encode every training caption (batcher set-up) and draw 1000 batches of 64
 * (max length 20). Best of R runs of each stage; scripts/bench-text.sh runs
 * the Python recipe peer (scripts/text_peer.py) on the same work.
 * usage: bench_text DATA_DIR [R]
 */
#include "imcap.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_text: %s: %s\n", what, imcap_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data/flickr8k";
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1) reps = 1;
    char csv[1024], split[1024];
    snprintf(csv, sizeof csv, "%s/captions.csv", dir);
    snprintf(split, sizeof split, "%s/train.txt", dir);
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    size_t vocab_size = 0;
    long checksum = 0;
    for (int r = 0; r < reps; r++) {
        imcap_captions *all, *train;
        imcap_vocab *v;
        imcap_batcher *b;
        double t0 = now();
        if (imcap_captions_load_csv(csv, &all)) die("load");
        if (imcap_captions_restrict(all, split, &train)) die("restrict");
        double t1 = now();
        if (imcap_vocab_build(train, IMCAP_VOCAB_MIN_COUNT, &v)) die("vocab");
        double t2 = now();
        if (imcap_batcher_new(train, v, IMCAP_BATCH_MAX_LEN, 42, &b)) die("batcher");
        double t3 = now();
        int32_t images[64], tokens[64 * IMCAP_BATCH_MAX_LEN];
        size_t w;
        for (int i = 0; i < 1000; i++) {
            if (imcap_batcher_next(b, 64, images, tokens, &w)) die("batch");
            checksum += tokens[63 * (long)w + 1] + images[0];
        }
        double t4 = now();
        double t[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
        for (int k = 0; k < 4; k++)
            if (t[k] < best[k]) best[k] = t[k];
        vocab_size = imcap_vocab_size(v);
        imcap_batcher_free(b);
        imcap_vocab_free(v);
        imcap_captions_free(train);
        imcap_captions_free(all);
    }
    printf("vocab_size %zu (checksum %ld)\n", vocab_size, checksum);
    printf("c_load_restrict_seconds %.6f\n", best[0]);
    printf("c_vocab_seconds %.6f\n", best[1]);
    printf("c_encode_all_seconds %.6f\n", best[2]);
    printf("c_1000_batches_seconds %.6f\n", best[3]);
    return 0;
}
