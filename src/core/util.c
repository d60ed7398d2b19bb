/*
 * util.c - errors, checked allocation, whole-file reads, atomic writes,
 * CRC-32, a deterministic PRNG and a clock.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* CRC-32 (zlib's polynomial). Buffers of 64 bytes and more are folded 64
 * bytes a step with carry-less multiplies (PCLMULQDQ; Gopal et al., "Fast
 * CRC Computation for Generic Polynomials Using PCLMULQDQ", Intel 2009; the
 * constants are the paper's bit-reflected ones, as in zlib/Chromium) where
 * the CPU has it (every AVX2 machine does); the rest, and CPUs without it,
 * go through slice-by-8: eight bytes per step through eight derived tables.
 * tests/test_robust.c checks both paths against each other. */
static uint32_t g_crc_table[8][256];
static bool g_crc_clmul;
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        g_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_crc_table[t][i] = g_crc_table[0][g_crc_table[t - 1][i] & 0xff] ^ (g_crc_table[t - 1][i] >> 8);
#if defined(__x86_64__) && defined(__GNUC__)
    g_crc_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") && !getenv("IMCAP_CRC_TABLE");
#endif
}

/* The inverted register crc over len bytes, by the tables. */
static uint32_t crc_table_update(uint32_t crc, const unsigned char *p, size_t len)
{
    const uint32_t(*T)[256] = (const uint32_t(*)[256])g_crc_table;
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^
              T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    }
    while (len--) crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))

/* The inverted register crc over len bytes, len >= 64 and a multiple of 16. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul_update(uint32_t crc, const unsigned char *buf,
                                                                          size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4), k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124), poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    __m128i x1 = LD(buf), x2 = LD(buf + 16), x3 = LD(buf + 32), x4 = LD(buf + 48), x5;
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    buf += 64;
    len -= 64;
    for (; len >= 64; buf += 64, len -= 64) { /* four 128-bit lanes, each folded 512 bits forward */
        __m128i y1 = _mm_clmulepi64_si128(x1, k1k2, 0x00), y2 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        __m128i y3 = _mm_clmulepi64_si128(x3, k1k2, 0x00), y4 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k1k2, 0x11), y1), LD(buf));
        x2 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x2, k1k2, 0x11), y2), LD(buf + 16));
        x3 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x3, k1k2, 0x11), y3), LD(buf + 32));
        x4 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x4, k1k2, 0x11), y4), LD(buf + 48));
    }
    /* the four lanes into one, then 128 bits a step */
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x2), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x3), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x4), x5);
    for (; len >= 16; buf += 16, len -= 16) {
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), LD(buf)), x5);
    }
    /* 128 -> 64 bits, then Barrett reduction to 32 */
    const __m128i lo32 = _mm_setr_epi32(~0, 0, ~0, 0);
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, lo32), k5k0, 0x00), x2);
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, lo32), poly, 0x10);
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, lo32), poly, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, x2), 1);
}
#undef LD
#endif

uint32_t imcap_crc32(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&g_crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    if (g_crc_clmul && len >= 64) {
        size_t n = len & ~(size_t)15;
        crc = crc_clmul_update(crc, p, n);
        p += n;
        len -= n;
    }
#endif
    return ~crc_table_update(crc, p, len);
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
