/* cmd_score.c - `imcap score`: the COCO caption metrics of a results file. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void score_usage(FILE *fp)
{
    fprintf(fp,
            "usage: imcap score --results R.json --refs refs.json [--json]\n\n"
            "Scores captions exactly as the COCO caption toolkit (coco-caption) does: PTB\n"
            "tokenization, then Bleu_1..Bleu_4, ROUGE_L and CIDEr (CIDEr-D).\n"
            "  --results R.json   COCO results: [{\"image_id\": ..., \"caption\": \"...\"}, ...]\n"
            "  --refs refs.json   COCO captions annotations: {\"annotations\": [{\"image_id\", \"caption\"}, ...]}\n"
            "                     (only images that have a result are evaluated)\n"
            "  --json             print one JSON object instead of a table\n");
}

int cmd_score(int argc, char **argv)
{
    const char *results = NULL, *refs = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            score_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if ((!strcmp(argv[i], "--results") || !strcmp(argv[i], "--refs")) && i + 1 < argc) {
            if (!strcmp(argv[i], "--results")) results = argv[++i];
            else refs = argv[++i];
        } else {
            fprintf(stderr, "imcap score: unknown or incomplete option '%s'\n", argv[i]);
            score_usage(stderr);
            return 2;
        }
    }
    if (!results || !refs) {
        fprintf(stderr, "imcap score: both --results and --refs are required\n");
        score_usage(stderr);
        return 2;
    }
    imcap_scores s;
    imcap_status st = imcap_score_coco_files(results, refs, &s);
    if (st != IMCAP_OK) return cli_error("score", st);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (!o) return cli_error("score", IMCAP_E_NOMEM);
        for (int m = 0; m < IMCAP_N_METRICS; m++) cJSON_AddNumberToObject(o, imcap_metric_name(m), imcap_metric_value(&s, m));
        cJSON_AddNumberToObject(o, "images", (double)s.n_images);
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text) return cli_error("score", IMCAP_E_NOMEM);
        printf("%s\n", text);
        free(text);
    } else {
        for (int m = 0; m < IMCAP_N_METRICS; m++) printf("%s: %.6f\n", imcap_metric_name(m), imcap_metric_value(&s, m));
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
