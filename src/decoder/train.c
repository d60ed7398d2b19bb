/*
 * train.c - decoder training: batches from the caption sampler, embeddings
 * from the embeddings file, Adam, validation, history, checkpoints, resume.
 *
 * Determinism: the model is initialised from an rng seeded with `seed`; the
 * training sampler is seeded with `seed`, the validation sampler with a
 * value derived from it and rewound to the same state every epoch, so every
 * epoch is validated on the same batches. A checkpoint holds everything the
 * loop depends on (weights, Adam moments and step, sampler state, epoch,
 * batch, step, the running epoch loss sum, the history), so resuming from
 * it replays exactly what the interrupted run would have done.
 */
#include "decoder.h"
#include "optimizer.h"
#include "plot.h"
#include "train_dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRAIN_VERSION 1u

imcap_train_params imcap_train_default_params(void)
{
    imcap_train_params p = {0};
    p.epochs = 12;
    p.batches_per_epoch = 1000;
    p.batch_size = 64;
    p.max_len = IMCAP_BATCH_MAX_LEN;
    p.min_count = IMCAP_VOCAB_MIN_COUNT;
    p.val_batches = 100;
    p.checkpoint_every = 200;
    p.lr = 1e-3f;
    p.clip = 0.0f;
    p.n_img1 = 120;
    p.n_hid = 300;
    p.n_emb = 100;
    p.n_out1 = 120;
    p.seed = 1;
    p.n_att = 256;
    p.att_lambda = 1.0f;
    return p;
}

typedef struct trainer {
    imcap_train_params p; /* effective settings (from the checkpoint when resuming) */
    imcap_captions *all, *train, *val;
    imcap_embfile *emb;
    int32_t *train_rows, *val_rows; /* embedding row of each image of train / val */
    imcap_vocab *vocab;
    imcap_batcher *batcher, *val_batcher;
    uint64_t val_state[4];
    dec_model *m;
    dec_work *w;
    adam opt;
    /* loop state */
    int epoch, batch;    /* epoch in progress (0-based), batches of it done */
    uint64_t step;       /* batches done in total */
    float epoch_sum;     /* sum of this epoch's batch losses */
    float *hist_train;   /* [epochs] mean batch loss of each finished epoch */
    float *hist_val;     /* [epochs] validation loss (NaN without a split) */
    /* batch buffers */
    int32_t *images, *tokens;
    float *img;
    /* ranks of the job (train_dist.h); rank 0 alone writes files and reports */
    const imcap_comm *comm;
    int chunks;
    dist_ctx *dist;
    float *val_losses;   /* [val_batches] */
} trainer;

static void trainer_free(trainer *t)
{
    imcap_batcher_free(t->batcher);
    imcap_batcher_free(t->val_batcher);
    imcap_vocab_free(t->vocab);
    imcap_embfile_close(t->emb);
    imcap_captions_free(t->val);
    imcap_captions_free(t->train);
    imcap_captions_free(t->all);
    free(t->train_rows);
    free(t->val_rows);
    dec_work_free(t->w);
    dec_model_free(t->m);
    adam_free(&t->opt);
    free(t->hist_train);
    free(t->hist_val);
    free(t->images);
    free(t->tokens);
    imcap_free(t->img);
    dist_free(t->dist);
    free(t->val_losses);
}

static imcap_status check_params(const imcap_train_params *p)
{
    if (!p->embeddings || !p->captions || !p->train_split || !p->checkpoint)
        return imcap_fail(IMCAP_E_ARG, "training needs an embeddings file, captions, a training split and a "
                                       "checkpoint path");
    if (p->epochs < 1 || p->epochs > 100000 || p->batches_per_epoch < 1 || p->batches_per_epoch > 100000000 ||
        p->batch_size < 1 || p->batch_size > 65536 || p->max_len < 2 || p->max_len > 1000 || p->min_count < 1 ||
        p->val_batches < 0 || p->val_batches > 1000000 || p->checkpoint_every < 0)
        return imcap_fail(IMCAP_E_ARG,
                          "training settings out of range: epochs %d, batches/epoch %d, batch %d, max length %d, "
                          "min count %d, validation batches %d, checkpoint every %d",
                          p->epochs, p->batches_per_epoch, p->batch_size, p->max_len, p->min_count,
                          p->val_batches, p->checkpoint_every);
    if (!(p->lr > 0 && p->lr < 10) || !(p->clip >= 0 && isfinite(p->clip)) || !(p->dropout >= 0 && p->dropout < 1))
        return imcap_fail(IMCAP_E_ARG, "training: learning rate %g, clipping %g or dropout %g out of range", p->lr,
                          p->clip, p->dropout);
    if (p->decoder && dec_arch_from_name(p->decoder) < 0)
        return imcap_fail(IMCAP_E_ARG, "training: unknown decoder architecture '%s' (recipe or attention)", p->decoder);
    if (p->n_att < 1 || p->n_att > (1 << 16) || !(p->att_lambda >= 0 && p->att_lambda <= 1000))
        return imcap_fail(IMCAP_E_ARG, "training: attention size %d or regulariser weight %g out of range", p->n_att,
                          p->att_lambda);
    if (p->best_model && (!p->val_split || p->val_batches < 1))
        return imcap_fail(IMCAP_E_ARG, "training: keeping the best model (%s) needs a validation split and "
                                       "validation batches", p->best_model);
    if (p->best_model && !strcmp(p->best_model, p->checkpoint))
        return imcap_fail(IMCAP_E_ARG, "training: the best model and the checkpoint are the same file %s",
                          p->checkpoint);
    return IMCAP_OK;
}

/* ------------------------------------------------------------ checkpoints */

static imcap_status save_checkpoint(trainer *t)
{
    const imcap_train_params *p = &t->p;
    gguf_writer *w = gguf_writer_new();
    if (!w) return IMCAP_E_NOMEM;
    uint64_t st[4];
    imcap_batcher_get_state(t->batcher, st);
    const int64_t np = (int64_t)t->m->n_params;
    imcap_status s;
    if ((s = dec_gguf_add(w, t->m, t->vocab)) || (s = gguf_set_u32(w, "imcap.train.version", TRAIN_VERSION)) ||
        (s = gguf_set_u32(w, "imcap.train.epochs", (uint32_t)p->epochs)) ||
        (s = gguf_set_u32(w, "imcap.train.batches_per_epoch", (uint32_t)p->batches_per_epoch)) ||
        (s = gguf_set_u32(w, "imcap.train.batch_size", (uint32_t)p->batch_size)) ||
        (s = gguf_set_u32(w, "imcap.train.max_len", (uint32_t)p->max_len)) ||
        (s = gguf_set_u32(w, "imcap.train.min_count", (uint32_t)p->min_count)) ||
        (s = gguf_set_u32(w, "imcap.train.val_batches", (uint32_t)p->val_batches)) ||
        (s = gguf_set_u32(w, "imcap.train.checkpoint_every", (uint32_t)p->checkpoint_every)) ||
        (s = gguf_set_u32(w, "imcap.train.chunks", (uint32_t)t->chunks)) ||
        (s = gguf_set_u64(w, "imcap.train.seed", p->seed)) ||
        (s = gguf_set_f32(w, "imcap.train.lr", t->opt.p.lr)) ||
        (s = gguf_set_f32(w, "imcap.train.clip", t->opt.p.clip)) ||
        (s = gguf_set_f32(w, "imcap.train.dropout", p->dropout)) ||
        (s = gguf_set_f32(w, "imcap.train.att_lambda", p->att_lambda)) ||
        (s = gguf_set_f32(w, "imcap.train.beta1", t->opt.p.beta1)) ||
        (s = gguf_set_f32(w, "imcap.train.beta2", t->opt.p.beta2)) ||
        (s = gguf_set_f32(w, "imcap.train.eps", t->opt.p.eps)) ||
        (s = gguf_set_u64(w, "imcap.train.adam_t", t->opt.t)) ||
        (s = gguf_set_u32(w, "imcap.train.epoch", (uint32_t)t->epoch)) ||
        (s = gguf_set_u32(w, "imcap.train.batch", (uint32_t)t->batch)) ||
        (s = gguf_set_u64(w, "imcap.train.step", t->step)) ||
        (s = gguf_set_f32(w, "imcap.train.epoch_loss_sum", t->epoch_sum)) ||
        (s = gguf_set_u64(w, "imcap.train.sampler.0", st[0])) ||
        (s = gguf_set_u64(w, "imcap.train.sampler.1", st[1])) ||
        (s = gguf_set_u64(w, "imcap.train.sampler.2", st[2])) ||
        (s = gguf_set_u64(w, "imcap.train.sampler.3", st[3])) ||
        (s = gguf_set_arr_f32(w, "imcap.train.history.train_loss", t->hist_train, (size_t)t->epoch)) ||
        (s = gguf_set_arr_f32(w, "imcap.train.history.val_loss", t->hist_val, (size_t)t->epoch)) ||
        (s = gguf_add_tensor(w, "adam.m", GGUF_T_F32, 1, &np, t->opt.m)) ||
        (s = gguf_add_tensor(w, "adam.v", GGUF_T_F32, 1, &np, t->opt.v)) || (s = gguf_write(w, p->checkpoint))) {
        gguf_writer_free(w);
        return s;
    }
    gguf_writer_free(w);
    return IMCAP_OK;
}

/* Loads a checkpoint into t: model (with gradients), vocabulary, settings,
 * Adam state and loop state. The sampler state goes to *sampler. */
static imcap_status load_checkpoint(trainer *t, const char *path, int epochs_wanted, uint64_t sampler[4])
{
    gguf_file *f;
    imcap_status s = gguf_open(path, &f);
    if (s) return s;
    dec_model *lm = NULL;
    imcap_train_params *p = &t->p;
    adam_params ap = adam_default_params();
    uint64_t adam_t;
    if ((s = dec_gguf_read(f, &lm, &t->vocab))) goto out;
    uint32_t version;
    if (!gguf_has_key(f, "imcap.train.version")) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: a decoder model without training state cannot be resumed", path);
        goto out;
    }
    if ((s = gguf_get_u32(f, "imcap.train.version", &version))) goto out;
    if (version != TRAIN_VERSION) {
        s = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: checkpoint version %u (this build reads %u)", path, version,
                       TRAIN_VERSION);
        goto out;
    }
    if ((s = gguf_get_count(f, "imcap.train.epochs", 1, 100000, &p->epochs)) ||
        (s = gguf_get_count(f, "imcap.train.batches_per_epoch", 1, 100000000, &p->batches_per_epoch)) ||
        (s = gguf_get_count(f, "imcap.train.batch_size", 1, 65536, &p->batch_size)) ||
        (s = gguf_get_count(f, "imcap.train.max_len", 2, 1000, &p->max_len)) ||
        (s = gguf_get_count(f, "imcap.train.min_count", 1, UINT32_MAX, &p->min_count)) ||
        (s = gguf_get_count(f, "imcap.train.val_batches", 0, 1000000, &p->val_batches)) ||
        (s = gguf_get_count(f, "imcap.train.checkpoint_every", 0, INT32_MAX, &p->checkpoint_every)) ||
        (s = gguf_get_u64(f, "imcap.train.seed", &p->seed)) || (s = gguf_get_f32(f, "imcap.train.lr", &ap.lr)) ||
        (s = gguf_get_f32(f, "imcap.train.clip", &ap.clip)) ||
        (s = gguf_get_f32(f, "imcap.train.beta1", &ap.beta1)) ||
        (s = gguf_get_f32(f, "imcap.train.beta2", &ap.beta2)) || (s = gguf_get_f32(f, "imcap.train.eps", &ap.eps)) ||
        (s = gguf_get_u64(f, "imcap.train.adam_t", &adam_t)) ||
        (s = gguf_get_count(f, "imcap.train.epoch", 0, 100000, &t->epoch)) ||
        (s = gguf_get_count(f, "imcap.train.batch", 0, 100000000, &t->batch)) ||
        (s = gguf_get_u64(f, "imcap.train.step", &t->step)) ||
        (s = gguf_get_f32(f, "imcap.train.epoch_loss_sum", &t->epoch_sum)) ||
        (s = gguf_get_u64(f, "imcap.train.sampler.0", &sampler[0])) ||
        (s = gguf_get_u64(f, "imcap.train.sampler.1", &sampler[1])) ||
        (s = gguf_get_u64(f, "imcap.train.sampler.2", &sampler[2])) ||
        (s = gguf_get_u64(f, "imcap.train.sampler.3", &sampler[3])))
        goto out;
    p->lr = ap.lr;
    p->clip = ap.clip;
    /* checkpoints written before chunks existed trained on whole batches */
    t->chunks = 1;
    if (gguf_has_key(f, "imcap.train.chunks") &&
        (s = gguf_get_count(f, "imcap.train.chunks", 1, (uint32_t)p->batch_size, &t->chunks)))
        goto out;
    /* checkpoints written before dropout existed trained without it */
    p->dropout = 0.0f;
    if (gguf_has_key(f, "imcap.train.dropout") && (s = gguf_get_f32(f, "imcap.train.dropout", &p->dropout))) goto out;
    if (!(p->dropout >= 0 && p->dropout < 1)) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: imcap.train.dropout %g out of range", path, p->dropout);
        goto out;
    }
    /* checkpoints written before the attention decoder have no regulariser weight */
    p->att_lambda = 1.0f;
    if (gguf_has_key(f, "imcap.train.att_lambda") &&
        (s = gguf_get_f32(f, "imcap.train.att_lambda", &p->att_lambda)))
        goto out;
    if (!(p->att_lambda >= 0 && p->att_lambda <= 1000)) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: imcap.train.att_lambda %g out of range", path, p->att_lambda);
        goto out;
    }
    p->decoder = dec_arch_name(lm->cfg.arch);
    if (lm->cfg.arch == DEC_ARCH_ATTENTION) p->n_att = lm->cfg.n_att;
    p->n_img1 = lm->cfg.n_img1;
    p->n_hid = lm->cfg.n_hid;
    p->n_emb = lm->cfg.n_emb;
    p->n_out1 = lm->cfg.n_out1;
    if (t->epoch > p->epochs || t->batch >= p->batches_per_epoch ||
        t->step != (uint64_t)t->epoch * (uint64_t)p->batches_per_epoch + (uint64_t)t->batch ||
        adam_t != t->step) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: inconsistent training state (epoch %d of %d, batch %d of %d, step %llu, "
                       "Adam step %llu)", path, t->epoch, p->epochs, t->batch, p->batches_per_epoch,
                       (unsigned long long)t->step, (unsigned long long)adam_t);
        goto out;
    }
    if (epochs_wanted > p->epochs) p->epochs = epochs_wanted;
    const float *ht, *hv;
    size_t nt, nv;
    if ((s = gguf_get_arr_f32(f, "imcap.train.history.train_loss", &ht, &nt)) ||
        (s = gguf_get_arr_f32(f, "imcap.train.history.val_loss", &hv, &nv)))
        goto out;
    if (nt != (size_t)t->epoch || nv != (size_t)t->epoch) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: loss history has %zu/%zu entries for %d finished epochs", path, nt, nv,
                       t->epoch);
        goto out;
    }
    t->hist_train = malloc(sizeof(float) * (size_t)p->epochs);
    t->hist_val = malloc(sizeof(float) * (size_t)p->epochs);
    if (!t->hist_train || !t->hist_val) {
        s = imcap_fail(IMCAP_E_NOMEM, "out of memory for the loss history");
        goto out;
    }
    memcpy(t->hist_train, ht, sizeof(float) * nt);
    memcpy(t->hist_val, hv, sizeof(float) * nv);
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
    /* the weights were checked by dec_gguf_get; Adam's moments here */
    if ((s = gguf_tensor_load_f32(f, tm, t->opt.m)) || (s = gguf_tensor_load_f32(f, tv, t->opt.v))) goto out;
    for (size_t i = 0; i < t->m->n_params; i++)
        if (!(t->opt.v[i] >= 0)) {
            s = imcap_fail(IMCAP_E_FORMAT, "%s: adam.v is negative at parameter %zu", path, i);
            goto out;
        }
out:
    dec_model_free(lm);
    gguf_close(f);
    return s;
}

/* ---------------------------------------------------------- history files */

static imcap_status write_history_csv(const trainer *t, const char *path)
{
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (s) return s;
    char line[160];
    snprintf(line, sizeof line, "epoch,step,train_loss,val_loss\n");
    s = imcap_atomic_write(&af, line, strlen(line));
    for (int e = 0; e < t->epoch && !s; e++) {
        int n = snprintf(line, sizeof line, "%d,%llu,%.6f,", e + 1,
                         (unsigned long long)(e + 1) * (unsigned long long)t->p.batches_per_epoch, t->hist_train[e]);
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

/* The loss curves as an SVG line chart: x = epoch, y = loss. */
static imcap_status write_history_svg(const trainer *t, const char *path)
{
    const float *series[2] = {t->hist_train, t->hist_val};
    const char *const labels[2] = {"train", "validation"};
    return plot_epochs_svg(path, "decoder loss per epoch", "cross-entropy", t->epoch, 2, series, labels);
}

/* ---------------------------------------------------------------- the loop */

/* Gathers the embeddings of a batch's images. */
static void gather(const trainer *t, const int32_t *rows, int n)
{
    const size_t D = imcap_embfile_dim(t->emb);
    for (int i = 0; i < n; i++)
        memcpy(t->img + (size_t)i * D, imcap_embfile_row(t->emb, (size_t)rows[t->images[i]]), sizeof(float) * D);
}

static imcap_status validate(trainer *t, float *val_loss)
{
    *val_loss = NAN;
    if (!t->val_batcher || t->p.val_batches == 0) return IMCAP_OK;
    imcap_batcher_set_state(t->val_batcher, t->val_state);
    const size_t nb = imcap_batcher_n_images(t->val_batcher);
    const int bs = (size_t)t->p.batch_size < nb ? t->p.batch_size : (int)nb;
    /* every rank draws every batch; batch k is computed by rank k % size */
    const int R = t->comm->size;
    imcap_status s = IMCAP_OK;
    for (int k = 0; k < t->p.val_batches && !s; k++) {
        size_t width;
        if ((s = imcap_batcher_next(t->val_batcher, (size_t)bs, t->images, t->tokens, &width))) break;
        if (k % R != t->comm->rank) continue;
        gather(t, t->val_rows, bs);
        s = dec_forward_backward(t->m, t->w, t->img, t->tokens, NULL, bs, (int)width, false, NULL,
                                 &t->val_losses[k], NULL);
    }
    if ((s = dist_share_floats(t->comm, s, t->val_losses, (size_t)t->p.val_batches))) return s;
    double sum = 0;
    for (int k = 0; k < t->p.val_batches; k++) sum += t->val_losses[k];
    *val_loss = (float)(sum / t->p.val_batches);
    return IMCAP_OK;
}

static imcap_status load_data(trainer *t)
{
    const imcap_train_params *p = &t->p;
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
    }
    return IMCAP_OK;
}

/* Whether the epoch just finished has the lowest validation loss so far
 * (the first of equal ones wins); derived from the history, so a resumed run
 * decides as an uninterrupted one. */
static bool is_best_epoch(const trainer *t)
{
    const float v = t->hist_val[t->epoch - 1];
    for (int e = 0; e < t->epoch - 1; e++)
        if (isfinite(t->hist_val[e]) && t->hist_val[e] <= v) return false;
    return true;
}

static uint64_t val_seed(uint64_t seed) { return seed ^ 0x76616c6964617465ULL; /* "validate" */ }

static imcap_status train_setup(trainer *t, const imcap_train_params *req)
{
    imcap_status s = check_params(req);
    if (s) return s;
    /* Every output is checked before the long work starts. */
    const char *const outputs[][2] = {{req->checkpoint, "checkpoint"}, {req->best_model, "best model"},
                                      {req->history_csv, "loss history"}, {req->plot_svg, "loss plot"}};
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        if (outputs[i][0] && (s = imcap_check_output(outputs[i][0], outputs[i][1]))) return s;
    t->p = *req;
    t->chunks = req->chunks > 0 ? req->chunks : t->comm->size;
    if ((s = load_data(t))) return s;
    const size_t D = imcap_embfile_dim(t->emb);
    struct stat sb;
    const bool resuming = req->resume && stat(req->checkpoint, &sb) == 0;
    uint64_t sampler[4];
    if (resuming) {
        if ((s = load_checkpoint(t, req->checkpoint, req->epochs, sampler))) return s;
        if (dec_input_floats(&t->m->cfg) != D)
            return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has dimension %zu but checkpoint %s was trained "
                              "on dimension %zu", req->embeddings, D, req->checkpoint, dec_input_floats(&t->m->cfg));
        const imcap_emb_layout lay = imcap_embfile_layout(t->emb);
        if (t->m->cfg.arch == DEC_ARCH_ATTENTION &&
            (lay.rows != (size_t)t->m->cfg.grid_h || lay.cols != (size_t)t->m->cfg.grid_w))
            return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has a %zux%zu grid but checkpoint %s was trained on "
                              "%dx%d", req->embeddings, lay.rows, lay.cols, req->checkpoint, t->m->cfg.grid_h,
                              t->m->cfg.grid_w);
    } else {
        if ((s = imcap_vocab_build(t->train, t->p.min_count, &t->vocab))) return s;
        dec_config c = {.n_img = (int)D, .n_img1 = t->p.n_img1, .n_hid = t->p.n_hid, .n_emb = t->p.n_emb,
                        .n_out1 = t->p.n_out1, .n_vocab = (int)imcap_vocab_size(t->vocab),
                        .pad_id = imcap_vocab_pad(t->vocab), .arch = DEC_ARCH_RECIPE};
        if (t->p.decoder && dec_arch_from_name(t->p.decoder) == DEC_ARCH_ATTENTION) {
            /* the grid of the embeddings file: L = rows x cols regions of channels features */
            const imcap_emb_layout lay = imcap_embfile_layout(t->emb);
            if (lay.rows * lay.cols < 2)
                return imcap_fail(IMCAP_E_MISMATCH,
                                  "%s: the attention decoder needs a grid embeddings file (imcap extract --output "
                                  "grid), this one holds %zu-float vectors",
                                  req->embeddings, D);
            c.arch = DEC_ARCH_ATTENTION;
            c.n_img = (int)lay.channels;
            c.grid_h = (int)lay.rows;
            c.grid_w = (int)lay.cols;
            c.n_img1 = 0;
            c.n_att = t->p.n_att;
        }
        if ((s = dec_model_new(&c, true, &t->m))) return s;
        imcap_rng rng;
        imcap_rng_seed(&rng, t->p.seed);
        dec_model_init(t->m, &rng);
        adam_params ap = adam_default_params();
        ap.lr = t->p.lr;
        ap.clip = t->p.clip;
        if ((s = adam_init(&t->opt, &ap, t->m->n_params))) return s;
        t->hist_train = malloc(sizeof(float) * (size_t)t->p.epochs);
        t->hist_val = malloc(sizeof(float) * (size_t)t->p.epochs);
        if (!t->hist_train || !t->hist_val) return imcap_fail(IMCAP_E_NOMEM, "out of memory");
    }
    const imcap_train_params *p = &t->p;
    const size_t n_train = imcap_captions_n_images(t->train);
    if ((size_t)p->batch_size > n_train)
        return imcap_fail(IMCAP_E_ARG, "batch size %d is larger than the %zu images of the training split %s",
                          p->batch_size, n_train, p->train_split);
    if ((s = imcap_batcher_new(t->train, t->vocab, (size_t)p->max_len, p->seed, &t->batcher))) return s;
    if (resuming) imcap_batcher_set_state(t->batcher, sampler);
    if (t->val_rows) {
        if ((s = imcap_batcher_new(t->val, t->vocab, (size_t)p->max_len, val_seed(p->seed), &t->val_batcher)))
            return s;
        imcap_batcher_get_state(t->val_batcher, t->val_state);
    }
    if ((s = dec_work_new(&t->m->cfg, p->batch_size, p->max_len, &t->w))) return s;
    dec_work_set_attention_reg(t->w, p->att_lambda);
    t->images = malloc(sizeof(int32_t) * (size_t)p->batch_size);
    t->tokens = malloc(sizeof(int32_t) * (size_t)p->batch_size * (size_t)p->max_len);
    t->img = imcap_alloc((size_t)p->batch_size * D, sizeof(float));
    t->val_losses = malloc(sizeof(float) * (size_t)(p->val_batches > 0 ? p->val_batches : 1));
    if (!t->images || !t->tokens || !t->img || !t->val_losses)
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for batches");
    return dist_new(t->comm, t->chunks, p->batch_size, t->m->n_params, &t->dist);
}

/* Every rank must start from the same state (the same checkpoint, seen
 * through shared storage): step, chunks and a CRC of weights and moments. */
static imcap_status check_same_start(trainer *t)
{
    const imcap_comm *c = t->comm;
    if (c->size <= 1) return IMCAP_OK;
    const size_t P = t->m->n_params;
    uint64_t mine[3] = {t->step, (uint64_t)t->chunks, imcap_crc32(0, t->m->params, sizeof(float) * P)};
    mine[2] = imcap_crc32((uint32_t)mine[2], t->opt.m, sizeof(float) * P);
    uint64_t *all = calloc((size_t)c->size * 3, sizeof *all);
    imcap_status s = imcap_comm_agree(c, all ? IMCAP_OK : imcap_fail(IMCAP_E_NOMEM, "out of memory"));
    if (!s && (s = c->allgather(c->user, mine, all, sizeof mine))) c->abort(c->user, s, "allgather failed");
    for (int r = 1; r < c->size && !s; r++)
        if (memcmp(all + 3 * r, all, sizeof mine))
            s = imcap_fail(IMCAP_E_MISMATCH, "%s: rank %d starts at step %llu (chunks %llu, state CRC %08llx) but "
                           "rank 0 at step %llu (chunks %llu, CRC %08llx): do all ranks see the same checkpoint?",
                           t->p.checkpoint, r, (unsigned long long)all[3 * r], (unsigned long long)all[3 * r + 1],
                           (unsigned long long)all[3 * r + 2], (unsigned long long)all[0],
                           (unsigned long long)all[1], (unsigned long long)all[2]);
    free(all);
    return s;
}

static imcap_status train_run(trainer *t, const imcap_train_params *req)
{
    imcap_status s = imcap_comm_agree(t->comm, train_setup(t, req));
    if (s || (s = check_same_start(t))) return s;
    const imcap_train_params *p = &t->p;
    const bool lead = t->comm->rank == 0;

    const uint64_t total = (uint64_t)p->epochs * (uint64_t)p->batches_per_epoch;
    const uint64_t step0 = t->step;
    const double t0 = imcap_now();
    double tokens = 0;
    while (t->epoch < p->epochs) {
        imcap_train_report r = {.epoch = t->epoch + 1, .epochs = p->epochs, .batches = p->batches_per_epoch,
                                .total_steps = total, .val_loss = NAN};
        if (t->batch < p->batches_per_epoch) {
            size_t width = 0;
            s = imcap_batcher_next(t->batcher, (size_t)p->batch_size, t->images, t->tokens, &width);
            if (!s) gather(t, t->train_rows, p->batch_size);
            /* a mask per step, from the run's seed: a resumed run drops the same units */
            float loss;
            int64_t nt;
            if ((s = dist_forward_backward(t->dist, s, t->m, t->w, t->img, t->tokens, p->batch_size, (int)width,
                                           p->dropout, p->seed * 0x9e3779b97f4a7c15ull + t->step, &loss, &nt)))
                return s;
            if (!isfinite(loss))
                return imcap_fail(IMCAP_E_INTERNAL, "training diverged: loss %g at step %llu (try a lower "
                                  "learning rate or --clip)", loss, (unsigned long long)t->step + 1);
            adam_step(&t->opt, t->m->params, t->m->grads);
            t->batch++;
            t->step++;
            t->epoch_sum += loss;
            tokens += (double)nt;
            r.batch = t->batch;
            r.loss = loss;
            r.epoch_loss = t->epoch_sum / t->batch;
            if (t->batch < p->batches_per_epoch && p->checkpoint_every > 0 && t->step % p->checkpoint_every == 0) {
                if (lead) s = save_checkpoint(t);
                if ((s = imcap_comm_agree(t->comm, s))) return s;
                r.checkpoint = p->checkpoint;
            }
        } else {
            /* end of the epoch: validation, history, checkpoint */
            float val;
            if ((s = validate(t, &val))) return s;
            r.batch = t->batch;
            r.epoch_loss = t->epoch_sum / t->batch;
            r.loss = r.epoch_loss;
            r.val_loss = val;
            r.epoch_end = 1;
            t->hist_train[t->epoch] = r.epoch_loss;
            t->hist_val[t->epoch] = val;
            t->epoch++;
            t->batch = 0;
            t->epoch_sum = 0;
            if (lead && p->history_csv) s = write_history_csv(t, p->history_csv);
            if (lead && !s && p->plot_svg) s = write_history_svg(t, p->plot_svg);
            if (lead && !s) s = save_checkpoint(t);
            r.checkpoint = p->checkpoint;
            if (p->best_model && isfinite(val) && is_best_epoch(t)) {
                if (lead && !s) s = dec_save(p->best_model, t->m, t->vocab);
                r.best = 1;
            }
            if ((s = imcap_comm_agree(t->comm, s))) return s;
        }
        const double el = imcap_now() - t0;
        const uint64_t done = t->step - step0;
        r.step = t->step;
        r.comm_s = dist_comm_seconds(t->dist);
        r.wait_s = dist_wait_seconds(t->dist);
        r.train_s = el;
        r.comm_bytes = dist_bytes_per_step(t->dist);
        r.tokens_per_s = el > 0 ? tokens / el : 0;
        r.eta_s = done > 0 ? el / (double)done * (double)(total - t->step) : 0;
        int stop = 0;
        if (lead && p->report) stop |= p->report(p->report_user, &r);
        if (lead && p->progress) stop |= p->progress(p->progress_user, t->step, total, "batches");
        if (stop)
            s = imcap_fail(IMCAP_E_ARG, "training interrupted at step %llu (resume from %s)",
                           (unsigned long long)t->step, p->checkpoint);
        if ((s = imcap_comm_agree(t->comm, s))) return s;
    }
    return IMCAP_OK;
}

imcap_status imcap_train(const imcap_train_params *p)
{
    if (!p) return imcap_fail(IMCAP_E_ARG, "imcap_train: no parameters");
    trainer t;
    memset(&t, 0, sizeof t);
    t.comm = p->comm ? p->comm : imcap_comm_self();
    imcap_status s = train_run(&t, p);
    trainer_free(&t);
    return s;
}
