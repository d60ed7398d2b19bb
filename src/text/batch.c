/*
 * batch.c - padding index sequences into a matrix (the recipe's
 * batch_captions_to_matrix) and the training batch sampler (the recipe's
 * generate_batch: distinct random images, one random caption each).
 */
#include "strtab.h"

#include <stdlib.h>
#include <string.h>

imcap_status imcap_pad_batch(const int32_t *const *seqs, const size_t *lens, size_t n, size_t max_len, int32_t pad,
                             int32_t *out, size_t *width)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (lens[i] > w) w = lens[i];
    if (max_len > 0 && w > max_len) w = max_len;
    *width = w;
    if (!out) return IMCAP_OK;
    for (size_t i = 0; i < n; i++) {
        size_t l = lens[i] < w ? lens[i] : w;
        if (l) memcpy(out + i * w, seqs[i], l * sizeof *out);
        for (size_t j = l; j < w; j++) out[i * w + j] = pad;
    }
    return IMCAP_OK;
}

struct imcap_batcher {
    size_t n_images, n_caps, max_len;
    size_t *first;   /* [n_images + 1]: captions of image i are first[i] .. first[i+1] */
    size_t *off;     /* [n_caps + 1]: caption c is ids[off[c] .. off[c+1]) (cut at max_len) */
    int32_t *ids;
    uint32_t *perm;  /* [n_images] scratch for drawing distinct images */
    int32_t pad;
    imcap_rng rng;
};

void imcap_batcher_free(imcap_batcher *b)
{
    if (!b) return;
    free(b->first);
    free(b->off);
    free(b->ids);
    free(b->perm);
    free(b);
}

imcap_status imcap_batcher_new(const imcap_captions *data, const imcap_vocab *v, size_t max_len, uint64_t seed,
                               imcap_batcher **out)
{
    *out = NULL;
    if (max_len == 0) max_len = IMCAP_BATCH_MAX_LEN;
    size_t ni = imcap_captions_n_images(data), nc = imcap_captions_n_total(data);
    if (ni == 0) return imcap_fail(IMCAP_E_ARG, "batcher: the dataset has no images");
    if (ni > INT32_MAX) return imcap_fail(IMCAP_E_ARG, "batcher: %zu images is too many", ni);
    imcap_batcher *b = calloc(1, sizeof *b);
    if (!b) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a batcher");
    b->n_images = ni;
    b->n_caps = nc;
    b->max_len = max_len;
    b->pad = imcap_vocab_pad(v);
    imcap_rng_seed(&b->rng, seed);
    b->first = calloc(ni + 1, sizeof *b->first);
    b->off = calloc(nc + 1, sizeof *b->off);
    b->perm = calloc(ni, sizeof *b->perm);
    size_t cap_ids = 0;
    imcap_status st = IMCAP_OK;
    if (!b->first || !b->off || !b->perm) st = imcap_fail(IMCAP_E_NOMEM, "out of memory for a batcher of %zu captions", nc);
    size_t c = 0;
    for (size_t i = 0; i < ni && !st; i++) {
        b->first[i] = c;
        size_t k_n = imcap_captions_count(data, i);
        if (k_n == 0) {
            st = imcap_fail(IMCAP_E_ARG, "batcher: image '%s' has no captions", imcap_captions_image(data, i));
            break;
        }
        for (size_t k = 0; k < k_n && !st; k++, c++) {
            int32_t *ids;
            size_t n;
            st = imcap_vocab_encode(v, imcap_captions_text(data, i, k), &ids, &n);
            if (st) break;
            if (n > max_len) n = max_len;
            st = imcap_grow((void **)&b->ids, &cap_ids, b->off[c] + n, sizeof *b->ids);
            if (!st) memcpy(b->ids + b->off[c], ids, n * sizeof *ids);
            b->off[c + 1] = b->off[c] + n;
            free(ids);
        }
    }
    if (st) {
        imcap_batcher_free(b);
        return st;
    }
    b->first[ni] = c;
    *out = b;
    return IMCAP_OK;
}

size_t imcap_batcher_n_images(const imcap_batcher *b) { return b->n_images; }
size_t imcap_batcher_max_len(const imcap_batcher *b) { return b->max_len; }

/* tokens[n][*width] from the encoded captions chosen[n]. */
static void fill_rows(const imcap_batcher *b, const size_t *chosen, size_t n, int32_t *tokens, size_t *width)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = b->off[chosen[i] + 1] - b->off[chosen[i]];
        if (l > w) w = l;
    }
    for (size_t i = 0; i < n; i++) {
        size_t c = chosen[i], l = b->off[c + 1] - b->off[c];
        memcpy(tokens + i * w, b->ids + b->off[c], l * sizeof *tokens);
        for (size_t j = l; j < w; j++) tokens[i * w + j] = b->pad;
    }
    *width = w;
}

imcap_status imcap_batcher_next(imcap_batcher *b, size_t batch_size, int32_t *images, int32_t *tokens, size_t *width)
{
    if (batch_size == 0 || batch_size > b->n_images)
        return imcap_fail(IMCAP_E_ARG, "batcher: batch size %zu must be between 1 and the %zu images of the split",
                          batch_size, b->n_images);
    /* Distinct images: the first batch_size steps of a Fisher-Yates shuffle. */
    for (size_t i = 0; i < b->n_images; i++) b->perm[i] = (uint32_t)i;
    for (size_t i = 0; i < batch_size; i++) {
        size_t j = i + (size_t)imcap_rng_below(&b->rng, b->n_images - i);
        uint32_t t = b->perm[i];
        b->perm[i] = b->perm[j];
        b->perm[j] = t;
        images[i] = (int32_t)b->perm[i];
    }
    /* One random caption of each. */
    size_t *chosen = malloc(batch_size * sizeof *chosen);
    if (!chosen) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a batch of %zu", batch_size);
    for (size_t i = 0; i < batch_size; i++) {
        size_t im = (size_t)images[i];
        chosen[i] = b->first[im] + (size_t)imcap_rng_below(&b->rng, b->first[im + 1] - b->first[im]);
    }
    fill_rows(b, chosen, batch_size, tokens, width);
    free(chosen);
    return IMCAP_OK;
}

size_t imcap_batcher_n_captions(const imcap_batcher *b) { return b->n_caps; }

imcap_status imcap_batcher_get(const imcap_batcher *b, size_t first, size_t count, int32_t *images, int32_t *tokens,
                               size_t *width)
{
    if (count == 0 || first > b->n_caps || count > b->n_caps - first)
        return imcap_fail(IMCAP_E_ARG, "batcher: captions %zu..%zu are outside the %zu captions of the split", first,
                          first + count, b->n_caps);
    size_t *chosen = malloc(count * sizeof *chosen);
    if (!chosen) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a batch of %zu", count);
    /* The image of caption `first`: the last image whose first caption is <= it. */
    size_t lo = 0, hi = b->n_images;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->first[mid] <= first) lo = mid;
        else hi = mid;
    }
    for (size_t i = 0; i < count; i++) {
        size_t c = first + i;
        while (b->first[lo + 1] <= c) lo++;
        images[i] = (int32_t)lo;
        chosen[i] = c;
    }
    fill_rows(b, chosen, count, tokens, width);
    free(chosen);
    return IMCAP_OK;
}

void imcap_batcher_get_state(const imcap_batcher *b, uint64_t state[4]) { memcpy(state, b->rng.s, sizeof b->rng.s); }
void imcap_batcher_set_state(imcap_batcher *b, const uint64_t state[4]) { memcpy(b->rng.s, state, sizeof b->rng.s); }
