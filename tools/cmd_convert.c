/* cmd_convert.c - `imcap convert`: import a pretrained network and write it
 * as a native encoder file (GGUF, see docs/FORMATS.md). */
#include "cli.h"
#include "graph.h"
#include "qgraph.h"
#include "tfjs.h"
#include "tflite.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_POOL = 16 };

static const char *const CONVERT_HELP =
    "usage: imcap convert (--tflite MODEL.tflite | --tfjs DIR) --out ENCODER.gguf [options]\n"
    "Imports a network and writes it as a native encoder file (read back and checked).\n"
    "  --tflite F         TensorFlow Lite classifier (uint8 quantized MobileNets; weights\n"
    "                     are dequantized to float)\n"
    "  --tfjs DIR         TensorFlow.js layers model: a directory with model.json and its\n"
    "                     .bin shards, or the nsfwjs bundle (model.min.js and\n"
    "                     group*-shard*.min.js), or the model file itself\n"
    "  --out F            the encoder file to write (atomically)\n"
    "TF.js options:\n"
    "  --name NAME        the encoder's name (default: the model directory's name)\n"
    "  --embedding LAYER  the layer whose global average pool is \"embedding\"\n"
    "                     (default: the last feature map before the classifier head)\n"
    "  --pool LAYER       also output the global average pool of LAYER under its name\n"
    "                     (repeatable; default: mixed5 when the model has it)\n"
    "  --preprocess MODE  how pixels become the input: unit (default: pixel/255) or caffe\n"
    "                     (Keras ResNet50: BGR, minus the ImageNet means, no scaling)\n";

static void print_summary(const enc_graph *g, const char *out, double secs)
{
    size_t floats = 0;
    for (int i = 0; i < enc_graph_n_params(g); i++) floats += enc_graph_param(g, i)->count;
    const enc_preproc *pp = enc_graph_preproc(g);
    printf("%s: encoder '%s', %d operations, %d parameter tensors (%.2f M floats)", out, enc_graph_name(g),
           enc_graph_n_nodes(g), enc_graph_n_params(g), (double)floats / 1e6);
    if (pp)
        printf(", input %dx%d, x = pixel/255 * (%g %g %g) + (%g %g %g)", pp->in_h, pp->in_w, pp->scale[0],
               pp->scale[1], pp->scale[2], pp->bias[0], pp->bias[1], pp->bias[2]);
    printf("\n");
    for (int i = 0; i < enc_graph_n_outputs(g); i++) {
        const char *n = enc_graph_output_name(g, i);
        const enc_value *v = enc_graph_value(g, enc_graph_output(g, n));
        printf("  output %-10s %dx%dx%d (%s)\n", n, v->h, v->w, v->c, v->name);
    }
    const char *no_int8 = enc_graph_int8_missing(g);
    if (no_int8) printf("  no int8 program: %s\n", no_int8);
    else printf("  int8 program: TFLite's uint8 execution (--precision int8)\n");
    printf("converted in %.2f s\n", secs);
}

int cmd_convert(int argc, char **argv)
{
    const char *tfl = NULL, *tfjs = NULL, *out = NULL;
    const char *pool[MAX_POOL];
    tfjs_options opt;
    tfjs_default_options(&opt);
    bool tfjs_opts = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(CONVERT_HELP, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imcap convert: %s needs a value\n%s", a, CONVERT_HELP);
            return 2;
        }
        if (!strcmp(a, "--tflite")) tfl = v;
        else if (!strcmp(a, "--tfjs")) tfjs = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--name")) opt.name = v, tfjs_opts = true;
        else if (!strcmp(a, "--embedding")) opt.embedding = v, tfjs_opts = true;
        else if (!strcmp(a, "--preprocess")) {
            if (!strcmp(v, "caffe")) tfjs_caffe_options(&opt);
            else if (strcmp(v, "unit") != 0) {
                fprintf(stderr, "imcap convert: --preprocess is unit or caffe, not '%s'\n", v);
                return 2;
            }
            tfjs_opts = true;
        }
        else if (!strcmp(a, "--pool")) {
            if (opt.n_pooled == MAX_POOL) {
                fprintf(stderr, "imcap convert: at most %d --pool layers\n", MAX_POOL);
                return 2;
            }
            pool[opt.n_pooled++] = v;
            opt.pooled = pool;
            tfjs_opts = true;
        } else {
            fprintf(stderr, "imcap convert: unknown argument %s\n%s", a, CONVERT_HELP);
            return 2;
        }
        i++;
    }
    if (!out || (!tfl == !tfjs)) {
        fprintf(stderr, "imcap convert: give one model to import (--tflite or --tfjs) and --out\n%s", CONVERT_HELP);
        return 2;
    }
    if (tfl && tfjs_opts) {
        fprintf(stderr, "imcap convert: --name, --embedding, --pool and --preprocess apply to --tfjs models only\n");
        return 2;
    }
    enc_graph *g = NULL;
    double t0 = imcap_now();
    imcap_status s = tfl ? tflite_import(tfl, &g) : tfjs_import(tfjs, &opt, &g);
    if (!s) s = enc_graph_save(g, out);
    if (!s) {
        /* read the file back: it must load and carry the same graph */
        enc_graph *back = NULL;
        s = enc_graph_load(out, &back);
        if (!s && enc_graph_checksum(back) != enc_graph_checksum(g))
            s = imcap_fail(IMCAP_E_INTERNAL, "%s: the encoder read back differs from the converted one", out);
        enc_graph_free(back);
    }
    if (!s) print_summary(g, out, imcap_now() - t0);
    enc_graph_free(g);
    return s ? cli_error("convert", s) : 0;
}
