/* caption_json.c - one caption result as JSON, the same fields for
 * `imcap caption --json` and `imcap serve` (POST /v1/caption). */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* Attention models: "attention", one entry per word: the word and its
 * grid_rows * grid_cols weights, row-major over the grid. */
static void add_attention(cJSON *o, const imcap_caption *cap, const imcap_caption_alt *a)
{
    if (!a->attention || cap->grid_rows < 1) return;
    const int L = cap->grid_rows * cap->grid_cols;
    cJSON *words = cJSON_AddArrayToObject(o, "attention");
    const char *p = a->text;
    for (int i = 0; i < a->n_words; i++) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char word[256];
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), p);
        cJSON *w = cJSON_CreateObject();
        cJSON_AddStringToObject(w, "word", word);
        cJSON *wt = cJSON_AddArrayToObject(w, "weights");
        for (int k = 0; k < L; k++) cJSON_AddItemToArray(wt, cJSON_CreateNumber(a->attention[(size_t)i * L + k]));
        cJSON_AddItemToArray(words, w);
        p = e ? e + 1 : p + n;
    }
}

cJSON *cli_caption_json(const char *path, const imcap_caption *cap)
{
    cJSON *o = cJSON_CreateObject();
    if (path) cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "caption", cap->alt[0].text);
    cJSON_AddNumberToObject(o, "logprob", cap->alt[0].logprob);
    cJSON_AddNumberToObject(o, "score", cap->alt[0].score);
    if (cap->grid_rows > 0) {
        cJSON *g = cJSON_AddArrayToObject(o, "grid");
        cJSON_AddItemToArray(g, cJSON_CreateNumber(cap->grid_rows));
        cJSON_AddItemToArray(g, cJSON_CreateNumber(cap->grid_cols));
    }
    add_attention(o, cap, &cap->alt[0]);
    cJSON *alts = cJSON_AddArrayToObject(o, "alternatives");
    for (int i = 0; i < cap->n_alt; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "caption", cap->alt[i].text);
        cJSON_AddNumberToObject(a, "logprob", cap->alt[i].logprob);
        cJSON_AddNumberToObject(a, "score", cap->alt[i].score);
        cJSON_AddNumberToObject(a, "words", cap->alt[i].n_words);
        cJSON_AddBoolToObject(a, "ended", cap->alt[i].ended);
        add_attention(a, cap, &cap->alt[i]);
        cJSON_AddItemToArray(alts, a);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timings_ms");
    cJSON_AddNumberToObject(t, "decode", 1e3 * cap->t_decode);
    cJSON_AddNumberToObject(t, "encode", 1e3 * cap->t_encode);
    cJSON_AddNumberToObject(t, "generate", 1e3 * cap->t_generate);
    cJSON_AddNumberToObject(t, "total", 1e3 * (cap->t_decode + cap->t_encode + cap->t_generate));
    return o;
}
