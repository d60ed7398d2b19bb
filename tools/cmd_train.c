/* cmd_train.c - `imcap train`: trains the LSTM decoder on an embeddings file. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void train_usage(FILE *fp)
{
    imcap_train_params d = imcap_train_default_params();
    fprintf(fp,
            "usage: imcap train --embeddings E.emb --captions captions.csv --train-split train.txt\n"
            "                   [--val-split dev.txt] [--checkpoint decoder.gguf] [--resume] [options]\n\n"
            "Trains the caption decoder (image embedding -> dense ELU -> dense ELU = LSTM h0 = c0; word\n"
            "embedding -> LSTM -> dense ELU -> vocabulary logits) with Adam on random images, one random\n"
            "caption each. Writes an atomic checkpoint (the decoder model file, with the optimizer state)\n"
            "every --checkpoint-every batches and at each epoch end, then the loss history (CSV) and plot\n"
            "(SVG). --resume continues exactly where the checkpoint left off (its settings are kept;\n"
            "--epochs may raise the number of epochs); without a checkpoint it starts afresh.\n\n"
            "  --embeddings FILE      image embeddings (imcap extract)\n"
            "  --captions FILE        captions: Flickr8k CSV, Flickr8k token file or COCO JSON\n"
            "  --train-split FILE     training image names, one a line\n"
            "  --val-split FILE       validation image names (validation loss each epoch)\n"
            "  --checkpoint FILE      checkpoint / model path (default decoder.gguf)\n"
            "  --history FILE         loss history CSV (default: checkpoint name + .history.csv)\n"
            "  --plot FILE            loss plot SVG (default: checkpoint name + .loss.svg)\n"
            "  --best FILE            early stopping: the model of the epoch with the lowest validation\n"
            "                         loss (default with --val-split: checkpoint name + .best.gguf)\n"
            "  --resume               continue from the checkpoint if it exists\n"
            "  --epochs N             epochs (%d)\n"
            "  --batches N            batches per epoch (%d)\n"
            "  --batch N              images per batch (%d)\n"
            "  --max-len N            caption tokens incl. START and END (%d)\n"
            "  --min-count N          vocabulary: words seen at least N times (%d)\n"
            "  --val-batches N        validation batches per epoch (%d)\n"
            "  --checkpoint-every N   batches between checkpoints, 0 = epoch ends only (%d)\n"
            "  --lr X                 Adam learning rate (%g)\n"
            "  --clip X               clip the global gradient norm to X (off)\n"
            "  --dropout P            drop LSTM outputs with probability P while training (0: off)\n"
            "  --decoder NAME         recipe (pooled vector, default) or attention (soft attention over\n"
            "                         a grid embeddings file: imcap extract --output grid)\n"
            "  --att-size N           attention: attention MLP size (%d)\n"
            "  --att-lambda X         attention: doubly stochastic regulariser weight (%g)\n"
            "  --img-hidden N, --hidden N, --embed N, --out-hidden N\n"
            "                         model sizes (%d, %d, %d, %d)\n"
            "  --seed N               random seed (%llu)\n"
            "  --chunks K             cut each batch into K fixed sub-batches summed in a fixed order:\n"
            "                         the results depend on K, not on the ranks (mpirun -np N, N <= K);\n"
            "                         default 1, under mpirun N (kept in the checkpoint)\n"
            "  --quiet                no progress line\n"
            "  --scst                 self-critical sequence training from a trained decoder\n"
            "                         (imcap train --scst --help)\n",
            d.epochs, d.batches_per_epoch, d.batch_size, d.max_len, d.min_count, d.val_batches, d.checkpoint_every,
            d.lr, d.n_att, d.att_lambda, d.n_img1, d.n_hid, d.n_emb, d.n_out1, (unsigned long long)d.seed);
}

typedef struct train_ui { double last; int quiet, tty; imcap_train_report end; } train_ui;

static int train_report(void *user, const imcap_train_report *r)
{
    train_ui *ui = user;
    ui->end = *r;
    if (ui->quiet) return 0;
    const int eta = (int)r->eta_s;
    if (r->epoch_end) {
        fprintf(stderr, "%sepoch %d/%d: train loss %.4f", ui->tty ? "\r\x1b[K" : "", r->epoch, r->epochs,
                r->epoch_loss);
        if (!isnan(r->val_loss)) fprintf(stderr, ", validation loss %.4f", r->val_loss);
        fprintf(stderr, ", %.0f tokens/s, checkpoint %s%s\n", r->tokens_per_s, r->checkpoint,
                r->best ? " (best so far)" : "");
        return 0;
    }
    const double t = cli_now();
    if (t - ui->last < (ui->tty ? 0.25 : 10.0) && r->batch != r->batches) return 0;
    ui->last = t;
    fprintf(stderr, "%sepoch %d/%d batch %d/%d loss %.4f (epoch mean %.4f) %.0f tokens/s ETA %d:%02d:%02d%s",
            ui->tty ? "\r" : "", r->epoch, r->epochs, r->batch, r->batches, r->loss, r->epoch_loss, r->tokens_per_s,
            eta / 3600, eta / 60 % 60, eta % 60, ui->tty ? "\x1b[K" : "\n");
    return 0;
}

int cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--scst")) return cmd_scst(argc, argv);
    imcap_train_params p = imcap_train_default_params();
    p.checkpoint = "decoder.gguf";
    train_ui ui = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resume")) {
            p.resume = 1;
        } else if (!strcmp(a, "--quiet")) {
            ui.quiet = 1;
        } else if (v && !strcmp(a, "--embeddings")) {
            p.embeddings = argv[++i];
        } else if (v && !strcmp(a, "--captions")) {
            p.captions = argv[++i];
        } else if (v && !strcmp(a, "--train-split")) {
            p.train_split = argv[++i];
        } else if (v && !strcmp(a, "--val-split")) {
            p.val_split = argv[++i];
        } else if (v && !strcmp(a, "--checkpoint")) {
            p.checkpoint = argv[++i];
        } else if (v && !strcmp(a, "--history")) {
            p.history_csv = argv[++i];
        } else if (v && !strcmp(a, "--best")) {
            p.best_model = argv[++i];
        } else if (v && !strcmp(a, "--plot")) {
            p.plot_svg = argv[++i];
        } else if (v && !strcmp(a, "--decoder")) {
            p.decoder = argv[++i];
        } else if (v && !strcmp(a, "--att-lambda")) {
            if (cli_parse_double(a, v, 0.0, 1000.0, &x)) return 2;
            p.att_lambda = (float)x;
            i++;
        } else if (v && !strcmp(a, "--dropout")) {
            if (cli_parse_double(a, v, 0.0, 0.95, &x)) return 2;
            p.dropout = (float)x;
            i++;
        } else if (v && (!strcmp(a, "--lr") || !strcmp(a, "--clip"))) {
            if (cli_parse_double(a, v, a[2] == 'l' ? 1e-9 : 0.0, 10.0, &x)) return 2;
            if (a[2] == 'l') p.lr = (float)x;
            else p.clip = (float)x;
            i++;
        } else if (v && !strcmp(a, "--seed")) {
            char *end;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end) {
                fprintf(stderr, "imcap: --seed expects a non-negative integer, got '%s'\n", v);
                return 2;
            }
            p.seed = s;
            i++;
        } else if (v && (!strcmp(a, "--epochs") || !strcmp(a, "--batches") || !strcmp(a, "--batch") ||
                         !strcmp(a, "--max-len") || !strcmp(a, "--min-count") || !strcmp(a, "--val-batches") ||
                         !strcmp(a, "--checkpoint-every") || !strcmp(a, "--img-hidden") || !strcmp(a, "--hidden") ||
                         !strcmp(a, "--embed") || !strcmp(a, "--out-hidden") || !strcmp(a, "--att-size") ||
                         !strcmp(a, "--chunks"))) {
            long lo = !strcmp(a, "--val-batches") || !strcmp(a, "--checkpoint-every") ? 0 : 1;
            if (!strcmp(a, "--max-len")) lo = 2;
            if (cli_parse_int(a, v, lo, 100000000, &n)) return 2;
            int *dst = !strcmp(a, "--epochs")             ? &p.epochs
                       : !strcmp(a, "--batches")          ? &p.batches_per_epoch
                       : !strcmp(a, "--batch")            ? &p.batch_size
                       : !strcmp(a, "--max-len")          ? &p.max_len
                       : !strcmp(a, "--min-count")        ? &p.min_count
                       : !strcmp(a, "--val-batches")      ? &p.val_batches
                       : !strcmp(a, "--checkpoint-every") ? &p.checkpoint_every
                       : !strcmp(a, "--img-hidden")       ? &p.n_img1
                       : !strcmp(a, "--hidden")           ? &p.n_hid
                       : !strcmp(a, "--embed")            ? &p.n_emb
                       : !strcmp(a, "--att-size")         ? &p.n_att
                       : !strcmp(a, "--chunks")           ? &p.chunks
                                                          : &p.n_out1;
            *dst = (int)n;
            i++;
        } else {
            fprintf(stderr, "imcap train: unknown or incomplete option '%s'\n", a);
            train_usage(stderr);
            return 2;
        }
    }
    if (!p.embeddings || !p.captions || !p.train_split) {
        fprintf(stderr, "imcap train: --embeddings, --captions and --train-split are required\n");
        train_usage(stderr);
        return 2;
    }
    char *hist = p.history_csv ? NULL : cli_derived(p.checkpoint, ".history.csv");
    char *plot = p.plot_svg ? NULL : cli_derived(p.checkpoint, ".loss.svg");
    char *best = p.best_model || !p.val_split || p.val_batches < 1 ? NULL : cli_derived(p.checkpoint, ".best.gguf");
    if (best) p.best_model = best;
    if (!p.history_csv) p.history_csv = hist;
    if (!p.plot_svg) p.plot_svg = plot;
    ui.tty = isatty(2);
    ui.last = -1e9;
    p.report = train_report;
    p.report_user = &ui;
    p.comm = cli_comm();
    imcap_status s = imcap_train(&p);
    if (!s && !ui.quiet && p.comm->rank == 0)
        fprintf(stderr, "imcap train: done; model and checkpoint %s, history %s, plot %s%s%s\n", p.checkpoint,
                p.history_csv, p.plot_svg, p.best_model ? ", best-validation model " : "",
                p.best_model ? p.best_model : "");
    if (!s && p.comm->size > 1 && p.comm->rank == 0 && ui.end.train_s > 0)
        fprintf(stderr, "imcap train: %d ranks, %d chunks a batch: gradient exchange %.3f s of %.3f s (%.1f%%), "
                "%.0f bytes sent per batch by each rank; waiting for the slowest rank %.3f s (%.1f%%)\n",
                p.comm->size, p.chunks ? p.chunks : p.comm->size, ui.end.comm_s, ui.end.train_s,
                100.0 * ui.end.comm_s / ui.end.train_s, (double)ui.end.comm_bytes, ui.end.wait_s,
                100.0 * ui.end.wait_s / ui.end.train_s);
    free(hist);
    free(plot);
    free(best);
    return s ? cli_error("train", s) : 0;
}
