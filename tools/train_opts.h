/*
 * train_opts.h - what `imcap train` (tools/cmd_train.c) and `imcap train
 * --scst` (tools/cmd_scst.c) share: the options of a training run, the
 * default names of its files, the pace of the progress line.
 */
#ifndef IMCAP_TRAIN_OPTS_H
#define IMCAP_TRAIN_OPTS_H

#include "cli.h"

#include <stdbool.h>

/* An integer option: --flag N into *dst, N in [lo, 100000000]. */
typedef struct cli_int_opt {
    const char *flag;
    int *dst;
    long lo;
} cli_int_opt;
/* 1: a is one of the n opts and v (its value, non-NULL) is parsed into it;
 * 0: a is none of them; -1: a bad value (the error is printed). */
int cli_int_options(const cli_int_opt *opts, size_t n, const char *a, const char *v);

/* The options of a training run, as pointers into the command's parameters. */
typedef struct cli_run_opts {
    const char **embeddings, **captions, **train_split, **val_split, **checkpoint, **history_csv, **plot_svg,
        **best_model;
    int *resume, *quiet;
    float *lr, *clip;
    uint64_t *seed;
    int *epochs, *batches_per_epoch, *batch_size, *max_len, *checkpoint_every;
    long max_len_lo;             /* the least --max-len */
} cli_run_opts;
/* The options of parameters p (imcap_train_params or imcap_scst_params). */
#define CLI_RUN_OPTS(p, quiet_flag, max_len_least)                                                             \
    {.embeddings = &(p).embeddings, .captions = &(p).captions, .train_split = &(p).train_split,                \
     .val_split = &(p).val_split, .checkpoint = &(p).checkpoint, .history_csv = &(p).history_csv,              \
     .plot_svg = &(p).plot_svg, .best_model = &(p).best_model, .resume = &(p).resume, .quiet = (quiet_flag),   \
     .lr = &(p).lr, .clip = &(p).clip, .seed = &(p).seed, .epochs = &(p).epochs,                               \
     .batches_per_epoch = &(p).batches_per_epoch, .batch_size = &(p).batch_size, .max_len = &(p).max_len,       \
     .checkpoint_every = &(p).checkpoint_every, .max_len_lo = (max_len_least)}

/* Option argv[*i] (its value argv[*i + 1] when there is one): 1 when it is
 * one of the run's, *i then at its last word; 0 when it is not; -1 on a bad
 * value (the error is printed). */
int cli_run_option(const cli_run_opts *o, int argc, char **argv, int *i);

/* The files next to the checkpoint that were not named: history
 * <checkpoint>.history.csv, plot <checkpoint><plot_suffix>, and, when
 * want_best, the best model <checkpoint>.best.gguf. Free with cli_run_files_free. */
typedef struct cli_run_files { char *history, *plot, *best; } cli_run_files;
void cli_run_files_default(const cli_run_opts *o, const char *plot_suffix, bool want_best, cli_run_files *f);
void cli_run_files_free(cli_run_files *f);
/* "<cmd>: done; <what> <checkpoint>, history ..., plot ...[, best-validation model ...]" on stderr. */
void cli_run_done(const cli_run_opts *o, const char *cmd, const char *what);

/* The progress line's state: shown at most every 0.25 s on a terminal,
 * every 10 s elsewhere, and at each epoch's last batch. */
typedef struct cli_run_ui { double last; int quiet, tty; } cli_run_ui;
void cli_run_ui_init(cli_run_ui *ui);
bool cli_run_ui_due(cli_run_ui *ui, int batch, int batches);
/* The ETA as h:mm:ss into buf (>= 24 bytes). */
const char *cli_hms(char *buf, double seconds);

#endif
