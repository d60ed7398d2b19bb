/*
 * bench_image.c - image decoding + preprocessing throughput: for each file
 * named in a list, decode (imcap_image_load) and prepare (square crop +
 * OpenCV-exact bilinear resize to SIZE), single-threaded, REPS times.
 * scripts/bench-image.sh runs it next to OpenCV doing the same work.
 *
 * usage: bench_image LIST [SIZE=224] [REPS=1]
 * prints: "c images N size S seconds T images/s R"
 */
#define _POSIX_C_SOURCE 200809L
#include "imcap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double imcap_now(void);

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_image LIST [SIZE] [REPS]\n");
        return 2;
    }
    int size = argc > 2 ? atoi(argv[2]) : 224, reps = argc > 3 ? atoi(argv[3]) : 1;
    FILE *fp = fopen(argv[1], "r");
    if (!fp || size < 1 || size > 4096 || reps < 1) {
        fprintf(stderr, "bench_image: cannot read %s or bad size/reps\n", argv[1]);
        return 2;
    }
    char **paths = NULL, line[4096];
    int n = 0, cap = 0;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            paths = realloc(paths, sizeof *paths * (size_t)cap);
        }
        paths[n++] = strdup(line);
    }
    fclose(fp);
    uint8_t *out = malloc((size_t)size * size * 3);
    unsigned long sum = 0;
    double t0 = imcap_now();
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < n; i++) {
            imcap_image img;
            if (imcap_image_load(paths[i], &img) || imcap_image_prepare(&img, size, size, out)) {
                fprintf(stderr, "bench_image: %s\n", imcap_last_error());
                return 1;
            }
            sum += out[0];
            imcap_image_free(&img);
        }
    double t = imcap_now() - t0;
    printf("c images %d size %d seconds %.3f images/s %.1f (checksum %lu)\n", n * reps, size, t, n * reps / t, sum);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(out);
    return 0;
}
