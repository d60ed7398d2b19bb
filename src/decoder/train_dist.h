/*
 * train_dist.h - a training batch shared by the ranks of a job (imcap_comm)
 * with results that depend on the chunk count, never on the number of ranks.
 *
 * The batch of b rows is cut into K fixed chunks (chunk c = rows
 * [c*b/K, (c+1)*b/K)); chunk c is computed by rank c % N. The batch gradient
 * is sum_c (n_c / n) * g_c over the chunks in chunk order (g_c: gradient of
 * chunk c's mean loss over its n_c targets, n = sum n_c), summed by a
 * reduce-scatter written out by hand: the parameters are cut into N slices,
 * rank q receives slice q of every chunk's gradient (alltoall) and folds them
 * in chunk order, then every rank gathers all slices (allgather). One
 * process runs the same fold over its K chunks, so N = 1, 2, ..., K give
 * bit-identical gradients, and K = 1 in one process is the plain batch.
 */
#ifndef IMCAP_TRAIN_DIST_H
#define IMCAP_TRAIN_DIST_H

#include "decoder.h"

typedef struct dist_ctx dist_ctx;

/* For batches of `batch` rows cut into `chunks` (1 <= chunks <= batch) over
 * c's ranks (size <= chunks) and a model of n_params parameters. */
imcap_status dist_new(const imcap_comm *c, int chunks, int batch, size_t n_params, dist_ctx **out);
void dist_free(dist_ctx *d);

/* One training batch: img [b][dec_input_floats], tokens [b][t1]. `local` is this rank's
 * status so far (agreed before anything is exchanged: an error on one rank
 * becomes the error of all). Chunk c drops with seed drop_seed + c * a
 * constant. On return (every rank) m->grads holds the batch gradient, *loss
 * the batch's mean loss and *n_targets its target count. */
imcap_status dist_forward_backward(dist_ctx *d, imcap_status local, dec_model *m, dec_work *w, const float *img,
                                   const int32_t *tokens, int b, int t1, float dropout, uint64_t drop_seed,
                                   float *loss, int64_t *n_targets);

/* v [n]: rank r computed v[i] for i % size == r; afterwards every rank holds
 * all n. `local` is agreed first, as above. */
imcap_status dist_share_floats(const imcap_comm *c, imcap_status local, float *v, size_t n);

/* Bytes this rank sends per batch (alltoall + allgather of the gradient). */
size_t dist_bytes_per_step(const dist_ctx *d);
/* Seconds spent exchanging (the collectives, not the fold) since dist_new. */
double dist_comm_seconds(const dist_ctx *d);
/* Seconds spent waiting for the slowest rank before the exchanges. */
double dist_wait_seconds(const dist_ctx *d);

#endif
