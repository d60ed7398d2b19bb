/* bench_util.h - what the benchmark programs share: process CPU time, the
 * 64-bit LCG their PyTorch peers reproduce, integer options. */
#ifndef IMCAP_BENCH_UTIL_H
#define IMCAP_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* User + system CPU seconds of the process (all threads). */
static inline double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static inline uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* "--name N" pairs of argv into the named ints (atoi); 0, or 2 after
 * "<prog>: unknown option ..." on stderr. */
typedef struct bench_opt { const char *name; int *v; } bench_opt;
static inline int bench_int_options(int argc, char **argv, const bench_opt *opts, size_t n, const char *prog)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        size_t k = 0;
        while (k < n && strcmp(argv[i], opts[k].name)) k++;
        if (k == n) {
            fprintf(stderr, "%s: unknown option %s\n", prog, argv[i]);
            return 2;
        }
        *opts[k].v = atoi(argv[i + 1]);
    }
    return 0;
}

#endif
