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
 * it replays exactly what the interrupted run would have done. What the
 * trainers share (data, checkpoint file, history CSV and plot, best model,
 * ETA) is train_common.c; here: the step, the validation loss, the keys.
 */
#include "decoder.h"
#include "train_common.h"
#include "train_dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    train_run run;        /* data, model, Adam, position, history (hist[0] train loss, hist[1] validation loss) */
    imcap_batcher *batcher, *val_batcher;
    uint64_t sampler[4];  /* the training sampler's state, as checkpointed */
    uint64_t val_state[4];
    dec_work *w;
    float epoch_sum;     /* sum of this epoch's batch losses */
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
    run_free(&t->run);
    dec_work_free(t->w);
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

/* The checkpoint's imcap.train keys, in file order: settings, Adam (ap,
 * *adam_t), the loop position and epoch loss sum, the sampler state. */
static size_t train_keys(void *owner, bool saving, adam_params *ap, uint64_t *adam_t, run_key *keys)
{
    trainer *t = owner;
    imcap_train_params *p = &t->p;
    if (saving) imcap_batcher_get_state(t->batcher, t->sampler);
    const run_key k[] = {
        RUN_COUNT("epochs", &p->epochs, 1, 100000),
        RUN_COUNT("batches_per_epoch", &p->batches_per_epoch, 1, 100000000),
        RUN_COUNT("batch_size", &p->batch_size, 1, 65536),
        RUN_COUNT("max_len", &p->max_len, 2, 1000),
        RUN_COUNT("min_count", &p->min_count, 1, UINT32_MAX),
        RUN_COUNT("val_batches", &p->val_batches, 0, 1000000),
        RUN_COUNT("checkpoint_every", &p->checkpoint_every, 0, INT32_MAX),
        /* chunks, dropout, att_lambda: newer than the first checkpoints (train_loaded) */
        RUN_COUNT_OPT("chunks", &t->chunks),
        RUN_U64("seed", &p->seed),
        RUN_F32("lr", &ap->lr),
        RUN_F32("clip", &ap->clip),
        RUN_F32_OPT("dropout", &p->dropout),
        RUN_F32_OPT("att_lambda", &p->att_lambda),
        RUN_KEYS_ADAM(ap, adam_t),
        RUN_KEYS_POSITION(&t->run),
        RUN_F32("epoch_loss_sum", &t->epoch_sum),
        RUN_KEYS_RNG("sampler", t->sampler),
    };
    _Static_assert(sizeof k / sizeof *k <= RUN_MAX_KEYS, "RUN_MAX_KEYS");
    memcpy(keys, k, sizeof k);
    return sizeof k / sizeof *k;
}

/* An optional f32 key within [lo, hi]: def when absent (older checkpoints). */
static imcap_status get_opt_f32(const gguf_file *f, const char *path, const char *key, float def, float lo, float hi,
                                float *v)
{
    imcap_status s;
    *v = def;
    if (gguf_has_key(f, key) && (s = gguf_get_f32(f, key, v))) return s;
    if (!(*v >= lo && *v <= hi)) return imcap_fail(IMCAP_E_FORMAT, "%s: %s %g out of range", path, key, *v);
    return IMCAP_OK;
}

/* A checkpoint's settings beyond the keys: lr and clip from Adam's, the
 * optional keys, the model sizes and architecture. */
static imcap_status train_loaded(void *owner, const gguf_file *f, const char *path, const dec_model *lm,
                                 const adam_params *ap, bool *state_ok)
{
    trainer *t = owner;
    imcap_train_params *p = &t->p;
    imcap_status s;
    p->lr = ap->lr;
    p->clip = ap->clip;
    /* checkpoints written before chunks existed trained on whole batches */
    t->chunks = 1;
    if (gguf_has_key(f, "imcap.train.chunks") &&
        (s = gguf_get_count(f, "imcap.train.chunks", 1, (uint32_t)p->batch_size, &t->chunks)))
        return s;
    /* checkpoints written before dropout existed trained without it; before
     * the attention decoder, there was no regulariser weight */
    if ((s = get_opt_f32(f, path, "imcap.train.dropout", 0.0f, 0.0f, nextafterf(1.0f, 0.0f) /* [0, 1) */,
                         &p->dropout)) ||
        (s = get_opt_f32(f, path, "imcap.train.att_lambda", 1.0f, 0.0f, 1000.0f, &p->att_lambda)))
        return s;
    p->decoder = dec_arch_name(lm->cfg.arch);
    if (lm->cfg.arch == DEC_ARCH_ATTENTION) p->n_att = lm->cfg.n_att;
    p->n_img1 = lm->cfg.n_img1;
    p->n_hid = lm->cfg.n_hid;
    p->n_emb = lm->cfg.n_emb;
    p->n_out1 = lm->cfg.n_out1;
    *state_ok = true;
    return IMCAP_OK;
}

static const run_format train_format = {
    .prefix = "imcap.train",
    .version = TRAIN_VERSION,
    .label = "training",
    .no_state = "%s: a decoder model without training state cannot be resumed",
    .version_what = "checkpoint",
    .history_what = "loss history",
    .n_series = 2,
    .series_key = {"history.train_loss", "history.val_loss"},
    .csv_header = "epoch,step,train_loss,val_loss\n",
    .plot_title = "decoder loss per epoch",
    .plot_ylabel = "cross-entropy",
    .series_label = {"train", "validation"},
    .keys = train_keys,
    .loaded = train_loaded,
};

/* ---------------------------------------------------------------- the loop */

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
        run_gather(&t->run, t->run.val_rows, t->images, (size_t)bs, t->img);
        s = dec_forward_backward(t->run.m, t->w, t->img, t->tokens, NULL, bs, (int)width, false, NULL,
                                 &t->val_losses[k], NULL);
    }
    if ((s = dist_share_floats(t->comm, s, t->val_losses, (size_t)t->p.val_batches))) return s;
    double sum = 0;
    for (int k = 0; k < t->p.val_batches; k++) sum += t->val_losses[k];
    *val_loss = (float)(sum / t->p.val_batches);
    return IMCAP_OK;
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
    train_run *run = &t->run;
    run->out = (run_outputs){req->checkpoint, req->history_csv, req->plot_svg, req->best_model};
    if ((s = run_load_data(run, req->captions, req->train_split, req->val_split, req->embeddings))) return s;
    const size_t D = imcap_embfile_dim(run->emb);
    const bool resuming = run_resuming(req->resume, req->checkpoint);
    if (resuming) {
        if ((s = run_load_checkpoint(run, req->checkpoint, req->epochs))) return s;
        if (dec_input_floats(&run->m->cfg) != D)
            return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has dimension %zu but checkpoint %s was trained "
                              "on dimension %zu", req->embeddings, D, req->checkpoint, dec_input_floats(&run->m->cfg));
        const imcap_emb_layout lay = imcap_embfile_layout(run->emb);
        if (run->m->cfg.arch == DEC_ARCH_ATTENTION &&
            (lay.rows != (size_t)run->m->cfg.grid_h || lay.cols != (size_t)run->m->cfg.grid_w))
            return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has a %zux%zu grid but checkpoint %s was trained on "
                              "%dx%d", req->embeddings, lay.rows, lay.cols, req->checkpoint, run->m->cfg.grid_h,
                              run->m->cfg.grid_w);
    } else {
        if ((s = imcap_vocab_build(run->train, t->p.min_count, &run->vocab))) return s;
        dec_config c = {.n_img = (int)D, .n_img1 = t->p.n_img1, .n_hid = t->p.n_hid, .n_emb = t->p.n_emb,
                        .n_out1 = t->p.n_out1, .n_vocab = (int)imcap_vocab_size(run->vocab),
                        .pad_id = imcap_vocab_pad(run->vocab), .arch = DEC_ARCH_RECIPE};
        if (t->p.decoder && dec_arch_from_name(t->p.decoder) == DEC_ARCH_ATTENTION) {
            /* the grid of the embeddings file: L = rows x cols regions of channels features */
            const imcap_emb_layout lay = imcap_embfile_layout(run->emb);
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
        if ((s = dec_model_new(&c, true, &run->m))) return s;
        imcap_rng rng;
        imcap_rng_seed(&rng, t->p.seed);
        dec_model_init(run->m, &rng);
        if ((s = run_adam_init(run, t->p.lr, t->p.clip)) || (s = run_alloc_history(run, t->p.epochs))) return s;
    }
    const imcap_train_params *p = &t->p;
    const size_t n_train = imcap_captions_n_images(run->train);
    if ((size_t)p->batch_size > n_train)
        return imcap_fail(IMCAP_E_ARG, "batch size %d is larger than the %zu images of the training split %s",
                          p->batch_size, n_train, p->train_split);
    if ((s = imcap_batcher_new(run->train, run->vocab, (size_t)p->max_len, p->seed, &t->batcher))) return s;
    if (resuming) imcap_batcher_set_state(t->batcher, t->sampler);
    if (run->val_rows) {
        if ((s = imcap_batcher_new(run->val, run->vocab, (size_t)p->max_len, val_seed(p->seed), &t->val_batcher)))
            return s;
        imcap_batcher_get_state(t->val_batcher, t->val_state);
    }
    if ((s = dec_work_new(&run->m->cfg, p->batch_size, p->max_len, &t->w))) return s;
    dec_work_set_attention_reg(t->w, p->att_lambda);
    t->images = malloc(sizeof(int32_t) * (size_t)p->batch_size);
    t->tokens = malloc(sizeof(int32_t) * (size_t)p->batch_size * (size_t)p->max_len);
    t->img = imcap_alloc((size_t)p->batch_size * D, sizeof(float));
    t->val_losses = malloc(sizeof(float) * (size_t)(p->val_batches > 0 ? p->val_batches : 1));
    if (!t->images || !t->tokens || !t->img || !t->val_losses)
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for batches");
    return dist_new(t->comm, t->chunks, p->batch_size, run->m->n_params, &t->dist);
}

/* Every rank must start from the same state (the same checkpoint, seen
 * through shared storage): step, chunks and a CRC of weights and moments. */
static imcap_status check_same_start(trainer *t)
{
    const imcap_comm *c = t->comm;
    if (c->size <= 1) return IMCAP_OK;
    const size_t P = t->run.m->n_params;
    uint64_t mine[3] = {t->run.step, (uint64_t)t->chunks, imcap_crc32(0, t->run.m->params, sizeof(float) * P)};
    mine[2] = imcap_crc32((uint32_t)mine[2], t->run.opt.m, sizeof(float) * P);
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

static imcap_status train_loop(trainer *t, const imcap_train_params *req)
{
    imcap_status s = imcap_comm_agree(t->comm, train_setup(t, req));
    if (s || (s = check_same_start(t))) return s;
    const imcap_train_params *p = &t->p;
    train_run *run = &t->run;
    const bool lead = t->comm->rank == 0;

    run_clock clock;
    run_clock_start(&clock, run);
    double tokens = 0;
    while (run->epoch < p->epochs) {
        imcap_train_report r = {.epoch = run->epoch + 1, .epochs = p->epochs, .batches = p->batches_per_epoch,
                                .total_steps = clock.total, .val_loss = NAN};
        if (run->batch < p->batches_per_epoch) {
            size_t width = 0;
            s = imcap_batcher_next(t->batcher, (size_t)p->batch_size, t->images, t->tokens, &width);
            if (!s) run_gather(run, run->train_rows, t->images, (size_t)p->batch_size, t->img);
            /* a mask per step, from the run's seed: a resumed run drops the same units */
            float loss;
            int64_t nt;
            if ((s = dist_forward_backward(t->dist, s, run->m, t->w, t->img, t->tokens, p->batch_size, (int)width,
                                           p->dropout, p->seed * 0x9e3779b97f4a7c15ull + run->step, &loss, &nt)))
                return s;
            if (!isfinite(loss)) return run_diverged(run, loss);
            adam_step(&run->opt, run->m->params, run->m->grads);
            run->batch++;
            run->step++;
            t->epoch_sum += loss;
            tokens += (double)nt;
            r.batch = run->batch;
            r.loss = loss;
            r.epoch_loss = t->epoch_sum / run->batch;
            if (run_checkpoint_due(run, p->checkpoint_every)) {
                if (lead) s = run_save_checkpoint(run);
                if ((s = imcap_comm_agree(t->comm, s))) return s;
                r.checkpoint = p->checkpoint;
            }
        } else {
            /* end of the epoch: validation, history, checkpoint */
            float val;
            if ((s = validate(t, &val))) return s;
            r.batch = run->batch;
            r.epoch_loss = t->epoch_sum / run->batch;
            r.loss = r.epoch_loss;
            r.val_loss = val;
            r.epoch_end = 1;
            run_end_epoch(run, (const float[2]){r.epoch_loss, val});
            t->epoch_sum = 0;
            bool best;
            s = run_write_epoch(run, lead, val, &best);
            r.checkpoint = p->checkpoint;
            r.best = best;
            if ((s = imcap_comm_agree(t->comm, s))) return s;
        }
        const double el = run_clock_elapsed(&clock);
        r.step = run->step;
        r.comm_s = dist_comm_seconds(t->dist);
        r.wait_s = dist_wait_seconds(t->dist);
        r.train_s = el;
        r.comm_bytes = dist_bytes_per_step(t->dist);
        r.tokens_per_s = el > 0 ? tokens / el : 0;
        r.eta_s = run_clock_eta(&clock, run, el);
        int stop = 0;
        if (lead && p->report) stop |= p->report(p->report_user, &r);
        if (lead && p->progress) stop |= p->progress(p->progress_user, run->step, clock.total, "batches");
        if (stop) s = run_interrupted(run);
        if ((s = imcap_comm_agree(t->comm, s))) return s;
    }
    return IMCAP_OK;
}

imcap_status imcap_train(const imcap_train_params *p)
{
    if (!p) return imcap_fail(IMCAP_E_ARG, "imcap_train: no parameters");
    trainer t;
    memset(&t, 0, sizeof t);
    t.run.fmt = &train_format;
    t.run.owner = &t;
    t.run.epochs = &t.p.epochs;
    t.run.batches = &t.p.batches_per_epoch;
    t.comm = p->comm ? p->comm : imcap_comm_self();
    imcap_status s = train_loop(&t, p);
    trainer_free(&t);
    return s;
}
