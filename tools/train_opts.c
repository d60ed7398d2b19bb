/* train_opts.c - the options and progress pace the training commands share (train_opts.h). */
#include "train_opts.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_int_options(const cli_int_opt *opts, size_t n, const char *a, const char *v)
{
    for (size_t k = 0; k < n; k++) {
        if (strcmp(a, opts[k].flag)) continue;
        long x;
        if (cli_parse_int(a, v, opts[k].lo, 100000000, &x)) return -1;
        *opts[k].dst = (int)x;
        return 1;
    }
    return 0;
}

int cli_run_option(const cli_run_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int *const flags[] = {o->resume, o->quiet};
    static const char *const flag_names[] = {"--resume", "--quiet"};
    for (size_t k = 0; k < 2; k++)
        if (!strcmp(a, flag_names[k])) {
            *flags[k] = 1;
            return 1;
        }
    if (!v) return 0;
    const char **const paths[] = {o->embeddings, o->captions, o->train_split, o->val_split,
                                  o->checkpoint, o->history_csv, o->plot_svg, o->best_model};
    static const char *const path_names[] = {"--embeddings", "--captions", "--train-split", "--val-split",
                                             "--checkpoint", "--history", "--plot", "--best"};
    for (size_t k = 0; k < sizeof paths / sizeof *paths; k++)
        if (!strcmp(a, path_names[k])) {
            *paths[k] = argv[++*i];
            return 1;
        }
    if (!strcmp(a, "--lr") || !strcmp(a, "--clip")) {
        double x;
        if (cli_parse_double(a, v, a[2] == 'l' ? 1e-9 : 0.0, 10.0, &x)) return -1;
        *(a[2] == 'l' ? o->lr : o->clip) = (float)x;
        ++*i;
        return 1;
    }
    if (!strcmp(a, "--seed")) {
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (!*v || *end) {
            fprintf(stderr, "imcap: --seed expects a non-negative integer, got '%s'\n", v);
            return -1;
        }
        *o->seed = s;
        ++*i;
        return 1;
    }
    const cli_int_opt ints[] = {{"--epochs", o->epochs, 1},
                                {"--batches", o->batches_per_epoch, 1},
                                {"--batch", o->batch_size, 1},
                                {"--max-len", o->max_len, o->max_len_lo},
                                {"--checkpoint-every", o->checkpoint_every, 0}};
    const int r = cli_int_options(ints, sizeof ints / sizeof *ints, a, v);
    if (r == 1) ++*i;
    return r;
}

void cli_run_files_default(const cli_run_opts *o, const char *plot_suffix, bool want_best, cli_run_files *f)
{
    f->history = *o->history_csv ? NULL : cli_derived(*o->checkpoint, ".history.csv");
    f->plot = *o->plot_svg ? NULL : cli_derived(*o->checkpoint, plot_suffix);
    f->best = *o->best_model || !want_best ? NULL : cli_derived(*o->checkpoint, ".best.gguf");
    if (f->best) *o->best_model = f->best;
    if (!*o->history_csv) *o->history_csv = f->history;
    if (!*o->plot_svg) *o->plot_svg = f->plot;
}

void cli_run_files_free(cli_run_files *f)
{
    free(f->history);
    free(f->plot);
    free(f->best);
}

void cli_run_done(const cli_run_opts *o, const char *cmd, const char *what)
{
    fprintf(stderr, "%s: done; %s %s, history %s, plot %s%s%s\n", cmd, what, *o->checkpoint, *o->history_csv,
            *o->plot_svg, *o->best_model ? ", best-validation model " : "", *o->best_model ? *o->best_model : "");
}

void cli_run_ui_init(cli_run_ui *ui)
{
    ui->tty = isatty(2);
    ui->last = -1e9;
}

bool cli_run_ui_due(cli_run_ui *ui, int batch, int batches)
{
    const double t = cli_now();
    if (t - ui->last < (ui->tty ? 0.25 : 10.0) && batch != batches) return false;
    ui->last = t;
    return true;
}

const char *cli_hms(char *buf, double seconds)
{
    const int s = (int)seconds;
    snprintf(buf, 24, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    return buf;
}
