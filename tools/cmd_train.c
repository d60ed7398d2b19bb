/* cmd_train.c - `imcap train`: trains the LSTM decoder on an embeddings file. */
#include "train_opts.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct train_ui { cli_run_ui ui; imcap_train_report end; } train_ui;

static int train_report(void *user, const imcap_train_report *r)
{
    train_ui *tu = user;
    cli_run_ui *ui = &tu->ui;
    tu->end = *r;
    if (ui->quiet) return 0;
    if (r->epoch_end) {
        fprintf(stderr, "%sepoch %d/%d: train loss %.4f", ui->tty ? "\r\x1b[K" : "", r->epoch, r->epochs,
                r->epoch_loss);
        if (!isnan(r->val_loss)) fprintf(stderr, ", validation loss %.4f", r->val_loss);
        fprintf(stderr, ", %.0f tokens/s, checkpoint %s%s\n", r->tokens_per_s, r->checkpoint,
                r->best ? " (best so far)" : "");
        return 0;
    }
    if (!cli_run_ui_due(ui, r->batch, r->batches)) return 0;
    char eta[24];
    fprintf(stderr, "%sepoch %d/%d batch %d/%d loss %.4f (epoch mean %.4f) %.0f tokens/s ETA %s%s",
            ui->tty ? "\r" : "", r->epoch, r->epochs, r->batch, r->batches, r->loss, r->epoch_loss, r->tokens_per_s,
            cli_hms(eta, r->eta_s), ui->tty ? "\x1b[K" : "\n");
    return 0;
}

int cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--scst")) return cmd_scst(argc, argv);
    imcap_train_params p = imcap_train_default_params();
    p.checkpoint = "decoder.gguf";
    train_ui tu = {0};
    const cli_run_opts o = CLI_RUN_OPTS(p, &tu.ui.quiet, 2);
    const cli_int_opt ints[] = {{"--min-count", &p.min_count, 1}, {"--val-batches", &p.val_batches, 0},
                                {"--img-hidden", &p.n_img1, 1},   {"--hidden", &p.n_hid, 1},
                                {"--embed", &p.n_emb, 1},         {"--out-hidden", &p.n_out1, 1},
                                {"--att-size", &p.n_att, 1},      {"--chunks", &p.chunks, 1}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int r;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 0;
        } else if ((r = cli_run_option(&o, argc, argv, &i))) {
            if (r < 0) return 2;
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
        } else if (v && (r = cli_int_options(ints, sizeof ints / sizeof *ints, a, v))) {
            if (r < 0) return 2;
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
    cli_run_files files;
    cli_run_files_default(&o, ".loss.svg", p.val_split && p.val_batches >= 1, &files);
    cli_run_ui_init(&tu.ui);
    p.report = train_report;
    p.report_user = &tu;
    p.comm = cli_comm();
    imcap_status s = imcap_train(&p);
    if (!s && !tu.ui.quiet && p.comm->rank == 0) cli_run_done(&o, "imcap train", "model and checkpoint");
    if (!s && p.comm->size > 1 && p.comm->rank == 0 && tu.end.train_s > 0)
        fprintf(stderr, "imcap train: %d ranks, %d chunks a batch: gradient exchange %.3f s of %.3f s (%.1f%%), "
                "%.0f bytes sent per batch by each rank; waiting for the slowest rank %.3f s (%.1f%%)\n",
                p.comm->size, p.chunks ? p.chunks : p.comm->size, tu.end.comm_s, tu.end.train_s,
                100.0 * tu.end.comm_s / tu.end.train_s, (double)tu.end.comm_bytes, tu.end.wait_s,
                100.0 * tu.end.wait_s / tu.end.train_s);
    cli_run_files_free(&files);
    return s ? cli_error("train", s) : 0;
}
