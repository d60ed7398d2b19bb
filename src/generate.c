/*
 * generate.c - caption generation: greedy decoding.
 */
#include "generate.h"

#include <string.h>

imcap_status gen_greedy(const dec_model *m, const float *img, int n, int32_t start_id, int32_t end_id, int max_len,
                        int32_t *out, int *lens)
{
    const dec_config *c = &m->cfg;
    if (n < 1 || max_len < 1 || start_id < 0 || start_id >= c->n_vocab || end_id < 0 || end_id >= c->n_vocab)
        return imcap_fail(IMCAP_E_ARG, "greedy decoding: %d images, max length %d, start %d, end %d", n, max_len,
                          (int)start_id, (int)end_id);
    const size_t H = (size_t)c->n_hid, V = (size_t)c->n_vocab;
    float *h = imcap_alloc((size_t)n * H, sizeof(float)), *cc = imcap_alloc((size_t)n * H, sizeof(float));
    float *logits = imcap_alloc((size_t)n * V, sizeof(float));
    float *scratch = imcap_alloc(dec_step_scratch_floats(c, n), sizeof(float));
    int32_t *tok = imcap_alloc((size_t)n, sizeof(int32_t));
    char *done = imcap_calloc((size_t)n, 1);
    imcap_status s = IMCAP_E_NOMEM;
    if (!h || !cc || !logits || !scratch || !tok || !done) goto out;
    s = dec_init_state(m, img, n, h, cc);
    if (s) goto out;
    for (int i = 0; i < n; i++) {
        tok[i] = start_id;
        lens[i] = 0;
    }
    for (int t = 0, left = n; t < max_len && left > 0; t++) {
        dec_step(m, tok, n, h, cc, logits, h, cc, scratch);
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            const float *z = logits + (size_t)i * V;
            int32_t best = 0;
            for (size_t j = 1; j < V; j++)
                if (z[j] > z[best]) best = (int32_t)j;
            if (best == end_id) {
                done[i] = 1;
                left--;
                continue;
            }
            out[(size_t)i * max_len + lens[i]++] = best;
            tok[i] = best;
        }
    }
    s = IMCAP_OK;
out:
    imcap_free(h);
    imcap_free(cc);
    imcap_free(logits);
    imcap_free(scratch);
    imcap_free(tok);
    imcap_free(done);
    return s;
}
