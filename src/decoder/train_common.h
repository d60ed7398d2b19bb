/*
 * train_common.h - a training run of the decoder, as the cross-entropy
 * trainer (train.c) and self-critical sequence training (scst.c) share it:
 * the data (captions, splits, embeddings and the embedding row of each split
 * image), the model with its Adam state, the position in the loop, the
 * per-epoch history and its files (CSV, SVG plot), the checkpoint (the
 * decoder model file + the trainer's keys under its prefix + the history +
 * Adam's moments, written atomically), the best epoch and the ETA.
 *
 * Each trainer keeps what is its own: its step, its validation metric, its
 * settings and checkpoint keys (a run_key table, run_format.keys), its report.
 */
#ifndef IMCAP_TRAIN_COMMON_H
#define IMCAP_TRAIN_COMMON_H

#include "decoder.h"
#include "optimizer.h"

#define RUN_MAX_SERIES 3
#define RUN_MAX_KEYS 40 /* of a trainer's checkpoint table */

typedef struct run_key run_key;

/* What differs between the trainers: files, messages, checkpoint keys. */
typedef struct run_format {
    const char *prefix;        /* of the checkpoint keys: "imcap.train" */
    uint32_t version;          /* of the checkpoint state */
    const char *label;         /* in messages: "training" ("training interrupted at step ...") */
    const char *no_state;      /* message for a model without the prefix's state; one %s: the path */
    const char *version_what;  /* "checkpoint" in "%s: checkpoint version %u (this build reads %u)" */
    const char *history_what;  /* "loss history" in "%s: loss history has 3/3 entries for 2 finished epochs" */
    int n_series;              /* history series, the last one the validation metric */
    const char *series_key[RUN_MAX_SERIES]; /* checkpoint arrays after the prefix: "history.train_loss" */
    const char *csv_header;    /* "epoch,step,train_loss,val_loss\n" */
    bool csv_start_row;        /* a row "0,0,,..,<start validation>" before the epochs */
    bool higher_is_better;     /* of the validation metric (best epoch) */
    const char *plot_title, *plot_ylabel;
    bool plot_val_with_split;  /* the validation series is plotted only where there is a split (else always) */
    const char *series_label[RUN_MAX_SERIES]; /* plot legend */
    /* The trainer's checkpoint keys in file order into keys[RUN_MAX_KEYS]: its
     * settings and state, Adam's settings and step at *ap and *adam_t; the
     * count. saving: the values are about to be written (brought up to date). */
    size_t (*keys)(void *owner, bool saving, adam_params *ap, uint64_t *adam_t, run_key *keys);
    /* After a checkpoint's keys are read (ap: its Adam settings): the trainer's
     * own part (optional keys, lm's architecture); *state_ok: its state is consistent. */
    imcap_status (*loaded)(void *owner, const gguf_file *f, const char *path, const dec_model *lm,
                           const adam_params *ap, bool *state_ok);
} run_format;

/* The files a run writes (NULL: not written, except the checkpoint). */
typedef struct run_outputs {
    const char *checkpoint, *history_csv, *plot_svg, *best_model;
} run_outputs;

typedef struct train_run {
    const run_format *fmt;
    void *owner;               /* the trainer, for fmt's functions */
    int *epochs, *batches;     /* the trainer's epochs and batches per epoch (from the checkpoint when resuming) */
    run_outputs out;
    imcap_captions *all, *train, *val;
    imcap_embfile *emb;
    int32_t *train_rows;       /* [train images] embedding row of each */
    int32_t *val_rows;         /* [val images]; NULL without a split or with an empty one */
    imcap_vocab *vocab;
    dec_model *m;              /* with gradients */
    adam opt;
    int epoch, batch;          /* epoch in progress (0-based), batches of it done */
    uint64_t step;             /* batches done in total */
    float *hist[RUN_MAX_SERIES]; /* [epochs] each finished epoch's value (validation NaN without a split) */
    float val_start;           /* with csv_start_row: the start model's validation value */
} train_run;

void run_free(train_run *r);

/* Captions, the training split (refused when empty), the validation split
 * (optional) and the embeddings file with the rows of both splits' images. */
imcap_status run_load_data(train_run *r, const char *captions, const char *train_split, const char *val_split,
                           const char *embeddings);
/* dst [n][D]: the embedding of image images[i] (i when images is NULL) of a
 * split whose rows are `rows`. */
void run_gather(const train_run *r, const int32_t *rows, const int32_t *images, size_t n, float *dst);

/* Whether to resume: asked to, and the checkpoint exists. */
bool run_resuming(int resume, const char *checkpoint);
/* A fresh start: Adam with the default settings but lr and clip. */
imcap_status run_adam_init(train_run *r, float lr, float clip);
/* The history series for `epochs` epochs. */
imcap_status run_alloc_history(train_run *r, int epochs);

/* ---- checkpoints: the trainer's keys, as a table used to write and read */
typedef enum { RUN_U32, RUN_U64, RUN_F32 } run_key_type;
struct run_key {
    const char *name;          /* after the prefix and a dot: "epochs" */
    run_key_type type;
    void *v;                   /* RUN_U32: int * (a count within [lo, hi]); RUN_U64: uint64_t *; RUN_F32: float * */
    uint32_t lo, hi;
    bool optional;             /* newer than the first checkpoints: not read (fmt->loaded reads it) */
};
#define RUN_COUNT(name, p, lo, hi) {name, RUN_U32, (p), (lo), (hi), false}
#define RUN_COUNT_OPT(name, p) {name, RUN_U32, (p), 0, 0, true}
#define RUN_U64(name, p) {name, RUN_U64, (p), 0, 0, false}
#define RUN_F32(name, p) {name, RUN_F32, (p), 0, 0, false}
#define RUN_F32_OPT(name, p) {name, RUN_F32, (p), 0, 0, true}
/* The Adam settings and step (ap, *adam_t), after lr and clip. */
#define RUN_KEYS_ADAM(ap, adam_t)                                                                        \
    RUN_F32("beta1", &(ap)->beta1), RUN_F32("beta2", &(ap)->beta2), RUN_F32("eps", &(ap)->eps),         \
        RUN_U64("adam_t", adam_t)
/* The loop position of train_run r. */
#define RUN_KEYS_POSITION(r)                                                                             \
    RUN_COUNT("epoch", &(r)->epoch, 0, 100000), RUN_COUNT("batch", &(r)->batch, 0, 100000000),          \
        RUN_U64("step", &(r)->step)
/* A 4-word rng state st under "<name>.0" .. "<name>.3". */
#define RUN_KEYS_RNG(name, st)                                                                           \
    RUN_U64(name ".0", &(st)[0]), RUN_U64(name ".1", &(st)[1]), RUN_U64(name ".2", &(st)[2]),           \
        RUN_U64(name ".3", &(st)[3])

/* Writes r->out.checkpoint atomically: the model and vocabulary,
 * <prefix>.version, the trainer's keys in table order, the history of the
 * finished epochs, adam.m, adam.v. */
imcap_status run_save_checkpoint(const train_run *r);
/* Resumes from a checkpoint: model (with gradients), vocabulary, the
 * trainer's keys and own part, the loop position (checked against its
 * settings), epochs raised to epochs_wanted, the history, Adam with its
 * moments (checksums verified, finite, v >= 0). */
imcap_status run_load_checkpoint(train_run *r, const char *path, int epochs_wanted);

/* ---- the loop */
/* Whether a mid-epoch checkpoint is due after the batch just done. */
bool run_checkpoint_due(const train_run *r, int checkpoint_every);
/* The end of an epoch: values[n_series] become its history entry; next epoch. */
void run_end_epoch(train_run *r, const float *values);
/* What the lead rank writes after an epoch: the history CSV, the plot, the
 * checkpoint and, when the epoch's validation value `val` is the best so
 * far, the best model (*best is set on every rank, written or not). Stops at
 * the first failure. */
imcap_status run_write_epoch(const train_run *r, bool lead, float val, bool *best);
/* "<label> diverged: loss ... at step ..." for a non-finite loss. */
imcap_status run_diverged(const train_run *r, float loss);
/* "<label> interrupted at step ... (resume from <checkpoint>)". */
imcap_status run_interrupted(const train_run *r);

/* The progress clock: steps done since the start of this process's run. */
typedef struct run_clock {
    uint64_t total, step0;     /* steps of the whole run, done when this process started */
    double t0;
} run_clock;
void run_clock_start(run_clock *c, const train_run *r);
double run_clock_elapsed(const run_clock *c);
/* Seconds to the end, from the pace so far (0 before the first step). */
double run_clock_eta(const run_clock *c, const train_run *r, double elapsed);

#endif
