/*
 * train_common.c - the training run shared by the cross-entropy trainer and
 * SCST (train_common.h): data, checkpoints, history files, best epoch, ETA.
 */
#include "train_common.h"
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void run_free(train_run *r)
{
    imcap_captions_free(r->val);
    imcap_captions_free(r->train);
    imcap_captions_free(r->all);
    imcap_embfile_close(r->emb);
    free(r->train_rows);
    free(r->val_rows);
    imcap_vocab_free(r->vocab);
    dec_model_free(r->m);
    adam_free(&r->opt);
    for (int i = 0; i < RUN_MAX_SERIES; i++) free(r->hist[i]);
}

/* ------------------------------------------------------------------ data */

imcap_status run_load_data(train_run *r, const char *captions, const char *train_split, const char *val_split,
                           const char *embeddings)
{
    imcap_status s;
    if ((s = imcap_captions_load(captions, &r->all))) return s;
    if ((s = imcap_captions_restrict(r->all, train_split, &r->train))) return s;
    if (imcap_captions_n_images(r->train) == 0)
        return imcap_fail(IMCAP_E_ARG, "%s: the training split has no images", train_split);
    if (val_split && (s = imcap_captions_restrict(r->all, val_split, &r->val))) return s;
    if ((s = imcap_embfile_open(embeddings, &r->emb))) return s;
    r->train_rows = malloc(sizeof(int32_t) * imcap_captions_n_images(r->train));
    if (!r->train_rows) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    if ((s = imcap_embfile_match(r->emb, r->train, r->train_rows)))
        return imcap_fail_prefix(s, "training split %s", train_split);
    if (r->val && imcap_captions_n_images(r->val) > 0) {
        r->val_rows = malloc(sizeof(int32_t) * imcap_captions_n_images(r->val));
        if (!r->val_rows) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
        if ((s = imcap_embfile_match(r->emb, r->val, r->val_rows)))
            return imcap_fail_prefix(s, "validation split %s", val_split);
    }
    return IMCAP_OK;
}

void run_gather(const train_run *r, const int32_t *rows, const int32_t *images, size_t n, float *dst)
{
    const size_t D = imcap_embfile_dim(r->emb);
    for (size_t i = 0; i < n; i++)
        memcpy(dst + i * D, imcap_embfile_row(r->emb, (size_t)rows[images ? (size_t)images[i] : i]),
               sizeof(float) * D);
}

bool run_resuming(int resume, const char *checkpoint)
{
    struct stat sb;
    return resume && stat(checkpoint, &sb) == 0;
}

imcap_status run_adam_init(train_run *r, float lr, float clip)
{
    adam_params ap = adam_default_params();
    ap.lr = lr;
    ap.clip = clip;
    return adam_init(&r->opt, &ap, r->m->n_params);
}

imcap_status run_alloc_history(train_run *r, int epochs)
{
    for (int i = 0; i < r->fmt->n_series; i++)
        if (!(r->hist[i] = malloc(sizeof(float) * (size_t)epochs)))
            return imcap_fail(IMCAP_E_NOMEM, "out of memory for the %s", r->fmt->history_what);
    return IMCAP_OK;
}

/* ------------------------------------------------------------ checkpoints */

static void key_name(const train_run *r, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", r->fmt->prefix, name);
}

static imcap_status set_key(gguf_writer *w, const char *key, const run_key *k)
{
    switch (k->type) {
    case RUN_U32: return gguf_set_u32(w, key, (uint32_t)*(const int *)k->v);
    case RUN_U64: return gguf_set_u64(w, key, *(const uint64_t *)k->v);
    default: return gguf_set_f32(w, key, *(const float *)k->v);
    }
}

imcap_status run_save_checkpoint(const train_run *r)
{
    adam_params ap = r->opt.p;
    uint64_t adam_t = r->opt.t;
    run_key keys[RUN_MAX_KEYS];
    const size_t n = r->fmt->keys(r->owner, true, &ap, &adam_t, keys);
    gguf_writer *w = gguf_writer_new();
    if (!w) return IMCAP_E_NOMEM;
    const int64_t np = (int64_t)r->m->n_params;
    char key[128];
    key_name(r, "version", key, sizeof key);
    imcap_status s;
    if (!(s = dec_gguf_add(w, r->m, r->vocab))) s = gguf_set_u32(w, key, r->fmt->version);
    for (size_t i = 0; i < n && !s; i++) {
        key_name(r, keys[i].name, key, sizeof key);
        s = set_key(w, key, &keys[i]);
    }
    for (int i = 0; i < r->fmt->n_series && !s; i++) {
        key_name(r, r->fmt->series_key[i], key, sizeof key);
        s = gguf_set_arr_f32(w, key, r->hist[i], (size_t)r->epoch);
    }
    if (!s && !(s = gguf_add_tensor(w, "adam.m", GGUF_T_F32, 1, &np, r->opt.m)) &&
        !(s = gguf_add_tensor(w, "adam.v", GGUF_T_F32, 1, &np, r->opt.v)))
        s = gguf_write(w, r->out.checkpoint);
    gguf_writer_free(w);
    return s;
}

/* The model (into *lm, without gradients) and vocabulary (into r->vocab);
 * the state's version checked. */
static imcap_status open_checkpoint(train_run *r, const gguf_file *f, const char *path, dec_model **lm)
{
    char key[128];
    key_name(r, "version", key, sizeof key);
    uint32_t version;
    imcap_status s;
    if ((s = dec_gguf_read(f, lm, &r->vocab))) return s;
    if (!gguf_has_key(f, key)) return imcap_fail(IMCAP_E_FORMAT, r->fmt->no_state, path);
    if ((s = gguf_get_u32(f, key, &version))) return s;
    if (version != r->fmt->version)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s version %u (this build reads %u)", path, r->fmt->version_what,
                          version, r->fmt->version);
    return IMCAP_OK;
}

/* The keys that are not optional, in table order. */
static imcap_status read_keys(const train_run *r, const gguf_file *f, const run_key *keys, size_t n)
{
    char key[128];
    imcap_status s = IMCAP_OK;
    for (size_t i = 0; i < n && !s; i++) {
        const run_key *k = &keys[i];
        if (k->optional) continue;
        key_name(r, k->name, key, sizeof key);
        s = k->type == RUN_U32   ? gguf_get_count(f, key, k->lo, k->hi, k->v)
            : k->type == RUN_U64 ? gguf_get_u64(f, key, k->v)
                                 : gguf_get_f32(f, key, k->v);
    }
    return s;
}

/* The loop position against the settings: epoch <= epochs, batch < batches,
 * step = epoch * batches + batch = adam_t, and the trainer's state_ok. */
static imcap_status check_position(const train_run *r, const char *path, uint64_t adam_t, bool state_ok)
{
    const int epochs = *r->epochs, batches = *r->batches;
    if (r->epoch > epochs || r->batch >= batches ||
        r->step != (uint64_t)r->epoch * (uint64_t)batches + (uint64_t)r->batch || adam_t != r->step || !state_ok)
        return imcap_fail(IMCAP_E_FORMAT, "%s: inconsistent %s state (epoch %d of %d, batch %d of %d, step %llu, "
                          "Adam step %llu)", path, r->fmt->label, r->epoch, epochs, r->batch, batches,
                          (unsigned long long)r->step, (unsigned long long)adam_t);
    return IMCAP_OK;
}

/* The history of the finished epochs, in series for *r->epochs epochs. */
static imcap_status read_history(train_run *r, const gguf_file *f, const char *path)
{
    const run_format *fmt = r->fmt;
    const float *h[RUN_MAX_SERIES];
    size_t nh[RUN_MAX_SERIES];
    char key[128];
    imcap_status s = IMCAP_OK;
    bool same = true;
    for (int i = 0; i < fmt->n_series && !s; i++) {
        key_name(r, fmt->series_key[i], key, sizeof key);
        s = gguf_get_arr_f32(f, key, &h[i], &nh[i]);
        same = same && nh[i] == (size_t)r->epoch;
    }
    if (s) return s;
    if (!same) {
        char counts[96];
        int n = 0;
        for (int i = 0; i < fmt->n_series; i++)
            n += snprintf(counts + n, sizeof counts - (size_t)n, "%s%zu", i ? "/" : "", nh[i]);
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s has %s entries for %d finished epochs", path, fmt->history_what,
                          counts, r->epoch);
    }
    if ((s = run_alloc_history(r, *r->epochs))) return s;
    for (int i = 0; i < fmt->n_series; i++) memcpy(r->hist[i], h[i], sizeof(float) * nh[i]);
    return IMCAP_OK;
}

/* The model with gradients from lm, Adam with settings ap at step adam_t
 * and its moments. */
static imcap_status restore(train_run *r, const gguf_file *f, const char *path, const dec_model *lm,
                            const adam_params *ap, uint64_t adam_t)
{
    imcap_status s = dec_model_new(&lm->cfg, true, &r->m);
    if (s) return s;
    memcpy(r->m->params, lm->params, sizeof(float) * lm->n_params);
    if ((s = adam_init(&r->opt, ap, r->m->n_params))) return imcap_fail_prefix(s, "%s", path);
    r->opt.t = adam_t;
    const int64_t np = (int64_t)r->m->n_params;
    const gguf_tensor *tm, *tv;
    if ((s = gguf_expect_tensor(f, "adam.m", GGUF_T_F32, 1, &np, &tm)) ||
        (s = gguf_expect_tensor(f, "adam.v", GGUF_T_F32, 1, &np, &tv)))
        return s;
    /* the weights were checked by dec_gguf_read; Adam's moments here (checksum, finite, v >= 0) */
    if ((s = gguf_tensor_load_f32(f, tm, r->opt.m)) || (s = gguf_tensor_load_f32(f, tv, r->opt.v))) return s;
    for (size_t i = 0; i < r->opt.n; i++)
        if (!(r->opt.v[i] >= 0))
            return imcap_fail(IMCAP_E_FORMAT, "%s: adam.v is negative at parameter %zu", path, i);
    return IMCAP_OK;
}

imcap_status run_load_checkpoint(train_run *r, const char *path, int epochs_wanted)
{
    gguf_file *f;
    imcap_status s = gguf_open(path, &f);
    if (s) return s;
    dec_model *lm = NULL;
    adam_params ap = adam_default_params();
    uint64_t adam_t;
    run_key keys[RUN_MAX_KEYS];
    const size_t n = r->fmt->keys(r->owner, false, &ap, &adam_t, keys);
    bool state_ok = true;
    if (!(s = open_checkpoint(r, f, path, &lm)) && !(s = read_keys(r, f, keys, n)) &&
        !(s = r->fmt->loaded(r->owner, f, path, lm, &ap, &state_ok)) &&
        !(s = check_position(r, path, adam_t, state_ok))) {
        if (epochs_wanted > *r->epochs) *r->epochs = epochs_wanted;
        if (!(s = read_history(r, f, path))) s = restore(r, f, path, lm, &ap, adam_t);
    }
    dec_model_free(lm);
    gguf_close(f);
    return s;
}

/* ---------------------------------------------------------- history files */

static imcap_status write_history_csv(const train_run *r, const char *path)
{
    const run_format *fmt = r->fmt;
    const int last = fmt->n_series - 1;
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (s) return s;
    char line[256];
    int n = snprintf(line, sizeof line, "%s", fmt->csv_header);
    if (fmt->csv_start_row) {
        n += snprintf(line + n, sizeof line - n, "0,0,");
        for (int i = 0; i < last; i++) n += snprintf(line + n, sizeof line - n, ",");
        if (isfinite(r->val_start)) n += snprintf(line + n, sizeof line - n, "%.6f", r->val_start);
        snprintf(line + n, sizeof line - n, "\n");
    }
    s = imcap_atomic_write(&af, line, strlen(line));
    for (int e = 0; e < r->epoch && !s; e++) {
        const unsigned long long step = (unsigned long long)(e + 1) * (unsigned long long)*r->batches;
        n = snprintf(line, sizeof line, "%d,%llu,", e + 1, step);
        for (int i = 0; i < last; i++) n += snprintf(line + n, sizeof line - n, "%.6f,", r->hist[i][e]);
        if (isfinite(r->hist[last][e])) n += snprintf(line + n, sizeof line - n, "%.6f", r->hist[last][e]);
        snprintf(line + n, sizeof line - n, "\n");
        s = imcap_atomic_write(&af, line, strlen(line));
    }
    if (s) {
        imcap_atomic_abort(&af);
        return s;
    }
    return imcap_atomic_commit(&af);
}

/* The history as an SVG line chart: x = epoch; the validation series only
 * where there is a validation split. */
static imcap_status write_plot(const train_run *r, const char *path, int n_series)
{
    const float *series[RUN_MAX_SERIES];
    for (int i = 0; i < n_series; i++) series[i] = r->hist[i];
    return plot_epochs_svg(path, r->fmt->plot_title, r->fmt->plot_ylabel, r->epoch, n_series, series,
                           r->fmt->series_label);
}

/* ---------------------------------------------------------------- the loop */

bool run_checkpoint_due(const train_run *r, int checkpoint_every)
{
    return r->batch < *r->batches && checkpoint_every > 0 && r->step % (uint64_t)checkpoint_every == 0;
}

void run_end_epoch(train_run *r, const float *values)
{
    for (int i = 0; i < r->fmt->n_series; i++) r->hist[i][r->epoch] = values[i];
    r->epoch++;
    r->batch = 0;
}

/* Whether the epoch just finished has the best validation value so far (the
 * first of equal ones wins); derived from the history, so a resumed run
 * decides as an uninterrupted one. */
static bool is_best_epoch(const train_run *r)
{
    const float *h = r->hist[r->fmt->n_series - 1];
    const float v = h[r->epoch - 1];
    for (int e = 0; e < r->epoch - 1; e++)
        if (isfinite(h[e]) && (r->fmt->higher_is_better ? h[e] >= v : h[e] <= v)) return false;
    return true;
}

imcap_status run_write_epoch(const train_run *r, bool lead, float val, bool *best)
{
    const run_outputs *o = &r->out;
    imcap_status s = IMCAP_OK;
    if (lead && o->history_csv) s = write_history_csv(r, o->history_csv);
    const int n_plot = r->fmt->plot_val_with_split && !r->val_rows ? r->fmt->n_series - 1 : r->fmt->n_series;
    if (lead && !s && o->plot_svg) s = write_plot(r, o->plot_svg, n_plot);
    if (lead && !s) s = run_save_checkpoint(r);
    *best = o->best_model && isfinite(val) && is_best_epoch(r);
    if (*best && lead && !s) s = dec_save(o->best_model, r->m, r->vocab);
    return s;
}

imcap_status run_diverged(const train_run *r, float loss)
{
    return imcap_fail(IMCAP_E_INTERNAL, "%s diverged: loss %g at step %llu (try a lower learning rate or --clip)",
                      r->fmt->label, loss, (unsigned long long)r->step + 1);
}

imcap_status run_interrupted(const train_run *r)
{
    return imcap_fail(IMCAP_E_ARG, "%s interrupted at step %llu (resume from %s)", r->fmt->label,
                      (unsigned long long)r->step, r->out.checkpoint);
}

void run_clock_start(run_clock *c, const train_run *r)
{
    c->total = (uint64_t)*r->epochs * (uint64_t)*r->batches;
    c->step0 = r->step;
    c->t0 = imcap_now();
}

double run_clock_elapsed(const run_clock *c) { return imcap_now() - c->t0; }

double run_clock_eta(const run_clock *c, const train_run *r, double elapsed)
{
    const uint64_t done = r->step - c->step0;
    return done > 0 ? elapsed / (double)done * (double)(c->total - r->step) : 0;
}
