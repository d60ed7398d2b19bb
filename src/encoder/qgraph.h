/*
 * qgraph.h - the encoder graph's int8 program: TensorFlow Lite's uint8
 * execution of the same nodes (qops.h kernels), beside the float graph.
 * An importer that meets only what the kernels do (uint8 activations and
 * weights, int32 biases, CONV2D / DWCONV2D / ADD / AVGPOOL / GAP / MAXPOOL /
 * SOFTMAX) records each value's scale and zero point and each weighted
 * node's quantized tensors, then calls enc_qgraph_finish; otherwise it says
 * why not (enc_qgraph_disable). The encoder file stores the program
 * (docs/FORMATS.md, "Encoder file", version 2); enc_graph_run executes it
 * when the graph's precision is int8 (enc_graph_set_precision).
 */
#ifndef IMCAP_QGRAPH_H
#define IMCAP_QGRAPH_H

#include "graph.h"

typedef enum enc_qtype { ENC_QT_I8 = 0, ENC_QT_I32 = 1, ENC_QT_F32 = 2 } enc_qtype;

/* The quantized tensors of a weighted node (ids of enc_qgraph_add_tensor,
 * -1 if none): w int8 in the float weight's layout (conv [kh][kw][c][oc],
 * depthwise [kh][kw][c*mult]) = uint8 weight - 128; wzp int32 [1 or oc] =
 * weight zero point - 128; ws float [1 or oc] weight scales; b int32 [oc]. */
typedef struct enc_qnode { int w, wzp, ws, b; } enc_qnode;

typedef enum enc_precision { ENC_PREC_AUTO = 0, ENC_PREC_FLOAT, ENC_PREC_INT8, ENC_PREC_BF16 } enc_precision;

/* Builder (importers). Copies data; returns the tensor id or -1. */
int enc_qgraph_add_tensor(enc_graph *g, enc_qtype type, size_t count, const void *data);
/* real = scale * (q - zp) for uint8 value v. */
imcap_status enc_qgraph_set_value(enc_graph *g, int v, float scale, int32_t zp);
imcap_status enc_qgraph_set_node(enc_graph *g, int node, const enc_qnode *q);
/* Drops the program (if any) and records why the graph has none. */
void enc_qgraph_disable(enc_graph *g, const char *fmt, ...) IMCAP_PRINTF(2, 3);
/* Validates the program against the graph (every node and value covered,
 * shapes, types, quantization rules); on failure the program is dropped
 * with the reason recorded and the error returned. */
imcap_status enc_qgraph_finish(enc_graph *g);

/* NULL when the graph has an int8 program, else why not. */
const char *enc_graph_int8_missing(const enc_graph *g);
/* AUTO: int8 where the graph has a program and the int8 kernels are the
 * faster (AVX-512 VNNI), else float: what `imcap classify` uses. Embeddings
 * that feed a caption decoder (extract, the encoder and captioner APIs,
 * caption/eval/report/serve) are float unless int8 is asked for: the
 * decoders, the default one included, are trained on float embeddings and
 * lose quality on int8 ones (README, "Encoder precision"); those callers
 * map AUTO to FLOAT with enc_precision_for_decoder. INT8 on a graph
 * without one: IMCAP_E_UNSUPPORTED naming the graph and the reason. */
imcap_status enc_graph_set_precision(enc_graph *g, enc_precision p);
/* What enc_graph_run executes now: ENC_PREC_FLOAT, ENC_PREC_INT8 or
 * ENC_PREC_BF16 (only when asked for; IMCAP_E_UNSUPPORTED without AVX512_BF16). */
enc_precision enc_graph_precision(const enc_graph *g);
/* AUTO -> FLOAT, else p (see enc_graph_set_precision). */
static inline enc_precision enc_precision_for_decoder(enc_precision p) { return p == ENC_PREC_AUTO ? ENC_PREC_FLOAT : p; }
/* "float", "int8", "bf16", "auto"; parse: IMCAP_E_ARG on anything else. */
const char *enc_precision_name(enc_precision p);
imcap_status enc_precision_parse(const char *s, enc_precision *p);

/* Introspection (tests): the program's value quantization and node tensors. */
bool enc_qgraph_value(const enc_graph *g, int v, float *scale, int32_t *zp);
const enc_qnode *enc_qgraph_node(const enc_graph *g, int node);
const void *enc_qgraph_tensor(const enc_graph *g, int id, enc_qtype *type, size_t *count);

#endif
