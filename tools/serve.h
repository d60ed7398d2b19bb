/*
 * serve.h - `imcap serve`: an HTTP server (Debian's libmicrohttpd) over one
 * loaded captioner. libmicrohttpd's polling thread reads requests; a
 * complete request becomes a job on a bounded queue served by a pool of
 * worker threads (serve_pool.c), its connection suspended meanwhile, so slow
 * clients hold a socket, never a worker. Routes and JSON: serve_http.c.
 */
#ifndef IMCAP_SERVE_H
#define IMCAP_SERVE_H

#include "imcap.h"

#include <pthread.h>
#include <stddef.h>

typedef struct serve_config {
    const char *host, *model, *encoder;
    int port;
    int threads;         /* workers */
    int queue;           /* jobs waiting for a worker, at most */
    size_t max_body;     /* bytes of request body, at most */
    int max_images;      /* image fields per request, at most */
    int timeout_s;       /* a connection idle this long is closed */
    int request_timeout_s; /* a request still uploading after this long gets 408 */
    int drain_s;         /* on SIGTERM: longest wait for uploads in progress */
    int connections;     /* open connections, at most */
    imcap_speech_params speech;
    imcap_precision precision; /* the encoder's (--precision) */
} serve_config;

/* ---------------------------------------------------------------- pool */

typedef void (*serve_job_fn)(void *job);

typedef struct serve_pool {
    pthread_t *th;
    int n_threads;
    serve_job_fn run;
    void **ring; /* [cap] jobs waiting, from head */
    int cap, head, count, running, closed, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} serve_pool;

/* Starts n_threads workers that call run(job) for each submitted job. */
int serve_pool_start(serve_pool *p, int n_threads, int queue, serve_job_fn run);
/* 0: queued; 1: the queue is full; 2: the pool is closed. */
int serve_pool_submit(serve_pool *p, void *job);
/* Jobs waiting + running. */
int serve_pool_busy(serve_pool *p);
/* Closes the pool if no job waits or runs (returns 1), else returns 0. */
int serve_pool_close_if_idle(serve_pool *p);
/* Stops and joins the workers (after serve_pool_close_if_idle). */
void serve_pool_stop(serve_pool *p);

/* ---------------------------------------------------------------- http */

typedef struct serve_server serve_server;

/* Starts listening; on failure prints why on stderr and returns NULL. */
serve_server *serve_start(const serve_config *cfg, imcap_captioner *c, const char *model_path);
/* The port actually bound (for --port 0). */
int serve_port(const serve_server *s);
/* Stops accepting, finishes the requests in flight (uploads in progress
 * for at most cfg->drain_s seconds), then stops and frees everything but
 * the captioner. */
void serve_drain_and_stop(serve_server *s);

/* The web page (tools/serve/index.html, compiled in by the Makefile). */
extern const unsigned char serve_page[];
extern const size_t serve_page_len;

#endif
