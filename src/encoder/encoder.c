/*
 * encoder.c - the public encoder API: an encoder model file run on decoded
 * images, with the preprocessing `imcap extract` applies (square crop,
 * resize, the model's normalisation), in batches.
 */
#include "graph.h"
#include "qgraph.h"

#include <stdlib.h>
#include <string.h>

enum { EMBED_BATCH = 8 };

struct imcap_encoder {
    enc_graph *g;
    enc_preproc pre;
    char *path;
};

imcap_status imcap_encoder_load(const char *path, imcap_encoder **out)
{
    *out = NULL;
    if (!path) return imcap_fail(IMCAP_E_ARG, "encoder: no file given");
    imcap_encoder *e = calloc(1, sizeof *e);
    if (!e) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    imcap_status st = enc_graph_load(path, &e->g);
    if (st == IMCAP_OK && !enc_graph_preproc(e->g))
        st = imcap_fail(IMCAP_E_FORMAT, "%s: the encoder has no preprocessing settings", path);
    if (st == IMCAP_OK && !(e->path = imcap_strdup(path))) st = IMCAP_E_NOMEM;
    if (st) {
        imcap_encoder_free(e);
        return st;
    }
    e->pre = *enc_graph_preproc(e->g);
    enc_graph_set_precision(e->g, ENC_PREC_FLOAT); /* embeddings for decoders: float unless asked */
    *out = e;
    return IMCAP_OK;
}

void imcap_encoder_free(imcap_encoder *e)
{
    if (!e) return;
    enc_graph_free(e->g);
    free(e->path);
    free(e);
}

const char *imcap_encoder_name(const imcap_encoder *e) { return enc_graph_name(e->g); }

void imcap_encoder_input_size(const imcap_encoder *e, int *h, int *w)
{
    *h = e->pre.in_h;
    *w = e->pre.in_w;
}

int imcap_encoder_n_outputs(const imcap_encoder *e) { return enc_graph_n_outputs(e->g); }

const char *imcap_encoder_output_name(const imcap_encoder *e, int i) { return enc_graph_output_name(e->g, i); }

size_t imcap_encoder_output_size(const imcap_encoder *e, const char *output)
{
    int id = enc_graph_output(e->g, output ? output : "embedding");
    if (id < 0) {
        imcap_fail(IMCAP_E_ARG, "%s: encoder '%s' has no output '%s'", e->path, enc_graph_name(e->g),
                   output ? output : "embedding");
        return 0;
    }
    const enc_value *v = enc_graph_value(e->g, id);
    return (size_t)v->h * v->w * v->c;
}

imcap_status imcap_encoder_embed(const imcap_encoder *e, const imcap_image *images, size_t n, const char *output,
                                 float *out)
{
    if (!output) output = "embedding";
    size_t dim = imcap_encoder_output_size(e, output);
    if (!dim) return IMCAP_E_ARG;
    if (n && (!images || !out)) return imcap_fail(IMCAP_E_ARG, "%s: embed: no images or output buffer", e->path);
    for (size_t i = 0; i < n; i++)
        if (!images[i].rgb || images[i].w < 1 || images[i].h < 1)
            return imcap_fail(IMCAP_E_ARG, "%s: embed: image %zu is empty (%d x %d)", e->path, i, images[i].w,
                              images[i].h);
    int id = enc_graph_output(e->g, output);
    const size_t np = (size_t)e->pre.in_h * e->pre.in_w;
    uint8_t *px = imcap_alloc(np, 3);                               /* [in_h][in_w][3] */
    float *x = imcap_alloc(np * 3, sizeof(float) * EMBED_BATCH);   /* [batch][in_h][in_w][3] */
    imcap_status st = px && x ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for a batch", e->path);
    for (size_t first = 0; first < n && !st; first += EMBED_BATCH) {
        int nb = (int)(n - first < EMBED_BATCH ? n - first : EMBED_BATCH);
        for (int b = 0; b < nb && !st; b++) {
            st = imcap_image_prepare(&images[first + b], e->pre.in_h, e->pre.in_w, px);
            if (st == IMCAP_OK) imcap_image_to_float(px, np, e->pre.scale, e->pre.bias, x + (size_t)b * np * 3);
        }
        float *dst = out + first * dim;
        if (st == IMCAP_OK) st = enc_graph_run(e->g, x, nb, &id, 1, &dst);
    }
    imcap_free(px);
    imcap_free(x);
    return st;
}

imcap_status imcap_encoder_set_precision(imcap_encoder *e, imcap_precision p)
{
    return enc_graph_set_precision(e->g, enc_precision_for_decoder((enc_precision)p));
}

imcap_precision imcap_encoder_precision(const imcap_encoder *e)
{
    return (imcap_precision)enc_graph_precision(e->g);
}
