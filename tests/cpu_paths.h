/*
 * cpu_paths.h - run a test body once on every kernel path (cpu.h) this CPU
 * supports: generic everywhere, AVX2 and AVX-512 where present, so CI on
 * an AVX2-only machine checks what it can. Paths the CPU lacks are named
 * on stderr as not checked here.
 */
#ifndef IMCAP_TEST_CPU_PATHS_H
#define IMCAP_TEST_CPU_PATHS_H

#include "cpu.h"

#include <stdio.h>

/* The path being checked, for failure messages. */
static inline const char *cpu_path_now(void) { return cpu_isa_name(cpu_isa_active()); }

/* Calls fn() with each supported path forced; returns how many ran. */
static inline int each_cpu_path(void (*fn)(void))
{
    cpu_isa prev = cpu_isa_active();
    int ran = 0;
    for (int i = 0; i < CPU_N_ISA; i++) {
        if (!cpu_isa_supported((cpu_isa)i)) {
            fprintf(stderr, "    kernel path %s: not supported by this CPU, not checked here\n",
                    cpu_isa_name((cpu_isa)i));
            continue;
        }
        cpu_isa_force((cpu_isa)i);
        fn();
        ran++;
    }
    cpu_isa_force(prev);
    return ran;
}

#endif
