/*
 * strtab.c - growable arrays, a string arena, a string -> int64 hash map
 * (FNV-1a, linear probing) and a UTF-8 validator.
 */
#include "strtab.h"

#include <stdlib.h>
#include <string.h>

imcap_status imcap_grow(void **p, size_t *cap, size_t need, size_t elsz)
{
    if (need <= *cap) return IMCAP_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return imcap_fail(IMCAP_E_NOMEM, "array of %zu elements overflows", need);
        nc *= 2;
    }
    size_t bytes;
    if (!imcap_mul_size(nc, elsz, &bytes))
        return imcap_fail(IMCAP_E_NOMEM, "array of %zu x %zu bytes overflows", nc, elsz);
    void *q = realloc(*p, bytes);
    if (!q) return imcap_fail(IMCAP_E_NOMEM, "out of memory growing an array to %zu bytes", bytes);
    *p = q;
    *cap = nc;
    return IMCAP_OK;
}

struct imcap_arena_block {
    imcap_arena_block *next;
    size_t used, size;
    char data[];
};

#define ARENA_BLOCK 65536

char *imcap_arena_strndup(imcap_arena *a, const char *s, size_t n)
{
    if (n >= SIZE_MAX / 2) {
        imcap_fail(IMCAP_E_NOMEM, "string of %zu bytes is too large", n);
        return NULL;
    }
    imcap_arena_block *b = a->head;
    if (!b || b->size - b->used < n + 1) {
        size_t size = n + 1 > ARENA_BLOCK ? n + 1 : ARENA_BLOCK;
        b = malloc(sizeof *b + size);
        if (!b) {
            imcap_fail(IMCAP_E_NOMEM, "out of memory storing a string of %zu bytes", n);
            return NULL;
        }
        b->used = 0;
        b->size = size;
        /* A block opened for one large string goes behind the current one so
         * that the current block keeps filling up. */
        if (a->head && size > ARENA_BLOCK) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    char *d = b->data + b->used;
    memcpy(d, s, n);
    d[n] = 0;
    b->used += n + 1;
    return d;
}

void imcap_arena_free(imcap_arena *a)
{
    imcap_arena_block *b = a->head;
    while (b) {
        imcap_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static imcap_status map_alloc(imcap_strmap *m, size_t cap)
{
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for a hash table of %zu slots", cap);
    }
    m->cap = cap;
    m->n = 0;
    return IMCAP_OK;
}

imcap_status imcap_strmap_init(imcap_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap / 2 < expected) {
        if (cap > SIZE_MAX / 4) return imcap_fail(IMCAP_E_NOMEM, "hash table of %zu keys overflows", expected);
        cap *= 2;
    }
    return map_alloc(m, cap);
}

void imcap_strmap_free(imcap_strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const imcap_strmap *m, const char *key)
{
    size_t mask = m->cap - 1, i = (size_t)hash_str(key) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

int64_t imcap_strmap_get(const imcap_strmap *m, const char *key)
{
    if (!m->cap) return -1;
    size_t i = find_slot(m, key);
    return m->keys[i] ? m->vals[i] : -1;
}

static imcap_status rehash(imcap_strmap *m)
{
    if (m->cap > SIZE_MAX / 2 / sizeof(int64_t)) return imcap_fail(IMCAP_E_NOMEM, "hash table too large");
    imcap_strmap old = *m;
    imcap_status st = map_alloc(m, old.cap * 2);
    if (st) {
        *m = old;
        return st;
    }
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.keys[i]) continue;
        size_t j = find_slot(m, old.keys[i]);
        m->keys[j] = old.keys[i];
        m->vals[j] = old.vals[i];
    }
    m->n = old.n;
    free(old.keys);
    free(old.vals);
    return IMCAP_OK;
}

imcap_status imcap_strmap_slot(imcap_strmap *m, const char *key, int64_t **slot)
{
    if (!m->cap) {
        imcap_status st = imcap_strmap_init(m, 16);
        if (st) return st;
    }
    size_t i = find_slot(m, key);
    if (!m->keys[i]) {
        if ((m->n + 1) * 2 > m->cap) {
            imcap_status st = rehash(m);
            if (st) return st;
            i = find_slot(m, key);
        }
        m->keys[i] = key;
        m->vals[i] = 0;
        m->n++;
    }
    *slot = &m->vals[i];
    return IMCAP_OK;
}

imcap_status imcap_strmap_put(imcap_strmap *m, const char *key, int64_t val, int64_t *old)
{
    if (m->cap) {
        size_t i = find_slot(m, key);
        if (m->keys[i]) {
            if (old) *old = m->vals[i];
            return IMCAP_OK;
        }
    }
    int64_t *slot;
    imcap_status st = imcap_strmap_slot(m, key, &slot);
    if (st) return st;
    *slot = val;
    if (old) *old = -1;
    return IMCAP_OK;
}

size_t imcap_utf8_valid_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned min;
        if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
        else return i;
        if (n - i < len) return i;
        unsigned cp = c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}
