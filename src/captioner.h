/*
 * captioner.h - writing captioner files (the reading side is the public
 * imcap_captioner API). Layout: docs/FORMATS.md, "Captioner file".
 */
#ifndef IMCAP_CAPTIONER_H
#define IMCAP_CAPTIONER_H

#include "decoder.h"
#include "graph.h"

enum { CAPTIONER_VERSION = 1 };

typedef struct captioner_spec {
    const dec_model *dec;
    const imcap_vocab *vocab;
    const enc_graph *encoder;   /* its name, checksum and preprocessing are recorded */
    const char *encoder_file;   /* file name looked up at load time (basename is kept) */
    const char *encoder_output; /* the graph output the decoder was trained on */
    imcap_gen_params gen;       /* default generation settings */
    const char *source;         /* provenance text, may be NULL */
    const char *checkpoint;     /* the training checkpoint it came from (its loss history sits
                                   next to it: X.history.csv, X.loss.svg), may be NULL */
} captioner_spec;

/* Validates that the parts fit together (vocabulary size, embedding size)
 * and writes the file atomically. */
imcap_status captioner_write(const captioner_spec *s, const char *path);

#endif
