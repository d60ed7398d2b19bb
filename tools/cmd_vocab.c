/* cmd_vocab.c - `imcap vocab`: build the vocabulary of a caption split and save it as text. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void vocab_usage(FILE *fp)
{
    fprintf(fp,
            "usage: imcap vocab --captions FILE [--split FILE] [--min-count N] --out vocab.txt\n\n"
            "Builds the vocabulary as training does: the recipe's tokenizer over the captions of\n"
            "the split's images, words seen at least N times, plus #PAD# #UNK# #START# #END#,\n"
            "sorted by bytes. Writes one word a line (atomically).\n"
            "  --captions FILE   captions: Flickr8k CSV (*.csv), COCO JSON (*.json) or token file\n"
            "  --split FILE      image names, one a line (default: every image of --captions)\n"
            "  --min-count N     minimum count of a word (default %d)\n"
            "  --out FILE        where to write the vocabulary\n",
            IMCAP_VOCAB_MIN_COUNT);
}

int cmd_vocab(int argc, char **argv)
{
    const char *captions = NULL, *split = NULL, *out = NULL;
    long min_count = IMCAP_VOCAB_MIN_COUNT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            vocab_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--captions") && i + 1 < argc) {
            captions = argv[++i];
        } else if (!strcmp(argv[i], "--split") && i + 1 < argc) {
            split = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--min-count") && i + 1 < argc) {
            if (cli_parse_int("--min-count", argv[++i], 1, 1000000000, &min_count)) return 2;
        } else {
            fprintf(stderr, "imcap vocab: unknown or incomplete option '%s'\n", argv[i]);
            vocab_usage(stderr);
            return 2;
        }
    }
    if (!captions || !out) {
        fprintf(stderr, "imcap vocab: --captions and --out are required\n");
        vocab_usage(stderr);
        return 2;
    }
    imcap_captions *all = NULL, *data = NULL;
    imcap_vocab *v = NULL;
    imcap_status st = imcap_captions_load(captions, &all);
    if (!st && split) st = imcap_captions_restrict(all, split, &data);
    const imcap_captions *use = split ? data : all;
    if (!st) st = imcap_vocab_build(use, (int)min_count, &v);
    if (!st) st = imcap_vocab_save_txt(v, out);
    if (!st)
        printf("%zu words (min count %ld, 4 special tokens) from %zu images / %zu captions -> %s\n", imcap_vocab_size(v),
               min_count, imcap_captions_n_images(use), imcap_captions_n_total(use), out);
    imcap_vocab_free(v);
    imcap_captions_free(data);
    imcap_captions_free(all);
    if (st) return cli_error("vocab", st);
    return fflush(stdout) == 0 ? 0 : 1;
}
