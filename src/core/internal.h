/*
 * internal.h - helpers shared by the library's source files (not installed).
 */
#ifndef IMCAP_INTERNAL_H
#define IMCAP_INTERNAL_H

#include "imcap.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#if defined(__GNUC__)
#define IMCAP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define IMCAP_PRINTF(a, b)
#endif

/* Record the failure message for imcap_last_error() and return s, so that
 * callers write: return imcap_fail(IMCAP_E_FORMAT, "%s:%d: bad field", f, l); */
imcap_status imcap_fail(imcap_status s, const char *fmt, ...) IMCAP_PRINTF(2, 3);
/* Prefix the current message with "prefix: " (e.g. a file name). Returns s. */
imcap_status imcap_fail_prefix(imcap_status s, const char *fmt, ...) IMCAP_PRINTF(2, 3);
void imcap_clear_error(void);

/* Overflow-checked sizes. Return false on overflow. */
bool imcap_mul_size(size_t a, size_t b, size_t *out);
bool imcap_add_size(size_t a, size_t b, size_t *out);

/* Allocation of n elements of size sz, zeroed; NULL (with message) on
 * overflow or failure. 64-byte aligned; release with imcap_free(). */
void *imcap_calloc(size_t n, size_t sz);
/* Same, not zeroed. */
void *imcap_alloc(size_t n, size_t sz);
void imcap_free(void *p);
/* strdup with message on failure. */
char *imcap_strdup(const char *s);

/* Read a whole file into a NUL-terminated buffer (the NUL is not counted in
 * *len). Fails with a message naming the file; refuses files > max_bytes. */
imcap_status imcap_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Atomic file writing: data goes to "<path>.tmp.<pid>", is fsync'ed, then
 * renamed over path. A crash at any moment leaves either the old or the new
 * file, never a torn one. */
typedef struct imcap_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} imcap_atomic_file;
imcap_status imcap_atomic_open(imcap_atomic_file *af, const char *path);
/* fwrite with error check; message names the file. */
imcap_status imcap_atomic_write(imcap_atomic_file *af, const void *data, size_t len);
/* Flush, fsync, close and rename. On failure the temp file is removed. */
imcap_status imcap_atomic_commit(imcap_atomic_file *af);
/* Abandon: close and remove the temp file. Safe to call twice. */
void imcap_atomic_abort(imcap_atomic_file *af);

/* Checks before long work that path can be written atomically: not a
 * directory, and a temp file can be created next to it (created and
 * removed). what names the output in the message ("checkpoint", ...). */
imcap_status imcap_check_output(const char *path, const char *what);

/* Fault injection for the tests: imcap_fault_inject(k, n) makes the n-th
 * following operation of kind k inside the library's writers fail as a full
 * or broken disk would (n = 0: off). imcap_fault_hit(k) is asked by each
 * writer before the real operation; it sets errno (ENOSPC / EIO). */
typedef enum imcap_fault_kind {
    IMCAP_FAULT_OPEN, IMCAP_FAULT_WRITE, IMCAP_FAULT_FSYNC, IMCAP_FAULT_RENAME, IMCAP_FAULT_KINDS
} imcap_fault_kind;
void imcap_fault_inject(imcap_fault_kind k, long n);
bool imcap_fault_hit(imcap_fault_kind k);

/* CRC-32 (IEEE, as zlib), chainable: crc = imcap_crc32(crc, p, n), start 0
 * (crc32.c). imcap_crc32_copy also copies the len bytes to dst (not
 * overlapping src) in the same pass. IMCAP_CRC_TABLE=1 in the environment
 * forces the table path. */
uint32_t imcap_crc32(uint32_t crc, const void *data, size_t len);
uint32_t imcap_crc32_copy(uint32_t crc, void *dst, const void *src, size_t len);
/* Copies n floats from src to dst in one pass that also finds non-finite
 * values and, if crc is not NULL, updates *crc (chainable, as imcap_crc32)
 * over their bytes: the loaders' copy. Returns the index of the first NaN or
 * infinity in dst, or n. */
size_t imcap_copy_f32_checked(float *dst, const float *src, size_t n, uint32_t *crc);
/* The paths, slowest first (tests and benchmarks): whether the CPU has one,
 * a run on a given one (dst NULL: no copy; an unsupported path runs the best
 * there is), its name, and the one imcap_crc32 uses. */
typedef enum crc_path { CRC_TABLE, CRC_CLMUL, CRC_VCLMUL } crc_path;
bool imcap_crc32_path_supported(crc_path path);
uint32_t imcap_crc32_on(crc_path path, uint32_t crc, void *dst, const void *src, size_t len);
size_t imcap_copy_f32_checked_on(crc_path path, float *dst, const float *src, size_t n, uint32_t *crc);
const char *imcap_crc32_path_name(crc_path path);
crc_path imcap_crc32_path(void);

/* Index of the first NaN or infinity in x [n], or n if every value is finite
 * (blocks of exponent-bit tests that the compiler vectorizes). */
size_t imcap_first_nonfinite(const float *x, size_t n);

/* Deterministic PRNG (xoshiro256**), seeded with splitmix64. */
typedef struct imcap_rng { uint64_t s[4]; } imcap_rng;
void imcap_rng_seed(imcap_rng *r, uint64_t seed);
uint64_t imcap_rng_next(imcap_rng *r);
/* Uniform in [0, 1). */
double imcap_rng_uniform(imcap_rng *r);
/* Uniform integer in [0, n), n > 0, unbiased. */
uint64_t imcap_rng_below(imcap_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double imcap_rng_normal(imcap_rng *r);

/* Monotonic clock in seconds. */
double imcap_now(void);

#endif
