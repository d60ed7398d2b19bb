/*
 * train_dist.c - the deterministic data-parallel batch (train_dist.h).
 */
#include "train_dist.h"

#include <stdlib.h>
#include <string.h>

struct dist_ctx {
    const imcap_comm *c;
    int K, N, rank, slots;  /* chunks, ranks, this rank, chunk slots per rank = ceil(K / N) */
    size_t P, S;            /* parameters, slice length = ceil(P / N) */
    float *send, *recv;     /* [N][slots][S]: slice q of this rank's chunk j / slice rank of rank q's chunk j */
    float *slice;           /* [S] this rank's slice of the summed gradient */
    float *all;             /* [N][S] every slice, gathered */
    double *stats, *stats_all; /* [slots][2] (loss, targets) of this rank's chunks / [N][slots][2] */
    double comm_s, wait_s;
};

void dist_free(dist_ctx *d)
{
    if (!d) return;
    imcap_free(d->send);
    imcap_free(d->recv);
    imcap_free(d->slice);
    imcap_free(d->all);
    imcap_free(d->stats);
    imcap_free(d->stats_all);
    free(d);
}

imcap_status dist_new(const imcap_comm *c, int chunks, int batch, size_t n_params, dist_ctx **out)
{
    *out = NULL;
    if (!c) c = imcap_comm_self();
    if (chunks < 1 || chunks > batch)
        return imcap_fail(IMCAP_E_ARG, "training: %d chunks for batches of %d (need 1 <= chunks <= batch)", chunks,
                          batch);
    if (c->size > chunks)
        return imcap_fail(IMCAP_E_ARG, "training: %d ranks but each batch is cut into %d chunks (--chunks must be "
                          "at least the number of ranks)", c->size, chunks);
    dist_ctx *d = calloc(1, sizeof *d);
    if (!d) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    d->c = c;
    d->K = chunks, d->N = c->size, d->rank = c->rank;
    d->slots = (chunks + d->N - 1) / d->N;
    d->P = n_params;
    d->S = (n_params + (size_t)d->N - 1) / (size_t)d->N;
    size_t block, total;
    if (!imcap_mul_size((size_t)d->slots, d->S, &block) || !imcap_mul_size(block, (size_t)d->N, &total) ||
        !(d->send = imcap_calloc(total, sizeof(float))) || !(d->recv = imcap_calloc(total, sizeof(float))) ||
        !(d->slice = imcap_calloc(d->S, sizeof(float))) ||
        !(d->all = imcap_calloc((size_t)d->N * d->S, sizeof(float))) ||
        !(d->stats = imcap_calloc((size_t)d->slots * 2, sizeof(double))) ||
        !(d->stats_all = imcap_calloc((size_t)d->N * d->slots * 2, sizeof(double)))) {
        dist_free(d);
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for %d gradient chunks of %zu parameters", chunks, n_params);
    }
    *out = d;
    return IMCAP_OK;
}

size_t dist_bytes_per_step(const dist_ctx *d)
{
    if (d->N <= 1) return 0;
    /* what leaves this rank: the other ranks' blocks of the alltoall and this slice to each other rank */
    return (size_t)(d->N - 1) * ((size_t)d->slots * d->S + d->S) * sizeof(float) +
           (size_t)(d->N - 1) * (size_t)d->slots * 2 * sizeof(double);
}

double dist_comm_seconds(const dist_ctx *d) { return d->comm_s; }

double dist_wait_seconds(const dist_ctx *d) { return d->wait_s; }

static imcap_status timed(dist_ctx *d, imcap_status s)
{
    if (s) {
        char msg[2300];
        snprintf(msg, sizeof msg, "rank %d: exchanging gradients failed: %s", d->rank, imcap_last_error());
        d->c->abort(d->c->user, s, msg);
        return imcap_fail(s, "%s", msg);
    }
    return IMCAP_OK;
}

imcap_status dist_forward_backward(dist_ctx *d, imcap_status local, dec_model *m, dec_work *w, const float *img,
                                   const int32_t *tokens, int b, int t1, float dropout, uint64_t drop_seed,
                                   float *loss, int64_t *n_targets)
{
    if (d->K == 1 && d->N == 1) {
        /* the plain batch, exactly as without chunks */
        if (local) return local;
        dec_work_set_dropout(w, dropout, drop_seed);
        return dec_forward_backward(m, w, img, tokens, NULL, b, t1, true, NULL, loss, n_targets);
    }
    const size_t D = dec_input_floats(&m->cfg), P = d->P, S = d->S;
    const int K = d->K, N = d->N;
    imcap_status s = local;
    /* this rank's chunks: c = rank + j * N */
    for (int j = 0; j < d->slots && !s; j++) {
        const int c = d->rank + j * N;
        double *st = d->stats + 2 * j;
        st[0] = st[1] = 0;
        if (c >= K) continue;
        const int r0 = (int)((int64_t)c * b / K), r1 = (int)((int64_t)(c + 1) * b / K);
        dec_work_set_dropout(w, dropout, drop_seed + (uint64_t)c * 0xd1b54a32d192ed03ull);
        float l;
        int64_t nt;
        if ((s = dec_forward_backward(m, w, img + (size_t)r0 * D, tokens + (size_t)r0 * t1, NULL, r1 - r0, t1, true,
                                      NULL, &l, &nt)))
            break;
        st[0] = l;
        st[1] = (double)nt;
        for (int q = 0; q < N; q++) {
            const size_t lo = (size_t)q * S, hi = lo + S < P ? lo + S : P;
            float *dst = d->send + ((size_t)q * d->slots + (size_t)j) * S;
            if (lo < hi) memcpy(dst, m->grads + lo, sizeof(float) * (hi - lo));
        }
    }
    if ((s = imcap_comm_agree(d->c, s))) return s;
    /* measured apart: waiting for the slowest rank, then the exchange itself */
    const double tw = imcap_now();
    if ((s = timed(d, d->c->barrier(d->c->user)))) return s;
    const double t0 = imcap_now();
    d->wait_s += t0 - tw;
    if ((s = timed(d, d->c->allgather(d->c->user, d->stats, d->stats_all, sizeof(double) * 2 * (size_t)d->slots))))
        return s;
    if ((s = timed(d, d->c->alltoall(d->c->user, d->send, d->recv, sizeof(float) * (size_t)d->slots * S)))) return s;
    d->comm_s += imcap_now() - t0;
    /* the batch's targets and loss, and each chunk's weight n_c / n, in chunk order */
    double n = 0, lsum = 0;
    for (int c = 0; c < K; c++) n += d->stats_all[2 * ((size_t)(c % N) * d->slots + (size_t)(c / N)) + 1];
    if (!(n > 0)) return imcap_fail(IMCAP_E_ARG, "training batch without targets");
    for (int c = 0; c < K; c++) {
        const double *st = d->stats_all + 2 * ((size_t)(c % N) * d->slots + (size_t)(c / N));
        const float wc = (float)(st[1] / n);
        const float *g = d->recv + ((size_t)(c % N) * d->slots + (size_t)(c / N)) * S;
        lsum += st[1] * st[0];
        if (c == 0)
            for (size_t i = 0; i < S; i++) d->slice[i] = wc * g[i];
        else
            for (size_t i = 0; i < S; i++) d->slice[i] += wc * g[i];
    }
    const double t1s = imcap_now();
    if ((s = timed(d, d->c->allgather(d->c->user, d->slice, d->all, sizeof(float) * S)))) return s;
    d->comm_s += imcap_now() - t1s;
    memcpy(m->grads, d->all, sizeof(float) * P);
    *loss = (float)(lsum / n);
    *n_targets = (int64_t)n;
    return IMCAP_OK;
}

imcap_status dist_share_floats(const imcap_comm *c, imcap_status local, float *v, size_t n)
{
    if (!c || c->size <= 1) return local;
    imcap_status s = imcap_comm_agree(c, local);
    if (s) return s;
    const size_t R = (size_t)c->size, per = (n + R - 1) / R;
    float *mine = imcap_calloc(per ? per : 1, sizeof(float)), *all = imcap_calloc(R * (per ? per : 1), sizeof(float));
    s = mine && all ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "out of memory sharing %zu values", n);
    if (!s)
        for (size_t k = 0, i = (size_t)c->rank; i < n; i += R) mine[k++] = v[i];
    if (!(s = imcap_comm_agree(c, s)) && (s = c->allgather(c->user, mine, all, sizeof(float) * (per ? per : 1)))) {
        c->abort(c->user, s, "sharing values failed");
        s = imcap_fail(s, "rank %d: sharing values failed: %s", c->rank, imcap_last_error());
    }
    if (!s)
        for (size_t i = 0; i < n; i++) v[i] = all[(i % R) * (per ? per : 1) + i / R];
    imcap_free(mine);
    imcap_free(all);
    return s;
}
