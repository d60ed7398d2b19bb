/*
 * extract.c - feature extraction: runs an encoder over a list of images and
 * writes the embeddings file the decoder trains on (src/encoder/embfile.c).
 *
 * Pipeline: worker threads decode + preprocess images into a ring of batch
 * slots (3 batches deep) while the calling thread runs the network (which
 * itself spreads over the cores) on each batch in list order and appends
 * the rows. Resuming: an existing output file is reopened with
 * imcap_embfile_resume, which keeps its complete CRC-valid rows and cuts a
 * torn last row; images already in it are skipped. An image that cannot be
 * read is reported (imcap_extract_report.failed) and has no row; the rest
 * go on.
 */
#define _POSIX_C_SOURCE 200809L
#include "extract.h"
#include "qgraph.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

imcap_extract_params imcap_extract_default_params(void)
{
    imcap_extract_params p;
    memset(&p, 0, sizeof p);
    p.output = "embedding";
    p.batch = 8;
    p.threads = 2;
    return p;
}

void imcap_extract_report_free(imcap_extract_report *r)
{
    if (!r) return;
    for (uint64_t i = 0; i < r->n_failed; i++) free(r->failed[i]);
    free(r->failed);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ name list */

static imcap_status read_list(const char *path, char ***out, size_t *n_out);
static imcap_status check_duplicates(const char *list, char **names, size_t n);

imcap_status extract_list(const char *list, char ***names, size_t *n, size_t *name_width)
{
    char **all = NULL;
    size_t n_all = 0;
    imcap_status st = read_list(list, &all, &n_all);
    if (st != IMCAP_OK) return st;
    st = check_duplicates(list, all, n_all);
    /* a new file's name field fits the longest name (a multiple of 4 bytes) */
    size_t w = IMCAP_EMB_NAME_WIDTH;
    for (size_t i = 0; i < n_all && st == IMCAP_OK; i++) {
        size_t l = strlen(all[i]);
        if (l >= IMCAP_EMB_NAME_WIDTH_MAX)
            st = imcap_fail(IMCAP_E_FORMAT, "%s: image name '%.60s...' is longer than %d bytes", list, all[i],
                            IMCAP_EMB_NAME_WIDTH_MAX - 1);
        else if (l + 1 > w)
            w = (l + 1 + 3) & ~(size_t)3;
    }
    if (st != IMCAP_OK) {
        extract_free_list(all, n_all);
        return st;
    }
    *names = all, *n = n_all, *name_width = w;
    return IMCAP_OK;
}

void extract_free_list(char **names, size_t n)
{
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* One image name per line; blank lines and lines starting with '#' are
 * skipped, surrounding whitespace and CR are trimmed. */
static imcap_status read_list(const char *path, char ***out, size_t *n_out)
{
    char *data;
    size_t len;
    imcap_status st = imcap_read_file(path, (size_t)1 << 28, &data, &len);
    if (st != IMCAP_OK) return st;
    size_t cap = 0, n = 0;
    char **names = NULL;
    int line = 0;
    for (char *p = data, *next; p && *p; p = next) {
        line++;
        next = strchr(p, '\n');
        if (next) *next++ = 0;
        char *e = p + strlen(p);
        while (*p == ' ' || *p == '\t') p++;
        while (e > p && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (!*p || *p == '#') continue;
        if (strlen(p) > 4000) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s:%d: image name of %zu characters", path, line, strlen(p));
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **t = realloc(names, cap * sizeof *t);
            if (!t) {
                st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory reading the list", path);
                break;
            }
            names = t;
        }
        if (!(names[n] = imcap_strdup(p))) {
            st = IMCAP_E_NOMEM;
            break;
        }
        n++;
    }
    free(data);
    if (st == IMCAP_OK && n == 0) st = imcap_fail(IMCAP_E_FORMAT, "%s: the list names no images", path);
    if (st != IMCAP_OK) {
        extract_free_list(names, n);
        return st;
    }
    *out = names;
    *n_out = n;
    return IMCAP_OK;
}

/* ------------------------------------------------------- worker threads */

typedef struct job {
    /* fixed */
    const extract_ctx *x;
    char **names;           /* images to process, in row order */
    size_t n;
    int in_h, in_w;
    float scale[3], bias[3];
    /* extraction: ring of n_slots input slots, image j -> slot j % n_slots */
    float *slots;           /* [n_slots][in_h][in_w][3] */
    int n_slots;
    char *ready;            /* [n_slots] 1 when slot holds image of its turn */
    char **slot_err;        /* [n_slots] failure message of that image, if any */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    size_t next;            /* next image index to claim */
    size_t consumed;        /* images whose slot the consumer has released */
    int stop;
} job;

static char *path_of(const extract_ctx *x, const char *name)
{
    size_t n = strlen(x->image_dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", x->image_dir, name);
    return p;
}

/* Decodes image i; into dst (preprocessed floats) unless dst is NULL.
 * Returns NULL or a malloc'ed "message". */
static char *load_one(job *jb, size_t i, float *dst)
{
    char *path = path_of(jb->x, jb->names[i]);
    if (!path) return imcap_strdup("out of memory");
    imcap_image img;
    char *err = NULL;
    imcap_status st = imcap_image_load(path, &img);
    if (st == IMCAP_OK && dst) {
        size_t np = (size_t)jb->in_h * jb->in_w;
        uint8_t *u8 = malloc(np * 3);
        if (!u8) st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
        else st = imcap_image_prepare(&img, jb->in_h, jb->in_w, u8);
        if (st == IMCAP_OK) imcap_image_to_float(u8, np, jb->scale, jb->bias, dst);
        free(u8);
    }
    if (st != IMCAP_OK) err = imcap_strdup(imcap_last_error());
    imcap_image_free(&img);
    free(path);
    return err;
}

static void *worker_main(void *arg)
{
    job *jb = arg;
    size_t slot_floats = (size_t)jb->in_h * jb->in_w * 3;
    pthread_mutex_lock(&jb->mu);
    for (;;) {
        if (jb->stop || jb->next >= jb->n) break;
        size_t i = jb->next;
        if (i >= jb->consumed + (size_t)jb->n_slots) {
            pthread_cond_wait(&jb->cv_work, &jb->mu); /* ring full */
            continue;
        }
        jb->next++;
        pthread_mutex_unlock(&jb->mu);
        int slot = (int)(i % (size_t)jb->n_slots);
        char *e = load_one(jb, i, jb->slots + (size_t)slot * slot_floats);
        pthread_mutex_lock(&jb->mu);
        jb->slot_err[slot] = e;
        jb->ready[slot] = 1;
        pthread_cond_broadcast(&jb->cv_ready);
    }
    pthread_mutex_unlock(&jb->mu);
    return NULL;
}

static imcap_status start_workers(job *jb, pthread_t *tids, int n_threads, int *started)
{
    *started = 0;
    for (int t = 0; t < n_threads; t++) {
        if (pthread_create(&tids[t], NULL, worker_main, jb) != 0) break;
        (*started)++;
    }
    if (*started == 0) return imcap_fail(IMCAP_E_INTERNAL, "cannot start decoding threads");
    return IMCAP_OK;
}

static void stop_workers(job *jb, pthread_t *tids, int started)
{
    pthread_mutex_lock(&jb->mu);
    jb->stop = 1;
    pthread_cond_broadcast(&jb->cv_work);
    pthread_mutex_unlock(&jb->mu);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
}

/* --------------------------------------------------------------- driver */

static int report_progress(const extract_ctx *x, uint64_t done, uint64_t total, const char *what)
{
    return x->progress ? x->progress(x->progress_user, done, total, what) : 0;
}

/* "<graph name> <output> <checksum>": resuming with another encoder or
 * output is refused by imcap_embfile_resume. */
static void encoder_id(const enc_graph *g, const char *output, char *buf, size_t n)
{
    char name[40];
    snprintf(name, sizeof name, "%s", enc_graph_name(g));
    for (char *p = name; *p; p++)
        if (*p == ' ') *p = '_';
    snprintf(buf, n, "%s %s %08x", name, output, (unsigned)enc_graph_checksum(g));
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Refuses a list naming an image twice (its second row could not be stored). */
static imcap_status check_duplicates(const char *list, char **names, size_t n)
{
    char ***idx = malloc(n * sizeof *idx);
    if (!idx) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", list);
    for (size_t i = 0; i < n; i++) idx[i] = &names[i];
    qsort(idx, n, sizeof *idx, cmp_str_ptr);
    imcap_status st = IMCAP_OK;
    for (size_t i = 1; i < n && st == IMCAP_OK; i++)
        if (!strcmp(*idx[i], *idx[i - 1]))
            st = imcap_fail(IMCAP_E_FORMAT, "%s: image '%s' is listed twice (entries %zu and %zu)", list, *idx[i],
                            (size_t)(idx[i - 1] - names) + 1, (size_t)(idx[i] - names) + 1);
    free(idx);
    return st;
}

static imcap_status add_failure(imcap_extract_report *rep, size_t cap, char *msg)
{
    if (!rep->failed && !(rep->failed = calloc(cap, sizeof *rep->failed))) {
        free(msg);
        return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    }
    rep->failed[rep->n_failed++] = msg;
    return IMCAP_OK;
}

/* Splits "a,b,c" into at most EXTRACT_MAX_OUTPUTS pieces (in buf). */
int extract_split_list(const char *s, char *buf, size_t bufsz, const char **parts)
{
    snprintf(buf, bufsz, "%s", s);
    int n = 0;
    for (char *p = buf, *c; n < EXTRACT_MAX_OUTPUTS + 1; p = c + 1) {
        c = strchr(p, ',');
        if (c) *c = 0;
        parts[n++] = p;
        if (!c) break;
    }
    return n;
}

/* One output of the encoder and the file it goes to. */
typedef struct out_file {
    const char *output, *path;
    int vid;
    size_t dim;
    imcap_emb_layout layout; /* the value's h x w x c, stored as x->dtype */
    imcap_embfile_writer *w;
    float *rows; /* [batch][dim] */
} out_file;

imcap_status extract_run(const enc_graph *g, const extract_ctx *x, imcap_extract_report *rep)
{
    return extract_run_shard(g, x, NULL, rep);
}

imcap_status extract_run_shard(const enc_graph *g, const extract_ctx *x, const extract_shard *sh,
                               imcap_extract_report *rep)
{
    double t0 = imcap_now();
    memset(rep, 0, sizeof *rep);
    int batch = x->batch > 0 ? x->batch : 8;
    int threads = x->threads > 0 ? x->threads : 2;
    if (batch > 256) return imcap_fail(IMCAP_E_ARG, "batch of %d images is more than 256", batch);
    if (threads > 64) threads = 64;
    const enc_preproc *pre = enc_graph_preproc(g);
    if (!pre) return imcap_fail(IMCAP_E_ARG, "%s: the encoder has no preprocessing parameters", x->encoder_name);

    /* outputs and their files */
    char obuf[1024], pbuf[4096];
    const char *onames[EXTRACT_MAX_OUTPUTS + 1], *paths[EXTRACT_MAX_OUTPUTS + 1];
    int n_out = extract_split_list(x->output && *x->output ? x->output : "embedding", obuf, sizeof obuf, onames);
    int n_paths = extract_split_list(x->out_path, pbuf, sizeof pbuf, paths);
    if (n_out > EXTRACT_MAX_OUTPUTS)
        return imcap_fail(IMCAP_E_ARG, "more than %d outputs requested", EXTRACT_MAX_OUTPUTS);
    if (n_paths != n_out)
        return imcap_fail(IMCAP_E_ARG, "%d outputs (%s) but %d output files (%s): give one file per output", n_out,
                          x->output, n_paths, x->out_path);
    char dbuf[256];
    const char *dnames[EXTRACT_MAX_OUTPUTS + 1];
    int dtypes[EXTRACT_MAX_OUTPUTS];
    for (int k = 0; k < n_out; k++) dtypes[k] = x->dtype;
    if (x->dtypes) {
        int n_d = extract_split_list(x->dtypes, dbuf, sizeof dbuf, dnames);
        if (n_d != n_out && n_d != 1)
            return imcap_fail(IMCAP_E_ARG, "%d outputs (%s) but %d value types (%s): give one, or one per output",
                              n_out, x->output, n_d, x->dtypes);
        for (int k = 0; k < n_out; k++) {
            const char *d = dnames[n_d == 1 ? 0 : k];
            if (!strcmp(d, "f32")) dtypes[k] = IMCAP_EMB_F32;
            else if (!strcmp(d, "f16")) dtypes[k] = IMCAP_EMB_F16;
            else return imcap_fail(IMCAP_E_ARG, "value type '%s' is neither f32 nor f16", d);
        }
    }
    out_file of[EXTRACT_MAX_OUTPUTS];
    memset(of, 0, sizeof of);
    int vids[EXTRACT_MAX_OUTPUTS];
    for (int k = 0; k < n_out; k++) {
        of[k].output = onames[k], of[k].path = paths[k];
        for (int j = 0; j < k; j++)
            if (!strcmp(paths[j], paths[k]) || !strcmp(onames[j], onames[k]))
                return imcap_fail(IMCAP_E_ARG, "output '%s' or file '%s' given twice", onames[k], paths[k]);
        of[k].vid = vids[k] = enc_graph_output(g, onames[k]);
        if (of[k].vid < 0) {
            char have[512] = "";
            for (int i = 0; i < enc_graph_n_outputs(g); i++) {
                size_t l = strlen(have);
                snprintf(have + l, sizeof have - l, "%s%s", i ? ", " : "", enc_graph_output_name(g, i));
            }
            if (enc_graph_output(g, "grid") >= 0 && !strstr(have, "grid")) {
                size_t l = strlen(have);
                snprintf(have + l, sizeof have - l, ", grid");
            }
            return imcap_fail(IMCAP_E_ARG, "%s: the encoder has no output '%s' (it has: %s)", x->encoder_name,
                              onames[k], have);
        }
        const enc_value *ov = enc_graph_value(g, of[k].vid);
        of[k].dim = (size_t)ov->h * ov->w * ov->c;
        imcap_emb_layout l = {(size_t)ov->h, (size_t)ov->w, (size_t)ov->c, dtypes[k]};
        of[k].layout = l;
        if (dtypes[k] != IMCAP_EMB_F32 && dtypes[k] != IMCAP_EMB_F16)
            return imcap_fail(IMCAP_E_ARG, "value type %d is neither IMCAP_EMB_F32 nor IMCAP_EMB_F16", dtypes[k]);
    }

    char **all = NULL, **todo = NULL;
    uint8_t *need = NULL; /* [n_todo] bit k: file k lacks the image */
    size_t n_all = 0, n_todo = 0, name_width;
    imcap_status st = extract_list(x->list, &all, &n_all, &name_width);
    if (st != IMCAP_OK) return st;
    const size_t n_listed = n_all;
    /* open or resume the files */
    for (int k = 0; k < n_out && st == IMCAP_OK; k++) {
        char enc_id[IMCAP_EMB_ENCODER_MAX + 1];
        encoder_id(g, of[k].output, enc_id, sizeof enc_id);
        FILE *probe = fopen(of[k].path, "rb");
        if (probe) {
            fclose(probe);
            size_t dropped = 0;
            st = imcap_embfile_resume(of[k].path, of[k].dim, enc_id, &of[k].w, &dropped);
            rep->dropped += dropped;
            if (st == IMCAP_OK) {
                imcap_emb_layout have = imcap_embfile_writer_layout(of[k].w), want = of[k].layout;
                if (have.rows != want.rows || have.cols != want.cols || have.channels != want.channels ||
                    have.dtype != want.dtype)
                    st = imcap_fail(IMCAP_E_MISMATCH, "%s: holds %zu x %zu x %zu %s rows; this run writes %zu x %zu x %zu %s",
                                    of[k].path, have.rows, have.cols, have.channels,
                                    have.dtype == IMCAP_EMB_F16 ? "float16" : "float32", want.rows, want.cols,
                                    want.channels, want.dtype == IMCAP_EMB_F16 ? "float16" : "float32");
            }
        } else {
            st = imcap_embfile_create_grid(of[k].path, &of[k].layout, name_width, enc_id, &of[k].w);
        }
        if (st == IMCAP_OK && !(of[k].rows = imcap_alloc(of[k].dim * (size_t)batch, sizeof(float))))
            st = IMCAP_E_NOMEM;
    }
    if (st == IMCAP_OK && (!(todo = malloc(n_all * sizeof *todo)) || !(need = calloc(n_all, 1))))
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
    if (st != IMCAP_OK) goto out;
    size_t n_mine = 0; /* images of this shard */
    for (size_t i = 0; i < n_all; i++) {
        if (sh && sh->n_shards > 1 && i % (size_t)sh->n_shards != (size_t)sh->shard) continue;
        n_mine++;
        uint8_t m = 0;
        for (int k = 0; k < n_out; k++)
            if (!imcap_embfile_writer_has(of[k].w, all[i]) &&
                !(sh && sh->done[k] && imcap_embfile_find(sh->done[k], all[i]) >= 0))
                m |= (uint8_t)(1u << k);
        if (m) need[n_todo] = m, todo[n_todo++] = all[i];
    }
    rep->total = n_mine;
    rep->resumed = n_mine - n_todo;
    n_all = n_mine;

    job jb;
    memset(&jb, 0, sizeof jb);
    jb.x = x;
    jb.names = todo;
    jb.n = n_todo;
    jb.in_h = pre->in_h, jb.in_w = pre->in_w;
    for (int c = 0; c < 3; c++) jb.scale[c] = pre->scale[c], jb.bias[c] = pre->bias[c];
    jb.n_slots = batch * 3;
    size_t slot_floats = (size_t)pre->in_h * pre->in_w * 3;
    jb.slots = imcap_alloc(slot_floats * (size_t)jb.n_slots, sizeof(float));
    jb.ready = calloc((size_t)jb.n_slots, 1);
    jb.slot_err = calloc((size_t)jb.n_slots, sizeof *jb.slot_err);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!jb.slots || !jb.ready || !jb.slot_err || !tids) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory for %d batch slots", jb.n_slots);
    } else if (n_todo > 0) {
        pthread_mutex_init(&jb.mu, NULL);
        pthread_cond_init(&jb.cv_work, NULL);
        pthread_cond_init(&jb.cv_ready, NULL);
        int started;
        float *outs[EXTRACT_MAX_OUTPUTS];
        for (int k = 0; k < n_out; k++) outs[k] = of[k].rows;
        st = start_workers(&jb, tids, threads, &started);
        if (st == IMCAP_OK && report_progress(x, rep->resumed, n_all, "images"))
            st = imcap_fail(IMCAP_E_ARG, "interrupted before the first image");
        size_t bidx[256];
        for (size_t j = 0; st == IMCAP_OK && j < n_todo;) {
            int nb = (int)(n_todo - j < (size_t)batch ? n_todo - j : (size_t)batch);
            int s0 = (int)(j % (size_t)jb.n_slots); /* never wraps: n_slots is a multiple of batch */
            pthread_mutex_lock(&jb.mu);
            for (int k = 0; k < nb; k++)
                while (!jb.ready[s0 + k]) pthread_cond_wait(&jb.cv_ready, &jb.mu);
            pthread_mutex_unlock(&jb.mu);
            /* move the images that decoded to the front of the batch */
            int good = 0;
            for (int k = 0; k < nb && st == IMCAP_OK; k++) {
                if (jb.slot_err[s0 + k]) {
                    st = add_failure(rep, n_todo, jb.slot_err[s0 + k]);
                    jb.slot_err[s0 + k] = NULL;
                    continue;
                }
                if (good != k)
                    memcpy(jb.slots + (size_t)(s0 + good) * slot_floats, jb.slots + (size_t)(s0 + k) * slot_floats,
                           slot_floats * sizeof(float));
                bidx[good++] = j + (size_t)k;
            }
            /* compute only the outputs some file still lacks for this batch
             * (resuming one file of several runs only its part of the net) */
            unsigned mask = 0;
            for (int k = 0; k < good; k++) mask |= need[bidx[k]];
            int ids[EXTRACT_MAX_OUTPUTS], n_ids = 0;
            float *bouts[EXTRACT_MAX_OUTPUTS];
            for (int f = 0; f < n_out; f++)
                if (mask & (1u << f)) ids[n_ids] = vids[f], bouts[n_ids++] = outs[f];
            if (st == IMCAP_OK && good > 0)
                st = enc_graph_run(g, jb.slots + (size_t)s0 * slot_floats, good, ids, n_ids, bouts);
            /* done counts each image once all its rows are appended, so that
             * a failure in the middle of a batch reports what the files hold */
            for (int k = 0; k < good && st == IMCAP_OK; k++) {
                for (int f = 0; f < n_out && st == IMCAP_OK; f++)
                    if (need[bidx[k]] & (1u << f))
                        st = imcap_embfile_append(of[f].w, todo[bidx[k]], of[f].rows + (size_t)k * of[f].dim);
                if (st == IMCAP_OK) rep->done++;
            }
            pthread_mutex_lock(&jb.mu);
            for (int k = 0; k < nb; k++) jb.ready[s0 + k] = 0;
            jb.consumed += (size_t)nb;
            pthread_cond_broadcast(&jb.cv_work);
            pthread_mutex_unlock(&jb.mu);
            if (st != IMCAP_OK) break;
            j += (size_t)nb;
            if (report_progress(x, rep->resumed + j, n_all, "images") && j < n_todo)
                st = imcap_fail(IMCAP_E_ARG, "interrupted after %llu of %zu images; run again to resume",
                                (unsigned long long)(rep->resumed + j), n_all);
        }
        stop_workers(&jb, tids, started);
        for (int k = 0; k < jb.n_slots; k++) free(jb.slot_err[k]);
        pthread_mutex_destroy(&jb.mu);
        pthread_cond_destroy(&jb.cv_work);
        pthread_cond_destroy(&jb.cv_ready);
    }
    imcap_free(jb.slots);
    free(jb.ready);
    free(jb.slot_err);
    free(tids);
out:
    /* the rows written so far are kept (flushed) whatever happened */
    for (int k = 0; k < n_out; k++) {
        if (of[k].w) {
            imcap_status cs = imcap_embfile_writer_close(of[k].w);
            if (st == IMCAP_OK) st = cs;
        }
        imcap_free(of[k].rows);
    }
    free(todo);
    free(need);
    extract_free_list(all, n_listed);
    rep->seconds = imcap_now() - t0;
    return st;
}

imcap_status imcap_extract(const imcap_extract_params *p, imcap_extract_report *rep)
{
    if (!p || !rep || !p->encoder || !p->image_dir || !p->list || !p->out)
        return imcap_fail(IMCAP_E_ARG, "imcap_extract: encoder, image_dir, list and out are required");
    memset(rep, 0, sizeof *rep);
    enc_graph *g = NULL;
    imcap_status st = enc_graph_load(p->encoder, &g);
    if (st == IMCAP_OK) st = enc_graph_set_precision(g, enc_precision_for_decoder((enc_precision)p->precision));
    if (st != IMCAP_OK) {
        enc_graph_free(g);
        return st;
    }
    extract_ctx x = {p->encoder, p->image_dir, p->list, p->out, p->output, p->threads, p->batch,
                     p->progress, p->progress_user, p->dtype, p->dtypes};
    st = p->comm && p->comm->size > 1 ? extract_sharded(g, &x, p->comm, rep) : extract_run(g, &x, rep);
    enc_graph_free(g);
    return st;
}
