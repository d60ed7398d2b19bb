/*
 * test_main.c - runs every registered test in a forked child with a time
 * limit and prints "N passed, N failed[, N skipped]" as the last line.
 * Usage: imcap_tests [substring...]   (run only tests whose name contains one)
 */
#define _GNU_SOURCE
#include "test.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024

static struct { const char *name, *file; test_fn fn; } g_tests[MAX_TESTS];
static int g_ntests;
static volatile int *g_shared_flags; /* [0] failed, [1] skipped (set by child) */
static char g_tmpdir[512];

void test_register(const char *name, const char *file, test_fn fn)
{
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].file = file;
        g_tests[g_ntests].fn = fn;
        g_ntests++;
    }
}

void test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_shared_flags[0] = 1;
}

void test_skip(const char *why)
{
    fprintf(stderr, "    skipped: %s\n", why);
    g_shared_flags[1] = 1;
}

const char *test_shared_dir(void)
{
    const char *e = getenv("IMCAP_SHARED");
    return e && *e ? e : "../shared";
}

const char *test_path(const char *rel)
{
    static _Thread_local char buf[8][1024];
    static _Thread_local int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s", rel);
    return b;
}

const char *test_tmpdir(void) { return g_tmpdir; }

const char *test_imcap_bin(void)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    REQUIRE(n > 0);
    path[n] = 0;
    char *slash = strrchr(path, '/');
    REQUIRE(slash);
    strcpy(slash + 1, "imcap");
    REQUIRE(access(path, X_OK) == 0);
    return path;
}

int test_run(const char *cmd, char *out, size_t out_cap, char *err, size_t err_cap)
{
    char full[16384], errf[700];
    snprintf(errf, sizeof errf, "%s/stderr.txt", g_tmpdir);
    snprintf(full, sizeof full, "%s%s%s%s", cmd, out ? "" : " >/dev/null", err ? " 2>" : "", err ? errf : "");
    fflush(NULL);
    FILE *fp = popen(full, "r");
    REQUIRE(fp);
    char sink[4096];
    size_t n = 0;
    if (out) {
        n = fread(out, 1, out_cap - 1, fp);
        out[n] = 0;
    }
    while (fread(sink, 1, sizeof sink, fp) > 0) continue;
    int st = pclose(fp);
    if (err) {
        FILE *fe = fopen(errf, "r");
        REQUIRE(fe);
        n = fread(err, 1, err_cap - 1, fe);
        err[n] = 0;
        fclose(fe);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int matches(const char *name, int argc, char **argv)
{
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    int timeout = getenv("IMCAP_TEST_TIMEOUT") ? atoi(getenv("IMCAP_TEST_TIMEOUT")) : 600;
    g_shared_flags = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared_flags == MAP_FAILED) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < g_ntests; i++) {
        if (!matches(g_tests[i].name, argc, argv)) continue;
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/imcap-test-%ld-%d", (long)getpid(), i);
        char cmd[640];
        snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", g_tmpdir, g_tmpdir);
        if (system(cmd) != 0) return 2;
        g_shared_flags[0] = g_shared_flags[1] = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm((unsigned)timeout);
            g_tests[i].fn();
            fflush(NULL);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        const char *verdict;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || g_shared_flags[0]) {
            failed++;
            verdict = "FAIL";
            if (WIFSIGNALED(status))
                fprintf(stderr, "    killed by signal %d%s\n", WTERMSIG(status),
                        WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
        } else if (g_shared_flags[1]) {
            skipped++;
            verdict = "SKIP";
        } else {
            passed++;
            verdict = "ok";
        }
        printf("%-4s %-48s %7.2fs  (%s)\n", verdict, g_tests[i].name, secs, g_tests[i].file);
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
