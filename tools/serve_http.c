/*
 * serve_http.c - the routes of `imcap serve` on libmicrohttpd:
 *   GET  /             the web page (tools/serve/index.html, compiled in)
 *   GET  /health       200 {"status": "ok"} when ready, 503 while draining
 *   GET  /v1/model     model, encoder, vocabulary size, decoding defaults
 *   POST /v1/caption   image as the body or multipart field(s) `image`
 *   POST /v1/speech    audio/wav of the caption of an image, or of `text`
 *                      (GET /v1/speech?text=... too)
 * Request life: the first call of the access handler sees the headers
 * (route, method, Content-Length against --max-body, Content-Type), the
 * following ones the body (appended, or fed to libmicrohttpd's form parser),
 * the last one queues the job and suspends the connection; the worker
 * resumes it when the answer is ready. Errors are {"error": "..."} with
 * their HTTP status. One log line per request on stderr when it ends.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum { FIELD_MAX = 64 * 1024, PARAMS_MAX = 16 };

enum route { RT_PAGE = 1, RT_HEALTH, RT_MODEL, RT_CAPTION, RT_SPEECH };
enum state { ST_HEADERS, ST_BODY, ST_QUEUED, ST_DONE };

struct serve_server {
    serve_config cfg;
    imcap_captioner *c;
    const char *model_path;
    imcap_gen_params gen; /* the model's decoding settings */
    struct MHD_Daemon *d;
    serve_pool pool;
    int port;
    atomic_int draining;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active; /* requests between their first call and their end */
};

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

typedef struct field {
    char *key, *filename;
    bytes val; /* NUL-terminated when it is a parameter */
} field;

typedef struct req {
    serve_server *srv;
    struct MHD_Connection *conn;
    enum route route;
    enum state state;
    char method[16], path[128];
    double t0, t_queued, t_start;
    int raw_image, json_body, text_body;
    imcap_gen_params gen;    /* this request's decoding */
    imcap_speech_params speech;
    bytes body;
    struct MHD_PostProcessor *pp;
    field *fields;
    int n_fields, cap_fields;
    size_t bytes_in;
    int form_status;
    char form_msg[256];
    /* the answer */
    int status, close;
    unsigned char *out; /* released by out_free (free when NULL) */
    void (*out_free)(void *);
    size_t out_len;
    const char *out_type;
    char caption_hdr[512];
    /* what was sent */
    int sent_status;
    size_t sent_bytes;
} req;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 0: appended; 1: over limit; -1: out of memory. */
static int bytes_add(bytes *b, const void *d, size_t n, size_t limit)
{
    if (n > limit || b->n > limit - n) return 1;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* ------------------------------------------------------------ answers */

static void release_out(req *r)
{
    if (r->out_free) r->out_free(r->out);
    else free(r->out);
    r->out = NULL;
    r->out_free = NULL;
}

static void set_body(req *r, int status, char *text, const char *type)
{
    release_out(r);
    r->status = status;
    r->out = (unsigned char *)text;
    r->out_len = text ? strlen(text) : 0;
    r->out_type = type;
}

static void set_json(req *r, int status, cJSON *j)
{
    char *t = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!t) {
        set_body(r, 500, strdup("{\"error\":\"out of memory formatting the answer\"}"), "application/json");
        return;
    }
    set_body(r, status, t, "application/json");
}

static void set_error(req *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(req *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    if (j) cJSON_AddStringToObject(j, "error", msg);
    set_json(r, status, j);
}

static void free_out(void *p) { free(p); }
static void free_wav(void *p) { imcap_wav_free(p); }

static enum MHD_Result send_answer(req *r)
{
    struct MHD_Response *resp;
    if (r->route == RT_PAGE && r->status == 200)
        resp = MHD_create_response_from_buffer(serve_page_len, (void *)serve_page, MHD_RESPMEM_PERSISTENT);
    else
        resp = MHD_create_response_from_buffer_with_free_callback(r->out_len, r->out, r->out_free ? r->out_free : free_out);
    if (!resp) return MHD_NO;
    if (r->route != RT_PAGE || r->status != 200) {
        r->out = NULL; /* the response owns it now */
        r->out_free = NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->route == RT_PAGE && r->status == 200 ? "text/html; charset=utf-8" : r->out_type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->route == RT_PAGE && r->status == 200) {
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "img-src blob: data:; media-src 'self' blob:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    if (r->status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->route == RT_CAPTION ? "POST" : r->route == RT_SPEECH ? "GET, HEAD, POST"
                                                                                        : "GET, HEAD");
    if (r->status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (r->caption_hdr[0]) MHD_add_response_header(resp, "X-Imcap-Caption", r->caption_hdr);
    if (r->close || atomic_load(&r->srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) {
        r->sent_status = r->status;
        r->sent_bytes = r->route == RT_PAGE && r->status == 200 ? serve_page_len : r->out_len;
        r->state = ST_DONE;
    }
    return rc;
}

/* An error found while the request is still being read: answer now and
 * close the connection (the rest of the body is not read). */
static enum MHD_Result fail_early(req *r)
{
    r->close = 1;
    return send_answer(r);
}

/* ------------------------------------------------------------ parameters */

static const char *const CAPTION_PARAMS[] = {"beam", "n_best", "temperature", "seed", "max_len", "alpha", NULL};
static const char *const SPEECH_PARAMS[] = {"beam", "n_best", "temperature", "seed", "max_len", "alpha",
                                            "text", "voice", "rate", NULL};

static int known_param(const req *r, const char *key)
{
    const char *const *names = r->route == RT_SPEECH ? SPEECH_PARAMS : CAPTION_PARAMS;
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], key)) return 1;
    return 0;
}

/* A form or JSON field value first, then the query string. */
static const char *param(const req *r, const char *name)
{
    for (int i = r->n_fields - 1; i >= 0; i--)
        if (!strcmp(r->fields[i].key, name) && strcmp(name, "image")) return (const char *)r->fields[i].val.p;
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static field *add_field(req *r, const char *key, const char *filename)
{
    if (r->n_fields == r->cap_fields) {
        int cap = r->cap_fields ? 2 * r->cap_fields : 8;
        field *f = realloc(r->fields, (size_t)cap * sizeof *f);
        if (!f) return NULL;
        r->fields = f;
        r->cap_fields = cap;
    }
    field *f = &r->fields[r->n_fields];
    *f = (field){.key = strdup(key ? key : ""), .filename = filename ? strdup(filename) : NULL};
    if (!f->key || (filename && !f->filename) || bytes_add(&f->val, "", 0, 0)) {
        free(f->key);
        free(f->filename);
        return NULL;
    }
    r->n_fields++;
    return f;
}

static enum MHD_Result form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                  const char *content_type, const char *transfer_encoding, const char *data,
                                  uint64_t off, size_t size)
{
    req *r = cls;
    const serve_config *cfg = &r->srv->cfg;
    field *f = r->n_fields ? &r->fields[r->n_fields - 1] : NULL;
    if (off == 0 && (!f || strcmp(f->key, key ? key : "") || f->val.n > 0)) {
        int images = 0, others = 0;
        for (int i = 0; i < r->n_fields; i++) *(!strcmp(r->fields[i].key, "image") ? &images : &others) += 1;
        int is_image = key && !strcmp(key, "image");
        if (is_image && images >= cfg->max_images) {
            r->form_status = 413;
            snprintf(r->form_msg, sizeof r->form_msg, "more than %d image fields (--max-images)", cfg->max_images);
            return MHD_NO;
        }
        if (!is_image && (!key || !known_param(r, key))) {
            r->form_status = 400;
            snprintf(r->form_msg, sizeof r->form_msg, "unknown form field '%.64s'", key ? key : "");
            return MHD_NO;
        }
        if (!is_image && others >= PARAMS_MAX) {
            r->form_status = 400;
            snprintf(r->form_msg, sizeof r->form_msg, "more than %d parameter fields", PARAMS_MAX);
            return MHD_NO;
        }
        if (!(f = add_field(r, key, filename))) {
            r->form_status = 503;
            snprintf(r->form_msg, sizeof r->form_msg, "out of memory reading the form");
            return MHD_NO;
        }
    }
    int is_image = !strcmp(f->key, "image");
    int rc = bytes_add(&f->val, data, size, is_image ? cfg->max_body : FIELD_MAX);
    if (rc) {
        r->form_status = rc > 0 ? 413 : 503;
        snprintf(r->form_msg, sizeof r->form_msg, rc > 0 ? "form field '%.64s' is too long" : "out of memory (%.64s)",
                 f->key);
        return MHD_NO;
    }
    return MHD_YES;
}

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    req *r = cls;
    if (known_param(r, key)) return MHD_YES;
    r->form_status = 400;
    snprintf(r->form_msg, sizeof r->form_msg, "unknown parameter '%.64s'", key);
    return MHD_NO;
}

/* {"text": "...", "voice": "...", "rate": 175, ...} as fields. */
static int json_fields(req *r)
{
    cJSON *j = cJSON_ParseWithLength((const char *)r->body.p, r->body.n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        set_error(r, 400, "the JSON body is not a JSON object");
        return -1;
    }
    int rc = 0;
    for (cJSON *it = j->child; it && !rc; it = it->next) {
        char num[64];
        const char *v = NULL;
        if (cJSON_IsString(it)) v = it->valuestring;
        else if (cJSON_IsNumber(it)) snprintf(num, sizeof num, "%.17g", it->valuedouble), v = num;
        if (!it->string || !known_param(r, it->string) || !strcmp(it->string, "image")) {
            set_error(r, 400, "unknown JSON field '%.64s'", it->string ? it->string : "");
            rc = -1;
        } else if (!v) {
            set_error(r, 400, "JSON field '%.64s' must be a string or a number", it->string);
            rc = -1;
        } else {
            field *f = add_field(r, it->string, NULL);
            if (!f || bytes_add(&f->val, v, strlen(v), FIELD_MAX)) {
                set_error(r, 400, "JSON field '%.64s' is too long", it->string);
                rc = -1;
            }
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int parse_long(req *r, const char *name, long lo, long hi, long *out)
{
    const char *v = param(r, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        set_error(r, 400, "parameter %s: expected an integer in %ld..%ld, got '%.64s'", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 1;
}

static int parse_double(req *r, const char *name, double lo, double hi, double *out)
{
    const char *v = param(r, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        set_error(r, 400, "parameter %s: expected a number in %g..%g, got '%.64s'", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 1;
}

/* The decoding settings of this request: the model's, then the parameters
 * (the same rules as `imcap caption`'s flags). */
static int gen_params(req *r, imcap_gen_params *g)
{
    *g = r->srv->gen;
    long beam = 0, n_best = 1, max_len, seed;
    double temp = 0, alpha;
    int has_beam, rc;
    if ((has_beam = parse_long(r, "beam", 1, 64, &beam)) < 0) return -1;
    if (parse_long(r, "n_best", 1, 64, &n_best) < 0) return -1;
    if (parse_double(r, "temperature", 0, 100, &temp) < 0) return -1;
    if ((rc = parse_long(r, "max_len", 1, 100, &max_len)) < 0) return -1;
    if (rc) g->max_len = (int)max_len;
    if ((rc = parse_double(r, "alpha", 0, 2, &alpha)) < 0) return -1;
    if (rc) g->length_alpha = (float)alpha;
    if ((rc = parse_long(r, "seed", 0, 0x7fffffffL, &seed)) < 0) return -1;
    if (rc) g->seed = (uint64_t)seed;
    g->temperature = (float)temp;
    g->beam = has_beam ? (int)beam : temp > 0 ? 1 : g->beam;
    g->n_best = (int)n_best;
    if (temp == 0 && g->n_best > g->beam) {
        if (has_beam && g->beam > 1) {
            set_error(r, 400, "n_best %d is more than beam %d", g->n_best, g->beam);
            return -1;
        }
        g->beam = g->n_best;
    }
    if (imcap_gen_params_check(g)) {
        set_error(r, 400, "%s", imcap_last_error());
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the work */

static int n_images(const req *r)
{
    if (r->raw_image) return r->body.n ? 1 : 0;
    int n = 0;
    for (int i = 0; i < r->n_fields; i++) n += !strcmp(r->fields[i].key, "image");
    return n;
}

/* Image k of the request: bytes and a name for messages. */
static void image_at(const req *r, int k, const bytes **data, const char **name)
{
    if (r->raw_image) {
        *data = &r->body;
        *name = "body";
        return;
    }
    for (int i = 0; i < r->n_fields; i++)
        if (!strcmp(r->fields[i].key, "image") && k-- == 0) {
            *data = &r->fields[i].val;
            *name = r->fields[i].filename && r->fields[i].filename[0] ? r->fields[i].filename : "image";
            return;
        }
}

static int status_of(imcap_status st)
{
    return st == IMCAP_E_NOMEM ? 503 : st == IMCAP_E_INTERNAL || st == IMCAP_E_IO ? 500 : 400;
}

static imcap_caption *caption_one(req *r, int k, const imcap_gen_params *g)
{
    const bytes *b;
    const char *name;
    image_at(r, k, &b, &name);
    imcap_caption *cap = NULL;
    imcap_status st = imcap_caption_memory(r->srv->c, b->p, b->n, name, g, &cap);
    if (st) {
        if (n_images(r) > 1) set_error(r, status_of(st), "image %d: %s", k + 1, imcap_last_error());
        else set_error(r, status_of(st), "%s", imcap_last_error());
        return NULL;
    }
    return cap;
}

static void run_caption(req *r, const imcap_gen_params *g)
{
    int n = n_images(r);
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < n; k++) {
        imcap_caption *cap = caption_one(r, k, g);
        if (!cap) {
            cJSON_Delete(arr);
            return;
        }
        cJSON *o = cli_caption_json(NULL, cap);
        imcap_caption_free(cap);
        const bytes *b;
        const char *name;
        image_at(r, k, &b, &name);
        if (!r->raw_image) cJSON_AddStringToObject(o, "name", name);
        cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timings_ms");
        if (t) cJSON_AddNumberToObject(t, "queue", 1e3 * (r->t_start - r->t_queued));
        cJSON_AddItemToArray(arr, o);
    }
    if (n == 1) {
        cJSON *one = cJSON_DetachItemFromArray(arr, 0);
        cJSON_Delete(arr);
        arr = one;
    }
    set_json(r, 200, arr);
}

static void run_speech(req *r, const imcap_gen_params *g)
{
    const char *text = param(r, "text");
    if (!text && r->text_body) text = (const char *)r->body.p;
    imcap_caption *cap = NULL;
    if (!text) {
        if (!(cap = caption_one(r, 0, g))) return;
        text = cap->alt[0].text;
        size_t k = 0;
        for (const char *s = text; *s && k + 1 < sizeof r->caption_hdr; s++)
            r->caption_hdr[k++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
        r->caption_hdr[k] = 0;
    }
    int16_t *pcm;
    size_t n;
    int hz;
    imcap_status st = imcap_speech_synth(text, &r->speech, &pcm, &n, &hz);
    if (!st) {
        uint8_t *wav;
        size_t len;
        st = imcap_wav_encode(pcm, n, hz, &wav, &len);
        imcap_speech_free(pcm);
        if (!st) {
            release_out(r);
            r->out = wav;
            r->out_free = free_wav;
            r->out_len = len;
            r->out_type = "audio/wav";
            r->status = 200;
        }
    }
    if (st) set_error(r, status_of(st), "speech: %s", imcap_last_error());
    imcap_caption_free(cap);
}

/* A worker runs one request, then wakes its connection. */
static void run_job(void *job)
{
    req *r = job;
    r->t_start = now_s();
    if (r->route == RT_CAPTION) run_caption(r, &r->gen);
    else run_speech(r, &r->gen);
    r->state = ST_DONE;
    MHD_resume_connection(r->conn);
}

/* ------------------------------------------------------------ routes */

static void answer_model(req *r)
{
    const serve_server *s = r->srv;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", s->model_path);
    cJSON_AddStringToObject(j, "encoder", imcap_captioner_encoder_name(s->c));
    cJSON_AddStringToObject(j, "encoder_path", imcap_captioner_encoder_path(s->c));
    cJSON_AddStringToObject(j, "checkpoint", imcap_captioner_checkpoint(s->c));
    cJSON_AddNumberToObject(j, "vocab_size", imcap_captioner_vocab_size(s->c));
    cJSON_AddNumberToObject(j, "embedding_size", imcap_captioner_embedding_size(s->c));
    cJSON_AddStringToObject(j, "version", IMCAP_VERSION_STRING);
    cJSON *d = cJSON_AddObjectToObject(j, "defaults");
    cJSON_AddNumberToObject(d, "beam", s->gen.beam);
    cJSON_AddNumberToObject(d, "n_best", 1);
    cJSON_AddNumberToObject(d, "temperature", s->gen.temperature);
    cJSON_AddNumberToObject(d, "seed", (double)s->gen.seed);
    cJSON_AddNumberToObject(d, "max_len", s->gen.max_len);
    cJSON_AddNumberToObject(d, "alpha", s->gen.length_alpha);
    cJSON_AddStringToObject(d, "voice", s->cfg.speech.voice);
    cJSON_AddNumberToObject(d, "rate", s->cfg.speech.rate);
    cJSON *l = cJSON_AddObjectToObject(j, "limits");
    cJSON_AddNumberToObject(l, "max_body", (double)s->cfg.max_body);
    cJSON_AddNumberToObject(l, "max_images", s->cfg.max_images);
    cJSON_AddNumberToObject(l, "queue", s->cfg.queue);
    cJSON_AddNumberToObject(l, "threads", s->cfg.threads);
    set_json(r, 200, j);
}

static enum route route_of(const char *url)
{
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return RT_PAGE;
    if (!strcmp(url, "/health")) return RT_HEALTH;
    if (!strcmp(url, "/v1/model")) return RT_MODEL;
    if (!strcmp(url, "/v1/caption")) return RT_CAPTION;
    if (!strcmp(url, "/v1/speech")) return RT_SPEECH;
    return 0;
}

static int type_is(const char *ct, const char *t)
{
    size_t n = strlen(t);
    return ct && !strncasecmp(ct, t, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Headers seen: route, method, size, type. Returns 0 to go on reading, 1
 * when r holds an error to send now. */
static int on_headers(req *r, const char *method)
{
    serve_server *s = r->srv;
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!r->route) {
        set_error(r, 404, "no such resource: %s (try /, /health, /v1/model, /v1/caption, /v1/speech)", r->path);
        return 1;
    }
    int allowed = r->route == RT_CAPTION ? post : r->route == RT_SPEECH ? post || get : get;
    if (!allowed) {
        set_error(r, 405, "%s is not allowed on %s", r->method, r->path);
        return 1;
    }
    if (atomic_load(&s->draining)) {
        set_error(r, 503, "the server is shutting down");
        return 1;
    }
    if (r->route == RT_CAPTION || r->route == RT_SPEECH) {
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_query_arg, r);
        if (r->form_status) {
            set_error(r, r->form_status, "%s", r->form_msg);
            return 1;
        }
    }
    if (!post) return 0;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || *end) {
            set_error(r, 400, "bad Content-Length '%.32s'", cl);
            return 1;
        }
        if (n > s->cfg.max_body) {
            set_error(r, 413, "the body is %llu bytes, more than the limit of %zu (--max-body)", n, s->cfg.max_body);
            return 1;
        }
    }
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    int form = type_is(ct, "multipart/form-data") || (r->route == RT_SPEECH && type_is(ct, "application/x-www-form-urlencoded"));
    if (form) {
        r->pp = MHD_create_post_processor(r->conn, 64 * 1024, form_field, r);
        if (!r->pp) {
            set_error(r, 400, "cannot read the form: bad Content-Type '%.128s' (multipart needs a boundary)", ct);
            return 1;
        }
    } else if (ct && (!strncasecmp(ct, "image/", 6) || type_is(ct, "application/octet-stream"))) {
        r->raw_image = 1;
    } else if (r->route == RT_SPEECH && type_is(ct, "application/json")) {
        r->json_body = 1;
    } else if (r->route == RT_SPEECH && type_is(ct, "text/plain")) {
        r->text_body = 1;
    } else if (ct || (cl && strcmp(cl, "0"))) {
        set_error(r, 415, "Content-Type '%.128s' is not accepted on %s: send image/*, application/octet-stream or "
                          "multipart/form-data%s", ct ? ct : "(none)", r->path,
                  r->route == RT_SPEECH ? " (or text/plain, application/json, a form)" : "");
        return 1;
    }
    return 0;
}

/* The whole request is in: answer GETs, queue the work of POSTs. */
static enum MHD_Result on_complete(req *r)
{
    serve_server *s = r->srv;
    if (r->route == RT_PAGE) {
        r->status = 200;
        return send_answer(r);
    }
    if (r->route == RT_HEALTH) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", atomic_load(&s->draining) ? "draining" : "ok");
        set_json(r, atomic_load(&s->draining) ? 503 : 200, j);
        return send_answer(r);
    }
    if (r->route == RT_MODEL) {
        answer_model(r);
        return send_answer(r);
    }
    if (r->pp) {
        enum MHD_Result ok = MHD_destroy_post_processor(r->pp);
        r->pp = NULL;
        if (ok != MHD_YES) {
            set_error(r, 400, "the form is malformed or truncated (multipart/form-data)");
            return send_answer(r);
        }
    }
    if (r->json_body && json_fields(r)) return send_answer(r);
    int n = n_images(r);
    int has_text = param(r, "text") || r->text_body;
    if (r->route == RT_SPEECH && (has_text ? n > 0 : n != 1)) {
        set_error(r, 400, has_text ? "give either text or an image, not both"
                                   : "nothing to speak: give a text parameter or one image");
        return send_answer(r);
    }
    if (r->route == RT_SPEECH && r->text_body && !r->body.n) {
        set_error(r, 400, "nothing to speak: the text/plain body is empty");
        return send_answer(r);
    }
    if (r->route == RT_CAPTION && n == 0) {
        set_error(r, 400, "no image: send it as the body (Content-Type image/*) or as multipart field 'image'");
        return send_answer(r);
    }
    /* Parameters are checked before the request takes a place in the queue. */
    if (gen_params(r, &r->gen)) return send_answer(r);
    r->speech = s->cfg.speech;
    long rate;
    const char *voice = param(r, "voice");
    if (voice) r->speech.voice = voice;
    int has_rate = parse_long(r, "rate", 80, 450, &rate);
    if (has_rate < 0) return send_answer(r);
    if (has_rate) r->speech.rate = (int)rate;
    r->state = ST_QUEUED;
    r->t_queued = now_s();
    MHD_suspend_connection(r->conn);
    int rc = serve_pool_submit(&s->pool, r);
    if (rc) {
        set_error(r, 503, rc == 1 ? "busy: %d requests are waiting already (--queue); try again" :
                                    "the server is shutting down", s->cfg.queue);
        r->state = ST_DONE;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    serve_server *s = cls;
    req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0 = now_s();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->route = route_of(url);
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        if (on_headers(r, method)) return fail_early(r);
        r->state = ST_BODY;
        return MHD_YES;
    }
    if (r->state == ST_DONE) return r->sent_status ? MHD_YES : send_answer(r);
    if (r->state == ST_QUEUED) return MHD_YES;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->bytes_in += n;
        /* libmicrohttpd 0.9.75 cannot answer before the body is read:
         * after an error the rest is read and dropped, and a request
         * still uploading past --request-timeout is cut. */
        if (now_s() - r->t0 > s->cfg.request_timeout_s) {
            if (!r->status) set_error(r, 408, "the upload took more than %d s", s->cfg.request_timeout_s);
            return MHD_NO;
        }
        if (r->status) return MHD_YES;
        if (r->bytes_in > s->cfg.max_body) {
            set_error(r, 413, "the body is more than the limit of %zu bytes (--max-body)", s->cfg.max_body);
        } else if (r->pp) {
            if (MHD_post_process(r->pp, upload_data, n) != MHD_YES || r->form_status) {
                if (r->form_status) set_error(r, r->form_status, "%s", r->form_msg);
                else set_error(r, 400, "the form is malformed (multipart/form-data)");
            }
        } else {
            int rc = bytes_add(&r->body, upload_data, n, s->cfg.max_body);
            if (rc) set_error(r, rc > 0 ? 413 : 503, rc > 0 ? "the body is too large" : "out of memory reading the body");
        }
        if (r->status) {
            r->close = 1;
            free(r->body.p);
            r->body = (bytes){0};
        }
        return MHD_YES;
    }
    if (r->status) return send_answer(r);
    return on_complete(r);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return " (error)";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return " (timed out)";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return " (server stopped)";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return " (client closed early)";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return " (client aborted)";
    default: return " (ended)";
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    serve_server *s = cls;
    req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    char addr[64] = "-";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr, sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, addr, sizeof addr);
    }
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char st[8] = "-";
    if (r->sent_status) snprintf(st, sizeof st, "%d", r->sent_status);
    fprintf(stderr, "%s %s %s %s %s in=%zu out=%zu %.1fms%s\n", when, addr, r->method, r->path, st, r->bytes_in,
            r->sent_bytes, 1e3 * (now_s() - r->t0), termination_name(toe));
    if (r->pp) MHD_destroy_post_processor(r->pp);
    for (int i = 0; i < r->n_fields; i++) {
        free(r->fields[i].key);
        free(r->fields[i].filename);
        free(r->fields[i].val.p);
    }
    free(r->fields);
    free(r->body.p);
    release_out(r);
    free(r);
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ the server */

serve_server *serve_start(const serve_config *cfg, imcap_captioner *c, const char *model_path)
{
    serve_server *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "imcap serve: out of memory\n");
        return NULL;
    }
    s->cfg = *cfg;
    s->c = c;
    s->model_path = model_path;
    s->gen = imcap_captioner_gen_params(c);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "imcap serve: --host %s: %s\n", cfg->host, gai_strerror(gai));
        free(s);
        return NULL;
    }
    if (serve_pool_start(&s->pool, cfg->threads, cfg->queue, run_job)) {
        fprintf(stderr, "imcap serve: cannot start %d worker threads\n", cfg->threads);
        freeaddrinfo(ai);
        free(s);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->connections,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        fprintf(stderr, "imcap serve: cannot listen on %s:%d (%s)\n", cfg->host, cfg->port,
                errno ? strerror(errno) : "port in use?");
        serve_pool_stop(&s->pool);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
}

int serve_port(const serve_server *s) { return s->port; }

void serve_drain_and_stop(serve_server *s)
{
    atomic_store(&s->draining, 1);
    /* Closing the listening socket refuses new connections at once
     * (quiesced, it would still complete handshakes into its backlog). */
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    double deadline = now_s() + s->cfg.drain_s;
    /* Requests in flight finish; past the deadline only those a worker
     * holds are waited for (uploads still coming in are cut). */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int active = s->active;
        pthread_mutex_unlock(&s->mu);
        if (active == 0 || now_s() > deadline) {
            if (serve_pool_close_if_idle(&s->pool)) break;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->d);
    serve_pool_stop(&s->pool);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
