/*
 * cpu.h - run-time choice of the kernel instruction set. The library is
 * built for baseline x86-64; kernel files are compiled once per ISA (the
 * *_generic.c / *_avx2.c / *_avx512.c files) and the path is chosen once,
 * from cpuid and xgetbv (the OS must save the YMM / ZMM state), or forced
 * with IMCAP_CPU=generic|avx2|avx512.
 */
#ifndef IMCAP_CPU_H
#define IMCAP_CPU_H

#include "internal.h"

typedef enum cpu_isa {
    CPU_GENERIC = 0, /* baseline x86-64 (SSE2) */
    CPU_AVX2,        /* AVX2 + FMA */
    CPU_AVX512,      /* AVX-512 F/BW/VL/DQ (+ AVX2 + FMA) */
    CPU_N_ISA
} cpu_isa;

/* The ISA the kernels use: IMCAP_CPU if set and supported, else the best
 * the CPU and OS support (chosen once, thread-safe). A forced path the CPU
 * lacks, or an unknown name, leaves the generic path selected and makes
 * cpu_check() fail. */
cpu_isa cpu_isa_active(void);
/* IMCAP_OK, or IMCAP_E_UNSUPPORTED / IMCAP_E_ARG naming IMCAP_CPU's value
 * and what the CPU has. Entry points (graph run, training) call it. */
imcap_status cpu_check(void);
/* Whether this CPU and OS can run the ISA's kernels. */
bool cpu_isa_supported(cpu_isa isa);
/* AVX-512 VNNI (vpdpbusd), which the int8 kernels' AVX-512 path needs. */
bool cpu_has_avx512_vnni(void);
/* AVX512_BF16 (vdpbf16ps), which the bf16 GEMM (ops_bf16.h) needs. */
bool cpu_has_avx512_bf16(void);
/* AMX-BF16 usable (tile state saved by the OS, permission granted): the
 * bf16 GEMM's tile path; IMCAP_AMX=0 turns it off (vdpbf16ps instead). */
bool cpu_has_amx_bf16(void);
/* Tests and benchmarks: allow the AMX path or not; returns the previous setting. */
bool cpu_amx_allow(bool on);
/* "generic", "avx2", "avx512". */
const char *cpu_isa_name(cpu_isa isa);
/* Tests and benchmarks: make isa the active path from now on (it must be
 * supported); returns the previous one. Not for concurrent use with runs. */
cpu_isa cpu_isa_force(cpu_isa isa);

#endif
