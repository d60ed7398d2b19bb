/*
 * test_cpu.c - the run-time choice of kernels (src/core/cpu.h): IMCAP_CPU
 * forces a path or is refused with a clear error, through the CLI (each
 * run a fresh process, so the choice is made anew).
 */
#include "test.h"
#include "cpu.h"

static int run_version(const char *env, char *out, size_t cap, char *err, size_t ecap)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s --version", env, test_imcap_bin());
    return test_run(cmd, out, cap, err, ecap);
}

TEST(cpu_env_forces_each_supported_path_and_refuses_others)
{
    char out[512], err[512];
    for (int i = 0; i < CPU_N_ISA; i++) {
        char env[64], want[64];
        snprintf(env, sizeof env, "IMCAP_CPU=%s", cpu_isa_name((cpu_isa)i));
        int rc = run_version(env, out, sizeof out, err, sizeof err);
        if (cpu_isa_supported((cpu_isa)i)) {
            snprintf(want, sizeof want, "(kernels: %s)", cpu_isa_name((cpu_isa)i));
            CHECK(rc == 0);
            CHECK(strstr(out, want) != NULL);
        } else {
            CHECK(rc == 2);
            CHECK(strstr(err, env) != NULL && strstr(err, "does not support") != NULL);
        }
    }
    CHECK(run_version("IMCAP_CPU=avx9000", out, sizeof out, err, sizeof err) == 2);
    CHECK(strstr(err, "IMCAP_CPU=avx9000: unknown path") != NULL);
    /* unset: the best path this CPU supports */
    CHECK(run_version("env -u IMCAP_CPU", out, sizeof out, err, sizeof err) == 0);
    const char *best = cpu_isa_supported(CPU_AVX512) ? "avx512" : cpu_isa_supported(CPU_AVX2) ? "avx2" : "generic";
    char want[64];
    snprintf(want, sizeof want, "(kernels: %s)", best);
    CHECK(strstr(out, want) != NULL);
}

/* The generic path is always there; a wider path implies the narrower. */
TEST(cpu_paths_are_ordered)
{
    CHECK(cpu_isa_supported(CPU_GENERIC));
    if (cpu_isa_supported(CPU_AVX512)) CHECK(cpu_isa_supported(CPU_AVX2));
    CHECK(!cpu_isa_supported(CPU_N_ISA));
    CHECK(!strcmp(cpu_isa_name(CPU_AVX2), "avx2"));
}
