/*
 * graph.h - the encoder's in-memory graph: a list of float NHWC operations
 * on named values, with parameters in one buffer. Importers (tflite.c,
 * tfjs.c) build it with the builder calls; graph.c validates shapes,
 * executes it (ops.c does the math) and saves/loads it as a GGUF file.
 */
#ifndef IMCAP_GRAPH_H
#define IMCAP_GRAPH_H

#include "internal.h"

typedef enum enc_op {
    ENC_CONV2D,    /* w [KH][KW][Cin][Cout] (HWIO), bias [Cout] or -1 */
    ENC_DWCONV2D,  /* w [KH][KW][Cin*mult] (or [KH][KW][Cin][mult]), bias [Cin*mult] or -1;
                      output channel c*mult+m reads input channel c */
    ENC_DENSE,     /* per pixel (usually on a 1x1xC value): w [Cin][Cout], bias [Cout] or -1 */
    ENC_ADD,       /* two inputs, same shape */
    ENC_CONCAT,    /* n inputs along channels */
    ENC_AVGPOOL,   /* window kh x kw; SAME excludes padding from the count (TF semantics) */
    ENC_MAXPOOL,
    ENC_GAP,       /* global average pool: HxWxC -> 1x1xC */
    ENC_SOFTMAX,   /* over channels */
    ENC_ACT,       /* activation only */
    ENC_AFFINE,    /* per-channel y = x*w + bias (unfused batch norm); w [C], bias [C] */
    ENC_PAD        /* zero padding (Keras ZeroPadding2D): kh rows above, sh rows below,
                      kw columns left, sw columns right (0..MAX each) */
} enc_op;

typedef enum enc_act { ENC_ACT_NONE, ENC_ACT_RELU, ENC_ACT_RELU6, ENC_ACT_SIGMOID } enc_act;
typedef enum enc_pad { ENC_PAD_VALID, ENC_PAD_SAME } enc_pad;

enum { ENC_MAX_INPUTS = 8, ENC_NAME_LEN = 96 };

typedef struct enc_node {
    enc_op op;
    int n_inputs;
    int inputs[ENC_MAX_INPUTS]; /* value ids */
    int output;                 /* value id (set by enc_graph_add_node) */
    int kh, kw, sh, sw;         /* kernel / pool window and strides */
    enc_pad pad;                /* SAME: total = max((out-1)*s + k - in, 0), before = total/2 */
    /* kh = kw = 0 on CONV2D/DWCONV2D takes the window from the weight;
     * sh = sw = 0 on a windowed op means stride 1. */
    enc_act act;                /* fused activation applied to the output */
    int mult;                   /* depthwise channel multiplier (0: from the weight) */
    int weight, bias;           /* parameter ids, -1 if none */
    char name[ENC_NAME_LEN];
} enc_node;

typedef struct enc_value {
    char name[ENC_NAME_LEN];
    int h, w, c;                /* per image; the batch is outermost */
} enc_value;

typedef struct enc_param {
    char name[ENC_NAME_LEN];
    int n_dims;
    int shape[4];
    size_t offset, count;       /* view into enc_graph.params */
} enc_param;

/* How pixels become the network input: x = pixel/255 * scale + bias per
 * channel, after center crop and bilinear resize to in_h x in_w. */
typedef struct enc_preproc {
    int in_h, in_w;
    float scale[3], bias[3];
} enc_preproc;

typedef struct enc_graph enc_graph;

enc_graph *enc_graph_new(const char *name);
void enc_graph_free(enc_graph *g);
/* The single input value (NHWC, 3 channels). Returns its value id. */
int enc_graph_add_input(enc_graph *g, const char *name, int h, int w, int c);
/* Copies data (count = product of shape). Returns the param id or -1. */
int enc_graph_add_param(enc_graph *g, const char *name, int n_dims, const int *shape, const float *data);
/* Checks the node (inputs, param shapes), infers the output shape, appends
 * it; returns the output value id or -1 (message in imcap_last_error()). */
int enc_graph_add_node(enc_graph *g, const enc_node *node, const char *out_name);
/* Names an output ("embedding", "logits", "probs", "mixed5", ...). */
imcap_status enc_graph_set_output(enc_graph *g, const char *name, int value_id);
void enc_graph_set_preproc(enc_graph *g, const enc_preproc *p);
const enc_preproc *enc_graph_preproc(const enc_graph *g);
/* Value id of a named output, or -1. "grid", unless the graph names an
 * output so, is the spatial map the "embedding" output's global average
 * pool reads (HxWxC, row-major, channels last), where there is one. */
int enc_graph_output(const enc_graph *g, const char *name);
const enc_value *enc_graph_value(const enc_graph *g, int id);
const char *enc_graph_name(const enc_graph *g);

/* Run a batch: input [n][in_h][in_w][3] floats (already normalised).
 * Computes only what the requested outputs need; outs[i] receives
 * n * h*w*c floats of output value ids[i]. Thread-safe for concurrent
 * runs on one graph (each run allocates its own workspace). */
imcap_status enc_graph_run(const enc_graph *g, const float *input, int n, const int *ids,
                           int n_ids, float *const *outs);

/* Introspection (ids are dense from 0; NULL / -1 when out of range). */
int enc_graph_input(const enc_graph *g);
int enc_graph_n_values(const enc_graph *g);
int enc_graph_n_nodes(const enc_graph *g);
const enc_node *enc_graph_node(const enc_graph *g, int i);
int enc_graph_n_params(const enc_graph *g);
const enc_param *enc_graph_param(const enc_graph *g, int id);
const float *enc_graph_param_data(const enc_graph *g, int id);
int enc_graph_n_outputs(const enc_graph *g);
const char *enc_graph_output_name(const enc_graph *g, int i);
const char *enc_op_name(enc_op op);
/* Like enc_graph_add_param, but references data (which must outlive the
 * graph) instead of copying it; a graph uses either this or copies. */
int enc_graph_add_param_view(enc_graph *g, const char *name, int n_dims, const int *shape, const float *data);

/* Profiling hook (benchmarks): when set, enc_graph_run reports each node's
 * wall time. Process-wide; set it before running, not during runs. */
typedef void (*enc_profile_fn)(void *user, const enc_graph *g, int node, int batch, double seconds);
void enc_graph_set_profiler(enc_profile_fn fn, void *user);

/* Native model file (GGUF, see docs/FORMATS.md). */
imcap_status enc_graph_save(const enc_graph *g, const char *path);
imcap_status enc_graph_load(const char *path, enc_graph **out);
/* SHA-256-free identity for captioner files: CRC-32 of the serialized graph + params. */
uint32_t enc_graph_checksum(const enc_graph *g);

#endif
