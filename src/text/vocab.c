/*
 * vocab.c - the vocabulary: built from training captions (words with count
 * >= min_count plus #PAD# #UNK# #START# #END#, byte-order sorted as Python's
 * sorted()), rebuilt from a word list, plain-text save/load, captions to
 * index arrays and back.
 */
#include "strtab.h"

#include <stdlib.h>
#include <string.h>

#define VOCAB_MAX_WORDS 10000000
#define VOCAB_WORD_MAX 1024
#define VOCAB_FILE_MAX ((size_t)256 << 20)

struct imcap_vocab {
    size_t n;
    const char **words; /* [n], index order */
    imcap_arena arena;
    imcap_strmap index; /* word -> index */
    int32_t pad, unk, start, end;
};

static const char *const specials[4] = {IMCAP_TOK_PAD, IMCAP_TOK_UNK, IMCAP_TOK_START, IMCAP_TOK_END};

void imcap_vocab_free(imcap_vocab *v)
{
    if (!v) return;
    free(v->words);
    imcap_arena_free(&v->arena);
    imcap_strmap_free(&v->index);
    free(v);
}

/* Problem with a word, or NULL. */
static const char *check_word(const char *w, size_t len)
{
    if (len == 0) return "empty word";
    if (len > VOCAB_WORD_MAX) return "word longer than " IMCAP_STR(VOCAB_WORD_MAX) " bytes";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)w[i] <= ' ') return "word contains a space or control character";
    return NULL;
}

/* Builds from words (copied) in the given order; `where` names the source
 * in messages and lines (may be NULL) gives each word's line. */
static imcap_status vocab_make(const char *const *words, size_t n, const char *where, const size_t *lines,
                               imcap_vocab **out)
{
    *out = NULL;
    if (n > VOCAB_MAX_WORDS) return imcap_fail(IMCAP_E_FORMAT, "%s: %zu words is more than the limit of %d", where, n, VOCAB_MAX_WORDS);
    imcap_vocab *v = calloc(1, sizeof *v);
    if (!v) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a vocabulary");
    imcap_status st = IMCAP_OK;
    v->words = calloc(n ? n : 1, sizeof *v->words);
    if (!v->words) st = imcap_fail(IMCAP_E_NOMEM, "out of memory for a vocabulary of %zu words", n);
    if (!st) st = imcap_strmap_init(&v->index, n);
    for (size_t i = 0; i < n && !st; i++) {
        const char *problem = check_word(words[i], strlen(words[i]));
        if (problem) {
            if (lines) st = imcap_fail(IMCAP_E_FORMAT, "%s:%zu: %s", where, lines[i], problem);
            else st = imcap_fail(IMCAP_E_FORMAT, "%s: word %zu: %s", where, i, problem);
            break;
        }
        char *w = imcap_arena_strndup(&v->arena, words[i], strlen(words[i]));
        if (!w) {
            st = IMCAP_E_NOMEM;
            break;
        }
        int64_t old;
        st = imcap_strmap_put(&v->index, w, (int64_t)i, &old);
        if (!st && old >= 0) {
            if (lines)
                st = imcap_fail(IMCAP_E_FORMAT, "%s:%zu: word '%s' repeats line %zu", where, lines[i], w, lines[old]);
            else
                st = imcap_fail(IMCAP_E_FORMAT, "%s: word '%s' appears twice (indices %lld and %zu)", where, w,
                                (long long)old, i);
        }
        v->words[i] = w;
    }
    v->n = n;
    int32_t *ids[4] = {&v->pad, &v->unk, &v->start, &v->end};
    for (int k = 0; k < 4 && !st; k++) {
        int64_t idx = imcap_strmap_get(&v->index, specials[k]);
        if (idx < 0) st = imcap_fail(IMCAP_E_FORMAT, "%s: the special token %s is missing", where, specials[k]);
        *ids[k] = (int32_t)idx;
    }
    if (st) {
        imcap_vocab_free(v);
        return st;
    }
    *out = v;
    return IMCAP_OK;
}

imcap_status imcap_vocab_from_words(const char *const *words, size_t n, imcap_vocab **out)
{
    return vocab_make(words, n, "vocabulary", NULL, out);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

imcap_status imcap_vocab_build(const imcap_captions *train, int min_count, imcap_vocab **out)
{
    *out = NULL;
    if (min_count < 1) return imcap_fail(IMCAP_E_ARG, "vocabulary: min_count must be >= 1 (got %d)", min_count);
    imcap_arena arena = {0};
    imcap_strmap counts = {0};
    const char **keep = NULL;
    size_t n_keep = 0, cap_keep = 0;
    imcap_status st = imcap_strmap_init(&counts, 4096);
    for (size_t i = 0; i < imcap_captions_n_images(train) && !st; i++)
        for (size_t k = 0; k < imcap_captions_count(train, i) && !st; k++) {
            char **tok;
            size_t nt;
            st = imcap_tokenize(imcap_captions_text(train, i, k), &tok, &nt);
            for (size_t t = 0; t < nt && !st; t++) {
                int64_t *slot;
                if (imcap_strmap_get(&counts, tok[t]) < 0) {
                    char *w = imcap_arena_strndup(&arena, tok[t], strlen(tok[t]));
                    if (!w) {
                        st = IMCAP_E_NOMEM;
                        break;
                    }
                    st = imcap_strmap_slot(&counts, w, &slot);
                } else {
                    st = imcap_strmap_slot(&counts, tok[t], &slot);
                }
                if (!st) ++*slot;
            }
            free(tok);
        }
    for (size_t i = 0; i < counts.cap && !st; i++) {
        if (!counts.keys[i] || counts.vals[i] < min_count) continue;
        st = imcap_grow((void **)&keep, &cap_keep, n_keep + 1, sizeof *keep);
        if (!st) keep[n_keep++] = counts.keys[i];
    }
    for (int k = 0; k < 4 && !st; k++) {
        st = imcap_grow((void **)&keep, &cap_keep, n_keep + 1, sizeof *keep);
        if (!st) keep[n_keep++] = specials[k];
    }
    if (!st) {
        qsort(keep, n_keep, sizeof *keep, cmp_str);
        st = vocab_make(keep, n_keep, "vocabulary", NULL, out);
    }
    free(keep);
    imcap_strmap_free(&counts);
    imcap_arena_free(&arena);
    return st;
}

imcap_status imcap_vocab_save_txt(const imcap_vocab *v, const char *path)
{
    imcap_atomic_file af;
    imcap_status st = imcap_atomic_open(&af, path);
    if (st) return st;
    for (size_t i = 0; i < v->n && !st; i++) {
        st = imcap_atomic_write(&af, v->words[i], strlen(v->words[i]));
        if (!st) st = imcap_atomic_write(&af, "\n", 1);
    }
    if (st) {
        imcap_atomic_abort(&af);
        return st;
    }
    return imcap_atomic_commit(&af);
}

imcap_status imcap_vocab_load_txt(const char *path, imcap_vocab **out)
{
    *out = NULL;
    char *d;
    size_t len;
    imcap_status st = imcap_read_file(path, VOCAB_FILE_MAX, &d, &len);
    if (st) return st;
    const char *nul = memchr(d, 0, len);
    if (nul) {
        size_t line = 1;
        for (const char *p = d; p < nul; p++) line += *p == '\n';
        free(d);
        return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: NUL byte in a text file", path, line);
    }
    const char **words = NULL;
    size_t *lines = NULL, n = 0, cap = 0, cap_l = 0, line = 0;
    char *p = d, *end = d + len;
    while (p < end && !st) {
        line++;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && e[-1] == '\r') e--;
        *e = 0;
        st = imcap_grow((void **)&words, &cap, n + 1, sizeof *words);
        if (!st) st = imcap_grow((void **)&lines, &cap_l, n + 1, sizeof *lines);
        if (!st) {
            words[n] = p;
            lines[n++] = line;
        }
        p = nl ? nl + 1 : end;
    }
    if (!st) st = vocab_make(words, n, path, lines, out);
    free(words);
    free(lines);
    free(d);
    return st;
}

size_t imcap_vocab_size(const imcap_vocab *v) { return v->n; }
const char *const *imcap_vocab_words(const imcap_vocab *v) { return v->words; }
const char *imcap_vocab_word(const imcap_vocab *v, int32_t i) { return i >= 0 && (size_t)i < v->n ? v->words[i] : NULL; }
int32_t imcap_vocab_find(const imcap_vocab *v, const char *w) { return (int32_t)imcap_strmap_get(&v->index, w); }
int32_t imcap_vocab_pad(const imcap_vocab *v) { return v->pad; }
int32_t imcap_vocab_unk(const imcap_vocab *v) { return v->unk; }
int32_t imcap_vocab_start(const imcap_vocab *v) { return v->start; }
int32_t imcap_vocab_end(const imcap_vocab *v) { return v->end; }

imcap_status imcap_vocab_encode(const imcap_vocab *v, const char *caption, int32_t **ids_out, size_t *n_out)
{
    *ids_out = NULL;
    *n_out = 0;
    char **tok;
    size_t nt;
    imcap_status st = imcap_tokenize(caption, &tok, &nt);
    if (st) return st;
    int32_t *ids = malloc((nt + 2) * sizeof *ids);
    if (!ids) {
        free(tok);
        return imcap_fail(IMCAP_E_NOMEM, "out of memory encoding a caption of %zu tokens", nt);
    }
    ids[0] = v->start;
    for (size_t t = 0; t < nt; t++) {
        int32_t id = imcap_vocab_find(v, tok[t]);
        ids[t + 1] = id >= 0 ? id : v->unk;
    }
    ids[nt + 1] = v->end;
    free(tok);
    *ids_out = ids;
    *n_out = nt + 2;
    return IMCAP_OK;
}

imcap_status imcap_vocab_decode(const imcap_vocab *v, const int32_t *ids, size_t n, char **text)
{
    *text = NULL;
    size_t bytes = 1;
    for (size_t i = 0; i < n && ids[i] != v->end; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= v->n)
            return imcap_fail(IMCAP_E_ARG, "vocabulary: index %d at position %zu is out of range (size %zu)", (int)ids[i],
                              i, v->n);
        bytes += strlen(v->words[ids[i]]) + 1;
    }
    char *s = malloc(bytes), *w = s;
    if (!s) return imcap_fail(IMCAP_E_NOMEM, "out of memory decoding %zu tokens", n);
    for (size_t i = 0; i < n && ids[i] != v->end; i++) {
        if (ids[i] == v->start || ids[i] == v->pad) continue;
        if (w != s) *w++ = ' ';
        size_t l = strlen(v->words[ids[i]]);
        memcpy(w, v->words[ids[i]], l);
        w += l;
    }
    *w = 0;
    *text = s;
    return IMCAP_OK;
}
