/* cli.c - error printing, progress line and number parsing for the CLI. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

char *cli_derived(const char *path, const char *suffix)
{
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) n -= 5;
    char *s = malloc(n + strlen(suffix) + 1);
    if (!s) return NULL;
    memcpy(s, path, n);
    strcpy(s + n, suffix);
    return s;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_now(void) { return now(); }

int cli_quiet_errors;

int cli_error(const char *cmd, imcap_status s)
{
    const char *m = imcap_last_error();
    /* the ranks of a job agree on one message: rank 0 prints it */
    if (cli_quiet_errors) return 1;
    fprintf(stderr, "imcap %s: %s\n", cmd, (m && *m) ? m : imcap_status_str(s));
    return 1;
}

void cli_progress_init(cli_progress *p, const char *label)
{
    p->t0 = now();
    p->last = 0;
    p->label = label;
    p->quiet = getenv("IMCAP_QUIET") != NULL;
}

int cli_progress_fn(void *user, uint64_t done, uint64_t total, const char *what)
{
    cli_progress *p = user;
    if (p->quiet) return 0;
    double t = now();
    if (done < total && t - p->last < 0.25) return 0;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
    int tty = isatty(2);
    fprintf(stderr, "%s%s %llu/%llu (%.1f%%) %.1f %s/s ETA %02d:%02d%s", tty ? "\r" : "",
            p->label ? p->label : "", (unsigned long long)done, (unsigned long long)total,
            total ? 100.0 * (double)done / (double)total : 100.0, rate, what ? what : "items",
            (int)(eta / 60), (int)eta % 60, tty ? "\x1b[K" : "\n");
    if (tty && done >= total) fputc('\n', stderr);
    return 0;
}

int cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "imcap: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi,
                s ? s : "(nothing)");
        return 1;
    }
    *out = v;
    return 0;
}

int cli_parse_precision(const char *flag, const char *s, imcap_precision *out)
{
    static const char *const names[] = {"auto", "float", "int8", "bf16"};
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (imcap_precision)i;
            return 0;
        }
    fprintf(stderr, "imcap: %s expects int8, float, bf16 or auto, got '%s'\n", flag, s ? s : "(nothing)");
    return 1;
}

int cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "imcap: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi,
                s ? s : "(nothing)");
        return 1;
    }
    *out = v;
    return 0;
}

const char *cli_default_model(void)
{
    /* $IMCAP_MODEL, ./models/default.imcap, or beside the binary (build tree or installed copy). */
    static char path[PATH_MAX];
    if (imcap_default_model_path(path, sizeof path) == IMCAP_OK) return path;
    return "models/default.imcap"; /* loading it then names the missing file */
}

void cli_fault_from_env(void)
{
    const char *e = getenv("IMCAP_TEST_FAULT");
    static const char *const kinds[IMCAP_FAULT_KINDS] = {"open", "write", "fsync", "rename"};
    if (!e) return;
    for (int k = 0; k < IMCAP_FAULT_KINDS; k++) {
        size_t n = strlen(kinds[k]);
        if (!strncmp(e, kinds[k], n) && e[n] == ':') imcap_fault_inject((imcap_fault_kind)k, atol(e + n + 1));
    }
}
