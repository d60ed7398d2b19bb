/*
 * tflite.h - importer of TensorFlow Lite flatbuffer models (ImageNet
 * classifiers such as the uint8 MobileNets) into the float encoder graph.
 *
 * Execution choice: the graph runs in float. Quantized weights are
 * dequantized once at import (w = scale * (q - zero_point), per tensor or per
 * channel), int32 biases with scale = input_scale * weight_scale; the
 * quantization of activations is not simulated, so results differ slightly
 * from an integer-exact runtime (see tests/test_tflite.c for the measured
 * differences and tolerances). The input normalisation comes from the input
 * tensor's quantization (real = scale * (q - zero_point) with q the uint8
 * pixel) and is stored in the graph's enc_preproc.
 *
 * Outputs named in the graph: "embedding" (the pooled feature vector that
 * feeds the classifier), "logits" (classifier output before the softmax)
 * and "probs" (softmax).
 */
#ifndef IMCAP_TFLITE_H
#define IMCAP_TFLITE_H

#include "graph.h"

#include <stdint.h>

/* Parse the whole file and build the graph. Errors: IMCAP_E_IO (unreadable),
 * IMCAP_E_FORMAT (malformed or truncated flatbuffer, inconsistent shapes;
 * the message names the file and the place), IMCAP_E_UNSUPPORTED (an
 * operator, type or option the importer does not handle; the message names
 * the file, the operator index and the operator name). */
imcap_status tflite_import(const char *path, enc_graph **out);

/* Same on a file already in memory; path is used only in messages. */
imcap_status tflite_import_mem(const uint8_t *data, size_t len, const char *path, enc_graph **out);

/* Name of a TFLite builtin operator code ("CONV_2D", ...), or "op<N>". The
 * string is static or lives in buf (at least 16 bytes). */
const char *tflite_op_name(int code, char *buf, size_t buf_len);

#endif
