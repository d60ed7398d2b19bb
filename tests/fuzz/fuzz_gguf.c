/* fuzz_gguf.c - the GGUF container: open, checksum verification and every
 * lookup on what it accepted. */
#include "fuzz.h"
#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f;
    if (gguf_open(fuzz_file("f.gguf", data, size), &f) != IMCAP_OK) return 0;
    (void)gguf_verify(f);
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name) == NULL) abort();
        volatile unsigned char sink = 0;
        for (size_t b = 0; b < t->n_bytes; b += 4096) sink ^= ((const unsigned char *)t->data)[b];
        (void)sink;
    }
    static const char *keys[] = {"general.architecture", "general.alignment", "imcap.decoder.vocab",
                                 "imcap.captioner.vocab", "imcap.tensor_crc32"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *s;
        uint32_t u;
        const char *const *a;
        const int32_t *ia;
        size_t n;
        (void)gguf_get_str(f, keys[k], &s);
        (void)gguf_get_u32(f, keys[k], &u);
        (void)gguf_get_arr_str(f, keys[k], &a, &n);
        (void)gguf_get_arr_i32(f, keys[k], &ia, &n);
    }
    gguf_close(f);
    return 0;
}
