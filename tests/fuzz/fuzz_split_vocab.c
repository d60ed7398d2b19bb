/* fuzz_split_vocab.c - split files and vocabulary files: the first byte
 * picks the reader. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *path = fuzz_file("list.txt", data + 1, size - 1);
    if (data[0] & 1) {
        imcap_vocab *v;
        if (imcap_vocab_load_txt(path, &v) == IMCAP_OK) {
            if (imcap_vocab_size(v) < 4) abort();
            imcap_vocab_free(v);
        }
    } else {
        char **names;
        size_t n;
        if (imcap_split_load(path, &names, &n) == IMCAP_OK) free(names);
    }
    return 0;
}
