/* cmd_convert.c - `imcap convert`: import a pretrained network and write it
 * as a native encoder file (GGUF, see docs/FORMATS.md). */
#include "cli.h"
#include "graph.h"
#include "tflite.h"

#include <string.h>

static const char *const CONVERT_HELP =
    "usage: imcap convert --tflite MODEL.tflite --out ENCODER.gguf\n"
    "Imports a network and writes it as a native encoder file.\n"
    "  --tflite F   TensorFlow Lite classifier (uint8 quantized MobileNets; weights\n"
    "               are dequantized to float)\n"
    "  --out F      the encoder file to write (atomically)\n";

static void describe(const enc_graph *g, const char *name)
{
    int id = enc_graph_output(g, name);
    const enc_value *v = id >= 0 ? enc_graph_value(g, id) : NULL;
    if (v) printf(" %s %dx%dx%d", name, v->h, v->w, v->c);
}

int cmd_convert(int argc, char **argv)
{
    const char *tfl = NULL, *out = NULL;
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
        else if (!strcmp(a, "--out")) out = v;
        else {
            fprintf(stderr, "imcap convert: unknown argument %s\n%s", a, CONVERT_HELP);
            return 2;
        }
        i++;
    }
    if (!tfl || !out) {
        fprintf(stderr, "imcap convert: give a model to import and --out\n%s", CONVERT_HELP);
        return 2;
    }
    enc_graph *g = NULL;
    double t0 = imcap_now();
    imcap_status s = tflite_import(tfl, &g);
    if (!s) s = enc_graph_save(g, out);
    if (s) {
        enc_graph_free(g);
        return cli_error("convert", s);
    }
    printf("%s: %d operations, %d parameter tensors, outputs", out, enc_graph_n_nodes(g), enc_graph_n_params(g));
    describe(g, "embedding");
    describe(g, "logits");
    describe(g, "probs");
    printf(" (%.2f s)\n", imcap_now() - t0);
    enc_graph_free(g);
    return 0;
}
