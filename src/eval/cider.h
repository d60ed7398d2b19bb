/*
 * cider.h - CIDEr-D rewards for sequence-level training: one candidate at a
 * time against one image's references, with document frequencies taken once
 * over a fixed reference set (the training split's captions). The value is
 * exactly imcap_score's per-image CIDEr-D when imcap_score is given the same
 * images with their references (its document frequencies are then the
 * same): references and candidates are PTB-tokenized as the toolkit does;
 * a candidate of vocabulary ids is the concatenation of each word's tokens.
 * Scoring only reads the tables, so threads may score concurrently.
 */
#ifndef IMCAP_CIDER_H
#define IMCAP_CIDER_H

#include "internal.h"

typedef struct cider_refs cider_refs;

/* References: every caption of every image of refs; v maps candidate ids. */
imcap_status cider_refs_new(const imcap_captions *refs, const imcap_vocab *v, cider_refs **out);
void cider_refs_free(cider_refs *c);
size_t cider_refs_n_images(const cider_refs *c);

/* CIDEr-D (x10 like the toolkit) of words [n] (vocabulary ids, no START /
 * END) against the references of image `image` (index in refs). */
imcap_status cider_reward(const cider_refs *c, size_t image, const int32_t *words, int n, double *out);

#endif
