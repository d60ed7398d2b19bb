/*
 * bench_checksum.c - what the per-tensor checksums (issue 14) cost at load:
 * imcap_captioner_load (model + its encoder) of the model as it is, against
 * the same load of a copy whose checksum key is renamed (so it loads
 * unverified, as files written before the checksums did), interleaved; and
 * the CRC-32 over the tensors alone. Medians of n runs each.
 *
 *   bench_checksum [--model models/default.imcap] [-n 101] [--tmp /tmp]
 */
#define _GNU_SOURCE
#include "gguf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static double time_load(const char *model, const char *encoders)
{
    double t0 = imcap_now();
    imcap_captioner *c;
    if (imcap_captioner_load(model, encoders, &c)) {
        fprintf(stderr, "bench_checksum: %s\n", imcap_last_error());
        exit(1);
    }
    double t = imcap_now() - t0;
    imcap_captioner_free(c);
    return t;
}

int main(int argc, char **argv)
{
    const char *model = "models/default.imcap", *tmp = "/tmp";
    int n = 101;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "-n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tmp")) tmp = argv[i + 1];
    }
    if (n < 1 || n > 1000) n = 101;
    char *d;
    size_t len;
    imcap_captioner *c;
    if (imcap_read_file(model, (size_t)1 << 31, &d, &len) || imcap_captioner_load(model, NULL, &c)) {
        fprintf(stderr, "bench_checksum: %s\n", imcap_last_error());
        return 1;
    }
    char *encoders = imcap_strdup(imcap_captioner_encoder_path(c)); /* the copy lives elsewhere */
    imcap_captioner_free(c);
    char *key = memmem(d, len, "imcap.tensor_crc32", 18);
    if (!key || !encoders) {
        fprintf(stderr, "bench_checksum: %s has no tensor checksums\n", model);
        return 1;
    }
    /* both loads read a fresh copy in the same directory, written the same way
     * (page-cache placement differs between files: the original would not be
     * a fair side) */
    char copy[1024], same[1024];
    snprintf(copy, sizeof copy, "%s/bench_checksum.%ld.off.imcap", tmp, (long)getpid());
    snprintf(same, sizeof same, "%s/bench_checksum.%ld.on.imcap", tmp, (long)getpid());
    for (int k = 0; k < 2; k++) {
        if (k == 1) key[17] = 'X';
        FILE *fp = fopen(k ? copy : same, "wb");
        if (!fp || fwrite(d, 1, len, fp) != len || fclose(fp) != 0) {
            fprintf(stderr, "bench_checksum: cannot write %s\n", k ? copy : same);
            return 1;
        }
    }
    model = same;
    free(d);
    double *t_on = malloc(sizeof(double) * (size_t)n), *t_off = malloc(sizeof(double) * (size_t)n),
           *t_crc = malloc(sizeof(double) * (size_t)n);
    gguf_file *f;
    if (!t_on || !t_off || !t_crc || gguf_open(model, &f)) return 1;
    size_t bytes = 0;
    for (size_t k = 0; k < gguf_n_tensors(f); k++) bytes += gguf_tensor_at(f, k)->n_bytes;
    time_load(model, encoders); /* warm the page cache */
    time_load(copy, encoders);
    for (int i = 0; i < n; i++) {
        t_on[i] = time_load(model, encoders);
        t_off[i] = time_load(copy, encoders);
        double t0 = imcap_now();
        if (gguf_verify(f)) return 1;
        t_crc[i] = imcap_now() - t0;
    }
    unlink(copy);
    unlink(same);
    double on = median(t_on, n), off = median(t_off, n), crc = median(t_crc, n);
    double on_min = t_on[0], off_min = t_off[0], crc_min = t_crc[0]; /* sorted by median() */
    printf("CRC path: %s\n", imcap_crc32_path_name(imcap_crc32_path()));
    printf("model %s: %zu tensors, %.1f MB of tensor data; medians of %d interleaved runs\n", model,
           gguf_n_tensors(f), bytes / 1e6, n);
    printf("captioner load, checksums verified:   median %.2f ms, min %.2f ms\n", 1e3 * on, 1e3 * on_min);
    printf("captioner load, same file unverified: median %.2f ms, min %.2f ms\n", 1e3 * off, 1e3 * off_min);
    printf("verification costs (median) %.2f ms = %.1f%%, (min) %.2f ms = %.1f%% of the unverified load\n",
           1e3 * (on - off), 100 * (on - off) / off, 1e3 * (on_min - off_min), 100 * (on_min - off_min) / off_min);
    printf("CRC-32 over the tensors alone: median %.2f ms (%.1f GB/s), min %.2f ms (%.1f GB/s)\n", 1e3 * crc,
           bytes / crc / 1e9, 1e3 * crc_min, bytes / crc_min / 1e9);
    gguf_close(f);
    free(encoders);
    free(t_on);
    free(t_off);
    free(t_crc);
    return 0;
}
