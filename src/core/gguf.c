/*
 * gguf.c - GGUF v3 reader (mmap, fully validated) and writer (atomic).
 *
 * Layout (little-endian): "GGUF" u32 version=3, u64 n_tensors, u64 n_kv;
 * n_kv x (string key, u32 type, value); n_tensors x (string name, u32 n_dims,
 * u64 ne[n_dims] fastest-first, u32 type, u64 offset); padding to the
 * alignment (key general.alignment, default 32); tensor data, each tensor at
 * its offset (a multiple of the alignment) from the start of the data section.
 * A string is u64 length + bytes (no NUL).
 *
 * Files written here carry the key imcap.tensor_crc32 (array of i32, one
 * CRC-32 per tensor in order, over its data bytes); gguf_open checks its
 * form, gguf_tensor_copy / gguf_verify the data.
 */
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    GV_U8 = 0, GV_I8 = 1, GV_U16 = 2, GV_I16 = 3, GV_U32 = 4, GV_I32 = 5, GV_F32 = 6,
    GV_BOOL = 7, GV_STR = 8, GV_ARR = 9, GV_U64 = 10, GV_I64 = 11, GV_F64 = 12
};
enum { GGUF_ALIGN = 32, GGUF_MAX_COUNT = 1 << 24 };
/* The smallest encodings: a key/value is a u64 key length, a u32 type and
 * at least one value byte; a tensor info a u64 name length, u32 n_dims, one
 * u64 dimension, u32 type and u64 offset; an array string its u64 length. */
enum { GGUF_MIN_KV = 8 + 4 + 1, GGUF_MIN_TENSOR = 8 + 4 + 8 + 4 + 8, GGUF_MIN_STR = 8 };
#define GGUF_CRC_KEY "imcap.tensor_crc32"

typedef struct gguf_kv {
    char *key;
    uint32_t type, arr_type; /* arr_type valid when type == GV_ARR */
    uint64_t n;              /* array length */
    union { uint32_t u32; int32_t i32; uint64_t u64; float f32; } v;
    char *str;               /* GV_STR */
    void *arr;               /* i32/f32 copy, or char** for strings */
} gguf_kv;

struct gguf_file {
    char *path;
    unsigned char *map;
    size_t size;
    gguf_kv *kv;
    size_t n_kv;
    gguf_tensor *tensors;
    char **tensor_names;
    size_t n_tensors;
};

/* ------------------------------------------------------------ reading */

typedef struct rd { const unsigned char *p; size_t pos, size; const char *path; } rd;

static imcap_status rd_bytes(rd *r, void *out, size_t n, const char *what)
{
    if (n > r->size - r->pos)
        return imcap_fail(IMCAP_E_FORMAT, "%s: truncated at byte %zu reading %s", r->path, r->pos, what);
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return IMCAP_OK;
}

static imcap_status rd_u32(rd *r, uint32_t *v, const char *what) { return rd_bytes(r, v, 4, what); }
static imcap_status rd_u64(rd *r, uint64_t *v, const char *what) { return rd_bytes(r, v, 8, what); }

static imcap_status rd_str(rd *r, char **out, const char *what)
{
    uint64_t n = 0;
    imcap_status s = rd_u64(r, &n, what);
    if (s) return s;
    if (n > r->size - r->pos || n > (1u << 20))
        return imcap_fail(IMCAP_E_FORMAT, "%s: bad string length %llu at byte %zu (%s)", r->path,
                          (unsigned long long)n, r->pos, what);
    char *str = malloc((size_t)n + 1);
    if (!str) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", r->path);
    memcpy(str, r->p + r->pos, (size_t)n);
    str[n] = 0;
    if (strlen(str) != n) {
        free(str);
        return imcap_fail(IMCAP_E_FORMAT, "%s: string with a NUL byte at byte %zu (%s)", r->path, r->pos, what);
    }
    r->pos += (size_t)n;
    *out = str;
    return IMCAP_OK;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case GV_U8: case GV_I8: case GV_BOOL: return 1;
    case GV_U16: case GV_I16: return 2;
    case GV_U32: case GV_I32: case GV_F32: return 4;
    case GV_U64: case GV_I64: case GV_F64: return 8;
    default: return 0;
    }
}

static imcap_status rd_kv(rd *r, gguf_kv *kv)
{
    imcap_status s;
    if ((s = rd_str(r, &kv->key, "key")) || (s = rd_u32(r, &kv->type, kv->key))) return s;
    if (kv->type == GV_STR) return rd_str(r, &kv->str, kv->key);
    if (kv->type == GV_ARR) {
        if ((s = rd_u32(r, &kv->arr_type, kv->key)) || (s = rd_u64(r, &kv->n, kv->key))) return s;
        if (kv->n > GGUF_MAX_COUNT || kv->n > r->size - r->pos ||
            (kv->arr_type == GV_STR && kv->n > (r->size - r->pos) / GGUF_MIN_STR))
            return imcap_fail(IMCAP_E_FORMAT, "%s: key %s: bad array length %llu", r->path, kv->key,
                              (unsigned long long)kv->n);
        if (kv->arr_type == GV_STR) {
            char **a = calloc((size_t)kv->n + 1, sizeof *a);
            if (!a) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", r->path);
            kv->arr = a;
            for (uint64_t i = 0; i < kv->n; i++)
                if ((s = rd_str(r, &a[i], kv->key))) return s;
            return IMCAP_OK;
        }
        size_t es = scalar_size(kv->arr_type);
        if (!es) return imcap_fail(IMCAP_E_FORMAT, "%s: key %s: unsupported array type %u", r->path, kv->key, kv->arr_type);
        size_t bytes = (size_t)kv->n * es;
        if (bytes > r->size - r->pos)
            return imcap_fail(IMCAP_E_FORMAT, "%s: key %s: array runs past the end", r->path, kv->key);
        kv->arr = malloc(bytes ? bytes : 1);
        if (!kv->arr) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", r->path);
        return rd_bytes(r, kv->arr, bytes, kv->key);
    }
    size_t es = scalar_size(kv->type);
    if (!es) return imcap_fail(IMCAP_E_FORMAT, "%s: key %s: unknown value type %u", r->path, kv->key, kv->type);
    uint64_t raw = 0;
    if ((s = rd_bytes(r, &raw, es, kv->key))) return s;
    memcpy(&kv->v, &raw, sizeof kv->v < 8 ? sizeof kv->v : 8);
    return IMCAP_OK;
}

static size_t type_size(uint32_t t)
{
    switch (t) {
    case GGUF_T_F32: case GGUF_T_I32: return 4;
    case GGUF_T_I8: return 1;
    default: return 0;
    }
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Duplicate tensor names: sorted copy of the name pointers, O(n log n). */
static imcap_status check_unique_names(const gguf_file *f)
{
    if (f->n_tensors < 2) return IMCAP_OK;
    char **sorted = malloc(f->n_tensors * sizeof *sorted);
    if (!sorted) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", f->path);
    memcpy(sorted, f->tensor_names, f->n_tensors * sizeof *sorted);
    qsort(sorted, f->n_tensors, sizeof *sorted, cmp_name);
    imcap_status s = IMCAP_OK;
    for (size_t i = 1; i < f->n_tensors && !s; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            s = imcap_fail(IMCAP_E_FORMAT, "%s: duplicate tensor name %s", f->path, sorted[i]);
    free(sorted);
    return s;
}

static const gguf_kv *find_kv(const gguf_file *f, const char *key);

/* Per-tensor CRC-32 (GGUF_CRC_KEY), when the file carries it, into each
 * tensor's crc. Files written before the key existed have none. */
static imcap_status read_checksums(gguf_file *f)
{
    const gguf_kv *kv = find_kv(f, GGUF_CRC_KEY);
    if (!kv) return IMCAP_OK;
    if (kv->type != GV_ARR || kv->arr_type != GV_I32 || kv->n != f->n_tensors)
        return imcap_fail(IMCAP_E_FORMAT, "%s: key %s is not an array of %zu i32 (one per tensor)", f->path,
                          GGUF_CRC_KEY, f->n_tensors);
    const int32_t *crc = kv->arr;
    for (size_t i = 0; i < f->n_tensors; i++) {
        f->tensors[i].crc = (uint32_t)crc[i];
        f->tensors[i].has_crc = true;
    }
    return IMCAP_OK;
}

static imcap_status crc_mismatch(const gguf_file *f, const gguf_tensor *t, uint32_t got)
{
    return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s: checksum mismatch (stored %08x, computed %08x): the file is damaged",
                      f->path, t->name, (unsigned)t->crc, (unsigned)got);
}

imcap_status gguf_tensor_copy(const gguf_file *f, const gguf_tensor *t, void *dst)
{
    if (!t->has_crc) {
        memcpy(dst, t->data, t->n_bytes);
        return IMCAP_OK;
    }
    const uint32_t crc = imcap_crc32_copy(0, dst, t->data, t->n_bytes); /* one pass: copy and check */
    return crc == t->crc ? IMCAP_OK : crc_mismatch(f, t, crc);
}

imcap_status gguf_tensor_load_f32(const gguf_file *f, const gguf_tensor *t, float *dst)
{
    if (t->type != GGUF_T_F32)
        return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s is not float32", f->path, t->name);
    const size_t n = t->n_bytes / sizeof(float);
    uint32_t crc = 0;
    const size_t bad = imcap_copy_f32_checked(dst, (const float *)t->data, n, t->has_crc ? &crc : NULL);
    if (t->has_crc && crc != t->crc) return crc_mismatch(f, t, crc);
    if (bad < n)
        return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s has a non-finite value at index %zu", f->path, t->name, bad);
    return IMCAP_OK;
}

imcap_status gguf_verify(const gguf_file *f)
{
    for (size_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        uint32_t got;
        if (t->has_crc && (got = imcap_crc32(0, t->data, t->n_bytes)) != t->crc) return crc_mismatch(f, t, got);
    }
    return IMCAP_OK;
}

static imcap_status parse(gguf_file *f)
{
    rd r = {f->map, 0, f->size, f->path};
    char magic[4] = {0};
    uint32_t version = 0;
    uint64_t nt = 0, nkv = 0;
    imcap_status s;
    if ((s = rd_bytes(&r, magic, 4, "magic"))) return s;
    if (memcmp(magic, "GGUF", 4) != 0) return imcap_fail(IMCAP_E_FORMAT, "%s: not a GGUF file (bad magic)", f->path);
    if ((s = rd_u32(&r, &version, "version"))) return s;
    if (version != 3) return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: GGUF version %u, expected 3", f->path, version);
    if ((s = rd_u64(&r, &nt, "tensor count")) || (s = rd_u64(&r, &nkv, "key count"))) return s;
    /* Bound both counts by what the rest of the file can hold before allocating. */
    const size_t rest = f->size - r.pos;
    if (nt > GGUF_MAX_COUNT || nkv > GGUF_MAX_COUNT || nt > rest / GGUF_MIN_TENSOR || nkv > rest / GGUF_MIN_KV ||
        nt * GGUF_MIN_TENSOR + nkv * GGUF_MIN_KV > rest)
        return imcap_fail(IMCAP_E_FORMAT, "%s: implausible counts (%llu tensors, %llu keys) for a file of %zu bytes",
                          f->path, (unsigned long long)nt, (unsigned long long)nkv, f->size);
    f->kv = calloc((size_t)nkv + 1, sizeof *f->kv);
    f->tensors = calloc((size_t)nt + 1, sizeof *f->tensors);
    f->tensor_names = calloc((size_t)nt + 1, sizeof *f->tensor_names);
    if (!f->kv || !f->tensors || !f->tensor_names) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", f->path);
    for (uint64_t i = 0; i < nkv; i++) {
        f->n_kv = (size_t)i + 1;
        if ((s = rd_kv(&r, &f->kv[i]))) return s;
    }
    uint64_t align = GGUF_ALIGN;
    for (size_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, "general.alignment")) {
            if (f->kv[i].type != GV_U32 || f->kv[i].v.u32 == 0 || (f->kv[i].v.u32 & (f->kv[i].v.u32 - 1)) ||
                f->kv[i].v.u32 > 4096)
                return imcap_fail(IMCAP_E_FORMAT, "%s: bad general.alignment", f->path);
            align = f->kv[i].v.u32;
        }
    uint64_t *offsets = calloc((size_t)nt + 1, sizeof *offsets);
    if (!offsets) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", f->path);
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint32_t nd = 0, type = 0;
        f->n_tensors = (size_t)i + 1;
        if ((s = rd_str(&r, &f->tensor_names[i], "tensor name")) || (s = rd_u32(&r, &nd, "n_dims"))) goto out;
        t->name = f->tensor_names[i];
        if (nd < 1 || nd > GGUF_MAX_DIMS) {
            s = imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s: %u dimensions", f->path, t->name, nd);
            goto out;
        }
        t->n_dims = (int)nd;
        size_t count = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne = 0;
            if ((s = rd_u64(&r, &ne, t->name))) goto out;
            if (ne == 0 || ne > (1ull << 40) || !imcap_mul_size(count, (size_t)ne, &count)) {
                s = imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s: bad dimension %llu", f->path, t->name,
                               (unsigned long long)ne);
                goto out;
            }
            t->shape[nd - 1 - d] = (int64_t)ne;
        }
        if ((s = rd_u32(&r, &type, t->name)) || (s = rd_u64(&r, &offsets[i], t->name))) goto out;
        size_t es = type_size(type);
        if (!es) {
            s = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: tensor %s: unsupported type %u", f->path, t->name, type);
            goto out;
        }
        t->type = (gguf_tensor_type)type;
        t->n_elems = count;
        if (!imcap_mul_size(count, es, &t->n_bytes)) {
            s = imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s: size overflows", f->path, t->name);
            goto out;
        }
    }
    if ((s = check_unique_names(f))) goto out;
    size_t data_start = (size_t)((r.pos + align - 1) / align * align);
    if (data_start > f->size && nt > 0) {
        s = imcap_fail(IMCAP_E_FORMAT, "%s: truncated before the tensor data", f->path);
        goto out;
    }
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (offsets[i] % align || offsets[i] > f->size - data_start ||
            t->n_bytes > f->size - data_start - offsets[i]) {
            s = imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s: data (offset %llu, %zu bytes) lies outside the file "
                           "(truncated?)", f->path, t->name, (unsigned long long)offsets[i], t->n_bytes);
            goto out;
        }
        t->data = f->map + data_start + offsets[i];
    }
    s = read_checksums(f);
out:
    free(offsets);
    return s;
}

imcap_status gguf_open(const char *path, gguf_file **out)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = imcap_strdup(path))) {
        free(f);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        imcap_status s = imcap_fail(IMCAP_E_IO, "%s: cannot open: %s", path, strerror(errno));
        gguf_close(f);
        return s;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        gguf_close(f);
        return imcap_fail(IMCAP_E_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 24) {
        close(fd);
        gguf_close(f);
        return imcap_fail(IMCAP_E_FORMAT, "%s: file too small (%zu bytes) to be a GGUF model", path, (size_t)st.st_size);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        gguf_close(f);
        return imcap_fail(IMCAP_E_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    imcap_status s = parse(f);
    if (s) {
        gguf_close(f);
        return s;
    }
    *out = f;
    return IMCAP_OK;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        if (kv->type == GV_ARR && kv->arr_type == GV_STR && kv->arr)
            for (uint64_t j = 0; j < kv->n; j++) free(((char **)kv->arr)[j]);
        free(kv->arr);
        free(kv->str);
        free(kv->key);
    }
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensor_names[i]);
    free(f->tensor_names);
    free(f->tensors);
    free(f->kv);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    free(f);
}

const char *gguf_path(const gguf_file *f) { return f->path; }

static const gguf_kv *find_kv(const gguf_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

bool gguf_has_key(const gguf_file *f, const char *key) { return find_kv(f, key) != NULL; }

static imcap_status get_kv(const gguf_file *f, const char *key, uint32_t type, uint32_t arr_type, const gguf_kv **kv)
{
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    *kv = find_kv(f, key);
    if (!*kv) return imcap_fail(IMCAP_E_FORMAT, "%s: missing key %s", f->path, key);
    if ((*kv)->type != type || (type == GV_ARR && (*kv)->arr_type != arr_type))
        return imcap_fail(IMCAP_E_FORMAT, "%s: key %s has type %s, expected %s%s", f->path, key,
                          (*kv)->type < 13 ? names[(*kv)->type] : "?", type == GV_ARR ? "array of " : "",
                          names[type == GV_ARR ? arr_type : type]);
    return IMCAP_OK;
}

#define GGUF_GETTER(fn, ctype, gv, field)                                          \
    imcap_status fn(const gguf_file *f, const char *key, ctype *v)                 \
    {                                                                              \
        const gguf_kv *kv;                                                         \
        imcap_status s = get_kv(f, key, gv, 0, &kv);                               \
        if (!s) *v = kv->v.field;                                                  \
        return s;                                                                  \
    }
GGUF_GETTER(gguf_get_u32, uint32_t, GV_U32, u32)
GGUF_GETTER(gguf_get_i32, int32_t, GV_I32, i32)
GGUF_GETTER(gguf_get_u64, uint64_t, GV_U64, u64)
GGUF_GETTER(gguf_get_f32, float, GV_F32, f32)

imcap_status gguf_get_count(const gguf_file *f, const char *key, uint32_t lo, uint32_t hi, int *out)
{
    uint32_t v;
    imcap_status s = gguf_get_u32(f, key, &v);
    if (s) return s;
    if (v < lo || v > hi)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s = %u is outside [%u, %u]", gguf_path(f), key, v, lo, hi);
    *out = (int)v;
    return IMCAP_OK;
}

imcap_status gguf_get_str(const gguf_file *f, const char *key, const char **v)
{
    const gguf_kv *kv;
    imcap_status s = get_kv(f, key, GV_STR, 0, &kv);
    if (!s) *v = kv->str;
    return s;
}

#define GGUF_ARR_GETTER(fn, ctype, gv)                                             \
    imcap_status fn(const gguf_file *f, const char *key, ctype **v, size_t *n)     \
    {                                                                              \
        const gguf_kv *kv;                                                         \
        imcap_status s = get_kv(f, key, GV_ARR, gv, &kv);                          \
        if (!s) {                                                                  \
            *v = (ctype *)kv->arr;                                                 \
            *n = (size_t)kv->n;                                                    \
        }                                                                          \
        return s;                                                                  \
    }
GGUF_ARR_GETTER(gguf_get_arr_i32, const int32_t, GV_I32)
GGUF_ARR_GETTER(gguf_get_arr_f32, const float, GV_F32)
GGUF_ARR_GETTER(gguf_get_arr_str, const char *const, GV_STR)

size_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

imcap_status gguf_expect_tensor(const gguf_file *f, const char *name, gguf_tensor_type type, int n_dims,
                                const int64_t *shape, const gguf_tensor **out)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    *out = NULL;
    if (!t) return imcap_fail(IMCAP_E_FORMAT, "%s: missing tensor %s", f->path, name);
    if (t->type != type) return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s has type %d, expected %d", f->path, name, t->type, type);
    bool ok = t->n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->n_dims; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        for (int d = 0; d < n_dims; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "x" : "", (long long)shape[d]);
        return imcap_fail(IMCAP_E_MISMATCH, "%s: tensor %s has shape %s, expected %s", f->path, name, got, want);
    }
    *out = t;
    return IMCAP_OK;
}

/* ------------------------------------------------------------ writing */

typedef struct wtensor {
    char *name;
    gguf_tensor_type type;
    int n_dims;
    int64_t shape[GGUF_MAX_DIMS];
    size_t n_bytes;
    const void *data;
} wtensor;

struct gguf_writer {
    gguf_kv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    imcap_status err; /* first failure, reported by gguf_write */
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) imcap_fail(IMCAP_E_NOMEM, "out of memory");
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        gguf_kv *kv = &w->kv[i];
        if (kv->type == GV_ARR && kv->arr_type == GV_STR && kv->arr)
            for (uint64_t j = 0; j < kv->n; j++) free(((char **)kv->arr)[j]);
        free(kv->arr);
        free(kv->str);
        free(kv->key);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static gguf_kv *new_kv(gguf_writer *w, const char *key, uint32_t type)
{
    if (w->err) return NULL;
    if (!strcmp(key, GGUF_CRC_KEY)) {
        w->err = imcap_fail(IMCAP_E_ARG, "gguf: key %s is written by gguf_write itself", key);
        return NULL;
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            w->err = imcap_fail(IMCAP_E_ARG, "gguf: key %s set twice", key);
            return NULL;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        gguf_kv *k = realloc(w->kv, cap * sizeof *k);
        if (!k) {
            w->err = imcap_fail(IMCAP_E_NOMEM, "gguf: out of memory");
            return NULL;
        }
        w->kv = k;
        w->cap_kv = cap;
    }
    gguf_kv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    if (!(kv->key = imcap_strdup(key))) {
        w->err = IMCAP_E_NOMEM;
        return NULL;
    }
    kv->type = type;
    w->n_kv++;
    return kv;
}

#define GGUF_SETTER(fn, ctype, gv, field)                                          \
    imcap_status fn(gguf_writer *w, const char *key, ctype v)                      \
    {                                                                              \
        gguf_kv *kv = new_kv(w, key, gv);                                          \
        if (!kv) return w->err;                                                    \
        kv->v.field = v;                                                           \
        return IMCAP_OK;                                                           \
    }
GGUF_SETTER(gguf_set_u32, uint32_t, GV_U32, u32)
GGUF_SETTER(gguf_set_i32, int32_t, GV_I32, i32)
GGUF_SETTER(gguf_set_u64, uint64_t, GV_U64, u64)
GGUF_SETTER(gguf_set_f32, float, GV_F32, f32)

imcap_status gguf_set_str(gguf_writer *w, const char *key, const char *v)
{
    gguf_kv *kv = new_kv(w, key, GV_STR);
    if (!kv) return w->err;
    if (!(kv->str = imcap_strdup(v))) return w->err = IMCAP_E_NOMEM;
    return IMCAP_OK;
}

static imcap_status set_arr(gguf_writer *w, const char *key, uint32_t at, const void *v, size_t n, size_t es)
{
    gguf_kv *kv = new_kv(w, key, GV_ARR);
    if (!kv) return w->err;
    kv->arr_type = at;
    kv->n = n;
    if (!(kv->arr = imcap_alloc(n ? n : 1, es))) return w->err = IMCAP_E_NOMEM;
    if (n) memcpy(kv->arr, v, n * es);
    return IMCAP_OK;
}

imcap_status gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    return set_arr(w, key, GV_I32, v, n, 4);
}

imcap_status gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n)
{
    return set_arr(w, key, GV_F32, v, n, 4);
}

imcap_status gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n)
{
    gguf_kv *kv = new_kv(w, key, GV_ARR);
    if (!kv) return w->err;
    kv->arr_type = GV_STR;
    char **a = calloc(n + 1, sizeof *a);
    if (!a) return w->err = imcap_fail(IMCAP_E_NOMEM, "gguf: out of memory");
    kv->arr = a;
    kv->n = n;
    for (size_t i = 0; i < n; i++)
        if (!(a[i] = imcap_strdup(v[i]))) return w->err = IMCAP_E_NOMEM;
    return IMCAP_OK;
}

imcap_status gguf_add_tensor(gguf_writer *w, const char *name, gguf_tensor_type type, int n_dims,
                             const int64_t *shape, const void *data)
{
    if (w->err) return w->err;
    size_t es = type_size(type), count = 1;
    if (!es || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return w->err = imcap_fail(IMCAP_E_ARG, "gguf: tensor %s: bad type or rank", name);
    for (int d = 0; d < n_dims; d++)
        if (shape[d] <= 0 || !imcap_mul_size(count, (size_t)shape[d], &count))
            return w->err = imcap_fail(IMCAP_E_ARG, "gguf: tensor %s: bad shape", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return w->err = imcap_fail(IMCAP_E_ARG, "gguf: tensor %s added twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return w->err = imcap_fail(IMCAP_E_NOMEM, "gguf: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = imcap_strdup(name))) return w->err = IMCAP_E_NOMEM;
    t->type = type;
    t->n_dims = n_dims;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    t->n_bytes = count * es;
    t->data = data;
    w->n_t++;
    return IMCAP_OK;
}

imcap_status gguf_writer_copy(gguf_writer *w, const gguf_file *f)
{
    imcap_status s = IMCAP_OK;
    for (size_t i = 0; i < f->n_kv && !s; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (!strcmp(kv->key, GGUF_CRC_KEY)) continue; /* recomputed by gguf_write */
        if (!strcmp(kv->key, "general.alignment") && !(kv->type == GV_U32 && kv->v.u32 == GGUF_ALIGN))
            return w->err = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: alignment other than %d", f->path, GGUF_ALIGN);
        switch (kv->type) {
        case GV_U32: s = gguf_set_u32(w, kv->key, kv->v.u32); break;
        case GV_I32: s = gguf_set_i32(w, kv->key, kv->v.i32); break;
        case GV_F32: s = gguf_set_f32(w, kv->key, kv->v.f32); break;
        case GV_U64: s = gguf_set_u64(w, kv->key, kv->v.u64); break;
        case GV_STR: s = gguf_set_str(w, kv->key, kv->str); break;
        case GV_ARR:
            if (kv->arr_type == GV_I32) s = gguf_set_arr_i32(w, kv->key, kv->arr, (size_t)kv->n);
            else if (kv->arr_type == GV_F32) s = gguf_set_arr_f32(w, kv->key, kv->arr, (size_t)kv->n);
            else if (kv->arr_type == GV_STR) s = gguf_set_arr_str(w, kv->key, (const char *const *)kv->arr, (size_t)kv->n);
            else s = w->err = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: key %s: array type %u is not written by imcap",
                                         f->path, kv->key, kv->arr_type);
            break;
        default:
            s = w->err = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: key %s: value type %u is not written by imcap", f->path,
                                    kv->key, kv->type);
        }
    }
    for (size_t i = 0; i < f->n_tensors && !s; i++) {
        const gguf_tensor *t = &f->tensors[i];
        int64_t shape[GGUF_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        s = gguf_add_tensor(w, t->name, t->type, t->n_dims, shape, t->data);
    }
    return s;
}

static imcap_status w_u32(imcap_atomic_file *af, uint32_t v) { return imcap_atomic_write(af, &v, 4); }
static imcap_status w_u64(imcap_atomic_file *af, uint64_t v) { return imcap_atomic_write(af, &v, 8); }
static imcap_status w_str(imcap_atomic_file *af, const char *s)
{
    size_t n = strlen(s);
    imcap_status st = w_u64(af, n);
    return st ? st : imcap_atomic_write(af, s, n);
}

static imcap_status write_kv(imcap_atomic_file *af, const gguf_kv *kv)
{
    imcap_status s;
    if ((s = w_str(af, kv->key)) || (s = w_u32(af, kv->type))) return s;
    switch (kv->type) {
    case GV_STR: return w_str(af, kv->str);
    case GV_U64: return w_u64(af, kv->v.u64);
    case GV_ARR:
        if ((s = w_u32(af, kv->arr_type)) || (s = w_u64(af, kv->n))) return s;
        if (kv->arr_type == GV_STR) {
            for (uint64_t i = 0; i < kv->n; i++)
                if ((s = w_str(af, ((char **)kv->arr)[i]))) return s;
            return IMCAP_OK;
        }
        return imcap_atomic_write(af, kv->arr, (size_t)kv->n * 4);
    default: return w_u32(af, kv->v.u32);
    }
}

imcap_status gguf_write(gguf_writer *w, const char *path)
{
    if (w->err) return w->err;
    static const unsigned char zeros[GGUF_ALIGN] = {0};
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (s) return s;
    long pos;
    /* The checksum key, one CRC-32 per tensor, written after the caller's keys. */
    int32_t *crcs = imcap_alloc(w->n_t ? w->n_t : 1, sizeof *crcs);
    if (!crcs) {
        imcap_atomic_abort(&af);
        return IMCAP_E_NOMEM;
    }
    for (size_t i = 0; i < w->n_t; i++) crcs[i] = (int32_t)imcap_crc32(0, w->t[i].data, w->t[i].n_bytes);
    const gguf_kv crc_kv = {.key = GGUF_CRC_KEY, .type = GV_ARR, .arr_type = GV_I32, .n = w->n_t, .arr = crcs};
    if ((s = imcap_atomic_write(&af, "GGUF", 4)) || (s = w_u32(&af, 3)) || (s = w_u64(&af, w->n_t)) ||
        (s = w_u64(&af, w->n_kv + 1)))
        goto fail;
    for (size_t i = 0; i < w->n_kv; i++)
        if ((s = write_kv(&af, &w->kv[i]))) goto fail;
    if ((s = write_kv(&af, &crc_kv))) goto fail;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if ((s = w_str(&af, t->name)) || (s = w_u32(&af, (uint32_t)t->n_dims))) goto fail;
        for (int d = t->n_dims - 1; d >= 0; d--)
            if ((s = w_u64(&af, (uint64_t)t->shape[d]))) goto fail;
        if ((s = w_u32(&af, (uint32_t)t->type)) || (s = w_u64(&af, off))) goto fail;
        off += (t->n_bytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    pos = ftell(af.fp);
    if (pos < 0) {
        s = imcap_fail(IMCAP_E_IO, "%s: ftell failed", path);
        goto fail;
    }
    if ((s = imcap_atomic_write(&af, zeros, (size_t)((GGUF_ALIGN - pos % GGUF_ALIGN) % GGUF_ALIGN)))) goto fail;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if ((s = imcap_atomic_write(&af, t->data, t->n_bytes)) ||
            (s = imcap_atomic_write(&af, zeros, (GGUF_ALIGN - t->n_bytes % GGUF_ALIGN) % GGUF_ALIGN)))
            goto fail;
    }
    imcap_free(crcs);
    return imcap_atomic_commit(&af);
fail:
    imcap_free(crcs);
    imcap_atomic_abort(&af);
    return s;
}
