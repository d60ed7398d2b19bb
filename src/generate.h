/*
 * generate.h - caption generation with the decoder (decoder.h inference API).
 */
#ifndef IMCAP_GENERATE_H
#define IMCAP_GENERATE_H

#include "decoder.h"

/* Greedy decoding of n images img [n][n_img]: starting from start_id, each
 * step feeds back the arg-max token until end_id or max_len tokens.
 * out [n][max_len] receives the generated ids (without START and END) and
 * lens [n] their counts. */
imcap_status gen_greedy(const dec_model *m, const float *img, int n, int32_t start_id, int32_t end_id, int max_len,
                        int32_t *out, int *lens);

#endif
