/*
 * tokenizer.c - the recipe's tokenizer: lowercase, split on runs of
 * non-word characters, drop empty tokens. Word bytes are [A-Za-z0-9_] and
 * every byte >= 0x80, so a UTF-8 character is never split.
 */
#include "strtab.h"

#include <stdlib.h>
#include <string.h>

static int is_word(unsigned char c)
{
    return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

imcap_status imcap_tokenize(const char *text, char ***tokens, size_t *n_out)
{
    *tokens = NULL;
    *n_out = 0;
    if (!text) return imcap_fail(IMCAP_E_ARG, "imcap_tokenize: text is NULL");
    size_t n = 0, len = strlen(text);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++)
        if (is_word(s[i]) && (i == 0 || !is_word(s[i - 1]))) n++;
    /* One block: n + 1 pointers, then the tokens (at most len + n bytes). */
    size_t bytes, ptrs;
    if (!imcap_mul_size(n + 1, sizeof(char *), &ptrs) || !imcap_add_size(ptrs, len + n + 1, &bytes))
        return imcap_fail(IMCAP_E_NOMEM, "imcap_tokenize: text of %zu bytes is too long", len);
    char **out = malloc(bytes);
    if (!out) return imcap_fail(IMCAP_E_NOMEM, "imcap_tokenize: out of memory");
    char *w = (char *)(out + n + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (!is_word(s[i])) {
            i++;
            continue;
        }
        out[k++] = w;
        for (; i < len && is_word(s[i]); i++) *w++ = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
        *w++ = 0;
    }
    out[n] = NULL;
    *tokens = out;
    *n_out = n;
    return IMCAP_OK;
}
