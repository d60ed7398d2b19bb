/* fuzz_image.h - one image format's decoder (FUZZ_IMAGE_FORMAT), then the
 * resize to a 17x13 network input. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (imcap_image_sniff(data, size) != FUZZ_IMAGE_FORMAT) return 0;
    imcap_image img;
    if (imcap_image_decode(data, size, "fuzz", &img) == IMCAP_OK) {
        uint8_t out[17 * 13 * 3];
        if (img.w < 1 || img.h < 1 || !img.rgb) abort();
        if (imcap_image_prepare(&img, 17, 13, out) != IMCAP_OK) abort();
        imcap_image_free(&img);
    }
    return 0;
}
