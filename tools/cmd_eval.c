/* cmd_eval.c - `imcap eval`: caption a split and print the COCO metric table. */
#include "cli.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void eval_usage(FILE *fp)
{
    fprintf(fp,
            "usage: imcap eval --model M --split dev.txt --captions captions.csv [options]\n\n"
            "Captions every image of the split and scores the captions against the split's reference\n"
            "captions exactly as the COCO caption toolkit does (PTB tokenization, Bleu_1..Bleu_4,\n"
            "ROUGE_L, CIDEr = CIDEr-D).\n"
            "  --model M          captioner model file (imcap export); with --embeddings: a decoder\n"
            "                     model or training checkpoint (imcap train); several, comma-separated:\n"
            "                     their ensemble (the mean of their next-word distributions)\n"
            "  --encoder E        the captioner's encoder file (default: the one the model names)\n"
            "  --precision P      encoder arithmetic: int8, float, bf16 or auto (default)\n"
            "  --embeddings F     generate from these precomputed embeddings (imcap extract) instead\n"
            "                     of running the encoder on the photos\n"
            "  --images DIR       photo directory (default: images/ beside the split file)\n"
            "  --split FILE       images to evaluate, one name a line\n"
            "  --captions FILE    reference captions: Flickr8k CSV, token file or COCO JSON\n"
            "  --beam K           beam width (default: the model's setting; 1 = greedy)\n"
            "  --max-len N        maximum caption words (default: the model's setting)\n"
            "  --alpha A          beam length normalisation exponent (default: the model's setting)\n"
            "  --block-ngram N    beam search: no N-gram twice in a caption (0: off; default: the model's)\n"
            "  --threads N        captioning threads (default 2)\n"
            "  --results-out R    also write the captions as COCO results JSON\n"
            "                     ([{\"image_id\": name, \"caption\": ...}]; `imcap score` reads it)\n"
            "  --json             print one JSON object instead of the table\n"
            "  --quiet            no progress line\n"
            "Under mpirun -np N, rank R captions the images i mod N = R; rank 0 prints the one table.\n");
}

static int write_results(const char *path, const imcap_eval_result *r)
{
    cJSON *a = cJSON_CreateArray();
    if (!a) return 1;
    for (size_t i = 0; i < r->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "image_id", r->names[i]) ||
            !cJSON_AddStringToObject(o, "caption", r->captions[i])) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return 1;
        }
        cJSON_AddItemToArray(a, o);
    }
    char *text = cJSON_Print(a);
    cJSON_Delete(a);
    if (!text) return 1;
    size_t len = strlen(text);
    text[len] = '\n';
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (!s) s = imcap_atomic_write(&af, text, len + 1);
    if (!s) s = imcap_atomic_commit(&af);
    else imcap_atomic_abort(&af);
    free(text);
    return s ? cli_error("eval", s) : 0;
}

int cmd_eval(int argc, char **argv)
{
    imcap_eval_params p = imcap_eval_default_params();
    const char *results_out = NULL;
    int json = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (v && !strcmp(a, "--model")) {
            p.model = argv[++i];
        } else if (v && !strcmp(a, "--encoder")) {
            p.encoder = argv[++i];
        } else if (v && !strcmp(a, "--precision")) {
            imcap_precision pr;
            if (cli_parse_precision(a, argv[++i], &pr)) return 2;
            p.precision = pr;
        } else if (v && !strcmp(a, "--embeddings")) {
            p.embeddings = argv[++i];
        } else if (v && !strcmp(a, "--images")) {
            p.images = argv[++i];
        } else if (v && !strcmp(a, "--split")) {
            p.split = argv[++i];
        } else if (v && !strcmp(a, "--captions")) {
            p.captions = argv[++i];
        } else if (v && !strcmp(a, "--results-out")) {
            results_out = argv[++i];
        } else if (v && !strcmp(a, "--beam")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            p.beam = (int)n;
            i++;
        } else if (v && !strcmp(a, "--max-len")) {
            if (cli_parse_int(a, v, 1, 100, &n)) return 2;
            p.max_len = (int)n;
            i++;
        } else if (v && !strcmp(a, "--threads")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            p.threads = (int)n;
            i++;
        } else if (v && !strcmp(a, "--block-ngram")) {
            if (cli_parse_int(a, v, 0, 8, &n)) return 2;
            p.block_ngram = (int)n;
            i++;
        } else if (v && !strcmp(a, "--alpha")) {
            if (cli_parse_double(a, v, 0.0, 2.0, &x)) return 2;
            p.length_alpha = (float)x;
            i++;
        } else {
            fprintf(stderr, "imcap eval: unknown or incomplete option '%s'\n", a);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!p.model || !p.split || !p.captions) {
        fprintf(stderr, "imcap eval: --model, --split and --captions are required\n");
        eval_usage(stderr);
        return 2;
    }
    /* the results file is written after the whole split: check it can be, first */
    imcap_status ost = results_out ? imcap_check_output(results_out, "results") : IMCAP_OK;
    if (ost) return cli_error("eval", ost);
    cli_progress prog;
    cli_progress_init(&prog, "eval");
    prog.quiet = quiet;
    p.progress = cli_progress_fn;
    p.progress_user = &prog;
    p.comm = cli_comm();
    imcap_eval_result r;
    imcap_status st = imcap_eval(&p, &r);
    if (st) return cli_error("eval", st);
    /* under mpirun every rank holds all captions and scores; rank 0 writes and prints */
    if (p.comm->rank != 0) {
        imcap_eval_result_free(&r);
        return 0;
    }
    int bad = results_out ? write_results(results_out, &r) : 0;
    const char *decoding = r.gen.beam > 1 ? "beam" : "greedy";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            imcap_eval_result_free(&r);
            return cli_error("eval", IMCAP_E_NOMEM);
        }
        for (int m = 0; m < IMCAP_N_METRICS; m++)
            cJSON_AddNumberToObject(o, imcap_metric_name(m), imcap_metric_value(&r.scores, m));
        cJSON_AddNumberToObject(o, "images", (double)r.n);
        cJSON_AddStringToObject(o, "decoding", decoding);
        cJSON_AddNumberToObject(o, "beam", r.gen.beam);
        cJSON_AddNumberToObject(o, "max_len", r.gen.max_len);
        cJSON_AddNumberToObject(o, "length_alpha", r.gen.length_alpha);
        cJSON_AddNumberToObject(o, "block_ngram", r.gen.block_ngram);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text) {
            imcap_eval_result_free(&r);
            return cli_error("eval", IMCAP_E_NOMEM);
        }
        printf("%s\n", text);
        free(text);
    } else {
        printf("images: %zu, decoding: %s (beam %d, max %d words, length alpha %g), %.1f s\n", r.n, decoding,
               r.gen.beam, r.gen.max_len, r.gen.length_alpha, r.seconds);
        for (int m = 0; m < IMCAP_N_METRICS; m++)
            printf("%s: %.6f\n", imcap_metric_name(m), imcap_metric_value(&r.scores, m));
    }
    imcap_eval_result_free(&r);
    if (fflush(stdout) != 0) return 1;
    return bad;
}
