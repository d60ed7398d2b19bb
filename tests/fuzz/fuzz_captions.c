/* fuzz_captions.c - caption datasets: the first byte picks the reader (CSV,
 * token file, COCO JSON), the rest is the file; accepted datasets are
 * walked and restricted to a split of their first images. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static imcap_status (*const load[3])(const char *, imcap_captions **) = {
        imcap_captions_load_csv, imcap_captions_load_tokens, imcap_captions_load_coco};
    imcap_captions *c;
    if (load[data[0] % 3](fuzz_file("captions", data + 1, size - 1), &c) != IMCAP_OK) return 0;
    size_t n = imcap_captions_n_images(c), total = 0;
    const char *names[3];
    for (size_t i = 0; i < n; i++) {
        if (i < 3) names[i] = imcap_captions_image(c, i);
        if (imcap_captions_find(c, imcap_captions_image(c, i)) != (int64_t)i) abort();
        for (size_t k = 0; k < imcap_captions_count(c, i); k++) total += strlen(imcap_captions_text(c, i, k)) > 0;
    }
    if (total > imcap_captions_n_total(c)) abort();
    imcap_captions *sub;
    if (imcap_captions_subset(c, names, n < 3 ? n : 3, "fuzz", &sub) == IMCAP_OK) imcap_captions_free(sub);
    imcap_captions_free(c);
    return 0;
}
