/* fuzz_encoder.c - the encoder file (graph + weights); a graph it accepts
 * with a small input is also run once on a zero image. */
#include "fuzz.h"
#include "graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enc_graph *g;
    if (enc_graph_load(fuzz_file("e.gguf", data, size), &g) != IMCAP_OK) return 0;
    const enc_value *in = enc_graph_value(g, 0);
    int id = enc_graph_output(g, "embedding");
    if (in && id >= 0 && (int64_t)in->h * in->w * in->c <= 48 * 48 * 3) {
        const enc_value *ov = enc_graph_value(g, id);
        float *x = calloc((size_t)in->h * in->w * in->c, sizeof(float));
        float *y = calloc((size_t)ov->h * ov->w * ov->c + 1, sizeof(float));
        if (x && y) (void)enc_graph_run(g, x, 1, &id, 1, &y);
        free(x);
        free(y);
    }
    enc_graph_free(g);
    return 0;
}
