/* bench_util.h - what the benchmark programs share: process CPU time and
 * the 64-bit LCG their PyTorch peers reproduce. */
#ifndef IMCAP_BENCH_UTIL_H
#define IMCAP_BENCH_UTIL_H

#include <stdint.h>
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

#endif
