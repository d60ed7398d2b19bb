/*
 * dump_input.c - helper of scripts/golden_tfjs.js: writes the exact float
 * input imcap feeds an encoder, so a peer runtime sees bit-identical input.
 * usage: dump_input SIZE SCALE BIAS OUTDIR IMAGE...  (writes OUTDIR/<basename>.f32,
 * [SIZE][SIZE][3] little-endian float32 = pixel/255 * SCALE + BIAS after
 * imcap's center crop and resize).
 */
#include "imcap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: dump_input SIZE SCALE BIAS OUTDIR IMAGE...\n");
        return 2;
    }
    int size = atoi(argv[1]);
    float scale[3], bias[3];
    for (int c = 0; c < 3; c++) scale[c] = (float)atof(argv[2]), bias[c] = (float)atof(argv[3]);
    if (size < 1 || size > 4096) {
        fprintf(stderr, "dump_input: bad size %s\n", argv[1]);
        return 2;
    }
    size_t n = (size_t)size * (size_t)size;
    unsigned char *u8 = malloc(n * 3);
    float *x = malloc(n * 3 * sizeof *x);
    if (!u8 || !x) return 1;
    for (int i = 5; i < argc; i++) {
        imcap_image img;
        if (imcap_image_load(argv[i], &img) != IMCAP_OK ||
            imcap_image_prepare(&img, size, size, u8) != IMCAP_OK) {
            fprintf(stderr, "dump_input: %s\n", imcap_last_error());
            return 1;
        }
        imcap_image_free(&img);
        imcap_image_to_float(u8, n, scale, bias, x);
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.f32", argv[4], base);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(x, sizeof *x, n * 3, fp) != n * 3 || fclose(fp) != 0) {
            fprintf(stderr, "dump_input: cannot write %s\n", path);
            return 1;
        }
    }
    free(u8);
    free(x);
    return 0;
}
