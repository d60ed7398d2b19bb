/*
 * extract_shard.c - extraction shared by the ranks of a job (extract.h,
 * extract_sharded): rank r extracts the images i % N == r of the list into
 * its own shard file per output, resumed like a one-process file after a
 * kill; rank 0 then writes each output in list order from the shards (and
 * from the rows an existing output already had) through a temporary file
 * renamed over it, so a kill at any moment leaves a resumable state. The
 * rows do not depend on the batch they were computed in, so the merged
 * file is byte-identical to a one-process run.
 */
#define _POSIX_C_SOURCE 200809L
#include "extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SHARD_PATH_MAX = 4096 };

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void shard_path(char *buf, size_t n, const char *out, int rank, int size)
{
    snprintf(buf, n, "%s.rank%dof%d", out, rank, size);
}

/* Rank 0: output `out` in list order from the N shard files and the rows of
 * `done` (may be NULL), written to out.merge then renamed over out. */
static imcap_status merge_one(const char *out, const imcap_embfile *done, int N, char **names, size_t n,
                              size_t name_width)
{
    imcap_embfile *sh[256] = {0};
    imcap_embfile_writer *w = NULL;
    char path[SHARD_PATH_MAX], tmp[SHARD_PATH_MAX];
    imcap_status st = IMCAP_OK;
    if (N > 256) return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: merging more than 256 shards", out);
    for (int r = 0; r < N && !st; r++) {
        shard_path(path, sizeof path, out, r, N);
        st = imcap_embfile_open(path, &sh[r]);
    }
    /* every source: the same layout (grid shape, storage type) and encoder as shard 0 */
    imcap_emb_layout lay = {0};
    if (!st) lay = imcap_embfile_layout(sh[0]);
    for (int r = 1; r <= N && !st; r++) {
        const imcap_embfile *f = r < N ? sh[r] : done;
        if (!f) continue;
        imcap_emb_layout l = imcap_embfile_layout(f);
        if (l.rows != lay.rows || l.cols != lay.cols || l.channels != lay.channels || l.dtype != lay.dtype ||
            strcmp(imcap_embfile_encoder(f), imcap_embfile_encoder(sh[0])))
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: %s%d has another shape, storage or encoder than shard 0", out,
                            r < N ? "shard " : "the existing file (", r < N ? r : 0);
    }
    snprintf(tmp, sizeof tmp, "%s.merge", out);
    if (!st) st = imcap_embfile_create_grid(tmp, &lay, name_width, imcap_embfile_encoder(sh[0]), &w);
    for (size_t i = 0; i < n && !st; i++) {
        const imcap_embfile *src = done;
        int64_t row = done ? imcap_embfile_find(done, names[i]) : -1;
        if (row < 0) src = sh[i % (size_t)N], row = imcap_embfile_find(src, names[i]);
        if (row >= 0) st = imcap_embfile_append(w, names[i], imcap_embfile_row(src, (size_t)row));
    }
    if (w) {
        imcap_status cs = imcap_embfile_writer_close(w);
        if (!st) st = cs;
    }
    for (int r = 0; r < N; r++) imcap_embfile_close(sh[r]);
    if (!st && rename(tmp, out) != 0) st = imcap_fail(IMCAP_E_IO, "%s: cannot rename %s over it", out, tmp);
    if (st) remove(tmp);
    return st;
}

imcap_status extract_sharded(const enc_graph *g, const extract_ctx *x, const imcap_comm *c,
                             imcap_extract_report *rep)
{
    memset(rep, 0, sizeof *rep);
    const int N = c->size, R = c->rank;
    char pbuf[4096];
    const char *outs[EXTRACT_MAX_OUTPUTS + 1];
    const int n_out = extract_split_list(x->out_path, pbuf, sizeof pbuf, outs);
    extract_shard sh = {R, N, {NULL}};
    imcap_embfile *done[EXTRACT_MAX_OUTPUTS] = {NULL};
    char **names = NULL;
    size_t n = 0, name_width = 0, dropped = 0;
    imcap_status st = n_out > EXTRACT_MAX_OUTPUTS
                          ? imcap_fail(IMCAP_E_ARG, "more than %d output files", EXTRACT_MAX_OUTPUTS)
                          : extract_list(x->list, &names, &n, &name_width);
    /* an existing output (e.g. from an interrupted one-process run): rank 0
     * cuts a torn end, then every rank skips its rows */
    for (int k = 0; k < n_out && !st && R == 0; k++)
        if (exists(outs[k])) {
            imcap_embfile_writer *w;
            size_t d = 0;
            if (!(st = imcap_embfile_resume(outs[k], 0, NULL, &w, &d))) st = imcap_embfile_writer_close(w);
            dropped += d;
        }
    st = imcap_comm_agree(c, st);
    for (int k = 0; k < n_out && !st; k++)
        if (exists(outs[k]) && !(st = imcap_embfile_open(outs[k], &done[k]))) sh.done[k] = done[k];
    /* this rank's shard */
    char spaths[EXTRACT_MAX_OUTPUTS * SHARD_PATH_MAX];
    size_t used = 0;
    spaths[0] = 0;
    for (int k = 0; k < n_out && !st; k++) {
        char one[SHARD_PATH_MAX];
        shard_path(one, sizeof one, outs[k], R, N);
        used += (size_t)snprintf(spaths + used, sizeof spaths - used, "%s%s", k ? "," : "", one);
    }
    if (!st) {
        extract_ctx xs = *x;
        xs.out_path = spaths;
        /* only rank 0 shows progress (of its shard: the ranks run at one pace) */
        if (R != 0) xs.progress = NULL;
        st = extract_run_shard(g, &xs, &sh, rep);
        rep->dropped += dropped;
    }
    st = imcap_comm_agree(c, st);
    for (int k = 0; k < n_out && !st && R == 0; k++) st = merge_one(outs[k], done[k], N, names, n, name_width);
    for (int k = 0; k < n_out; k++) imcap_embfile_close(done[k]);
    if (!st && R == 0)
        for (int k = 0; k < n_out; k++)
            for (int r = 0; r < N; r++) {
                char one[SHARD_PATH_MAX];
                shard_path(one, sizeof one, outs[k], r, N);
                remove(one);
            }
    extract_free_list(names, n);
    return imcap_comm_agree(c, st);
}
