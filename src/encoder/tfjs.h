/*
 * tfjs.h - importer of TensorFlow.js layers models (a Keras topology, a
 * weights manifest and binary weight shards) into an enc_graph.
 *
 * Two layouts are read:
 *   - the standard one: model.json (JSON with "modelTopology" and
 *     "weightsManifest") next to the raw little-endian shard files that the
 *     manifest's "paths" name (e.g. group1-shard1of1.bin);
 *   - the nsfwjs bundle: model.min.js, a JS module whose object literal
 *     holds the same two keys, and one JS module per shard
 *     (<path>.min.js or <path>.js) holding the shard as a base64 string.
 * The shards of each manifest group are concatenated in order and must hold
 * exactly the group's weights. Weights are float32, or float32 stored as
 * uint8/uint16 (value = q * scale + min, the manifest's per-tensor
 * "quantization" fields) or float16.
 *
 * Layers: InputLayer, Conv2D, DepthwiseConv2D, Dense, BatchNormalization,
 * Activation (linear, relu, relu6, sigmoid, softmax), ReLU, Softmax,
 * MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Concatenate, Add,
 * ZeroPadding2D, Flatten (of a 1x1xC value), Dropout (identity at
 * inference). A batch norm (with the epsilon of its config) that alone
 * consumes a linear convolution or dense layer is folded into its weights;
 * an activation that alone consumes one, or an Add, is fused into it; other
 * batch norms become per-channel affine nodes. Weights are looked up by
 * name in the manifest.
 *
 * Outputs of the graph:
 *   "embedding": global average pool of the last spatial feature map before
 *                the model's head (InceptionV3: mixed10, 2048-d), or of
 *                options.embedding;
 *   "<layer>":   global average pool of each layer in options.pooled
 *                (default: "mixed5" when the model has it, 768-d);
 *   "probs" and "logits" when the model output ends in a softmax,
 *   "logits" when it is linear, "output" otherwise.
 */
#ifndef IMCAP_TFJS_H
#define IMCAP_TFJS_H

#include "graph.h"

#include <cjson/cJSON.h>

typedef struct tfjs_options {
    const char *name;             /* graph name; NULL: the model directory's name */
    const char *embedding;        /* layer pooled into "embedding"; NULL: automatic */
    const char *const *pooled;    /* extra pooled outputs; NULL: "mixed5" if present */
    int n_pooled;
    enc_preproc preproc;          /* in_h/in_w 0: taken from the input layer */
    bool bgr;                     /* the model reads BGR (Keras "caffe" mode): the input channels of
                                     the Conv2D the input feeds are reversed, so the graph reads RGB */
} tfjs_options;

/* Keras "caffe" preprocessing (ResNet50): BGR, minus the ImageNet means
 * (103.939, 116.779, 123.68) in BGR order, no scaling. Sets preproc (RGB
 * order: x = pixel - mean) and bgr. */
void tfjs_caffe_options(tfjs_options *o);

/* Defaults: pixels scaled to [0, 1] (x = pixel / 255, as nsfwjs does). */
void tfjs_default_options(tfjs_options *o);

/* path: a model directory (model.json, else model.min.js, else model.js in
 * it) or the model file itself; shards are looked up next to it. */
imcap_status tfjs_import(const char *path, const tfjs_options *opt, enc_graph **out);

/* ---- pieces, exposed for the tests ---- */

/* The model file's text (JSON, or a JS module containing the object
 * literal) -> a cJSON object with "modelTopology" and "weightsManifest".
 * path is only used in messages. Free with cJSON_Delete. */
imcap_status tfjs_parse_model_text(const char *path, const char *text, size_t len, cJSON **out);

/* Standard base64 (with '=' padding) -> bytes (free with imcap_free).
 * path is only used in messages. */
imcap_status tfjs_base64_decode(const char *path, const char *s, size_t n, unsigned char **out,
                                size_t *out_len);

/* The base64 payload of a shard JS module: the longest string literal made
 * only of base64 characters. Points into text. */
imcap_status tfjs_find_base64_literal(const char *path, const char *text, size_t len,
                                      const char **s, size_t *n);

#endif
