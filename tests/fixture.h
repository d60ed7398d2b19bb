/*
 * fixture.h - small model files built by the tests themselves: a tiny
 * encoder graph and a random captioner over a ten-word vocabulary.
 */
#ifndef IMCAP_TEST_FIXTURE_H
#define IMCAP_TEST_FIXTURE_H

#include "captioner.h"

/* The tiny encoder: 16x16x3 input, conv 3x3/2 + ReLU, global average pool,
 * dense to n_img = 6 floats named "embedding"; preprocessing x/255*2-1. */
enc_graph *fixture_encoder(const char *name, uint64_t seed);

/* A tiny random decoder (img 6..n -> 5 -> LSTM 8, embedding 4, out 7) over
 * the vocabulary of the four specials + "a dog runs", initialised from seed;
 * *v receives that vocabulary. Free both. */
dec_model *fixture_decoder(int n_img, uint64_t seed, imcap_vocab **v);

/* Writes <dir>/encoders/tiny.gguf and <dir>/model.imcap (decoder with random
 * weights, vocabulary of the four specials + 10 words, the given default
 * beam). Paths are returned in model_path / enc_path (>= 600 bytes). */
void fixture_captioner(const char *dir, uint64_t seed, int beam, char *model_path, char *enc_path);

/* Overwrites n bytes at byte offset `at` of a tensor's stored data in a GGUF
 * file (the tensor is found by its first 32 bytes, so it needs >= 32), as
 * damage on disk would: the file's checksums are left as they were. */
void fixture_poke_tensor(const char *path, const char *tensor, size_t at, const void *bytes, size_t n);

/* The photos names[0..count) that are present under data/images, at most
 * max_n of them, decoded, resized and normalised as pp says into
 * x [n][in_h][in_w][3]; used[k] (when not NULL) receives the k-th loaded
 * photo's name. Returns n (a photo that is present but cannot be read fails
 * the test). */
int fixture_photos(const char *const *names, int count, int max_n, const enc_preproc *pp, float *x,
                   const char **used);

#endif
