/* fuzz_tfjs.c - a TF.js layers model: model.json (or a JS module), the
 * FUZZ_SEP separator, then the bytes of its one weights shard weights.bin. */
#include "fuzz.h"
#include "tfjs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t a, b;
    const uint8_t *w;
    fuzz_split(data, size, &a, &w, &b);
    fuzz_file("model.json", data, a);
    fuzz_file("weights.bin", w, b);
    tfjs_options o;
    tfjs_default_options(&o);
    enc_graph *g;
    char dir[700];
    snprintf(dir, sizeof dir, "%s", fuzz_path("model.json"));
    if (tfjs_import(dir, &o, &g) == IMCAP_OK) enc_graph_free(g);
    return 0;
}
