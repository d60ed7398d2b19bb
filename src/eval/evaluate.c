/*
 * evaluate.c - caption every image of a split and score the captions with
 * the COCO toolkit's metrics (imcap_eval; `imcap eval`).
 *
 * Two sources of image embeddings:
 *   - images: a captioner model file (and its encoder) captions each photo
 *     of the split end to end (decode, encode, generate);
 *   - precomputed embeddings (imcap extract): a decoder model or training
 *     checkpoint generates from the embedding rows of the split's images,
 *     without running any encoder (quick evaluation during model selection).
 * Captions are generated on `threads` worker threads (the captioner and the
 * decoder are only read), then scored by imcap_score with the toolkit's PTB
 * tokenization of candidates and references.
 */
#define _POSIX_C_SOURCE 200809L
#include "captioner.h"
#include "decoder.h"
#include "generate.h"
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

imcap_eval_params imcap_eval_default_params(void)
{
    imcap_eval_params p;
    memset(&p, 0, sizeof p);
    p.length_alpha = -1.0f;
    p.block_ngram = -1;
    p.threads = 2;
    return p;
}

void imcap_eval_result_free(imcap_eval_result *r)
{
    if (!r) return;
    if (r->captions)
        for (size_t i = 0; i < r->n; i++) free(r->captions[i]);
    imcap_free(r->captions);
    free(r->names);
    memset(r, 0, sizeof *r);
}

/* The generation settings: the base (the captioner's stored settings or the
 * library defaults) with the caller's overrides. */
static imcap_status eval_gen(const imcap_eval_params *p, imcap_gen_params base, imcap_gen_params *out)
{
    if (p->beam) base.beam = p->beam;
    if (p->max_len) base.max_len = p->max_len;
    if (p->length_alpha >= 0) base.length_alpha = p->length_alpha;
    if (p->block_ngram >= 0) base.block_ngram = p->block_ngram;
    base.temperature = 0.0f;
    base.n_best = 1;
    *out = base;
    return imcap_gen_params_check(out);
}

typedef struct eval_job {
    const imcap_eval_params *p;
    imcap_gen_params gen;
    const imcap_captions *refs;    /* the split's images, in split order */
    /* images: */
    const imcap_captioner *cap;
    /* embeddings: */
    const dec_model *dec;
    const imcap_vocab *vocab;
    gen_special sp;
    const imcap_embfile *emb;
    const int32_t *rows;           /* [n] embedding row of each image */

    char **captions;               /* [n] results */
    pthread_mutex_t mu;
    size_t next, done;
    size_t stride;                 /* ranks of the job: this one captions next, next + stride, ... */
    int stop;                      /* failure or interruption: workers finish */
    imcap_status status;
    char error[1024];
} eval_job;

static imcap_status words_text(const imcap_vocab *v, const gen_hyp *h, char **out)
{
    size_t len = 1;
    for (int i = 0; i < h->n_words; i++) {
        const char *w = imcap_vocab_word(v, h->words[i]);
        if (!w) return imcap_fail(IMCAP_E_INTERNAL, "generated token %d is not in the vocabulary", h->words[i]);
        len += strlen(w) + 1;
    }
    char *s = malloc(len), *q = s;
    if (!s) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    for (int i = 0; i < h->n_words; i++) {
        const char *w = imcap_vocab_word(v, h->words[i]);
        size_t n = strlen(w);
        if (i) *q++ = ' ';
        memcpy(q, w, n);
        q += n;
    }
    *q = 0;
    *out = s;
    return IMCAP_OK;
}

static imcap_status caption_one(eval_job *j, size_t i, char *path_buf, size_t path_cap, char **out)
{
    const char *name = imcap_captions_image(j->refs, i);
    if (j->cap) {
        int n = snprintf(path_buf, path_cap, "%s/%s", j->p->images, name);
        if (n < 0 || (size_t)n >= path_cap)
            return imcap_fail(IMCAP_E_ARG, "%s/%s: path too long", j->p->images, name);
        imcap_caption *c;
        imcap_status st = imcap_caption_file(j->cap, path_buf, &j->gen, &c);
        if (st) return st;
        *out = imcap_strdup(c->n_alt > 0 ? c->alt[0].text : "");
        imcap_caption_free(c);
        return *out ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "out of memory");
    }
    gen_hyp h;
    int n_out = 0;
    imcap_status st = gen_caption(j->dec, imcap_embfile_row(j->emb, (size_t)j->rows[i]), &j->sp, &j->gen, &h, &n_out);
    if (st) return imcap_fail_prefix(st, "%s", name);
    if (n_out < 1) {
        *out = imcap_strdup("");
        return *out ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "out of memory");
    }
    return words_text(j->vocab, &h, out);
}

static void *eval_worker(void *arg)
{
    eval_job *j = arg;
    const size_t n = imcap_captions_n_images(j->refs);
    char path[4096];
    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (j->stop || j->next >= n) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        size_t i = j->next;
        j->next += j->stride;
        pthread_mutex_unlock(&j->mu);

        char *text = NULL;
        imcap_status st = caption_one(j, i, path, sizeof path, &text);

        pthread_mutex_lock(&j->mu);
        if (st) {
            if (!j->stop) {
                j->status = st;
                snprintf(j->error, sizeof j->error, "%s", imcap_last_error());
            }
            j->stop = 1;
        } else {
            j->captions[i] = text;
            j->done += j->stride; /* the ranks run at one pace: the progress estimates the job's */
            if (j->p->progress && !j->stop &&
                j->p->progress(j->p->progress_user, j->done < n ? j->done : n, n, "images")) {
                j->stop = 1;
                j->status = IMCAP_E_ARG;
                snprintf(j->error, sizeof j->error, "evaluation interrupted after %zu of %zu images", j->done, n);
            }
        }
        pthread_mutex_unlock(&j->mu);
    }
    return NULL;
}

static imcap_status run_workers(eval_job *j, int threads)
{
    const size_t n = imcap_captions_n_images(j->refs);
    if (threads < 1) threads = 1;
    if ((size_t)threads > n) threads = (int)n;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    pthread_mutex_init(&j->mu, NULL);
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, eval_worker, j) != 0) break;
        started = t;
    }
    eval_worker(j);
    for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&j->mu);
    if (j->status) return imcap_fail(j->status, "%s", j->error);
    return IMCAP_OK;
}

static imcap_status score_all(const imcap_captions *refs, char **captions, imcap_scores *out)
{
    const size_t n = imcap_captions_n_images(refs);
    imcap_score_item *items = imcap_calloc(n, sizeof *items);
    const char **texts = imcap_calloc(imcap_captions_n_total(refs), sizeof *texts);
    imcap_status st = IMCAP_OK;
    if (!items || !texts) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory scoring %zu images", n);
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = imcap_captions_count(refs, i);
        items[i].candidate = captions[i];
        items[i].refs = texts + k;
        items[i].n_refs = m;
        for (size_t r = 0; r < m; r++) texts[k++] = imcap_captions_text(refs, i, r);
    }
    st = imcap_score(items, n, 1, out, NULL, NULL);
out:
    imcap_free(items);
    imcap_free(texts);
    return st;
}

/* <directory of split>/images */
static char *default_image_dir(const char *split)
{
    const char *slash = strrchr(split, '/');
    size_t n = slash ? (size_t)(slash - split) : 1;
    char *s = malloc(n + sizeof "/images");
    if (!s) return NULL;
    memcpy(s, slash ? split : ".", n);
    strcpy(s + n, "/images");
    return s;
}

imcap_status imcap_eval(const imcap_eval_params *p, imcap_eval_result *out)
{
    memset(out, 0, sizeof *out);
    if (!p || !p->model || !p->split || !p->captions)
        return imcap_fail(IMCAP_E_ARG, "eval: a model, a split file and a captions file are required");
    const double t0 = imcap_now();
    eval_job j;
    memset(&j, 0, sizeof j);
    j.p = p;
    imcap_eval_params pp = *p;
    j.p = &pp;
    imcap_captions *all = NULL, *refs = NULL;
    imcap_captioner *cap = NULL;
    dec_model *dec = NULL;
    imcap_vocab *vocab = NULL;
    imcap_embfile *emb = NULL;
    int32_t *rows = NULL;
    char *image_dir = NULL;
    imcap_status st;
    /* the ranks agree on the outcome of the set-up (at fail: when it failed here) */
    const imcap_comm *comm = p->comm ? p->comm : imcap_comm_self();
    int agreed = 0;

    if ((st = imcap_captions_load(p->captions, &all))) goto fail;
    if ((st = imcap_captions_restrict(all, p->split, &refs))) goto fail;
    const size_t n = imcap_captions_n_images(refs);
    if (n == 0) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: the split lists no images", p->split);
        goto fail;
    }
    j.refs = refs;

    if (p->embeddings) {
        if ((st = captioner_read_decoder(p->model, &dec, &vocab))) goto fail;
        if ((st = imcap_embfile_open(p->embeddings, &emb))) goto fail;
        if (imcap_embfile_dim(emb) != dec_input_floats(&dec->cfg)) {
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: embeddings have %zu floats but the decoder %s reads %d",
                            p->embeddings, imcap_embfile_dim(emb), p->model, (int)dec_input_floats(&dec->cfg));
            goto fail;
        }
        if (!(rows = imcap_calloc(n, sizeof *rows))) {
            st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
            goto fail;
        }
        if ((st = imcap_embfile_match(emb, refs, rows))) goto fail;
        imcap_gen_params stored;
        if ((st = captioner_read_gen(p->model, &stored)) || (st = eval_gen(p, stored, &j.gen))) goto fail;
        j.dec = dec;
        j.vocab = vocab;
        j.emb = emb;
        j.rows = rows;
        j.sp.start_id = imcap_vocab_start(vocab);
        j.sp.end_id = imcap_vocab_end(vocab);
        j.sp.n_masked = 3;
        j.sp.masked[0] = imcap_vocab_pad(vocab);
        j.sp.masked[1] = imcap_vocab_start(vocab);
        j.sp.masked[2] = imcap_vocab_unk(vocab);
    } else {
        if (!pp.images) {
            if (!(image_dir = default_image_dir(p->split))) {
                st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
                goto fail;
            }
            pp.images = image_dir;
        }
        if ((st = imcap_captioner_load(p->model, p->encoder, &cap))) goto fail;
        if ((st = imcap_captioner_set_precision(cap, (imcap_precision)p->precision))) goto fail;
        if ((st = eval_gen(p, imcap_captioner_gen_params(cap), &j.gen))) goto fail;
        j.cap = cap;
    }

    if (!(j.captions = imcap_calloc(n, sizeof *j.captions))) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
        goto fail;
    }
    j.next = (size_t)comm->rank;
    j.stride = (size_t)comm->size;
    if (comm->rank != 0) pp.progress = NULL;
    agreed = 1;
    st = imcap_comm_agree(comm, run_workers(&j, p->threads));
    if (st || (st = imcap_comm_share_strings(comm, j.captions, n))) goto fail;
    if ((st = score_all(refs, j.captions, &out->scores))) goto fail;

    /* Names: one block holding the pointer array and the strings. */
    size_t bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++) bytes += strlen(imcap_captions_image(refs, i)) + 1;
    if (!(out->names = malloc(bytes))) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
        goto fail;
    }
    char *q = (char *)(out->names + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(imcap_captions_image(refs, i)) + 1;
        memcpy(q, imcap_captions_image(refs, i), len);
        out->names[i] = q;
        q += len;
    }
    out->captions = j.captions;
    out->n = n;
    out->gen = j.gen;
    j.captions = NULL;
    out->seconds = imcap_now() - t0;
    st = IMCAP_OK;
fail:
    if (!agreed) st = imcap_comm_agree(comm, st);
    if (j.captions) {
        for (size_t i = 0; i < imcap_captions_n_images(refs); i++) free(j.captions[i]);
        imcap_free(j.captions);
    }
    free(image_dir);
    imcap_free(rows);
    imcap_embfile_close(emb);
    imcap_vocab_free(vocab);
    dec_model_free(dec);
    imcap_captioner_free(cap);
    imcap_captions_free(refs);
    imcap_captions_free(all);
    return st;
}
