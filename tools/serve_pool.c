/* serve_pool.c - the worker threads of `imcap serve` and their bounded
 * queue: a ring of jobs waiting, refused (not blocked on) when full. */
#include "serve.h"

#include <stdlib.h>

static void *worker(void *arg)
{
    serve_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->count && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->count) break;
        void *job = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->running++;
        pthread_mutex_unlock(&p->mu);
        p->run(job);
        pthread_mutex_lock(&p->mu);
        p->running--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int serve_pool_start(serve_pool *p, int n_threads, int queue, serve_job_fn run)
{
    *p = (serve_pool){.run = run, .cap = queue};
    p->ring = calloc((size_t)queue, sizeof *p->ring);
    p->th = calloc((size_t)n_threads, sizeof *p->th);
    if (!p->ring || !p->th) {
        free(p->ring);
        free(p->th);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (; p->n_threads < n_threads; p->n_threads++)
        if (pthread_create(&p->th[p->n_threads], NULL, worker, p)) break;
    if (p->n_threads == 0) {
        serve_pool_stop(p);
        return -1;
    }
    return 0;
}

int serve_pool_submit(serve_pool *p, void *job)
{
    pthread_mutex_lock(&p->mu);
    int rc = p->closed ? 2 : p->count == p->cap ? 1 : 0;
    if (rc == 0) {
        p->ring[(p->head + p->count) % p->cap] = job;
        p->count++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int serve_pool_busy(serve_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->count + p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int serve_pool_close_if_idle(serve_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int idle = p->count == 0 && p->running == 0;
    if (idle) p->closed = 1;
    pthread_mutex_unlock(&p->mu);
    return idle;
}

void serve_pool_stop(serve_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->ring);
    free(p->th);
    p->ring = NULL;
    p->th = NULL;
    p->n_threads = 0;
}
