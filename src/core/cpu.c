/*
 * cpu.c - which kernels run: cpuid feature bits, the OS's saved register
 * state (xgetbv XCR0: SSE+AVX for YMM, plus opmask/ZMM for AVX-512), and
 * the IMCAP_CPU override.
 */
#define _GNU_SOURCE /* syscall */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const g_names[CPU_N_ISA] = {"generic", "avx2", "avx512"};

static struct {
    pthread_once_t once;
    bool ok[CPU_N_ISA];
    bool vnni; /* AVX-512 VNNI (int8 dot products), with the AVX-512 path */
    bool bf16; /* AVX512_BF16 (cpuid 7.1 EAX bit 5), with the AVX-512 path */
    bool amx;  /* AMX-TILE + AMX-BF16, the OS saving the tile state and granting it to us */
    atomic_int active;
    atomic_bool amx_on; /* IMCAP_AMX=0 (or cpu_amx_allow) turns it off */
    imcap_status status;
    char msg[256];
} g_cpu = {.once = PTHREAD_ONCE_INIT};

static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(void)
{
    unsigned a, b, c, d;
    g_cpu.ok[CPU_GENERIC] = true;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        bool osxsave = c & bit_OSXSAVE, avx = c & bit_AVX, fma = c & bit_FMA;
        unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
        bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
        unsigned b7 = 0;
        if (__get_cpuid_max(0, NULL) >= 7) __cpuid_count(7, 0, a, b7, c, d);
        unsigned d7 = __get_cpuid_max(0, NULL) >= 7 ? d : 0;
        bool avx2 = b7 & bit_AVX2;
        bool f = b7 & bit_AVX512F, bw = b7 & bit_AVX512BW, vl = b7 & bit_AVX512VL, dq = b7 & bit_AVX512DQ;
        g_cpu.ok[CPU_AVX2] = avx && fma && avx2 && ymm;
        g_cpu.ok[CPU_AVX512] = g_cpu.ok[CPU_AVX2] && f && bw && vl && dq && zmm;
        g_cpu.vnni = g_cpu.ok[CPU_AVX512] && (c & bit_AVX512VNNI);
        unsigned a71 = 0;
        if (g_cpu.ok[CPU_AVX512] && a >= 1) __cpuid_count(7, 1, a71, b, c, d); /* a: leaf 7 subleaves */
        g_cpu.bf16 = g_cpu.ok[CPU_AVX512] && (a71 & (1u << 5));
        /* AMX: cpuid 7.0 EDX bits 22 (AMX-BF16) and 24 (AMX-TILE), XCR0
         * bits 17-18 (tile config and data), and Linux's permission to use
         * the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA = 18) */
        bool amx_cpu = g_cpu.bf16 && (d7 & (1u << 22)) && (d7 & (1u << 24)) && (xcr0 & 0x60000) == 0x60000;
        g_cpu.amx = amx_cpu && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        const char *ea = getenv("IMCAP_AMX");
        atomic_store(&g_cpu.amx_on, !(ea && !strcmp(ea, "0")));
    }
    int best = g_cpu.ok[CPU_AVX512] ? CPU_AVX512 : g_cpu.ok[CPU_AVX2] ? CPU_AVX2 : CPU_GENERIC;
    const char *e = getenv("IMCAP_CPU");
    if (e && *e) {
        int want = -1;
        for (int i = 0; i < CPU_N_ISA; i++)
            if (!strcmp(e, g_names[i])) want = i;
        if (want < 0) {
            g_cpu.status = IMCAP_E_ARG;
            snprintf(g_cpu.msg, sizeof g_cpu.msg, "IMCAP_CPU=%s: unknown path (generic, avx2 or avx512)", e);
            best = CPU_GENERIC;
        } else if (!g_cpu.ok[want]) {
            g_cpu.status = IMCAP_E_UNSUPPORTED;
            snprintf(g_cpu.msg, sizeof g_cpu.msg, "IMCAP_CPU=%s: this CPU (or its OS) does not support it; best here: %s",
                     e, g_names[best]);
            best = CPU_GENERIC;
        } else {
            best = want;
        }
    }
    atomic_store(&g_cpu.active, best);
}

cpu_isa cpu_isa_active(void)
{
    pthread_once(&g_cpu.once, detect);
    return (cpu_isa)atomic_load_explicit(&g_cpu.active, memory_order_relaxed);
}

imcap_status cpu_check(void)
{
    pthread_once(&g_cpu.once, detect);
    if (g_cpu.status != IMCAP_OK) return imcap_fail(g_cpu.status, "%s", g_cpu.msg);
    return IMCAP_OK;
}

bool cpu_isa_supported(cpu_isa isa)
{
    pthread_once(&g_cpu.once, detect);
    return (unsigned)isa < CPU_N_ISA && g_cpu.ok[isa];
}

bool cpu_has_avx512_vnni(void)
{
    pthread_once(&g_cpu.once, detect);
    return g_cpu.vnni;
}

bool cpu_has_avx512_bf16(void)
{
    pthread_once(&g_cpu.once, detect);
    return g_cpu.bf16;
}

bool cpu_has_amx_bf16(void)
{
    pthread_once(&g_cpu.once, detect);
    return g_cpu.amx && atomic_load(&g_cpu.amx_on);
}

bool cpu_amx_allow(bool on)
{
    pthread_once(&g_cpu.once, detect);
    return atomic_exchange(&g_cpu.amx_on, on);
}

const char *cpu_isa_name(cpu_isa isa) { return (unsigned)isa < CPU_N_ISA ? g_names[isa] : "?"; }

cpu_isa cpu_isa_force(cpu_isa isa)
{
    pthread_once(&g_cpu.once, detect);
    return (cpu_isa)atomic_exchange(&g_cpu.active, (int)isa);
}

const char *imcap_cpu_path(void) { return cpu_isa_name(cpu_isa_active()); }

imcap_status imcap_cpu_check(void) { return cpu_check(); }
