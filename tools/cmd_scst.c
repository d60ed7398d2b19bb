/* cmd_scst.c - `imcap train --scst`: self-critical sequence training of a
 * trained decoder for CIDEr-D (imcap_scst_train). */
#include "train_opts.h"

#include <math.h>
#include <string.h>

static void scst_usage(FILE *fp)
{
    imcap_scst_params d = imcap_scst_default_params();
    fprintf(fp,
            "usage: imcap train --scst --init MODEL --embeddings E.emb --captions captions.csv\n"
            "                   --train-split train.txt [--val-split dev.txt] [--checkpoint scst.gguf]\n"
            "                   [--resume] [options]\n\n"
            "Self-critical sequence training: fine-tunes a trained decoder for CIDEr-D. Each batch draws\n"
            "images of the training split; each gets its greedy caption and K sampled captions, each\n"
            "rewarded with its CIDEr-D against the image's training references; advantage = reward -\n"
            "baseline (the mean of the other samples, or the greedy caption's); loss = -advantage *\n"
            "log p(caption) per token. Each epoch: greedy CIDEr-D on the validation split, history CSV and\n"
            "plot, checkpoint, and the best-validation model. --resume continues exactly.\n\n"
            "  --init FILE            the start: decoder model, training checkpoint or captioner file\n"
            "  --embeddings FILE      image embeddings (imcap extract) of the model's encoder\n"
            "  --captions FILE        captions: Flickr8k CSV, Flickr8k token file or COCO JSON\n"
            "  --train-split FILE     training images (their references give the rewards)\n"
            "  --val-split FILE       validation images (greedy CIDEr-D each epoch)\n"
            "  --checkpoint FILE      checkpoint path (default scst.gguf)\n"
            "  --history FILE         history CSV (default: checkpoint name + .history.csv)\n"
            "  --plot FILE            plot SVG (default: checkpoint name + .cider.svg)\n"
            "  --best FILE            model of the epoch with the best validation CIDEr-D\n"
            "                         (default with --val-split: checkpoint name + .best.gguf)\n"
            "  --resume               continue from the checkpoint if it exists\n"
            "  --epochs N             epochs (%d)\n"
            "  --batches N            batches per epoch (%d)\n"
            "  --batch N              images per batch (%d)\n"
            "  --samples K            sampled captions per image (%d)\n"
            "  --max-len N            words per caption (%d)\n"
            "  --baseline mean|greedy the baseline: the mean reward of the image's other samples\n"
            "                         (default), or its greedy caption's reward (the original SCST)\n"
            "  --val-images N         validate on the first N images of the split (0: all)\n"
            "  --checkpoint-every N   batches between checkpoints, 0 = epoch ends only (%d)\n"
            "  --lr X                 Adam learning rate (%g)\n"
            "  --clip X               clip the global gradient norm to X (off)\n"
            "  --seed N               random seed (%llu)\n"
            "  --quiet                no progress line\n",
            d.epochs, d.batches_per_epoch, d.batch_size, d.samples, d.max_len, d.checkpoint_every, d.lr,
            (unsigned long long)d.seed);
}

static int scst_report(void *user, const imcap_scst_report *r)
{
    cli_run_ui *ui = user;
    if (ui->quiet) return 0;
    const double busy = r->gen_s + r->reward_s + r->train_s;
    const double g = busy > 0 ? 100 * r->gen_s / busy : 0, w = busy > 0 ? 100 * r->reward_s / busy : 0;
    if (r->epoch_end) {
        if (r->epoch == 0) {
            fprintf(stderr, "%sstart model: validation CIDEr-D %.4f\n", ui->tty ? "\r\x1b[K" : "", r->val_cider);
            return 0;
        }
        fprintf(stderr, "%sepoch %d/%d: mean reward %.4f, greedy CIDEr-D %.4f", ui->tty ? "\r\x1b[K" : "", r->epoch,
                r->epochs, r->epoch_reward, r->epoch_greedy);
        if (!isnan(r->val_cider)) fprintf(stderr, ", validation CIDEr-D %.4f", r->val_cider);
        fprintf(stderr, ", %.0f samples/s (generation %.0f%%, rewards %.0f%%, backward %.0f%%), checkpoint %s%s\n",
                r->samples_per_s, g, w, 100 - g - w, r->checkpoint, r->best ? " (best so far)" : "");
        return 0;
    }
    if (!cli_run_ui_due(ui, r->batch, r->batches)) return 0;
    char eta[24];
    fprintf(stderr,
            "%sscst epoch %d/%d batch %d/%d reward %.4f (epoch %.4f) greedy CIDEr-D %.4f (epoch %.4f) %.0f samples/s "
            "[gen %.0f%% reward %.0f%% backward %.0f%%] ETA %s%s",
            ui->tty ? "\r" : "", r->epoch, r->epochs, r->batch, r->batches, r->reward, r->epoch_reward, r->greedy,
            r->epoch_greedy, r->samples_per_s, g, w, 100 - g - w, cli_hms(eta, r->eta_s), ui->tty ? "\x1b[K" : "\n");
    return 0;
}

int cmd_scst(int argc, char **argv)
{
    imcap_scst_params p = imcap_scst_default_params();
    p.checkpoint = "scst.gguf";
    cli_run_ui ui = {0};
    const cli_run_opts o = CLI_RUN_OPTS(p, &ui.quiet, 1);
    const cli_int_opt ints[] = {{"--samples", &p.samples, 1}, {"--val-images", &p.val_images, 0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            scst_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--scst")) {
            continue;
        } else if ((r = cli_run_option(&o, argc, argv, &i))) {
            if (r < 0) return 2;
        } else if (v && !strcmp(a, "--init")) {
            p.init = argv[++i];
        } else if (v && !strcmp(a, "--baseline")) {
            if (!strcmp(v, "greedy")) p.baseline = IMCAP_SCST_BASELINE_GREEDY;
            else if (!strcmp(v, "mean")) p.baseline = IMCAP_SCST_BASELINE_MEAN;
            else {
                fprintf(stderr, "imcap train: --baseline expects greedy or mean, got '%s'\n", v);
                return 2;
            }
            i++;
        } else if (v && (r = cli_int_options(ints, sizeof ints / sizeof *ints, a, v))) {
            if (r < 0) return 2;
            i++;
        } else {
            fprintf(stderr, "imcap train --scst: unknown or incomplete option '%s'\n", a);
            scst_usage(stderr);
            return 2;
        }
    }
    if (!p.embeddings || !p.captions || !p.train_split || (!p.init && !p.resume)) {
        fprintf(stderr, "imcap train --scst: --init (or --resume), --embeddings, --captions and --train-split are "
                        "required\n");
        scst_usage(stderr);
        return 2;
    }
    cli_run_files files;
    cli_run_files_default(&o, ".cider.svg", p.val_split != NULL, &files);
    cli_run_ui_init(&ui);
    p.report = scst_report;
    p.report_user = &ui;
    imcap_status s = imcap_scst_train(&p);
    if (!s && !ui.quiet) cli_run_done(&o, "imcap train --scst", "checkpoint");
    cli_run_files_free(&files);
    return s ? cli_error("train", s) : 0;
}
