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

/* One shard of a job's extraction (extract_shard.c): the images i of the
 * list with i % n_shards == shard; those found in done[k] (NULL: none) need
 * no row in output k. */
typedef struct extract_shard {
    int shard, n_shards;
    const imcap_embfile *done[EXTRACT_MAX_OUTPUTS];
} extract_shard;

/* The list's image names (one a line, no duplicates) and the name field
 * width a new embeddings file gets for them. */
imcap_status extract_list(const char *list, char ***names, size_t *n, size_t *name_width);
void extract_free_list(char **names, size_t n);
/* Splits a comma-separated list (copied into buf) into parts; returns the
 * count (at most EXTRACT_MAX_OUTPUTS + 1: more means too many). */
int extract_split_list(const char *s, char *buf, size_t bufsz, const char **parts);
/* The ranks of c (size > 1) extract interleaved shards into
 * "<out>.rank<R>of<N>" files, resumed like one file; rank 0 then merges them
 * (and the rows of an existing out) in list order into out, byte for byte
 * the file one process writes, and removes them. */
imcap_status extract_sharded(const enc_graph *g, const extract_ctx *x, const imcap_comm *c,
                             imcap_extract_report *rep);

/* Runs g over the listed images, appending to (or resuming) out_path. */
imcap_status extract_run(const enc_graph *g, const extract_ctx *x, imcap_extract_report *rep);
/* Same for one shard (sh may be NULL: all images). */
imcap_status extract_run_shard(const enc_graph *g, const extract_ctx *x, const extract_shard *sh,
                               imcap_extract_report *rep);

#endif
