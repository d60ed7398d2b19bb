/* caption_json.c - one caption result as JSON, the same fields for
 * `imcap caption --json` and `imcap serve` (POST /v1/caption). */
#include "cli.h"

#include <cjson/cJSON.h>

cJSON *cli_caption_json(const char *path, const imcap_caption *cap)
{
    cJSON *o = cJSON_CreateObject();
    if (path) cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "caption", cap->alt[0].text);
    cJSON_AddNumberToObject(o, "logprob", cap->alt[0].logprob);
    cJSON_AddNumberToObject(o, "score", cap->alt[0].score);
    cJSON *alts = cJSON_AddArrayToObject(o, "alternatives");
    for (int i = 0; i < cap->n_alt; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "caption", cap->alt[i].text);
        cJSON_AddNumberToObject(a, "logprob", cap->alt[i].logprob);
        cJSON_AddNumberToObject(a, "score", cap->alt[i].score);
        cJSON_AddNumberToObject(a, "words", cap->alt[i].n_words);
        cJSON_AddBoolToObject(a, "ended", cap->alt[i].ended);
        cJSON_AddItemToArray(alts, a);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timings_ms");
    cJSON_AddNumberToObject(t, "decode", 1e3 * cap->t_decode);
    cJSON_AddNumberToObject(t, "encode", 1e3 * cap->t_encode);
    cJSON_AddNumberToObject(t, "generate", 1e3 * cap->t_generate);
    cJSON_AddNumberToObject(t, "total", 1e3 * (cap->t_decode + cap->t_encode + cap->t_generate));
    return o;
}
