/* cmd_embcat.c - `imcap embcat`: concatenate embeddings files row by row. */
#include "cli.h"

#include <string.h>

static void embcat_usage(FILE *fp)
{
    fprintf(fp, "usage: imcap embcat --out OUT.f32 A.f32 B.f32 [...]\n\n"
                "Writes one embedding row per image of A.f32 holding the rows of every input side by\n"
                "side (e.g. two encoders' embeddings as one decoder input). All inputs must have the\n"
                "same images; the output is written atomically.\n");
}

int cmd_embcat(int argc, char **argv)
{
    const char *out = NULL;
    const char *in[16];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            embcat_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "imcap embcat: unknown or incomplete option '%s'\n", argv[i]);
            embcat_usage(stderr);
            return 2;
        } else if (n == 16) {
            fprintf(stderr, "imcap embcat: at most 16 input files\n");
            return 2;
        } else {
            in[n++] = argv[i];
        }
    }
    if (!out || n < 1) {
        fprintf(stderr, "imcap embcat: --out and at least one input file are required\n");
        embcat_usage(stderr);
        return 2;
    }
    imcap_status st = imcap_embfile_concat(in, n, out);
    return st ? cli_error("embcat", st) : 0;
}
