/*
 * util.c - errors, checked allocation, whole-file reads, atomic writes,
 * a deterministic PRNG and a clock.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"


#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static _Thread_local char g_err[2048];

const char *imcap_version(void) { return IMCAP_VERSION_STRING; }

const char *imcap_status_str(imcap_status s)
{
    switch (s) {
    case IMCAP_OK: return "ok";
    case IMCAP_E_ARG: return "invalid argument";
    case IMCAP_E_IO: return "i/o error";
    case IMCAP_E_FORMAT: return "malformed input";
    case IMCAP_E_NOMEM: return "out of memory";
    case IMCAP_E_UNSUPPORTED: return "unsupported";
    case IMCAP_E_MISMATCH: return "mismatch";
    case IMCAP_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *imcap_last_error(void) { return g_err; }

void imcap_clear_error(void) { g_err[0] = 0; }

imcap_status imcap_fail(imcap_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return s;
}

imcap_status imcap_fail_prefix(imcap_status s, const char *fmt, ...)
{
    char prefix[1024], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    snprintf(g_err, sizeof g_err, "%s: %s", prefix, old);
    return s;
}

bool imcap_mul_size(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b) return false;
    *out = a * b;
    return true;
}

bool imcap_add_size(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b) return false;
    *out = a + b;
    return true;
}

void *imcap_alloc(size_t n, size_t sz)
{
    size_t bytes;
    if (!imcap_mul_size(n, sz, &bytes) || !imcap_add_size(bytes, 63, &bytes)) {
        imcap_fail(IMCAP_E_NOMEM, "allocation of %zu x %zu bytes overflows", n, sz);
        return NULL;
    }
    bytes &= ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (!p) imcap_fail(IMCAP_E_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *imcap_calloc(size_t n, size_t sz)
{
    void *p = imcap_alloc(n, sz);
    if (p) memset(p, 0, n * sz);
    return p;
}

void imcap_free(void *p) { free(p); }

char *imcap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) {
        imcap_fail(IMCAP_E_NOMEM, "out of memory copying a string of %zu bytes", n);
        return NULL;
    }
    memcpy(p, s, n);
    return p;
}

imcap_status imcap_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return imcap_fail(IMCAP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return imcap_fail(IMCAP_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(fp);
        return imcap_fail(IMCAP_E_FORMAT, "%s: file is %lld bytes, more than the limit of %zu",
                          path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, fp);
    int err = ferror(fp);
    fclose(fp);
    if (got != n || err) {
        free(buf);
        return imcap_fail(IMCAP_E_IO, "%s: read error (got %zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return IMCAP_OK;
}

static long g_fault[IMCAP_FAULT_KINDS];

void imcap_fault_inject(imcap_fault_kind k, long n) { __atomic_store_n(&g_fault[k], n, __ATOMIC_SEQ_CST); }

bool imcap_fault_hit(imcap_fault_kind k)
{
    if (__atomic_load_n(&g_fault[k], __ATOMIC_RELAXED) <= 0) return false;
    if (__atomic_sub_fetch(&g_fault[k], 1, __ATOMIC_SEQ_CST) != 0) return false;
    errno = k == IMCAP_FAULT_WRITE ? ENOSPC : k == IMCAP_FAULT_OPEN ? EACCES : EIO;
    return true;
}

imcap_status imcap_check_output(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return imcap_fail(IMCAP_E_IO, "%s: the %s output is %s, not a file", path, what,
                          S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (s) return imcap_fail_prefix(s, "%s output %s cannot be written", what, path);
    imcap_atomic_abort(&af);
    return IMCAP_OK;
}

imcap_status imcap_atomic_open(imcap_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = imcap_strdup(path);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        imcap_atomic_abort(af);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = imcap_fault_hit(IMCAP_FAULT_OPEN) ? NULL : fopen(af->tmp_path, "wb");
    if (!af->fp) {
        imcap_status s = imcap_fail(IMCAP_E_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        imcap_atomic_abort(af);
        return s;
    }
    return IMCAP_OK;
}

imcap_status imcap_atomic_write(imcap_atomic_file *af, const void *data, size_t len)
{
    if (!af->fp) return imcap_fail(IMCAP_E_ARG, "atomic write on a closed file");
    if (len && (imcap_fault_hit(IMCAP_FAULT_WRITE) || fwrite(data, 1, len, af->fp) != len))
        return imcap_fail(IMCAP_E_IO, "%s: write failed: %s", af->tmp_path, strerror(errno));
    return IMCAP_OK;
}

imcap_status imcap_atomic_commit(imcap_atomic_file *af)
{
    imcap_status s = IMCAP_OK;
    if (!af->fp) return imcap_fail(IMCAP_E_ARG, "atomic commit on a closed file");
    if (fflush(af->fp) != 0 || imcap_fault_hit(IMCAP_FAULT_FSYNC) || fsync(fileno(af->fp)) != 0)
        s = imcap_fail(IMCAP_E_IO, "%s: flush failed: %s", af->tmp_path, strerror(errno));
    if (fclose(af->fp) != 0 && s == IMCAP_OK)
        s = imcap_fail(IMCAP_E_IO, "%s: close failed: %s", af->tmp_path, strerror(errno));
    af->fp = NULL;
    if (s == IMCAP_OK && (imcap_fault_hit(IMCAP_FAULT_RENAME) || rename(af->tmp_path, af->path) != 0))
        s = imcap_fail(IMCAP_E_IO, "%s: cannot rename into place: %s", af->path, strerror(errno));
    if (s != IMCAP_OK) {
        imcap_atomic_abort(af);
        return s;
    }
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return IMCAP_OK;
}

void imcap_atomic_abort(imcap_atomic_file *af)
{
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

size_t imcap_first_nonfinite(const float *x, size_t n)
{
    enum { BLOCK = 1024 };
    for (size_t b = 0; b < n; b += BLOCK) {
        const size_t e = n - b < BLOCK ? n : b + BLOCK;
        size_t i = b;
        uint32_t bad = 0;
#if defined(__SSE2__)
        /* exponent all ones (inf or NaN), four floats a step */
        const __m128i expo = _mm_set1_epi32(0x7f800000);
        __m128i acc = _mm_setzero_si128();
        for (; i + 4 <= e; i += 4) {
            const __m128i v = _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(x + i)), expo);
            acc = _mm_or_si128(acc, _mm_cmpeq_epi32(v, expo));
        }
        bad = (uint32_t)_mm_movemask_epi8(acc);
#endif
        for (; i < e; i++) bad |= !isfinite(x[i]);
        if (bad)
            for (i = b; i < e; i++)
                if (!isfinite(x[i])) return i;
    }
    return n;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void imcap_rng_seed(imcap_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t imcap_rng_next(imcap_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double imcap_rng_uniform(imcap_rng *r) { return (double)(imcap_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t imcap_rng_below(imcap_rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = imcap_rng_next(r);
    while (x >= lim);
    return x % n;
}

double imcap_rng_normal(imcap_rng *r)
{
    double u1 = imcap_rng_uniform(r), u2 = imcap_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double imcap_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
