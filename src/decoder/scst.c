/*
 * scst.c - self-critical sequence training (imcap_scst_train; `imcap train
 * --scst`): REINFORCE on CIDEr-D with the mean reward of the image's other
 * samples (default) or its greedy caption's reward as baseline, starting
 * from a cross-entropy decoder. The greedy caption is rolled out either way:
 * its reward is the training-set CIDEr-D the progress line shows.
 *
 * One step: B images drawn from the training split (rng in the checkpoint);
 * gen_rollouts gives each its greedy caption and K samples (seeded from the
 * run's seed and the step); cider_reward scores them against the image's
 * training references; the K*B sampled captions, START w.. END, go through
 * dec_forward_backward with row weight = advantage, so
 *   loss = sum_r A_r sum_t CE_rt / n_targets = -sum_r A_r log p(y_r) / n_targets,
 * and Adam steps. log p is the decoder's full softmax (the training loss's);
 * the samples come from the generation rules' masked softmax (PAD, START,
 * UNK never drawn, END not first), whose difference is the masked tokens'
 * small probability. Determinism: everything a step uses derives from the
 * checkpointed state (weights, Adam, image rng, step), so a resumed run
 * replays exactly what the interrupted run would have done.
 */
#include "captioner.h"
#include "cider.h"
#include "decoder.h"
#include "generate.h"
#include "optimizer.h"
#include "ops.h"
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCST_VERSION 1u

imcap_scst_params imcap_scst_default_params(void)
{
    imcap_scst_params p;
    memset(&p, 0, sizeof p);
    p.epochs = 10;
    p.batches_per_epoch = 100;
    p.batch_size = 16;
    p.samples = 5;
    p.max_len = 20;
    p.baseline = IMCAP_SCST_BASELINE_MEAN;
    p.checkpoint_every = 50;
    p.lr = 5e-5f;
    p.seed = 1;
    return p;
}

typedef struct scst {
    imcap_scst_params p; /* effective settings (from the checkpoint when resuming) */
    imcap_captions *all, *train, *val;
    imcap_embfile *emb;
    int32_t *train_rows, *val_rows;
    size_t n_val;         /* validation images used */
    imcap_vocab *vocab;
    gen_special sp;
    cider_refs *cider;
    dec_model *m;
    dec_work *w;
    adam opt;
    imcap_rng pick;       /* image draws */
    /* loop state */
    int epoch, batch;
    uint64_t step;
    float sum_reward, sum_greedy; /* this epoch's sums of batch means */
    float val_start;      /* validation CIDEr-D of the start model (NaN without a split) */
    float *hist_reward, *hist_greedy, *hist_val; /* [epochs] */
    /* step buffers: R = B (K + 1) rollout rows, S = B K sampled rows */
    int32_t *images;      /* [B] */
    float *img;           /* [B][D] images of the batch */
    float *simg;          /* [S][D] the image of each sampled row */
    int32_t *words;       /* [R][max_len] */
    int *lens;            /* [R] */
    bool *ended;          /* [R] */
    double *reward;       /* [R] */
    int32_t *tokens;      /* [S][max_len + 2] */
    float *row_w;         /* [S] advantages */
    double gen_s, reward_s, train_s;
} scst;

static void scst_free(scst *t)
{
    imcap_captions_free(t->val);
    imcap_captions_free(t->train);
    imcap_captions_free(t->all);
    imcap_embfile_close(t->emb);
    free(t->train_rows);
    free(t->val_rows);
    imcap_vocab_free(t->vocab);
    cider_refs_free(t->cider);
    dec_work_free(t->w);
    dec_model_free(t->m);
    adam_free(&t->opt);
    free(t->hist_reward);
    free(t->hist_greedy);
    free(t->hist_val);
    free(t->images);
    imcap_free(t->img);
    imcap_free(t->simg);
    free(t->words);
    free(t->lens);
    free(t->ended);
    free(t->reward);
    free(t->tokens);
    free(t->row_w);
}

static imcap_status check_params(const imcap_scst_params *p)
{
    if (!p->embeddings || !p->captions || !p->train_split || !p->checkpoint)
        return imcap_fail(IMCAP_E_ARG, "SCST needs an embeddings file, captions, a training split and a checkpoint "
                                       "path");
    if (!p->init && !p->resume)
        return imcap_fail(IMCAP_E_ARG, "SCST starts from a trained decoder: give the model to start from (--init)");
    if (p->epochs < 1 || p->epochs > 100000 || p->batches_per_epoch < 1 || p->batches_per_epoch > 100000000 ||
        p->batch_size < 1 || p->batch_size > 4096 || p->samples < 1 || p->samples > 64 || p->max_len < 1 ||
        p->max_len > GEN_MAX_LEN || p->val_images < 0 || p->checkpoint_every < 0 ||
        (p->baseline != IMCAP_SCST_BASELINE_GREEDY && p->baseline != IMCAP_SCST_BASELINE_MEAN))
        return imcap_fail(IMCAP_E_ARG,
                          "SCST settings out of range: epochs %d, batches/epoch %d, batch %d, samples %d, max length "
                          "%d, validation images %d, checkpoint every %d, baseline %d",
                          p->epochs, p->batches_per_epoch, p->batch_size, p->samples, p->max_len, p->val_images,
                          p->checkpoint_every, p->baseline);
    if (p->baseline == IMCAP_SCST_BASELINE_MEAN && p->samples < 2)
        return imcap_fail(IMCAP_E_ARG, "SCST: the mean-of-other-samples baseline needs at least 2 samples, not %d",
                          p->samples);
    if (!(p->lr > 0 && p->lr < 10) || !(p->clip >= 0 && isfinite(p->clip)))
        return imcap_fail(IMCAP_E_ARG, "SCST: learning rate %g or clipping %g out of range", p->lr, p->clip);
    if (p->best_model && !p->val_split)
        return imcap_fail(IMCAP_E_ARG, "SCST: keeping the best model (%s) needs a validation split", p->best_model);
    if (p->best_model && !strcmp(p->best_model, p->checkpoint))
        return imcap_fail(IMCAP_E_ARG, "SCST: the best model and the checkpoint are the same file %s", p->checkpoint);
    return IMCAP_OK;
}

/* ------------------------------------------------------------ checkpoints */

static imcap_status save_checkpoint(const scst *t)
{
    const imcap_scst_params *p = &t->p;
    gguf_writer *w = gguf_writer_new();
    if (!w) return IMCAP_E_NOMEM;
    const int64_t np = (int64_t)t->m->n_params;
    imcap_status s;
    if ((s = dec_gguf_add(w, t->m, t->vocab)) || (s = gguf_set_u32(w, "imcap.scst.version", SCST_VERSION)) ||
        (s = gguf_set_u32(w, "imcap.scst.epochs", (uint32_t)p->epochs)) ||
        (s = gguf_set_u32(w, "imcap.scst.batches_per_epoch", (uint32_t)p->batches_per_epoch)) ||
        (s = gguf_set_u32(w, "imcap.scst.batch_size", (uint32_t)p->batch_size)) ||
        (s = gguf_set_u32(w, "imcap.scst.samples", (uint32_t)p->samples)) ||
        (s = gguf_set_u32(w, "imcap.scst.max_len", (uint32_t)p->max_len)) ||
        (s = gguf_set_u32(w, "imcap.scst.baseline", (uint32_t)p->baseline)) ||
        (s = gguf_set_u32(w, "imcap.scst.val_images", (uint32_t)p->val_images)) ||
        (s = gguf_set_u32(w, "imcap.scst.checkpoint_every", (uint32_t)p->checkpoint_every)) ||
        (s = gguf_set_u64(w, "imcap.scst.seed", p->seed)) || (s = gguf_set_f32(w, "imcap.scst.lr", t->opt.p.lr)) ||
        (s = gguf_set_f32(w, "imcap.scst.clip", t->opt.p.clip)) ||
        (s = gguf_set_f32(w, "imcap.scst.beta1", t->opt.p.beta1)) ||
        (s = gguf_set_f32(w, "imcap.scst.beta2", t->opt.p.beta2)) ||
        (s = gguf_set_f32(w, "imcap.scst.eps", t->opt.p.eps)) || (s = gguf_set_u64(w, "imcap.scst.adam_t", t->opt.t)) ||
        (s = gguf_set_u32(w, "imcap.scst.epoch", (uint32_t)t->epoch)) ||
        (s = gguf_set_u32(w, "imcap.scst.batch", (uint32_t)t->batch)) ||
        (s = gguf_set_u64(w, "imcap.scst.step", t->step)) ||
        (s = gguf_set_f32(w, "imcap.scst.sum_reward", t->sum_reward)) ||
        (s = gguf_set_f32(w, "imcap.scst.sum_greedy", t->sum_greedy)) ||
        (s = gguf_set_f32(w, "imcap.scst.val_start", t->val_start)) ||
        (s = gguf_set_u64(w, "imcap.scst.pick.0", t->pick.s[0])) ||
        (s = gguf_set_u64(w, "imcap.scst.pick.1", t->pick.s[1])) ||
        (s = gguf_set_u64(w, "imcap.scst.pick.2", t->pick.s[2])) ||
        (s = gguf_set_u64(w, "imcap.scst.pick.3", t->pick.s[3])) ||
        (s = gguf_set_arr_f32(w, "imcap.scst.history.reward", t->hist_reward, (size_t)t->epoch)) ||
        (s = gguf_set_arr_f32(w, "imcap.scst.history.greedy", t->hist_greedy, (size_t)t->epoch)) ||
        (s = gguf_set_arr_f32(w, "imcap.scst.history.val_cider", t->hist_val, (size_t)t->epoch)) ||
        (s = gguf_add_tensor(w, "adam.m", GGUF_T_F32, 1, &np, t->opt.m)) ||
        (s = gguf_add_tensor(w, "adam.v", GGUF_T_F32, 1, &np, t->opt.v)) || (s = gguf_write(w, p->checkpoint))) {
        gguf_writer_free(w);
        return s;
    }
    gguf_writer_free(w);
    return IMCAP_OK;
}

static imcap_status alloc_history(scst *t)
{
    const size_t n = (size_t)t->p.epochs;
    t->hist_reward = malloc(sizeof(float) * n);
    t->hist_greedy = malloc(sizeof(float) * n);
    t->hist_val = malloc(sizeof(float) * n);
    if (!t->hist_reward || !t->hist_greedy || !t->hist_val)
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for the history");
    return IMCAP_OK;
}

/* Model (with gradients), vocabulary, settings, Adam and loop state. */
static imcap_status load_checkpoint(scst *t, const char *path, int epochs_wanted)
{
    gguf_file *f;
    imcap_status s = gguf_open(path, &f);
    if (s) return s;
    dec_model *lm = NULL;
    imcap_scst_params *p = &t->p;
    adam_params ap = adam_default_params();
    uint64_t adam_t;
    uint32_t version;
    if ((s = dec_gguf_read(f, &lm, &t->vocab))) goto out;
    if (!gguf_has_key(f, "imcap.scst.version")) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: not an SCST checkpoint (no imcap.scst state to resume)", path);
        goto out;
    }
    if ((s = gguf_get_u32(f, "imcap.scst.version", &version))) goto out;
    if (version != SCST_VERSION) {
        s = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: SCST checkpoint version %u (this build reads %u)", path, version,
                       SCST_VERSION);
        goto out;
    }
    if ((s = gguf_get_count(f, "imcap.scst.epochs", 1, 100000, &p->epochs)) ||
        (s = gguf_get_count(f, "imcap.scst.batches_per_epoch", 1, 100000000, &p->batches_per_epoch)) ||
        (s = gguf_get_count(f, "imcap.scst.batch_size", 1, 4096, &p->batch_size)) ||
        (s = gguf_get_count(f, "imcap.scst.samples", 1, 64, &p->samples)) ||
        (s = gguf_get_count(f, "imcap.scst.max_len", 1, GEN_MAX_LEN, &p->max_len)) ||
        (s = gguf_get_count(f, "imcap.scst.baseline", 0, 1, &p->baseline)) ||
        (s = gguf_get_count(f, "imcap.scst.val_images", 0, INT32_MAX, &p->val_images)) ||
        (s = gguf_get_count(f, "imcap.scst.checkpoint_every", 0, INT32_MAX, &p->checkpoint_every)) ||
        (s = gguf_get_u64(f, "imcap.scst.seed", &p->seed)) || (s = gguf_get_f32(f, "imcap.scst.lr", &ap.lr)) ||
        (s = gguf_get_f32(f, "imcap.scst.clip", &ap.clip)) || (s = gguf_get_f32(f, "imcap.scst.beta1", &ap.beta1)) ||
        (s = gguf_get_f32(f, "imcap.scst.beta2", &ap.beta2)) || (s = gguf_get_f32(f, "imcap.scst.eps", &ap.eps)) ||
        (s = gguf_get_u64(f, "imcap.scst.adam_t", &adam_t)) ||
        (s = gguf_get_count(f, "imcap.scst.epoch", 0, 100000, &t->epoch)) ||
        (s = gguf_get_count(f, "imcap.scst.batch", 0, 100000000, &t->batch)) ||
        (s = gguf_get_u64(f, "imcap.scst.step", &t->step)) ||
        (s = gguf_get_f32(f, "imcap.scst.sum_reward", &t->sum_reward)) ||
        (s = gguf_get_f32(f, "imcap.scst.sum_greedy", &t->sum_greedy)) ||
        (s = gguf_get_f32(f, "imcap.scst.val_start", &t->val_start)) ||
        (s = gguf_get_u64(f, "imcap.scst.pick.0", &t->pick.s[0])) ||
        (s = gguf_get_u64(f, "imcap.scst.pick.1", &t->pick.s[1])) ||
        (s = gguf_get_u64(f, "imcap.scst.pick.2", &t->pick.s[2])) ||
        (s = gguf_get_u64(f, "imcap.scst.pick.3", &t->pick.s[3])))
        goto out;
    p->lr = ap.lr;
    p->clip = ap.clip;
    if (t->epoch > p->epochs || t->batch >= p->batches_per_epoch ||
        t->step != (uint64_t)t->epoch * (uint64_t)p->batches_per_epoch + (uint64_t)t->batch || adam_t != t->step ||
        !isfinite(t->sum_reward) || !isfinite(t->sum_greedy)) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: inconsistent SCST state (epoch %d of %d, batch %d of %d, step %llu, Adam "
                       "step %llu)", path, t->epoch, p->epochs, t->batch, p->batches_per_epoch,
                       (unsigned long long)t->step, (unsigned long long)adam_t);
        goto out;
    }
    if (epochs_wanted > p->epochs) p->epochs = epochs_wanted;
    const float *hr, *hg, *hv;
    size_t nr, ng, nv;
    if ((s = gguf_get_arr_f32(f, "imcap.scst.history.reward", &hr, &nr)) ||
        (s = gguf_get_arr_f32(f, "imcap.scst.history.greedy", &hg, &ng)) ||
        (s = gguf_get_arr_f32(f, "imcap.scst.history.val_cider", &hv, &nv)))
        goto out;
    if (nr != (size_t)t->epoch || ng != nr || nv != nr) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: history has %zu/%zu/%zu entries for %d finished epochs", path, nr, ng, nv,
                       t->epoch);
        goto out;
    }
    if ((s = alloc_history(t))) goto out;
    memcpy(t->hist_reward, hr, sizeof(float) * nr);
    memcpy(t->hist_greedy, hg, sizeof(float) * nr);
    memcpy(t->hist_val, hv, sizeof(float) * nr);
    if ((s = dec_model_new(&lm->cfg, true, &t->m))) goto out;
    memcpy(t->m->params, lm->params, sizeof(float) * lm->n_params);
    if ((s = adam_init(&t->opt, &ap, t->m->n_params))) {
        s = imcap_fail_prefix(s, "%s", path);
        goto out;
    }
    t->opt.t = adam_t;
    const int64_t np = (int64_t)t->m->n_params;
    const gguf_tensor *tm, *tv;
    if ((s = gguf_expect_tensor(f, "adam.m", GGUF_T_F32, 1, &np, &tm)) ||
        (s = gguf_expect_tensor(f, "adam.v", GGUF_T_F32, 1, &np, &tv)))
        goto out;
    memcpy(t->opt.m, tm->data, sizeof(float) * t->m->n_params);
    memcpy(t->opt.v, tv->data, sizeof(float) * t->m->n_params);
    for (size_t i = 0; i < t->m->n_params; i++)
        if (!isfinite(t->m->params[i]) || !isfinite(t->opt.m[i]) || !(t->opt.v[i] >= 0 && isfinite(t->opt.v[i]))) {
            s = imcap_fail(IMCAP_E_FORMAT, "%s: non-finite weight or optimizer value at parameter %zu", path, i);
            goto out;
        }
out:
    dec_model_free(lm);
    gguf_close(f);
    return s;
}

/* ---------------------------------------------------------- history files */

static imcap_status write_history_csv(const scst *t, const char *path)
{
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (s) return s;
    char line[200];
    int n = snprintf(line, sizeof line, "epoch,step,reward,greedy_reward,val_cider\n0,0,,,");
    if (isfinite(t->val_start)) n += snprintf(line + n, sizeof line - n, "%.6f", t->val_start);
    snprintf(line + n, sizeof line - n, "\n");
    s = imcap_atomic_write(&af, line, strlen(line));
    for (int e = 0; e < t->epoch && !s; e++) {
        n = snprintf(line, sizeof line, "%d,%llu,%.6f,%.6f,", e + 1,
                     (unsigned long long)(e + 1) * (unsigned long long)t->p.batches_per_epoch, t->hist_reward[e],
                     t->hist_greedy[e]);
        if (isfinite(t->hist_val[e])) n += snprintf(line + n, sizeof line - n, "%.6f", t->hist_val[e]);
        snprintf(line + n, sizeof line - n, "\n");
        s = imcap_atomic_write(&af, line, strlen(line));
    }
    if (s) {
        imcap_atomic_abort(&af);
        return s;
    }
    return imcap_atomic_commit(&af);
}

static imcap_status write_plot(const scst *t, const char *path)
{
    const float *series[3] = {t->hist_reward, t->hist_greedy, t->hist_val};
    const char *const labels[3] = {"sample reward", "greedy reward", "validation"};
    return plot_epochs_svg(path, "SCST: CIDEr-D per epoch", "CIDEr-D", t->epoch, t->hist_val && t->val_rows ? 3 : 2,
                           series, labels);
}

/* ---------------------------------------------------------------- the loop */

static imcap_status load_data(scst *t)
{
    const imcap_scst_params *p = &t->p;
    imcap_status s;
    if ((s = imcap_captions_load(p->captions, &t->all))) return s;
    if ((s = imcap_captions_restrict(t->all, p->train_split, &t->train))) return s;
    if (imcap_captions_n_images(t->train) == 0)
        return imcap_fail(IMCAP_E_ARG, "%s: the training split has no images", p->train_split);
    if (p->val_split && (s = imcap_captions_restrict(t->all, p->val_split, &t->val))) return s;
    if ((s = imcap_embfile_open(p->embeddings, &t->emb))) return s;
    t->train_rows = malloc(sizeof(int32_t) * imcap_captions_n_images(t->train));
    if (!t->train_rows) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    if ((s = imcap_embfile_match(t->emb, t->train, t->train_rows)))
        return imcap_fail_prefix(s, "training split %s", p->train_split);
    if (t->val && imcap_captions_n_images(t->val) > 0) {
        t->val_rows = malloc(sizeof(int32_t) * imcap_captions_n_images(t->val));
        if (!t->val_rows) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
        if ((s = imcap_embfile_match(t->emb, t->val, t->val_rows)))
            return imcap_fail_prefix(s, "validation split %s", p->val_split);
        t->n_val = imcap_captions_n_images(t->val);
        if (p->val_images > 0 && (size_t)p->val_images < t->n_val) t->n_val = (size_t)p->val_images;
    }
    return IMCAP_OK;
}

/* Greedy CIDEr-D of the validation images, as imcap_eval scores it
 * (imcap_score over those images, PTB tokenization). NaN without a split. */
static imcap_status validate(scst *t, float *out)
{
    *out = NAN;
    if (!t->val_rows) return IMCAP_OK;
    const size_t n = t->n_val, D = imcap_embfile_dim(t->emb), chunk = 64;
    const int L = t->p.max_len;
    imcap_status s = IMCAP_OK;
    float *img = imcap_alloc(chunk * D, sizeof(float));
    int32_t *words = malloc(sizeof(int32_t) * chunk * (size_t)L);
    int lens[64];
    imcap_score_item *items = calloc(n, sizeof *items);
    char **text = calloc(n, sizeof *text);
    if (!img || !words || !items || !text) {
        s = imcap_fail(IMCAP_E_NOMEM, "out of memory for validation");
        goto out;
    }
    for (size_t i0 = 0; i0 < n && !s; i0 += chunk) {
        const size_t b = n - i0 < chunk ? n - i0 : chunk;
        for (size_t i = 0; i < b; i++)
            memcpy(img + i * D, imcap_embfile_row(t->emb, (size_t)t->val_rows[i0 + i]), sizeof(float) * D);
        if ((s = gen_greedy_batch(t->m, img, (int)b, &t->sp, L, words, lens))) break;
        for (size_t i = 0; i < b && !s; i++)
            s = imcap_vocab_decode(t->vocab, words + i * (size_t)L, (size_t)lens[i], &text[i0 + i]);
    }
    for (size_t i = 0; i < n && !s; i++) {
        items[i].candidate = text[i];
        items[i].n_refs = imcap_captions_count(t->val, i);
        const char **r = malloc(sizeof *r * (items[i].n_refs ? items[i].n_refs : 1));
        if (!r) {
            s = imcap_fail(IMCAP_E_NOMEM, "out of memory for validation");
            break;
        }
        for (size_t k = 0; k < items[i].n_refs; k++) r[k] = imcap_captions_text(t->val, i, k);
        items[i].refs = r;
    }
    imcap_scores sc;
    if (!s && (s = imcap_score(items, n, 1, &sc, NULL, NULL)) == IMCAP_OK) *out = (float)sc.cider_d;
out:
    if (items)
        for (size_t i = 0; i < n; i++) free((void *)items[i].refs);
    if (text)
        for (size_t i = 0; i < n; i++) free(text[i]);
    free(items);
    free(text);
    imcap_free(img);
    free(words);
    return s;
}

typedef struct reward_ctx {
    const scst *t;
    int k1;
    imcap_status status; /* first failure (written by at most the failing chunk) */
} reward_ctx;

/* rollout rows [b, e): CIDEr-D against the image's training references */
static void reward_rows(void *vc, size_t b, size_t e, int tid)
{
    reward_ctx *c = vc;
    const scst *t = c->t;
    for (size_t r = b; r < e; r++) {
        const size_t img = (size_t)t->images[r / (size_t)c->k1];
        imcap_status s = cider_reward(t->cider, img, t->words + r * (size_t)t->p.max_len, t->lens[r], &t->reward[r]);
        if (s) c->status = s;
    }
}

/* One SCST step on the next batch: rollouts, rewards, weighted backward,
 * Adam. Mean sample and greedy rewards into *reward, *greedy. */
static imcap_status scst_step(scst *t, float *reward, float *greedy)
{
    const imcap_scst_params *p = &t->p;
    const int B = p->batch_size, K = p->samples, k1 = K + 1, L = p->max_len, t1 = L + 2;
    const size_t D = imcap_embfile_dim(t->emb), n_train = imcap_captions_n_images(t->train);
    for (int i = 0; i < B; i++) {
        t->images[i] = (int32_t)imcap_rng_below(&t->pick, n_train);
        memcpy(t->img + (size_t)i * D, imcap_embfile_row(t->emb, (size_t)t->train_rows[t->images[i]]),
               sizeof(float) * D);
    }
    double t0 = imcap_now();
    imcap_status s = gen_rollouts(t->m, t->img, B, K, &t->sp, L, p->seed * 0x9e3779b97f4a7c15ull + t->step, t->words,
                                  t->lens, t->ended);
    if (s) return s;
    double t1s = imcap_now();
    reward_ctx rc = {.t = t, .k1 = k1, .status = IMCAP_OK};
    ops_parallel((size_t)B * k1, 4, reward_rows, &rc);
    if (rc.status) return rc.status;
    double t2 = imcap_now();
    double sum_r = 0, sum_g = 0;
    for (int i = 0; i < B; i++) {
        const double *ri = t->reward + (size_t)i * k1;
        double all = 0;
        for (int k = 1; k <= K; k++) all += ri[k];
        sum_g += ri[0];
        sum_r += all;
        for (int k = 1; k <= K; k++) {
            const double base = p->baseline == IMCAP_SCST_BASELINE_GREEDY ? ri[0] : (all - ri[k]) / (K - 1);
            const size_t row = (size_t)i * K + (k - 1), src = (size_t)i * k1 + k;
            t->row_w[row] = (float)(ri[k] - base);
            int32_t *tok = t->tokens + row * t1;
            tok[0] = t->sp.start_id;
            for (int j = 0; j < t->lens[src]; j++) tok[1 + j] = t->words[src * L + j];
            int n = 1 + t->lens[src];
            if (t->ended[src]) tok[n++] = t->sp.end_id;
            for (; n < t1; n++) tok[n] = t->m->cfg.pad_id;
            memcpy(t->simg + row * D, t->img + (size_t)i * D, sizeof(float) * D);
        }
    }
    *reward = (float)(sum_r / ((double)B * K));
    *greedy = (float)(sum_g / B);
    float loss;
    if ((s = dec_forward_backward(t->m, t->w, t->simg, t->tokens, t->row_w, B * K, t1, true, NULL, &loss,
                                           NULL)))
        return s;
    if (!isfinite(loss))
        return imcap_fail(IMCAP_E_INTERNAL, "SCST diverged: loss %g at step %llu (try a lower learning rate or "
                          "--clip)", loss, (unsigned long long)t->step + 1);
    adam_step(&t->opt, t->m->params, t->m->grads);
    double t3 = imcap_now();
    t->gen_s += t1s - t0;
    t->reward_s += t2 - t1s;
    t->train_s += t3 - t2;
    return IMCAP_OK;
}

/* Whether the epoch just finished has the highest validation CIDEr-D so far
 * (the first of equal ones wins), from the history. */
static bool is_best_epoch(const scst *t)
{
    const float v = t->hist_val[t->epoch - 1];
    for (int e = 0; e < t->epoch - 1; e++)
        if (isfinite(t->hist_val[e]) && t->hist_val[e] >= v) return false;
    return true;
}

static imcap_status scst_run(scst *t, const imcap_scst_params *req)
{
    imcap_status s = check_params(req);
    if (s) return s;
    t->p = *req;
    struct stat sb;
    const bool resuming = req->resume && stat(req->checkpoint, &sb) == 0;
    if (!resuming && !req->init)
        return imcap_fail(IMCAP_E_ARG, "SCST: no checkpoint %s to resume and no model to start from",
                          req->checkpoint);
    if ((s = load_data(t))) return s;
    const size_t D = imcap_embfile_dim(t->emb);
    if (resuming) {
        if ((s = load_checkpoint(t, req->checkpoint, req->epochs))) return s;
    } else {
        dec_model *lm;
        if ((s = captioner_read_decoder(req->init, &lm, &t->vocab))) return s;
        s = dec_model_new(&lm->cfg, true, &t->m);
        if (!s) memcpy(t->m->params, lm->params, sizeof(float) * lm->n_params);
        dec_model_free(lm);
        if (s) return s;
        adam_params ap = adam_default_params();
        ap.lr = t->p.lr;
        ap.clip = t->p.clip;
        if ((s = adam_init(&t->opt, &ap, t->m->n_params))) return s;
        if ((s = alloc_history(t))) return s;
        imcap_rng_seed(&t->pick, t->p.seed);
    }
    const char *src = resuming ? req->checkpoint : req->init;
    if (dec_input_floats(&t->m->cfg) != D)
        return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has dimension %zu but the decoder %s reads %zu",
                          req->embeddings, D, src, dec_input_floats(&t->m->cfg));
    const imcap_scst_params *p = &t->p;
    t->sp.start_id = imcap_vocab_start(t->vocab);
    t->sp.end_id = imcap_vocab_end(t->vocab);
    t->sp.n_masked = 3;
    t->sp.masked[0] = imcap_vocab_pad(t->vocab);
    t->sp.masked[1] = imcap_vocab_start(t->vocab);
    t->sp.masked[2] = imcap_vocab_unk(t->vocab);
    if ((s = cider_refs_new(t->train, t->vocab, &t->cider))) return imcap_fail_prefix(s, "%s", p->train_split);
    const int B = p->batch_size, K = p->samples, R = B * (K + 1), S = B * K, L = p->max_len;
    if ((s = dec_work_new(&t->m->cfg, S, L + 2, &t->w))) return s;
    /* the policy is the rollouts' masked softmax: its log p and gradient too */
    dec_mask mask = {.n = t->sp.n_masked, .first_id = t->sp.end_id};
    memcpy(mask.ids, t->sp.masked, sizeof(int32_t) * (size_t)t->sp.n_masked);
    if ((s = dec_work_set_mask(t->w, &mask))) return s;
    t->images = malloc(sizeof(int32_t) * (size_t)B);
    t->img = imcap_alloc((size_t)B * D, sizeof(float));
    t->simg = imcap_alloc((size_t)S * D, sizeof(float));
    t->words = malloc(sizeof(int32_t) * (size_t)R * (size_t)L);
    t->lens = malloc(sizeof(int) * (size_t)R);
    t->ended = malloc(sizeof(bool) * (size_t)R);
    t->reward = malloc(sizeof(double) * (size_t)R);
    t->tokens = malloc(sizeof(int32_t) * (size_t)S * (size_t)(L + 2));
    t->row_w = malloc(sizeof(float) * (size_t)S);
    if (!t->images || !t->img || !t->simg || !t->words || !t->lens || !t->ended || !t->reward || !t->tokens ||
        !t->row_w)
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for SCST batches of %d x %d captions", B, K + 1);

    const uint64_t total = (uint64_t)p->epochs * (uint64_t)p->batches_per_epoch;
    if (!resuming) {
        if ((s = validate(t, &t->val_start))) return s;
        imcap_scst_report r0 = {.epochs = p->epochs, .batches = p->batches_per_epoch, .total_steps = total,
                                .val_cider = t->val_start, .epoch_end = 1, .reward = NAN, .greedy = NAN,
                                .epoch_reward = NAN, .epoch_greedy = NAN};
        if (p->report && p->report(p->report_user, &r0))
            return imcap_fail(IMCAP_E_ARG, "SCST interrupted before the first step");
    }
    const uint64_t step0 = t->step;
    const double start = imcap_now();
    while (t->epoch < p->epochs) {
        imcap_scst_report r = {.epoch = t->epoch + 1, .epochs = p->epochs, .batches = p->batches_per_epoch,
                               .total_steps = total, .val_cider = NAN};
        if (t->batch < p->batches_per_epoch) {
            float rw, gr;
            if ((s = scst_step(t, &rw, &gr))) return s;
            t->batch++;
            t->step++;
            t->sum_reward += rw;
            t->sum_greedy += gr;
            r.reward = rw;
            r.greedy = gr;
            if (t->batch < p->batches_per_epoch && p->checkpoint_every > 0 && t->step % p->checkpoint_every == 0) {
                if ((s = save_checkpoint(t))) return s;
                r.checkpoint = p->checkpoint;
            }
        } else {
            float val;
            if ((s = validate(t, &val))) return s;
            r.epoch_end = 1;
            r.val_cider = val;
            t->hist_reward[t->epoch] = t->sum_reward / t->batch;
            t->hist_greedy[t->epoch] = t->sum_greedy / t->batch;
            t->hist_val[t->epoch] = val;
            r.reward = r.epoch_reward = t->hist_reward[t->epoch];
            r.greedy = r.epoch_greedy = t->hist_greedy[t->epoch];
            t->epoch++;
            t->batch = 0;
            t->sum_reward = t->sum_greedy = 0;
            if (p->history_csv && (s = write_history_csv(t, p->history_csv))) return s;
            if (p->plot_svg && (s = write_plot(t, p->plot_svg))) return s;
            if ((s = save_checkpoint(t))) return s;
            r.checkpoint = p->checkpoint;
            if (p->best_model && isfinite(val) && is_best_epoch(t)) {
                if ((s = dec_save(p->best_model, t->m, t->vocab))) return s;
                r.best = 1;
            }
        }
        r.batch = t->batch ? t->batch : p->batches_per_epoch;
        if (!r.epoch_end) {
            r.epoch_reward = t->sum_reward / t->batch;
            r.epoch_greedy = t->sum_greedy / t->batch;
        }
        const double el = imcap_now() - start;
        const uint64_t done = t->step - step0;
        r.step = t->step;
        r.samples_per_s = el > 0 ? (double)done * B * K / el : 0;
        r.gen_s = t->gen_s;
        r.reward_s = t->reward_s;
        r.train_s = t->train_s;
        r.eta_s = done > 0 ? el / (double)done * (double)(total - t->step) : 0;
        int stop = 0;
        if (p->report) stop |= p->report(p->report_user, &r);
        if (p->progress) stop |= p->progress(p->progress_user, t->step, total, "batches");
        if (stop)
            return imcap_fail(IMCAP_E_ARG, "SCST interrupted at step %llu (resume from %s)",
                              (unsigned long long)t->step, p->checkpoint);
    }
    return IMCAP_OK;
}

imcap_status imcap_scst_train(const imcap_scst_params *p)
{
    if (!p) return imcap_fail(IMCAP_E_ARG, "imcap_scst_train: no parameters");
    scst t;
    memset(&t, 0, sizeof t);
    imcap_status s = scst_run(&t, p);
    scst_free(&t);
    return s;
}
