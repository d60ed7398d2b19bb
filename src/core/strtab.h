/*
 * strtab.h - string storage shared by the text and embeddings modules:
 * a growable array helper, an arena of stable strings and an open-addressing
 * hash map from strings to int64 values (internal, not installed).
 */
#ifndef IMCAP_STRTAB_H
#define IMCAP_STRTAB_H

#include "internal.h"

#define IMCAP_XSTR(x) #x
#define IMCAP_STR(x) IMCAP_XSTR(x)

/* Make room for `need` elements of elsz bytes in the malloc'd array *p of
 * capacity *cap (grows geometrically, overflow-checked; release with free()). */
imcap_status imcap_grow(void **p, size_t *cap, size_t need, size_t elsz);

/* Arena of NUL-terminated strings that never move once stored. */
typedef struct imcap_arena_block imcap_arena_block;
typedef struct imcap_arena {
    imcap_arena_block *head;
} imcap_arena;
/* Copy n bytes of s plus a NUL into the arena; NULL (with message) on failure. */
char *imcap_arena_strndup(imcap_arena *a, const char *s, size_t n);
void imcap_arena_free(imcap_arena *a);

/* Map from string keys (not copied: they must outlive the map) to int64
 * values >= 0 (get returns -1 for an absent key). */
typedef struct imcap_strmap {
    const char **keys; /* [cap], NULL = empty slot */
    int64_t *vals;     /* [cap] */
    size_t cap, n;
} imcap_strmap;
imcap_status imcap_strmap_init(imcap_strmap *m, size_t expected);
void imcap_strmap_free(imcap_strmap *m);
/* Value stored for key, or -1 when absent. */
int64_t imcap_strmap_get(const imcap_strmap *m, const char *key);
/* Insert key -> val. When the key is already present nothing changes and
 * *old (if not NULL) receives its value; otherwise *old = -1. */
imcap_status imcap_strmap_put(imcap_strmap *m, const char *key, int64_t val, int64_t *old);
/* Pointer to the value slot of key (inserting it with value 0 if absent). */
imcap_status imcap_strmap_slot(imcap_strmap *m, const char *key, int64_t **slot);

/* Length of the longest valid UTF-8 prefix of s[0..n) (n when all valid). */
size_t imcap_utf8_valid_prefix(const char *s, size_t n);

#endif
