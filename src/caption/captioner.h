/*
 * captioner.h - writing captioner files (the reading side is the public
 * imcap_captioner API). Layout: docs/FORMATS.md, "Captioner file".
 */
#ifndef IMCAP_CAPTIONER_H
#define IMCAP_CAPTIONER_H

#include "decoder.h"
#include "graph.h"

enum { CAPTIONER_VERSION = 1, CAPTIONER_MAX_ENCODERS = 4 };

/* The decoder's image embedding is the concatenation, in order, of the
 * named outputs of n_encoders encoders (one encoder in the usual case). */
typedef struct captioner_spec {
    const dec_model *dec;
    const imcap_vocab *vocab;
    int n_encoders;
    const enc_graph *encoders[CAPTIONER_MAX_ENCODERS];   /* name, checksum, preprocessing recorded */
    const char *encoder_files[CAPTIONER_MAX_ENCODERS];   /* file names looked up at load (basename kept) */
    const char *encoder_outputs[CAPTIONER_MAX_ENCODERS]; /* the graph outputs the decoder was trained on */
    imcap_gen_params gen;       /* default generation settings */
    const char *source;         /* provenance text, may be NULL */
    const char *checkpoint;     /* the training checkpoint it came from (its loss history sits
                                   next to it: X.history.csv, X.loss.svg), may be NULL */
} captioner_spec;

/* Validates that the parts fit together (vocabulary size, embedding size)
 * and writes the file atomically. */
imcap_status captioner_write(const captioner_spec *s, const char *path);

/* The decoder and vocabulary of a model file: a captioner file (without
 * loading its encoder), or a decoder model / training checkpoint (dec_load).
 * For starting training or evaluating on embeddings from an exported model. */
imcap_status captioner_read_decoder(const char *path, dec_model **m, imcap_vocab **v);
/* The generation settings a captioner file stores; the library defaults for
 * decoder files, checkpoints and comma lists of them. */
imcap_status captioner_read_gen(const char *path, imcap_gen_params *out);

#endif
