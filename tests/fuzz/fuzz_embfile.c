/* fuzz_embfile.c - the embeddings file: the validating reader, and resume
 * (which repairs a torn tail in place) on a second copy, then one append. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imcap_embfile *f;
    if (imcap_embfile_open(fuzz_file("e.f32", data, size), &f) == IMCAP_OK) {
        for (size_t i = 0; i < imcap_embfile_count(f); i++)
            if (imcap_embfile_find(f, imcap_embfile_name(f, i)) != (int64_t)i) abort();
        imcap_embfile_close(f);
    }
    imcap_embfile_writer *w;
    size_t dropped;
    if (imcap_embfile_resume(fuzz_file("r.f32", data, size), 0, NULL, &w, &dropped) == IMCAP_OK) {
        uint32_t dim = 0; /* the header's u32 at byte 16 (docs/FORMATS.md) */
        memcpy(&dim, data + 16, 4);
        float *row = dim <= 65536 ? calloc(dim ? dim : 1, sizeof(float)) : NULL;
        if (row) (void)imcap_embfile_append(w, "fuzz-new-row.jpg", row);
        free(row);
        (void)imcap_embfile_writer_close(w);
    }
    return 0;
}
