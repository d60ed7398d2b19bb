/* fuzz_tflite.c - the TFLite flatbuffer importer. Seeds are the tiny
 * hand-built model of tests/test_tflite_ops.c (all supported operators,
 * uint8/int8 per-tensor and per-channel, float), so that mutations hit the
 * structure (tables, vtables, vectors, options) rather than weight bytes. */
#include "fuzz.h"
#include "tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enc_graph *g;
    if (tflite_import_mem(data, size, "fuzz.tflite", &g) == IMCAP_OK) enc_graph_free(g);
    return 0;
}
