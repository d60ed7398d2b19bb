/* cmd_convert.c - `imcap convert`: import a pretrained encoder into imcap's
 * native encoder file (GGUF, docs/FORMATS.md). */
#include "cli.h"
#include "graph.h"
#include "tfjs.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_POOL = 16 };

static void convert_usage(FILE *fp)
{
    fprintf(fp,
            "usage: imcap convert --tfjs DIR --out ENCODER.gguf [options]\n\n"
            "Converts a pretrained encoder into imcap's native encoder file.\n"
            "  --tfjs DIR         a TensorFlow.js layers model: a directory with model.json and\n"
            "                     its .bin shards, or the nsfwjs bundle (model.min.js and\n"
            "                     group*-shard*.min.js), or the model file itself\n"
            "  --out FILE         the encoder file to write (atomically)\n"
            "  --name NAME        the encoder's name (default: the model directory's name)\n"
            "  --embedding LAYER  the layer whose global average pool is \"embedding\"\n"
            "                     (default: the last feature map before the classifier head)\n"
            "  --pool LAYER       also output the global average pool of LAYER under its name\n"
            "                     (repeatable; default: mixed5 when the model has it)\n");
}

static void print_summary(const enc_graph *g, const char *out, double secs)
{
    size_t floats = 0;
    for (int i = 0; i < enc_graph_n_params(g); i++) floats += enc_graph_param(g, i)->count;
    const enc_preproc *pp = enc_graph_preproc(g);
    printf("%s: encoder '%s', %d nodes, %d parameter tensors (%.1f M floats), input %dx%d, x = pixel/255*%g%+g\n",
           out, enc_graph_name(g), enc_graph_n_nodes(g), enc_graph_n_params(g), (double)floats / 1e6,
           pp ? pp->in_h : 0, pp ? pp->in_w : 0, pp ? pp->scale[0] : 0.0, pp ? pp->bias[0] : 0.0);
    for (int i = 0; i < enc_graph_n_outputs(g); i++) {
        const char *n = enc_graph_output_name(g, i);
        const enc_value *v = enc_graph_value(g, enc_graph_output(g, n));
        printf("  output %-10s %dx%dx%d (%s)\n", n, v->h, v->w, v->c, v->name);
    }
    printf("converted in %.2f s\n", secs);
}

int cmd_convert(int argc, char **argv)
{
    const char *tfjs = NULL, *out = NULL;
    const char *pool[MAX_POOL];
    tfjs_options opt;
    tfjs_default_options(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            convert_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "imcap convert: unknown or incomplete option '%s'\n", a);
            convert_usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--tfjs")) tfjs = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--name")) opt.name = argv[++i];
        else if (!strcmp(a, "--embedding")) opt.embedding = argv[++i];
        else if (!strcmp(a, "--pool")) {
            if (opt.n_pooled == MAX_POOL) {
                fprintf(stderr, "imcap convert: at most %d --pool layers\n", MAX_POOL);
                return 2;
            }
            pool[opt.n_pooled++] = argv[++i];
            opt.pooled = pool;
        } else {
            fprintf(stderr, "imcap convert: unknown option '%s'\n", a);
            convert_usage(stderr);
            return 2;
        }
    }
    if (!tfjs || !out) {
        fprintf(stderr, "imcap convert: --tfjs and --out are required\n");
        convert_usage(stderr);
        return 2;
    }
    double t0 = imcap_now();
    enc_graph *g;
    imcap_status st = tfjs_import(tfjs, &opt, &g);
    if (st) return cli_error("convert", st);
    st = enc_graph_save(g, out);
    if (!st) {
        /* read the file back: it must load and carry the same graph */
        enc_graph *back = NULL;
        st = enc_graph_load(out, &back);
        if (!st && enc_graph_checksum(back) != enc_graph_checksum(g))
            st = imcap_fail(IMCAP_E_INTERNAL, "%s: reloaded encoder differs from the converted one", out);
        enc_graph_free(back);
    }
    if (!st) print_summary(g, out, imcap_now() - t0);
    enc_graph_free(g);
    return st ? cli_error("convert", st) : 0;
}
