/* fuzz_captioner.c - the captioner model file, with the seed generator's tiny
 * encoder (FUZZ_ENCODER, default build-fuzz/seeds/encoders/tiny.gguf); a model it
 * accepts captions a small image greedily and with beam 2. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *enc = getenv("FUZZ_ENCODER");
    imcap_captioner *c;
    if (imcap_captioner_load(fuzz_file("m.imcap", data, size), enc ? enc : "build-fuzz/seeds/encoders/tiny.gguf", &c))
        return 0;
    uint8_t px[20 * 20 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    imcap_image img = {20, 20, px};
    for (int beam = 1; beam <= 2; beam++) {
        imcap_gen_params p = imcap_captioner_gen_params(c);
        p.beam = beam;
        p.max_len = 8;
        p.n_best = 1;
        imcap_caption *cap;
        if (imcap_caption_image(c, &img, &p, &cap) == IMCAP_OK) imcap_caption_free(cap);
    }
    imcap_captioner_free(c);
    return 0;
}
