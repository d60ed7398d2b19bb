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
 * replays exactly what the interrupted run would have done. The run's
 * shared part (data, checkpoint file, history, best model, ETA) is
 * train_common.c.
 */
#include "captioner.h"
#include "cider.h"
#include "decoder.h"
#include "generate.h"
#include "ops.h"
#include "train_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    train_run run;        /* data, model, Adam, position, history (hist: sample reward, greedy reward, validation
                             CIDEr-D; val_start: the start model's, NaN without a split) */
    size_t n_val;         /* validation images used */
    gen_special sp;
    cider_refs *cider;
    dec_work *w;
    imcap_rng pick;       /* image draws */
    float sum_reward, sum_greedy; /* this epoch's sums of batch means */
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
    run_free(&t->run);
    cider_refs_free(t->cider);
    dec_work_free(t->w);
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

/* The checkpoint's imcap.scst keys, in file order: settings, Adam (ap,
 * *adam_t), the loop position, the epoch's sums, the start model's
 * validation CIDEr-D, the image rng. */
static size_t scst_keys(void *owner, bool saving, adam_params *ap, uint64_t *adam_t, run_key *keys)
{
    scst *t = owner;
    imcap_scst_params *p = &t->p;
    const run_key k[] = {
        RUN_COUNT("epochs", &p->epochs, 1, 100000),
        RUN_COUNT("batches_per_epoch", &p->batches_per_epoch, 1, 100000000),
        RUN_COUNT("batch_size", &p->batch_size, 1, 4096),
        RUN_COUNT("samples", &p->samples, 1, 64),
        RUN_COUNT("max_len", &p->max_len, 1, GEN_MAX_LEN),
        RUN_COUNT("baseline", &p->baseline, 0, 1),
        RUN_COUNT("val_images", &p->val_images, 0, INT32_MAX),
        RUN_COUNT("checkpoint_every", &p->checkpoint_every, 0, INT32_MAX),
        RUN_U64("seed", &p->seed),
        RUN_F32("lr", &ap->lr),
        RUN_F32("clip", &ap->clip),
        RUN_KEYS_ADAM(ap, adam_t),
        RUN_KEYS_POSITION(&t->run),
        RUN_F32("sum_reward", &t->sum_reward),
        RUN_F32("sum_greedy", &t->sum_greedy),
        RUN_F32("val_start", &t->run.val_start),
        RUN_KEYS_RNG("pick", t->pick.s),
    };
    _Static_assert(sizeof k / sizeof *k <= RUN_MAX_KEYS, "RUN_MAX_KEYS");
    memcpy(keys, k, sizeof k);
    return sizeof k / sizeof *k;
}

/* A checkpoint's lr and clip from Adam's; its epoch sums must be finite. */
static imcap_status scst_loaded(void *owner, const gguf_file *f, const char *path, const dec_model *lm,
                                const adam_params *ap, bool *state_ok)
{
    scst *t = owner;
    t->p.lr = ap->lr;
    t->p.clip = ap->clip;
    *state_ok = isfinite(t->sum_reward) && isfinite(t->sum_greedy);
    return IMCAP_OK;
}

static const run_format scst_format = {
    .prefix = "imcap.scst",
    .version = SCST_VERSION,
    .label = "SCST",
    .no_state = "%s: not an SCST checkpoint (no imcap.scst state to resume)",
    .version_what = "SCST checkpoint",
    .history_what = "history",
    .n_series = 3,
    .series_key = {"history.reward", "history.greedy", "history.val_cider"},
    .csv_header = "epoch,step,reward,greedy_reward,val_cider\n",
    .csv_start_row = true,
    .higher_is_better = true,
    .plot_title = "SCST: CIDEr-D per epoch",
    .plot_ylabel = "CIDEr-D",
    .plot_val_with_split = true,
    .series_label = {"sample reward", "greedy reward", "validation"},
    .keys = scst_keys,
    .loaded = scst_loaded,
};

/* ---------------------------------------------------------------- the loop */

/* Greedy CIDEr-D of the validation images, as imcap_eval scores it
 * (imcap_score over those images, PTB tokenization). NaN without a split. */
static imcap_status validate(scst *t, float *out)
{
    *out = NAN;
    const train_run *run = &t->run;
    if (!run->val_rows) return IMCAP_OK;
    const size_t n = t->n_val, D = imcap_embfile_dim(run->emb), chunk = 64;
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
        run_gather(run, run->val_rows + i0, NULL, b, img);
        if ((s = gen_greedy_batch(run->m, img, (int)b, &t->sp, L, words, lens))) break;
        for (size_t i = 0; i < b && !s; i++)
            s = imcap_vocab_decode(run->vocab, words + i * (size_t)L, (size_t)lens[i], &text[i0 + i]);
    }
    for (size_t i = 0; i < n && !s; i++) {
        items[i].candidate = text[i];
        items[i].n_refs = imcap_captions_count(run->val, i);
        const char **r = malloc(sizeof *r * (items[i].n_refs ? items[i].n_refs : 1));
        if (!r) {
            s = imcap_fail(IMCAP_E_NOMEM, "out of memory for validation");
            break;
        }
        for (size_t k = 0; k < items[i].n_refs; k++) r[k] = imcap_captions_text(run->val, i, k);
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
    train_run *run = &t->run;
    dec_model *m = run->m;
    const size_t D = imcap_embfile_dim(run->emb), n_train = imcap_captions_n_images(run->train);
    for (int i = 0; i < B; i++) t->images[i] = (int32_t)imcap_rng_below(&t->pick, n_train);
    run_gather(run, run->train_rows, t->images, (size_t)B, t->img);
    double t0 = imcap_now();
    imcap_status s = gen_rollouts(m, t->img, B, K, &t->sp, L, p->seed * 0x9e3779b97f4a7c15ull + run->step, t->words,
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
            for (; n < t1; n++) tok[n] = m->cfg.pad_id;
            memcpy(t->simg + row * D, t->img + (size_t)i * D, sizeof(float) * D);
        }
    }
    *reward = (float)(sum_r / ((double)B * K));
    *greedy = (float)(sum_g / B);
    float loss;
    if ((s = dec_forward_backward(m, t->w, t->simg, t->tokens, t->row_w, B * K, t1, true, NULL, &loss, NULL)))
        return s;
    if (!isfinite(loss)) return run_diverged(run, loss);
    adam_step(&run->opt, m->params, m->grads);
    double t3 = imcap_now();
    t->gen_s += t1s - t0;
    t->reward_s += t2 - t1s;
    t->train_s += t3 - t2;
    return IMCAP_OK;
}

static imcap_status scst_run(scst *t, const imcap_scst_params *req)
{
    imcap_status s = check_params(req);
    if (s) return s;
    t->p = *req;
    train_run *run = &t->run;
    run->out = (run_outputs){req->checkpoint, req->history_csv, req->plot_svg, req->best_model};
    const bool resuming = run_resuming(req->resume, req->checkpoint);
    if (!resuming && !req->init)
        return imcap_fail(IMCAP_E_ARG, "SCST: no checkpoint %s to resume and no model to start from",
                          req->checkpoint);
    if ((s = run_load_data(run, req->captions, req->train_split, req->val_split, req->embeddings))) return s;
    if (run->val_rows) {
        t->n_val = imcap_captions_n_images(run->val);
        if (req->val_images > 0 && (size_t)req->val_images < t->n_val) t->n_val = (size_t)req->val_images;
    }
    const size_t D = imcap_embfile_dim(run->emb);
    if (resuming) {
        if ((s = run_load_checkpoint(run, req->checkpoint, req->epochs))) return s;
    } else {
        dec_model *lm;
        if ((s = captioner_read_decoder(req->init, &lm, &run->vocab))) return s;
        s = dec_model_new(&lm->cfg, true, &run->m);
        if (!s) memcpy(run->m->params, lm->params, sizeof(float) * lm->n_params);
        dec_model_free(lm);
        if (s) return s;
        if ((s = run_adam_init(run, t->p.lr, t->p.clip)) || (s = run_alloc_history(run, t->p.epochs))) return s;
        imcap_rng_seed(&t->pick, t->p.seed);
    }
    const char *src = resuming ? req->checkpoint : req->init;
    if (dec_input_floats(&run->m->cfg) != D)
        return imcap_fail(IMCAP_E_MISMATCH, "embeddings file %s has dimension %zu but the decoder %s reads %zu",
                          req->embeddings, D, src, dec_input_floats(&run->m->cfg));
    const imcap_scst_params *p = &t->p;
    t->sp.start_id = imcap_vocab_start(run->vocab);
    t->sp.end_id = imcap_vocab_end(run->vocab);
    t->sp.n_masked = 3;
    t->sp.masked[0] = imcap_vocab_pad(run->vocab);
    t->sp.masked[1] = imcap_vocab_start(run->vocab);
    t->sp.masked[2] = imcap_vocab_unk(run->vocab);
    if ((s = cider_refs_new(run->train, run->vocab, &t->cider))) return imcap_fail_prefix(s, "%s", p->train_split);
    const int B = p->batch_size, K = p->samples, R = B * (K + 1), S = B * K, L = p->max_len;
    if ((s = dec_work_new(&run->m->cfg, S, L + 2, &t->w))) return s;
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

    run_clock clock;
    run_clock_start(&clock, run);
    if (!resuming) {
        if ((s = validate(t, &run->val_start))) return s;
        imcap_scst_report r0 = {.epochs = p->epochs, .batches = p->batches_per_epoch, .total_steps = clock.total,
                                .val_cider = run->val_start, .epoch_end = 1, .reward = NAN, .greedy = NAN,
                                .epoch_reward = NAN, .epoch_greedy = NAN};
        if (p->report && p->report(p->report_user, &r0))
            return imcap_fail(IMCAP_E_ARG, "SCST interrupted before the first step");
        run_clock_start(&clock, run); /* the pace: of the steps only */
    }
    while (run->epoch < p->epochs) {
        imcap_scst_report r = {.epoch = run->epoch + 1, .epochs = p->epochs, .batches = p->batches_per_epoch,
                               .total_steps = clock.total, .val_cider = NAN};
        if (run->batch < p->batches_per_epoch) {
            float rw, gr;
            if ((s = scst_step(t, &rw, &gr))) return s;
            run->batch++;
            run->step++;
            t->sum_reward += rw;
            t->sum_greedy += gr;
            r.reward = rw;
            r.greedy = gr;
            if (run_checkpoint_due(run, p->checkpoint_every)) {
                if ((s = run_save_checkpoint(run))) return s;
                r.checkpoint = p->checkpoint;
            }
        } else {
            float val;
            if ((s = validate(t, &val))) return s;
            r.epoch_end = 1;
            r.val_cider = val;
            r.reward = r.epoch_reward = t->sum_reward / run->batch;
            r.greedy = r.epoch_greedy = t->sum_greedy / run->batch;
            run_end_epoch(run, (const float[3]){r.epoch_reward, r.epoch_greedy, val});
            t->sum_reward = t->sum_greedy = 0;
            bool best;
            if ((s = run_write_epoch(run, true, val, &best))) return s;
            r.checkpoint = p->checkpoint;
            r.best = best;
        }
        r.batch = run->batch ? run->batch : p->batches_per_epoch;
        if (!r.epoch_end) {
            r.epoch_reward = t->sum_reward / run->batch;
            r.epoch_greedy = t->sum_greedy / run->batch;
        }
        const double el = run_clock_elapsed(&clock);
        r.step = run->step;
        r.samples_per_s = el > 0 ? (double)(run->step - clock.step0) * B * K / el : 0;
        r.gen_s = t->gen_s;
        r.reward_s = t->reward_s;
        r.train_s = t->train_s;
        r.eta_s = run_clock_eta(&clock, run, el);
        int stop = 0;
        if (p->report) stop |= p->report(p->report_user, &r);
        if (p->progress) stop |= p->progress(p->progress_user, run->step, clock.total, "batches");
        if (stop) return run_interrupted(run);
    }
    return IMCAP_OK;
}

imcap_status imcap_scst_train(const imcap_scst_params *p)
{
    if (!p) return imcap_fail(IMCAP_E_ARG, "imcap_scst_train: no parameters");
    scst t;
    memset(&t, 0, sizeof t);
    t.run.fmt = &scst_format;
    t.run.owner = &t;
    t.run.epochs = &t.p.epochs;
    t.run.batches = &t.p.batches_per_epoch;
    imcap_status s = scst_run(&t, p);
    scst_free(&t);
    return s;
}
