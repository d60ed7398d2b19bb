/*
 * test_train_dist.c - the deterministic data-parallel batch (train_dist.c)
 * and the communicator helpers (comm.c), without MPI: N ranks are N threads
 * of this process joined by a shared-memory communicator (the real MPI runs
 * are tests/suites/mpi.sh).
 */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "decoder.h"
#include "train_dist.h"

#include <pthread.h>

/* ---- a communicator of N threads: every operation is copy in, barrier, copy out, barrier */

enum { MAXR = 4 };

typedef struct shared {
    int n;
    pthread_barrier_t bar;
    const void *send[MAXR];
    void *buf[MAXR];
} shared;

typedef struct thread_rank { shared *sh; int rank; } thread_rank;

static imcap_status th_allgather(void *user, const void *send, void *recv, size_t bytes)
{
    thread_rank *t = user;
    t->sh->send[t->rank] = send;
    pthread_barrier_wait(&t->sh->bar);
    for (int r = 0; r < t->sh->n; r++) memcpy((char *)recv + (size_t)r * bytes, t->sh->send[r], bytes);
    pthread_barrier_wait(&t->sh->bar);
    return IMCAP_OK;
}

static imcap_status th_alltoall(void *user, const void *send, void *recv, size_t bytes)
{
    thread_rank *t = user;
    t->sh->send[t->rank] = send;
    pthread_barrier_wait(&t->sh->bar);
    for (int r = 0; r < t->sh->n; r++)
        memcpy((char *)recv + (size_t)r * bytes, (const char *)t->sh->send[r] + (size_t)t->rank * bytes, bytes);
    pthread_barrier_wait(&t->sh->bar);
    return IMCAP_OK;
}

static imcap_status th_bcast(void *user, void *buf, size_t bytes, int root)
{
    thread_rank *t = user;
    t->sh->buf[t->rank] = buf;
    pthread_barrier_wait(&t->sh->bar);
    if (t->rank != root) memcpy(buf, t->sh->buf[root], bytes);
    pthread_barrier_wait(&t->sh->bar);
    return IMCAP_OK;
}

static imcap_status th_barrier(void *user)
{
    thread_rank *t = user;
    pthread_barrier_wait(&t->sh->bar);
    return IMCAP_OK;
}

static void th_abort(void *user, imcap_status s, const char *msg)
{
    (void)user, (void)s;
    fprintf(stderr, "abort: %s\n", msg);
    abort();
}

/* ---- the tiny decoder and a batch of 6 rows */

static dec_config cfg(void)
{
    dec_config c = {.n_img = 5, .n_img1 = 4, .n_hid = 3, .n_emb = 4, .n_out1 = 5, .n_vocab = 7, .pad_id = 0};
    return c;
}

enum { BATCH = 6, T1 = 7 };
static const int32_t tokens[BATCH * T1] = {
    2, 4, 5, 6, 3, 0, 0, 2, 6, 3, 0, 0, 0, 0, 2, 5, 1, 4, 6, 1, 3,
    2, 3, 0, 0, 0, 0, 0, 2, 6, 6, 5, 4, 3, 0, 2, 1, 3, 0, 0, 0, 0,
};

static void setup(dec_model **m, dec_work **w, float img[BATCH * 5])
{
    dec_config c = cfg();
    REQUIRE_OK(dec_model_new(&c, true, m));
    REQUIRE_OK(dec_work_new(&c, BATCH, T1, w));
    imcap_rng rng;
    imcap_rng_seed(&rng, 7);
    dec_model_init(*m, &rng);
    for (size_t i = 0; i < (*m)->n_params; i++) (*m)->params[i] += (float)(0.3 * imcap_rng_normal(&rng));
    for (int i = 0; i < BATCH * 5; i++) img[i] = (float)imcap_rng_normal(&rng);
}

/* The K-chunk gradient of one process is the batch gradient up to rounding:
 * the chunk weights n_c / n are right. */
TEST(train_dist_chunks_sum_to_the_batch_gradient)
{
    dec_model *m;
    dec_work *w;
    float img[BATCH * 5];
    setup(&m, &w, img);
    float loss;
    int64_t nt;
    REQUIRE_OK(dec_forward_backward(m, w, img, tokens, NULL, BATCH, T1, true, NULL, &loss, &nt));
    float *g = malloc(sizeof(float) * m->n_params);
    memcpy(g, m->grads, sizeof(float) * m->n_params);
    for (int K = 1; K <= BATCH; K++) {
        dist_ctx *d;
        REQUIRE_OK(dist_new(NULL, K, BATCH, m->n_params, &d));
        float l;
        int64_t n;
        memset(m->grads, 0, sizeof(float) * m->n_params);
        REQUIRE_OK(dist_forward_backward(d, IMCAP_OK, m, w, img, tokens, BATCH, T1, 0.0f, 1, &l, &n));
        CHECK(n == nt);
        CHECK(fabsf(l - loss) <= 1e-6f * fabsf(loss));
        double err = 0, norm = 0;
        for (size_t i = 0; i < m->n_params; i++) {
            err = fmax(err, fabs((double)m->grads[i] - g[i]));
            norm = fmax(norm, fabs((double)g[i]));
        }
        CHECK(norm > 0 && err <= 1e-5 * norm);
        if (K == 1) CHECK(memcmp(m->grads, g, sizeof(float) * m->n_params) == 0);
        CHECK(dist_bytes_per_step(d) == 0);
        dist_free(d);
    }
    free(g);
    dec_work_free(w);
    dec_model_free(m);
}

typedef struct rank_job {
    thread_rank tr;
    imcap_comm comm;
    int K;
    float drop;
    float *grads, loss; /* out */
    int64_t nt;
    imcap_status fail_here; /* status this rank brings into the batch */
    imcap_status st;
    char msg[256];
} rank_job;

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    dec_model *m;
    dec_work *w;
    float img[BATCH * 5];
    setup(&m, &w, img);
    dist_ctx *d;
    REQUIRE_OK(dist_new(&j->comm, j->K, BATCH, m->n_params, &d));
    imcap_status local = j->fail_here ? imcap_fail(j->fail_here, "rank %d cannot read its batch", j->tr.rank) : 0;
    j->st = dist_forward_backward(d, local, m, w, img, tokens, BATCH, T1, j->drop, 99, &j->loss, &j->nt);
    snprintf(j->msg, sizeof j->msg, "%s", imcap_last_error());
    if (!j->st) memcpy(j->grads, m->grads, sizeof(float) * m->n_params);
    dist_free(d);
    dec_work_free(w);
    dec_model_free(m);
    return NULL;
}

/* Runs the batch on n thread-ranks with K chunks; rank `bad` (or -1) fails. */
static void run_ranks(int n, int K, float drop, int bad, rank_job *jobs, float **grads, size_t P)
{
    shared sh = {.n = n};
    pthread_barrier_init(&sh.bar, NULL, (unsigned)n);
    pthread_t tid[MAXR];
    for (int r = 0; r < n; r++) {
        rank_job *j = &jobs[r];
        memset(j, 0, sizeof *j);
        j->tr = (thread_rank){&sh, r};
        j->comm = (imcap_comm){r, n, &j->tr, th_allgather, th_alltoall, th_bcast, th_barrier, th_abort};
        j->K = K, j->drop = drop;
        j->grads = grads[r];
        memset(grads[r], 0, sizeof(float) * P);
        j->fail_here = r == bad ? IMCAP_E_IO : IMCAP_OK;
        REQUIRE(pthread_create(&tid[r], NULL, rank_main, j) == 0);
    }
    for (int r = 0; r < n; r++) pthread_join(tid[r], NULL);
    pthread_barrier_destroy(&sh.bar);
}

static size_t n_params(void)
{
    dec_config c = cfg();
    dec_model *m;
    REQUIRE_OK(dec_model_new(&c, false, &m));
    const size_t P = m->n_params;
    dec_model_free(m);
    return P;
}

/* N = 1 .. 4 ranks with 4 chunks (dropout on): the same bits everywhere. */
TEST(train_dist_ranks_give_identical_bits)
{
    const size_t P = n_params();
    float *g[MAXR], *ref = malloc(sizeof(float) * P);
    for (int r = 0; r < MAXR; r++) g[r] = malloc(sizeof(float) * P);
    rank_job jobs[MAXR];
    float ref_loss = 0;
    for (int n = 1; n <= MAXR; n++) {
        run_ranks(n, 4, 0.3f, -1, jobs, g, P);
        for (int r = 0; r < n; r++) {
            REQUIRE_OK(jobs[r].st);
            if (n == 1 && r == 0) {
                memcpy(ref, g[0], sizeof(float) * P);
                ref_loss = jobs[0].loss;
            }
            CHECK(memcmp(g[r], ref, sizeof(float) * P) == 0);
            CHECK(memcmp(&jobs[r].loss, &ref_loss, sizeof ref_loss) == 0);
        }
    }
    for (int r = 0; r < MAXR; r++) free(g[r]);
    free(ref);
}

/* A failure on one rank before the exchange becomes every rank's, with its message. */
TEST(train_dist_error_on_one_rank_stops_all)
{
    const size_t P = n_params();
    float *g[MAXR];
    for (int r = 0; r < MAXR; r++) g[r] = malloc(sizeof(float) * P);
    rank_job jobs[MAXR];
    run_ranks(3, 3, 0.0f, 2, jobs, g, P);
    for (int r = 0; r < 3; r++) {
        CHECK(jobs[r].st == IMCAP_E_IO);
        CHECK(strstr(jobs[r].msg, "rank 2: rank 2 cannot read its batch") != NULL);
    }
    for (int r = 0; r < MAXR; r++) free(g[r]);
}

TEST(train_dist_rejects_more_ranks_than_chunks)
{
    dist_ctx *d = NULL;
    CHECK(dist_new(NULL, 0, 8, 10, &d) == IMCAP_E_ARG);
    CHECK(dist_new(NULL, 9, 8, 10, &d) == IMCAP_E_ARG);
    imcap_comm two = *imcap_comm_self();
    two.size = 2;
    CHECK(dist_new(&two, 1, 8, 10, &d) == IMCAP_E_ARG && strstr(imcap_last_error(), "number of ranks"));
    CHECK(d == NULL);
}

/* ---- comm.c helpers on thread-ranks */

typedef struct share_job { thread_rank tr; imcap_comm comm; char *s[7]; imcap_status st; float v[5]; } share_job;

static void *share_main(void *arg)
{
    share_job *j = arg;
    const int R = j->comm.size, me = j->comm.rank;
    for (int i = 0; i < 7; i++) {
        j->s[i] = NULL;
        if (i % R == me) {
            char b[32];
            snprintf(b, sizeof b, "%s%d", i == 3 ? "" : "caption ", i); /* one empty-prefixed, lengths differ */
            j->s[i] = imcap_strdup(b);
        }
    }
    j->st = imcap_comm_share_strings(&j->comm, j->s, 7);
    for (int i = 0; i < 5; i++) j->v[i] = i % R == me ? (float)(10 * i + 1) : -1.0f;
    if (!j->st) j->st = dist_share_floats(&j->comm, IMCAP_OK, j->v, 5);
    return NULL;
}

TEST(comm_share_strings_and_floats_across_ranks)
{
    for (int n = 1; n <= 3; n++) {
        shared sh = {.n = n};
        pthread_barrier_init(&sh.bar, NULL, (unsigned)n);
        share_job jobs[3];
        pthread_t tid[3];
        for (int r = 0; r < n; r++) {
            jobs[r].tr = (thread_rank){&sh, r};
            jobs[r].comm = (imcap_comm){r, n, &jobs[r].tr, th_allgather, th_alltoall, th_bcast, th_barrier, th_abort};
            REQUIRE(pthread_create(&tid[r], NULL, share_main, &jobs[r]) == 0);
        }
        for (int r = 0; r < n; r++) pthread_join(tid[r], NULL);
        pthread_barrier_destroy(&sh.bar);
        for (int r = 0; r < n; r++) {
            REQUIRE_OK(jobs[r].st);
            for (int i = 0; i < 7; i++) {
                char b[32];
                snprintf(b, sizeof b, "%s%d", i == 3 ? "" : "caption ", i);
                CHECK(jobs[r].s[i] && !strcmp(jobs[r].s[i], b));
                free(jobs[r].s[i]);
            }
            for (int i = 0; i < 5; i++) CHECK(jobs[r].v[i] == (float)(10 * i + 1));
        }
    }
}

TEST(comm_self_agrees_with_itself)
{
    const imcap_comm *c = imcap_comm_self();
    CHECK(c->rank == 0 && c->size == 1);
    CHECK(imcap_comm_agree(c, IMCAP_OK) == IMCAP_OK);
    imcap_fail(IMCAP_E_FORMAT, "x.emb: bad");
    CHECK(imcap_comm_agree(c, IMCAP_E_FORMAT) == IMCAP_E_FORMAT && !strcmp(imcap_last_error(), "x.emb: bad"));
    CHECK(imcap_comm_agree(NULL, IMCAP_OK) == IMCAP_OK);
}
