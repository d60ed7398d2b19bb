/* imcap.c - the command-line tool: dispatches to tools/cmd_*.c. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One line per subcommand; keep alphabetical. */
static const struct { const char *name; cli_cmd_fn fn; const char *help; } commands[] = {
    {"caption", cmd_caption, "caption photos (text, JSON, speech, WAV)"},
    {"classify", cmd_classify, "top-5 ImageNet classes of photos (TFLite MobileNets)"},
    {"convert", cmd_convert, "import a pretrained encoder (TFLite, TF.js layers model) as a native encoder file"},
    {"embcat", cmd_embcat, "concatenate embeddings files row by row (two encoders as one input)"},
    {"eval", cmd_eval, "caption a split and print the COCO metrics (BLEU, ROUGE-L, CIDEr-D)"},
    {"export", cmd_export, "make a captioning model file from a decoder checkpoint + encoder"},
    {"extract", cmd_extract, "embeddings of a list of images with an encoder (resumable)"},
    {"report", cmd_report, "HTML page of a model's captions on a split, with loss curves"},
    {"score", cmd_score, "COCO caption metrics (BLEU, ROUGE-L, CIDEr-D) of a results file"},
    {"serve", cmd_serve, "HTTP API and web page: captions and speech for uploaded photos"},
    {"train", cmd_train, "train the caption decoder on image embeddings and captions"},
    {"vocab", cmd_vocab, "build the vocabulary of a caption split (one word a line)"},
    {NULL, NULL, NULL},
};

static int usage(FILE *fp)
{
    fprintf(fp, "imcap %s - automatic image captions\n\nusage: imcap <command> [options]\n\ncommands:\n",
            IMCAP_VERSION_STRING);
    for (int i = 0; commands[i].name; i++) fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(fp, "\n'imcap <command> --help' describes a command's options.\n");
    return fp == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    /* The library calls OpenBLAS single-threaded inside its own thread
     * pool, but OpenBLAS starts its own threads when it loads, and they
     * spin for ~0.1 s against ours: a one-shot command would pay that on
     * every run. Unless the user chose a count, run with one OpenBLAS
     * thread (the variable must be set before the library loads, hence
     * the exec; if it fails we simply go on). */
    if (!getenv("OPENBLAS_NUM_THREADS") && setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0)
        execv("/proc/self/exe", argv);
    if (imcap_cpu_check() != IMCAP_OK) {
        fprintf(stderr, "imcap: %s\n", imcap_last_error());
        return 2;
    }
    cli_fault_from_env();
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) return usage(stdout);
    if (!strcmp(argv[1], "--version")) {
        printf("imcap %s (kernels: %s)\n", IMCAP_VERSION_STRING, imcap_cpu_path());
        return 0;
    }
    for (int i = 0; commands[i].name; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (cli_comm_start(&argc, &argv)) return 1;
            int rc = commands[i].fn(argc - 1, argv + 1);
            cli_comm_end(rc);
            return rc;
        }
    fprintf(stderr, "imcap: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
