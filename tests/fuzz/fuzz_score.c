/* fuzz_score.c - `imcap score`'s inputs: a COCO results file, FUZZ_SEP, a
 * COCO captions (references) file. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t a, b;
    const uint8_t *refs;
    fuzz_split(data, size, &a, &refs, &b);
    const char *rp = fuzz_file("results.json", data, a), *fp = fuzz_file("refs.json", refs, b);
    imcap_scores s;
    (void)imcap_score_coco_files(rp, fp, &s);
    return 0;
}
