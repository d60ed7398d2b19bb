/*
 * embcat.c - concatenation of embeddings files (imcap_embfile_concat;
 * `imcap embcat`): one row per image holding the rows of every input side
 * by side, e.g. two encoders' embeddings as one decoder input.
 */
#include "internal.h"

#include <string.h>

imcap_status imcap_embfile_concat(const char *const *inputs, size_t n_inputs, const char *out)
{
    if (!inputs || n_inputs < 1 || n_inputs > 16 || !out)
        return imcap_fail(IMCAP_E_ARG, "embcat: 1 to 16 input files and an output file are required");
    imcap_embfile *f[16] = {0};
    float *rows = NULL;
    const char **names = NULL;
    imcap_status st = IMCAP_OK;
    size_t dim = 0;
    char encoder[IMCAP_EMB_ENCODER_MAX + 1] = "";
    size_t enc_len = 0;
    for (size_t k = 0; k < n_inputs; k++) {
        if (!strcmp(inputs[k], out)) {
            st = imcap_fail(IMCAP_E_ARG, "embcat: the output %s is also an input", out);
            goto out;
        }
        if ((st = imcap_embfile_open(inputs[k], &f[k]))) goto out;
        dim += imcap_embfile_dim(f[k]);
        if (dim > IMCAP_EMB_DIM_MAX) {
            st = imcap_fail(IMCAP_E_ARG, "embcat: the concatenated rows would have %zu floats (at most %d)", dim,
                            IMCAP_EMB_DIM_MAX);
            goto out;
        }
        /* encoder id: the inputs' ids joined with '+', cut to what the header holds */
        const char *e = imcap_embfile_encoder(f[k]);
        if (k > 0 && enc_len < IMCAP_EMB_ENCODER_MAX) encoder[enc_len++] = '+';
        for (; *e && enc_len < IMCAP_EMB_ENCODER_MAX; e++) encoder[enc_len++] = *e;
        encoder[enc_len] = 0;
    }
    const size_t n = imcap_embfile_count(f[0]);
    for (size_t k = 1; k < n_inputs; k++)
        if (imcap_embfile_count(f[k]) != n) {
            st = imcap_fail(IMCAP_E_MISMATCH, "embcat: %s has %zu rows but %s has %zu", inputs[k],
                            imcap_embfile_count(f[k]), inputs[0], n);
            goto out;
        }
    if (!(rows = imcap_alloc(n ? n : 1, dim * sizeof(float))) || !(names = imcap_calloc(n ? n : 1, sizeof *names))) {
        st = imcap_fail(IMCAP_E_NOMEM, "embcat: out of memory for %zu rows of %zu floats", n, dim);
        goto out;
    }
    for (size_t r = 0; r < n; r++) {
        names[r] = imcap_embfile_name(f[0], r);
        float *dst = rows + r * dim;
        for (size_t k = 0; k < n_inputs; k++) {
            int64_t j = k ? imcap_embfile_find(f[k], names[r]) : (int64_t)r;
            if (j < 0) {
                st = imcap_fail(IMCAP_E_MISMATCH, "embcat: %s has no row for image '%s' of %s", inputs[k], names[r],
                                inputs[0]);
                goto out;
            }
            size_t d = imcap_embfile_dim(f[k]);
            memcpy(dst, imcap_embfile_row(f[k], (size_t)j), d * sizeof(float));
            dst += d;
        }
    }
    st = imcap_embfile_write(out, dim, encoder, n, names, rows);
out:
    imcap_free(rows);
    imcap_free(names);
    for (size_t k = 0; k < n_inputs; k++) imcap_embfile_close(f[k]);
    return st;
}
