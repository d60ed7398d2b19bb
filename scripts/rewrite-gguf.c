/*
 * rewrite-gguf.c - re-writes an imcap GGUF file (captioner model, decoder
 * checkpoint, encoder) with the current writer: same keys and tensors, plus
 * the per-tensor checksums that files written before issue 14 lack. Used to
 * re-export models/default.imcap. Build and run from the repository root:
 *   make && cc -O2 -Iinclude -Isrc/core -o build/rewrite-gguf scripts/rewrite-gguf.c build/libimcap.a \
 *     -lopenblas -ljpeg -lpng -lexif -lcjson -lespeak-ng -lm -pthread
 *   build/rewrite-gguf models/default.imcap models/default.imcap
 */
#include "gguf.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: rewrite-gguf IN OUT (OUT may be IN)\n");
        return 2;
    }
    gguf_file *f;
    gguf_writer *w = NULL;
    imcap_status s = gguf_open(argv[1], &f);
    if (!s && !(w = gguf_writer_new())) s = IMCAP_E_NOMEM;
    if (!s) s = gguf_writer_copy(w, f);
    if (!s) s = gguf_write(w, argv[2]);
    gguf_writer_free(w);
    if (f) gguf_close(f);
    if (s) {
        fprintf(stderr, "rewrite-gguf: %s\n", imcap_last_error());
        return 1;
    }
    return 0;
}
