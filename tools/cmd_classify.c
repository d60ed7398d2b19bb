/* cmd_classify.c - `imcap classify`: top-5 ImageNet labels of photos with an
 * encoder that has a classifier head (the TFLite MobileNets). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "graph.h"
#include "qgraph.h"
#include "tflite.h"

#include <stdlib.h>
#include <string.h>

static const char *const CLASSIFY_HELP =
    "usage: imcap classify [--encoder ENC.gguf | --tflite MODEL.tflite] [--labels FILE] [--top K]\n"
    "                      [--dump-inputs DIR] IMAGE...\n"
    "Prints the K (default 5) most probable ImageNet classes of each image.\n"
    "  --encoder F      native encoder file from `imcap convert` (default\n"
    "                   models/encoders/mobilenet_v2_1.0_224_quant.gguf)\n"
    "  --precision P    int8 (TFLite's integer arithmetic), float, bf16 (AVX512_BF16 GEMMs) or auto (default)\n"
    "  --tflite F       import a TFLite classifier directly instead\n"
    "  --labels F       one class name a line, in the model's class order\n"
    "                   (default data/models/imagenet_labels.txt); a file with one\n"
    "                   more line, \"background\" first, serves a model without that\n"
    "                   class (ResNet-50's 1000 classes: class k is line k+1)\n"
    "  --dump-inputs D  also write each network input, the uint8 [H][W][3] tensor\n"
    "                   after crop and resize, to D/<image name>.u8\n";

/* Labels: one per line, one per class; or one more with "background"
 * first (the shared 1001-line ImageNet file with a 1000-class model such
 * as ResNet-50: class k is line k+1). */
static int load_labels(const char *path, int n_classes, char ***out, char **blob)
{
    size_t len;
    imcap_status s = imcap_read_file(path, (size_t)64 << 20, blob, &len);
    if (s) return cli_error("classify", s);
    char **labels = calloc((size_t)n_classes + 1, sizeof *labels);
    if (!labels) return cli_error("classify", IMCAP_E_NOMEM);
    int n = 0;
    for (char *p = *blob; *p && n <= n_classes + 1;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[l - 1] = 0;
        if (n <= n_classes) labels[n] = p;
        n++;
        if (!e) break;
        p = e + 1;
    }
    if (n == n_classes + 1 && !strcmp(labels[0], "background")) {
        memmove(labels, labels + 1, (size_t)n_classes * sizeof *labels);
        n = n_classes;
    }
    if (n != n_classes) {
        fprintf(stderr, "imcap classify: %s has %s%d labels, the model has %d classes (%d labels, or %d with "
                        "\"background\" first)\n",
                path, n > n_classes + 1 ? "more than " : "", n > n_classes + 1 ? n_classes + 1 : n, n_classes,
                n_classes, n_classes + 1);
        free(labels);
        return 1;
    }
    *out = labels;
    return 0;
}

static int dump_input(const char *dir, const char *image, const uint8_t *px, size_t n)
{
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.u8", dir, base);
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (!s) s = imcap_atomic_write(&af, px, n);
    if (!s) s = imcap_atomic_commit(&af);
    else imcap_atomic_abort(&af);
    return s ? cli_error("classify", s) : 0;
}

int cmd_classify(int argc, char **argv)
{
    const char *encoder = NULL, *tfl = NULL, *labels_path = "data/models/imagenet_labels.txt", *dump = NULL;
    long top = 5;
    imcap_precision prec = IMCAP_PRECISION_AUTO;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(CLASSIFY_HELP, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imcap classify: %s needs a value\n%s", a, CLASSIFY_HELP);
            return 2;
        }
        if (!strcmp(a, "--encoder")) encoder = v;
        else if (!strcmp(a, "--tflite")) tfl = v;
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(a, v, &prec)) return 2;
        }
        else if (!strcmp(a, "--labels")) labels_path = v;
        else if (!strcmp(a, "--dump-inputs")) dump = v;
        else if (!strcmp(a, "--top")) {
            if (cli_parse_int("--top", v, 1, 1000, &top)) return 2;
        } else {
            fprintf(stderr, "imcap classify: unknown option %s\n%s", a, CLASSIFY_HELP);
            return 2;
        }
        i++;
    }
    if (i >= argc) {
        fprintf(stderr, "imcap classify: no image given\n%s", CLASSIFY_HELP);
        return 2;
    }
    if (encoder && tfl) {
        fprintf(stderr, "imcap classify: give --encoder or --tflite, not both\n");
        return 2;
    }
    if (!encoder && !tfl) encoder = "models/encoders/mobilenet_v2_1.0_224_quant.gguf";

    enc_graph *g = NULL;
    imcap_status s = tfl ? tflite_import(tfl, &g) : enc_graph_load(encoder, &g);
    if (!s && (s = enc_graph_set_precision(g, (enc_precision)prec))) enc_graph_free(g);
    if (s) return cli_error("classify", s);
    int probs_id = enc_graph_output(g, "probs");
    const enc_value *pv = probs_id >= 0 ? enc_graph_value(g, probs_id) : NULL;
    if (!pv) {
        fprintf(stderr, "imcap classify: %s has no classifier output \"probs\"\n", tfl ? tfl : encoder);
        enc_graph_free(g);
        return 1;
    }
    int n_classes = pv->h * pv->w * pv->c;
    if (top > n_classes) top = n_classes;
    char **labels = NULL, *blob = NULL;
    if (load_labels(labels_path, n_classes, &labels, &blob)) {
        enc_graph_free(g);
        return 1;
    }
    const enc_preproc *pp = enc_graph_preproc(g);
    size_t n_px = (size_t)pp->in_h * (size_t)pp->in_w;
    uint8_t *px = malloc(n_px * 3);
    float *x = malloc(n_px * 3 * sizeof(float)), *probs = malloc((size_t)n_classes * sizeof(float));
    int *order = malloc((size_t)n_classes * sizeof(int));
    int rc = 0;
    if (!px || !x || !probs || !order) rc = cli_error("classify", IMCAP_E_NOMEM);
    for (; i < argc && rc == 0; i++) {
        imcap_image img;
        s = imcap_image_load(argv[i], &img);
        if (!s) {
            s = imcap_image_prepare(&img, pp->in_h, pp->in_w, px);
            imcap_image_free(&img);
        }
        if (s) {
            rc = cli_error("classify", s);
            break;
        }
        if (dump && (rc = dump_input(dump, argv[i], px, n_px * 3))) break;
        imcap_image_to_float(px, n_px, pp->scale, pp->bias, x);
        float *outs[1] = {probs};
        if ((s = enc_graph_run(g, x, 1, &probs_id, 1, outs))) {
            rc = cli_error("classify", s);
            break;
        }
        /* Partial selection of the top classes (ties: lower index first). */
        for (int c = 0; c < n_classes; c++) order[c] = c;
        for (int k = 0; k < top; k++) {
            int best = k;
            for (int c = k + 1; c < n_classes; c++)
                if (probs[order[c]] > probs[order[best]]) best = c;
            int t = order[k];
            order[k] = order[best];
            order[best] = t;
        }
        printf("%s\n", argv[i]);
        for (int k = 0; k < top; k++)
            printf("  %6.4f  %4d  %s\n", (double)probs[order[k]], order[k], labels[order[k]]);
    }
    free(px);
    free(x);
    free(probs);
    free(order);
    free(labels);
    free(blob);
    enc_graph_free(g);
    return rc;
}
