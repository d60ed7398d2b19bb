/*
 * metrics_coco.c - scoring COCO-format files: a results file
 * [{"image_id", "caption"}, ...] against a captions annotation file
 * {"annotations": [{"image_id", "caption"}, ...], ...}, as the toolkit's
 * COCOEvalCap does (only images that have a result are evaluated).
 */
#include "internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JSON_BYTES ((size_t)1 << 31)

typedef struct keyed {
    char key[96];          /* canonical image id: "n:<number>" or "s:<string>" */
    const char *caption;
    size_t index;          /* position in its file's array */
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Line and column of byte offset off in text. */
static void line_col(const char *text, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static imcap_status load_json(const char *path, char **text, cJSON **root)
{
    size_t len;
    *root = NULL;
    imcap_status st = imcap_read_file(path, MAX_JSON_BYTES, text, &len);
    if (st != IMCAP_OK) return st;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(*text, len, &end, 0);
    if (!*root) {
        size_t off = end && end >= *text && end <= *text + len ? (size_t)(end - *text) : 0;
        int line, col;
        line_col(*text, off, &line, &col);
        return imcap_fail(IMCAP_E_FORMAT, "%s:%d:%d: malformed JSON", path, line, col);
    }
    return IMCAP_OK;
}

/* Fill k from an {"image_id", "caption"} object; what names the entry. */
static imcap_status read_entry(const char *path, const char *what, size_t i, const cJSON *o, keyed *k)
{
    if (!cJSON_IsObject(o)) return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu is not an object", path, what, i);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "image_id");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(o, "caption");
    if (!id) return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu has no \"image_id\"", path, what, i);
    if (!cap) return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu has no \"caption\"", path, what, i);
    if (!cJSON_IsString(cap) || !cap->valuestring)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu: \"caption\" is not a string", path, what, i);
    if (cJSON_IsNumber(id)) {
        double v = id->valuedouble;
        if (!isfinite(v)) return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu: \"image_id\" is not finite", path, what, i);
        if (v == floor(v) && fabs(v) < 9.007199254740992e15) snprintf(k->key, sizeof k->key, "n:%.0f", v);
        else snprintf(k->key, sizeof k->key, "n:%.17g", v);
    } else if (cJSON_IsString(id) && id->valuestring) {
        if (strlen(id->valuestring) + 3 > sizeof k->key)
            return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu: \"image_id\" is longer than %zu characters", path,
                              what, i, sizeof k->key - 3);
        snprintf(k->key, sizeof k->key, "s:%s", id->valuestring);
    } else {
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s %zu: \"image_id\" is neither a number nor a string", path, what, i);
    }
    k->caption = cap->valuestring;
    k->index = i;
    return IMCAP_OK;
}

static imcap_status read_entries(const char *path, const char *what, const cJSON *arr, keyed **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t count = (size_t)cJSON_GetArraySize(arr);
    if (count == 0) return imcap_fail(IMCAP_E_FORMAT, "%s: no %ss", path, what);
    keyed *k = calloc(count, sizeof *k);
    if (!k) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for %zu %ss", path, count, what);
    size_t i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        imcap_status st = read_entry(path, what, i, o, &k[i]);
        if (st != IMCAP_OK) {
            free(k);
            return st;
        }
        i++;
    }
    qsort(k, count, sizeof *k, cmp_keyed);
    *out = k;
    *n = count;
    return IMCAP_OK;
}

/* The image id of a key for messages: "42" or "\"name.jpg\"". */
static void key_display(const char *key, char *buf, size_t n)
{
    if (key[0] == 's') snprintf(buf, n, "\"%s\"", key + 2);
    else snprintf(buf, n, "%s", key + 2);
}

imcap_status imcap_score_coco_files(const char *results_path, const char *refs_path, imcap_scores *out)
{
    if (!results_path || !refs_path || !out) return imcap_fail(IMCAP_E_ARG, "imcap_score_coco_files: NULL argument");
    memset(out, 0, sizeof *out);
    char *res_text = NULL, *ref_text = NULL;
    cJSON *res_root = NULL, *ref_root = NULL;
    keyed *res = NULL, *ann = NULL;
    size_t nres = 0, nann = 0;
    imcap_score_item *items = NULL;
    const char **refptr = NULL;
    imcap_status st = load_json(results_path, &res_text, &res_root);
    if (st != IMCAP_OK) goto done;
    st = load_json(refs_path, &ref_text, &ref_root);
    if (st != IMCAP_OK) goto done;
    if (!cJSON_IsArray(res_root)) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: a results file is a JSON array of {\"image_id\", \"caption\"}",
                        results_path);
        goto done;
    }
    const cJSON *anns = cJSON_IsObject(ref_root) ? cJSON_GetObjectItemCaseSensitive(ref_root, "annotations") : NULL;
    if (!cJSON_IsArray(anns)) {
        st = imcap_fail(IMCAP_E_FORMAT,
                        "%s: a captions annotation file is a JSON object with an \"annotations\" array", refs_path);
        goto done;
    }
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(ref_root, "images");
    if (images && !cJSON_IsArray(images)) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: \"images\" is not an array", refs_path);
        goto done;
    }
    if ((st = read_entries(results_path, "result", res_root, &res, &nres)) != IMCAP_OK) goto done;
    if ((st = read_entries(refs_path, "annotation", anns, &ann, &nann)) != IMCAP_OK) goto done;
    char idbuf[128];
    for (size_t i = 1; i < nres; i++)
        if (!strcmp(res[i - 1].key, res[i].key)) {
            key_display(res[i].key, idbuf, sizeof idbuf);
            st = imcap_fail(IMCAP_E_FORMAT, "%s: results %zu and %zu are both for image_id %s (one caption per image)",
                            results_path, res[i - 1].index, res[i].index, idbuf);
            goto done;
        }
    items = calloc(nres, sizeof *items);
    refptr = calloc(nann, sizeof *refptr);
    if (!items || !refptr) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", refs_path);
        goto done;
    }
    size_t a = 0, used = 0;
    for (size_t i = 0; i < nres; i++) {
        while (a < nann && strcmp(ann[a].key, res[i].key) < 0) a++;
        size_t b = a;
        while (b < nann && !strcmp(ann[b].key, res[i].key)) {
            refptr[used + (b - a)] = ann[b].caption;
            b++;
        }
        if (b == a) {
            key_display(res[i].key, idbuf, sizeof idbuf);
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: result %zu: image_id %s has no reference captions in %s",
                            results_path, res[i].index, idbuf, refs_path);
            goto done;
        }
        items[i].candidate = res[i].caption;
        items[i].refs = refptr + used;
        items[i].n_refs = b - a;
        used += b - a;
        a = b;
    }
    st = imcap_score(items, nres, 1, out, NULL, NULL);
done:
    free(items);
    free(refptr);
    free(res);
    free(ann);
    cJSON_Delete(res_root);
    cJSON_Delete(ref_root);
    free(res_text);
    free(ref_text);
    return st;
}
