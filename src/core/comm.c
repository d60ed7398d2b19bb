/*
 * comm.c - the processes of one job: the one-process communicator, agreement
 * on failure, and sharing strings computed on different ranks. The transport
 * (MPI) is the caller's (tools/mpi.c); nothing here knows about it.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static imcap_status self_allgather(void *user, const void *send, void *recv, size_t bytes)
{
    (void)user;
    if (bytes && send != recv) memmove(recv, send, bytes);
    return IMCAP_OK;
}

static imcap_status self_bcast(void *user, void *buf, size_t bytes, int root)
{
    (void)user, (void)buf, (void)bytes, (void)root;
    return IMCAP_OK;
}

static imcap_status self_barrier(void *user)
{
    (void)user;
    return IMCAP_OK;
}

static void self_abort(void *user, imcap_status s, const char *msg)
{
    (void)user, (void)s, (void)msg;
}

static const imcap_comm g_self = {0, 1, NULL, self_allgather, self_allgather, self_bcast, self_barrier, self_abort};

const imcap_comm *imcap_comm_self(void) { return &g_self; }

/* A transport failure leaves the ranks out of step: nothing can be agreed
 * any more, so the job ends everywhere. */
static imcap_status comm_lost(const imcap_comm *c, imcap_status s, const char *what)
{
    char msg[2300];
    snprintf(msg, sizeof msg, "rank %d: %s failed: %s", c->rank, what, imcap_last_error());
    c->abort(c->user, s, msg);
    return imcap_fail(s, "%s", msg);
}

imcap_status imcap_comm_agree(const imcap_comm *c, imcap_status s)
{
    if (!c || c->size <= 1) return s;
    int32_t mine = (int32_t)s, all[1024];
    int32_t *st = c->size <= 1024 ? all : malloc(sizeof(int32_t) * (size_t)c->size);
    if (!st) return comm_lost(c, IMCAP_E_NOMEM, "agreement");
    imcap_status t = c->allgather(c->user, &mine, st, sizeof mine);
    if (t) {
        if (st != all) free(st);
        return comm_lost(c, t, "agreement");
    }
    int first = -1;
    for (int r = 0; r < c->size && first < 0; r++)
        if (st[r] != IMCAP_OK) first = r;
    imcap_status fs = first >= 0 ? (imcap_status)st[first] : IMCAP_OK;
    if (st != all) free(st);
    if (first < 0) return IMCAP_OK;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", c->rank == first ? imcap_last_error() : "");
    if ((t = c->bcast(c->user, msg, sizeof msg, first))) return comm_lost(c, t, "agreement");
    msg[sizeof msg - 1] = 0;
    return imcap_fail(fs, "rank %d: %s", first, msg);
}

imcap_status imcap_comm_share_strings(const imcap_comm *c, char **strs, size_t n)
{
    if (!c || c->size <= 1) return IMCAP_OK;
    const size_t R = (size_t)c->size, me = (size_t)c->rank;
    /* this rank's strings, NUL-terminated, in index order */
    uint64_t mine = 0;
    for (size_t i = me; i < n; i += R) mine += strlen(strs[i]) + 1;
    uint64_t *len = imcap_calloc(R, sizeof *len);
    imcap_status s = len ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "out of memory sharing %zu strings", n);
    if ((s = imcap_comm_agree(c, s))) {
        imcap_free(len);
        return s;
    }
    if ((s = c->allgather(c->user, &mine, len, sizeof mine))) {
        imcap_free(len);
        return comm_lost(c, s, "sharing strings");
    }
    uint64_t max = 1;
    for (size_t r = 0; r < R; r++)
        if (len[r] > max) max = len[r];
    size_t total;
    char *send = NULL, *recv = NULL;
    if (max > (uint64_t)SIZE_MAX / R || !imcap_mul_size(R, (size_t)max, &total) ||
        !(send = imcap_alloc((size_t)max, 1)) || !(recv = imcap_alloc(total, 1)))
        s = imcap_fail(IMCAP_E_NOMEM, "out of memory sharing %zu strings", n);
    if (!s) {
        char *q = send;
        for (size_t i = me; i < n; i += R) {
            size_t l = strlen(strs[i]) + 1;
            memcpy(q, strs[i], l);
            q += l;
        }
    }
    if (!(s = imcap_comm_agree(c, s)) && (s = c->allgather(c->user, send, recv, (size_t)max)))
        s = comm_lost(c, s, "sharing strings");
    for (size_t r = 0; r < R && !s; r++) {
        const char *q = recv + r * (size_t)max, *end = q + len[r];
        for (size_t i = r; i < n && !s; i += R) {
            const char *z = memchr(q, 0, (size_t)(end - q));
            if (!z) {
                s = imcap_fail(IMCAP_E_INTERNAL, "rank %zu sent %llu bytes, too few for its strings", r,
                               (unsigned long long)len[r]);
                break;
            }
            if (r != me && !(strs[i] = imcap_strdup(q))) s = imcap_fail(IMCAP_E_NOMEM, "out of memory");
            q = z + 1;
        }
    }
    imcap_free(send);
    imcap_free(recv);
    imcap_free(len);
    return imcap_comm_agree(c, s);
}
