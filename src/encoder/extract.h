/*
 * extract.h - feature extraction internals (the public entry point is
 * imcap_extract in imcap.h); tests drive extract_run with an in-memory graph.
 */
#ifndef IMCAP_EXTRACT_H
#define IMCAP_EXTRACT_H

#include "graph.h"

enum { EXTRACT_MAX_OUTPUTS = 8 };

typedef struct extract_ctx {
    const char *encoder_name; /* for messages and the file's encoder id */
    const char *image_dir, *list;
    const char *out_path, *output; /* comma-separated lists of equal length */
    int threads, batch;
    imcap_progress_fn progress;
    void *progress_user;
    int dtype;          /* IMCAP_EMB_F32 or IMCAP_EMB_F16 */
    const char *dtypes; /* NULL or "f32,f16,...", one per output (overrides dtype) */
} extract_ctx;

/* Runs g over the listed images, appending to (or resuming) out_path. */
imcap_status extract_run(const enc_graph *g, const extract_ctx *x, imcap_extract_report *rep);

#endif
