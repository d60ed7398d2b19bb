/*
 * bench_metrics.c - time of the COCO caption metrics on the 1000-image
 * oracle (data/coco-fakecap): scoring the toolkit-tokenized captions
 * (BLEU-1..4 + ROUGE-L + CIDEr-D, the work scripts/coco_metrics_peer.py
 * bench does), and PTB-tokenizing the 5005 raw captions of the oracle
 * (tokenizer_pairs.json + results.json).
 *
 * usage: bench_metrics [DIR [REPEATS]]     (default data/coco-fakecap, 20)
 * prints "c_score_seconds S" (best of REPEATS), "c_tokenize_seconds T" and
 * "c_tokenize_captions_per_s R".
 */
#define _POSIX_C_SOURCE 200809L
#include "imcap.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cJSON *load(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "bench_metrics: cannot open %s\n", path);
        exit(1);
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fprintf(stderr, "bench_metrics: cannot read %s\n", path);
        exit(1);
    }
    fclose(fp);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j) {
        fprintf(stderr, "bench_metrics: %s: malformed JSON\n", path);
        exit(1);
    }
    return j;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data/coco-fakecap";
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (reps < 1) reps = 1;
    cJSON *refs = load(dir, "refs_tokenized.json");
    size_t n = (size_t)cJSON_GetArraySize(refs), i = 0;
    imcap_score_item *items = calloc(n, sizeof *items);
    if (!items) return 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, refs)
    {
        const cJSON *r = cJSON_GetObjectItem(e, "refs"), *s;
        const char **rr = calloc((size_t)cJSON_GetArraySize(r), sizeof *rr);
        size_t k = 0;
        cJSON_ArrayForEach(s, r) rr[k++] = s->valuestring;
        items[i].candidate = cJSON_GetObjectItem(e, "test")->valuestring;
        items[i].refs = rr;
        items[i].n_refs = k;
        i++;
    }
    imcap_scores sc;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        if (imcap_score(items, n, 0, &sc, NULL, NULL) != IMCAP_OK) {
            fprintf(stderr, "bench_metrics: %s\n", imcap_last_error());
            return 1;
        }
        t = now() - t;
        if (t < best) best = t;
    }
    printf("c_score_seconds %.6f  (images %zu, Bleu_4 %.7f, CIDEr %.7f)\n", best, n, sc.bleu[3], sc.cider_d);

    cJSON *pairs = load(dir, "tokenizer_pairs.json"), *res = load(dir, "results.json");
    size_t ncap = 0;
    double tbest = 1e30;
    for (int r = 0; r < reps; r++) {
        ncap = 0;
        double t = now();
        const cJSON *lists[2] = {pairs, res};
        const char *keys[2] = {"raw", "caption"};
        for (int l = 0; l < 2; l++)
            cJSON_ArrayForEach(e, lists[l])
            {
                char *out;
                if (imcap_ptb_tokenize(cJSON_GetObjectItem(e, keys[l])->valuestring, &out) != IMCAP_OK) return 1;
                free(out);
                ncap++;
            }
        t = now() - t;
        if (t < tbest) tbest = t;
    }
    printf("c_tokenize_seconds %.6f  (captions %zu)\nc_tokenize_captions_per_s %.0f\n", tbest, ncap,
           (double)ncap / tbest);
    for (i = 0; i < n; i++) free((void *)items[i].refs);
    free(items);
    cJSON_Delete(refs);
    cJSON_Delete(pairs);
    cJSON_Delete(res);
    return 0;
}
