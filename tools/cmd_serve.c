/* cmd_serve.c - `imcap serve`: options, loading the captioner once,
 * signals (SIGTERM / SIGINT: stop accepting, finish what is in flight,
 * exit 0). The server itself: serve_http.c, its workers: serve_pool.c. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "serve.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const SERVE_HELP =
    "usage: imcap serve [options]\n"
    "Serves captions over HTTP: POST /v1/caption (image body or multipart field(s)\n"
    "'image'), POST /v1/speech (audio/wav), GET /v1/model, GET /health and the web\n"
    "page at /. One log line per request on stderr. SIGTERM / SIGINT: stops\n"
    "accepting, finishes the requests in flight, exits 0.\n"
    "  --host H           address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
    "  --port P           TCP port (default 8080; 0: any free port, printed on stderr)\n"
    "  --model M          captioning model (default $IMCAP_MODEL, else models/default.imcap)\n"
    "  --encoder E        encoder file (default: the one the model names)\n"
    "  --precision P      encoder arithmetic: int8, float, bf16 or auto (default)\n"
    "  --threads N        worker threads captioning in parallel (default 2)\n"
    "  --queue N          requests waiting for a worker, at most; more get 503 (default 64)\n"
    "  --max-body BYTES   largest request body, e.g. 20M, 512K (default 20M); more get 413\n"
    "  --max-images N     image fields per request, at most (default 16)\n"
    "  --timeout S        close a connection idle for S seconds (default 15)\n"
    "  --request-timeout S  a request still uploading after S seconds gets 408 (default 60)\n"
    "  --drain S          on SIGTERM, wait at most S seconds for uploads in progress (default 10)\n"
    "  --connections N    open connections, at most (default 512)\n"
    "  --voice V          espeak-ng voice for /v1/speech (default en)\n"
    "  --rate R           speaking rate, words per minute (default 175)\n";

static int parse_size(const char *flag, const char *v, size_t *out)
{
    char *end;
    double x = strtod(v, &end);
    double mul = 1;
    if (end != v && (*end == 'K' || *end == 'k')) mul = 1024, end++;
    else if (end != v && (*end == 'M' || *end == 'm')) mul = 1024.0 * 1024, end++;
    else if (end != v && (*end == 'G' || *end == 'g')) mul = 1024.0 * 1024 * 1024, end++;
    if (end == v || *end || !(x * mul >= 1) || x * mul > 4.0 * 1024 * 1024 * 1024) {
        fprintf(stderr, "imcap serve: %s expects a size in bytes (e.g. 20M, 512K, 1000000), got '%s'\n", flag, v);
        return 1;
    }
    *out = (size_t)(x * mul);
    return 0;
}

static int parse(int argc, char **argv, serve_config *c)
{
    long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(SERVE_HELP, stdout);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "imcap serve: %s needs a value (or unknown option)\n%s", a, SERVE_HELP);
            return 2;
        }
        i++;
        if (!strcmp(a, "--host")) c->host = v;
        else if (!strcmp(a, "--model")) c->model = v;
        else if (!strcmp(a, "--encoder")) c->encoder = v;
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(a, v, &c->precision)) return 2;
        }
        else if (!strcmp(a, "--voice")) c->speech.voice = v;
        else if (!strcmp(a, "--max-body")) {
            if (parse_size(a, v, &c->max_body)) return 2;
        } else {
            static const struct { const char *flag; long lo, hi; size_t off; } ints[] = {
                {"--port", 0, 65535, offsetof(serve_config, port)},
                {"--threads", 1, 64, offsetof(serve_config, threads)},
                {"--queue", 1, 100000, offsetof(serve_config, queue)},
                {"--max-images", 1, 1000, offsetof(serve_config, max_images)},
                {"--timeout", 1, 3600, offsetof(serve_config, timeout_s)},
                {"--request-timeout", 1, 3600, offsetof(serve_config, request_timeout_s)},
                {"--drain", 0, 3600, offsetof(serve_config, drain_s)},
                {"--connections", 1, 100000, offsetof(serve_config, connections)},
            };
            size_t k = 0, nk = sizeof ints / sizeof ints[0];
            while (k < nk && strcmp(a, ints[k].flag)) k++;
            if (k < nk) {
                if (cli_parse_int(a, v, ints[k].lo, ints[k].hi, &n)) return 2;
                *(int *)((char *)c + ints[k].off) = (int)n;
            } else if (!strcmp(a, "--rate")) {
                if (cli_parse_int(a, v, 80, 450, &n)) return 2;
                c->speech.rate = (int)n;
            } else {
                fprintf(stderr, "imcap serve: unknown option %s\n%s", a, SERVE_HELP);
                return 2;
            }
        }
    }
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    serve_config cfg = {
        .host = "127.0.0.1", .port = 8080, .threads = 2, .queue = 64, .max_body = 20u << 20,
        .max_images = 16, .timeout_s = 15, .request_timeout_s = 60, .drain_s = 10, .connections = 512,
        .speech = imcap_speech_default_params(),
    };
    int rc = parse(argc, argv, &cfg);
    if (rc) return rc < 0 ? 0 : rc;
    if (!cfg.model) cfg.model = cli_default_model();
    imcap_captioner *c;
    imcap_status st = imcap_captioner_load(cfg.model, cfg.encoder, &c);
    if (!st && (st = imcap_captioner_set_precision(c, cfg.precision))) {
        imcap_captioner_free(c);
        return cli_error("serve", st);
    }
    if (st) {
        struct stat sb;
        if (stat(cfg.model, &sb) != 0)
            fprintf(stderr, "imcap serve: no captioning model at %s: run ./setup.sh (or `make model`), or pass "
                            "--model FILE\n", cfg.model);
        else
            cli_error("serve", st);
        return 1;
    }
    /* SIGTERM / SIGINT are taken by sigwait below: blocked in every thread
     * (the server's threads inherit this mask). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve_server *s = serve_start(&cfg, c, cfg.model);
    if (!s) {
        imcap_captioner_free(c);
        return 1;
    }
    const char *h = cfg.host;
    int v6 = strchr(h, ':') != NULL;
    fprintf(stderr, "imcap serve: listening on http://%s%s%s:%d/ (model %s, encoder %s, %d workers, queue %d)\n",
            v6 ? "[" : "", h, v6 ? "]" : "", serve_port(s), cfg.model, imcap_captioner_encoder_name(c), cfg.threads,
            cfg.queue);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "imcap serve: %s: no new connections, finishing the requests in flight\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_drain_and_stop(s);
    imcap_captioner_free(c);
    fprintf(stderr, "imcap serve: stopped\n");
    return 0;
}
