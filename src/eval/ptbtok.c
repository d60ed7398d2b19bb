/*
 * ptbtok.c - Penn-Treebank-style tokenization as the COCO caption evaluation
 * toolkit applies it before scoring (Stanford PTBTokenizer 3.4.1 run with
 * -preserveLines -lowerCase, then removal of punctuation tokens).
 *
 * Written from the documented PTB conventions, not from the Java lexer:
 *   - words are runs of letters and digits; a single hyphen or underscore
 *     between two of them joins ("twin-hulled", "p-40", "side-by-side");
 *     so do '.', ',' and ':' between digits ("1:20", "3.5", "1,000"), '.'
 *     between letters ("u.s.a", "amazon.com"), '/' between word characters
 *     ("refrigerator/freezer", "1/2"), '&' between capitals ("AT&T") and an
 *     apostrophe that does not start a clitic ("o'clock");
 *   - clitics are split off: 's 'm 'd 're 've 'll and n't ("does n't",
 *     "ca n't", "horse 's", "'em"); "cannot", "gonna", "gotta", "wanna", "lemme",
 *     "gimme" are split ("can not", "gon na");
 *   - a final period stays on known abbreviations and acronyms ("st.",
 *     "etc.", "u.s.") and on any word right before , ; : ("bat.,");
 *     otherwise it is its own token;
 *   - ( ) [ ] { } become -LRB- -RRB- -LRB- -RRB- -LCB- -RCB-; curly and
 *     straight quotes become `` '' ` '; dashes and runs of hyphens become --;
 *     "..." and U+2026 become ...; &amp; &lt; &gt; &quot; are decoded;
 *   - other symbols ($ # % & @ * / + = ...) are tokens of their own (a run
 *     of ? and ! is one token, so "?!" or "!!" is not a removed punctuation
 *     token, as in the toolkit); symbols PTB cannot tokenize (emoji,
 *     controls, private use) are dropped;
 *   - like PTBTokenizer 3.4.1's output seen through the toolkit, British
 *     spellings are kept ("grey" stays "grey") and / and * are not escaped.
 * Tokens are then lower-cased (ASCII, Latin-1, Latin Extended-A, Greek,
 * Cyrillic) and the toolkit's punctuation tokens '' ' `` ` . ? ! , : - -- ...
 * ; are removed. As in the toolkit, the list is compared after lower-casing,
 * so bracket tokens survive as "-lrb-", "-rrb-", "-lcb-", "-rcb-".
 */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one code point at s[i] (i < n); invalid bytes decode as U+FFFD of
 * length 1 so that any input makes progress. */
static uint32_t utf8_get(const char *s, size_t n, size_t i, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t left = n - i;
    unsigned c = u[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    int k = (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2 : (c >= 0xF0 && c <= 0xF4) ? 3 : 0;
    if (k == 0 || (size_t)k + 1 > left) {
        *len = 1;
        return 0xFFFD;
    }
    uint32_t cp = c & (0x3F >> k);
    for (int j = 1; j <= k; j++) {
        if ((u[j] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (u[j] & 0x3F);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
        *len = 1;
        return 0xFFFD;
    }
    *len = (size_t)k + 1;
    return cp;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------ character classes */

static int is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* Letters (and letter-like marks) of the scripts a caption may use. Symbol
 * and punctuation blocks are excluded; everything else that is assigned to a
 * script block counts as a letter. */
static int is_letter(uint32_t c)
{
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c == 0xAA || c == 0xB5 || c == 0xBA || c == 0xAD) return 1; /* ª µ º, soft hyphen */
    if (c < 0xC0) return 0;
    if (c == 0xD7 || c == 0xF7) return 0;                          /* × ÷ */
    if (c < 0x2000) {
        /* Greek ';' and ano teleia, Armenian and Hebrew punctuation, Arabic
         * comma / semicolon / question mark, Devanagari dandas */
        if (c == 0x37E || c == 0x387 || (c >= 0x55A && c <= 0x55F) || c == 0x589 || c == 0x5BE ||
            c == 0x5C0 || c == 0x5C3 || c == 0x5C6 || c == 0x5F3 || c == 0x5F4 || c == 0x60C ||
            c == 0x61B || c == 0x61F || c == 0x6D4 || c == 0x964 || c == 0x965)
            return 0;
        return 1;
    }
    if (c >= 0x2C00 && c <= 0x2DFF) return 1;     /* Glagolitic, Coptic, Georgian sup., ... */
    if (c >= 0x3040 && c <= 0x9FFF) return c != 0x30FB; /* kana, CJK ideographs */
    if (c >= 0xA000 && c <= 0xD7FF) return 1;     /* Yi, Hangul, ... */
    if (c >= 0xF900 && c <= 0xFAFF) return 1;     /* CJK compatibility ideographs */
    if (c >= 0xFB00 && c <= 0xFDFF) return 1;     /* ligatures, Hebrew/Arabic presentation */
    if (c >= 0xFE70 && c <= 0xFEFE) return 1;
    if ((c >= 0xFF10 && c <= 0xFF19) || (c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A) ||
        (c >= 0xFF66 && c <= 0xFFDC))
        return 1;                                  /* full-width digits and letters, half-width kana */
    if (c >= 0x10000 && c < 0x1F000) return 1;     /* historic scripts, math alphanumerics */
    if (c >= 0x20000 && c <= 0x3FFFF) return 1;    /* CJK extensions */
    return 0;
}

static int is_word_char(uint32_t c) { return is_digit(c) || is_letter(c); }

static int is_upper_ascii(uint32_t c) { return c >= 'A' && c <= 'Z'; }

/* Apostrophe-like characters: ASCII ', right single quote, acute accent. */
static int is_apos(uint32_t c) { return c == '\'' || c == 0x2019 || c == 0xB4; }

/* Symbols that PTB cannot tokenize and drops: controls, private use,
 * surrogate replacement, emoji and pictographs, variation selectors. */
static int is_dropped(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xFFFD || (c >= 0xE000 && c <= 0xF8FF) ||
           (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0x1F000 && c <= 0x1FFFF) || c == 0x200D ||
           c >= 0xE0000;
}

static uint32_t to_lower(uint32_t c)
{
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
    if (c >= 0x100 && c <= 0x137) return (c & 1) ? c : c + 1;
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return (c & 1) ? c : c + 1;
    if (c == 0x178) return 0xFF;
    if (c == 0x179 || c == 0x17B || c == 0x17D) return c + 1;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x460 && c <= 0x4FF && !(c >= 0x482 && c <= 0x489) && c != 0x4C0) {
        if (c >= 0x4C1 && c <= 0x4CE) return (c & 1) ? c + 1 : c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x1E00 && c <= 0x1EFF) return (c & 1) ? c : c + 1;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

/* ---------------------------------------------------------- abbreviations */

/* Words that keep a following period ("st.", "etc."): titles, street and
 * company abbreviations, months, weekdays, US states, Latin and misc. */
static const char *const k_abbrev[] = {
    "mr", "mrs", "ms", "mx", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "gov", "govs",
    "gen", "col", "lt", "maj", "sgt", "cpl", "pvt", "capt", "adm", "rev", "hon", "pres", "messrs",
    "lieut", "brig", "cmdr", "supt", "supts", "asst", "assoc", "msgr", "mme", "mlle",
    "st", "sta", "ste", "mt", "ft", "ave", "rd", "blvd", "dept", "jr", "sr", "bros", "esq",
    "inc", "co", "cos", "corp", "ltd", "plc", "assn", "univ", "intl", "natl", "mfg", "mtg", "govt",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "tues", "wed", "thu", "thurs", "fri",
    "ala", "ariz", "calif", "colo", "conn", "ct", "dak", "fla", "ga", "ind", "kan", "kans", "ky",
    "md", "mich", "minn", "mo", "mont", "neb", "nev", "okla", "penn", "tenn", "va", "vt", "wis",
    "wisc", "wyo",
    "etc", "al", "vs", "viz", "cf", "eg", "seq", "est", "ext", "tel", "sq", "wm", "jos", "bldg",
    "orig", "incl", "tbsp", "tsp", "lb", "min", "max", "avg",
};
/* Abbreviations that are also common words: only when capitalised ("Ill.",
 * "Wash.", "Miss."), as state names. */
static const char *const k_abbrev_cap[] = {
    "ill", "miss", "wash", "mass", "ore", "pa", "del", "la", "ark", "tex", "az",
};
/* Abbreviations that keep their period only before a number ("no. 5"). */
static const char *const k_abbrev_num[] = {
    "no", "nos", "nr", "vol", "vols", "fig", "figs", "ch", "chs", "sec", "sect", "art", "arts",
    "para", "pp", "op", "pt", "apt", "ca", "rs", "res", "prop",
};

static int in_list(const char *w, size_t n, const char *const *list, size_t count)
{
    char low[16];
    if (n == 0 || n >= sizeof low) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (ch >= 0x80) return 0;
        low[i] = (char)tolower(ch);
    }
    low[n] = 0;
    for (size_t i = 0; i < count; i++)
        if (!strcmp(low, list[i])) return 1;
    return 0;
}

/* "u.s", "a.m", "e.g": single letters separated by periods. */
static int is_acronym(const char *w, size_t n)
{
    if (n < 3) return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)w[i];
        if (i % 2 == 0 ? !isalpha(c) : c != '.') return 0;
    }
    return n % 2 == 1;
}

/* ------------------------------------------------------------ token buffer */

typedef struct tokbuf {
    char *out;    /* output, tokens separated by one space */
    size_t len;   /* bytes used */
    size_t cap;   /* bytes allocated */
    int failed;   /* allocation failed */
} tokbuf;

static int tb_reserve(tokbuf *tb, size_t more)
{
    if (tb->failed) return 0;
    size_t need;
    if (!imcap_add_size(tb->len, more + 2, &need)) {
        tb->failed = 1;
        return 0;
    }
    if (need <= tb->cap) return 1;
    size_t cap = tb->cap ? tb->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            tb->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    char *p = realloc(tb->out, cap);
    if (!p) {
        tb->failed = 1;
        return 0;
    }
    tb->out = p;
    tb->cap = cap;
    return 1;
}

/* The toolkit's punctuation list, compared after lower-casing. */
static int is_removed_punct(const char *t, size_t n)
{
    static const char *const punct[] = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"};
    for (size_t i = 0; i < sizeof punct / sizeof punct[0]; i++)
        if (strlen(punct[i]) == n && !memcmp(punct[i], t, n)) return 1;
    return 0;
}

/* Emit src[0..n) as one token: apostrophes normalised to ASCII, letters
 * lower-cased, and dropped if it is a punctuation token. */
static void emit(tokbuf *tb, const char *src, size_t n)
{
    if (n == 0 || !tb_reserve(tb, 4 * n + 1)) return;
    size_t start = tb->len + (tb->len ? 1 : 0);
    size_t o = start;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t c = utf8_get(src, n, i, &l);
        i += l;
        if (is_dropped(c)) continue;
        if (is_apos(c)) c = '\'';
        o += utf8_put(tb->out + o, to_lower(c));
    }
    if (o == start || is_removed_punct(tb->out + start, o - start)) return;
    if (tb->len) tb->out[tb->len] = ' ';
    tb->len = o;
}

static void emit_str(tokbuf *tb, const char *s) { emit(tb, s, strlen(s)); }

/* ----------------------------------------------------------------- lexer */

typedef struct lexer {
    const char *s;
    size_t n;
} lexer;

static uint32_t peek(const lexer *lx, size_t i, size_t *len)
{
    if (i >= lx->n) {
        *len = 0;
        return 0;
    }
    return utf8_get(lx->s, lx->n, i, len);
}

static uint32_t cp_at(const lexer *lx, size_t i)
{
    size_t l;
    return peek(lx, i, &l);
}

/* Clitic starting at the apostrophe at i: returns its length in bytes
 * (apostrophe included) if it is 's 'm 'd 're 've 'll followed by a
 * non-word character, else 0. */
static size_t clitic_len(const lexer *lx, size_t i)
{
    size_t al;
    uint32_t a = peek(lx, i, &al);
    if (!is_apos(a)) return 0;
    size_t j = i + al;
    static const char *const forms[] = {"s", "m", "d", "re", "ve", "ll", "em"};
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        size_t fl = strlen(forms[f]);
        if (j + fl > lx->n) continue;
        size_t k = 0;
        while (k < fl && tolower((unsigned char)lx->s[j + k]) == forms[f][k]) k++;
        if (k < fl) continue;
        if (!is_word_char(cp_at(lx, j + fl))) return al + fl;
    }
    return 0;
}

/* If the word [start, end) ends in "n't" split form (the 'n' at end-1, the
 * apostrophe at end): returns the byte length of "n't" from end-1, else 0. */
static size_t nt_len(const lexer *lx, size_t n_pos)
{
    if (n_pos >= lx->n || (lx->s[n_pos] != 'n' && lx->s[n_pos] != 'N')) return 0;
    size_t al;
    uint32_t a = peek(lx, n_pos + 1, &al);
    if (!is_apos(a)) return 0;
    size_t t = n_pos + 1 + al;
    if (t >= lx->n || (lx->s[t] != 't' && lx->s[t] != 'T')) return 0;
    if (is_word_char(cp_at(lx, t + 1))) return 0;
    return t + 1 - n_pos;
}

/* Split assimilations: "cannot" -> "can" "not", "gonna" -> "gon" "na". */
static size_t assimilation_split(const char *w, size_t n)
{
    static const struct { const char *word; size_t head; } forms[] = {
        {"cannot", 3}, {"gonna", 3}, {"gotta", 3}, {"wanna", 3}, {"lemme", 3}, {"gimme", 3},
    };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        if (strlen(forms[f].word) != n) continue;
        size_t k = 0;
        while (k < n && tolower((unsigned char)w[k]) == forms[f].word[k]) k++;
        if (k == n) return forms[f].head;
    }
    return 0;
}

static void emit_word(tokbuf *tb, const char *w, size_t n)
{
    size_t head = assimilation_split(w, n);
    if (head) {
        emit(tb, w, head);
        emit(tb, w + head, n - head);
    } else {
        emit(tb, w, n);
    }
}

static int is_hyphen(uint32_t c) { return c == '-' || c == 0x2010 || c == 0x2011; }

/* Scan a word starting at i (a word character, or a sign before a digit).
 * Emits it (and a split-off n't) and returns the index after it. */
static size_t lex_word(const lexer *lx, tokbuf *tb, size_t i)
{
    size_t start = i, l;
    uint32_t c = peek(lx, i, &l);
    if (c == '-' || c == '+') i += l;
    size_t nt_at = 0, nt_n = 0;
    for (;;) {
        /* a run of word characters (and combining marks) */
        size_t run_start = i;
        uint32_t last = 0;
        for (;;) {
            c = peek(lx, i, &l);
            if (!l || !(is_word_char(c) || (c >= 0x300 && c <= 0x36F) || c == 0x200C)) break;
            last = c;
            i += l;
        }
        if (i == run_start) break;
        /* n't: the word ends before the 'n' */
        if (i > start && (lx->s[i - 1] == 'n' || lx->s[i - 1] == 'N') && (nt_n = nt_len(lx, i - 1))) {
            nt_at = i - 1;
            break;
        }
        size_t xl, yl;
        uint32_t x = peek(lx, i, &xl);
        uint32_t y = xl ? peek(lx, i + xl, &yl) : 0;
        if (!xl) break;
        if (is_hyphen(x) && is_word_char(y)) {
            i += xl;
        } else if (x == '_' && is_word_char(y)) {
            i += xl;
        } else if ((x == '.' || x == ',' || x == ':') && is_digit(last) && is_digit(y)) {
            i += xl;
        } else if (x == '.' && is_letter(last) && is_letter(y)) {
            i += xl;
        } else if (x == '/' && is_word_char(y)) {
            i += xl;
        } else if (x == '&' && is_upper_ascii(last) && is_upper_ascii(y)) {
            i += xl;
        } else if (is_apos(x) && is_letter(y) && !clitic_len(lx, i)) {
            /* o'clock, rock'n'roll: the apostrophe stays inside the word */
            i += xl;
        } else {
            break;
        }
    }
    if (nt_n) {
        if (nt_at > start) emit_word(tb, lx->s + start, nt_at - start);
        emit(tb, lx->s + nt_at, nt_n);
        return nt_at + nt_n;
    }
    size_t end = i;
    /* a final period that belongs to the word */
    if (end < lx->n && lx->s[end] == '.' && !(end + 1 < lx->n && lx->s[end + 1] == '.')) {
        const char *w = lx->s + start;
        size_t wn = end - start, k = end + 1;
        while (k < lx->n && (lx->s[k] == ' ' || lx->s[k] == '\t')) k++;
        int next_is_digit = k < lx->n && is_digit((unsigned char)lx->s[k]);
        uint32_t after = cp_at(lx, end + 1);
        if (in_list(w, wn, k_abbrev, sizeof k_abbrev / sizeof k_abbrev[0]) || is_acronym(w, wn) ||
            (is_upper_ascii((unsigned char)w[0]) &&
             in_list(w, wn, k_abbrev_cap, sizeof k_abbrev_cap / sizeof k_abbrev_cap[0])) ||
            (next_is_digit && in_list(w, wn, k_abbrev_num, sizeof k_abbrev_num / sizeof k_abbrev_num[0])) ||
            ((after == ',' || after == ';' || after == ':') && wn > 1))
            end++;
    }
    emit_word(tb, lx->s + start, end - start);
    return end;
}

/* Length of an HTML entity we decode at i, with its replacement. */
static size_t entity(const lexer *lx, size_t i, const char **repl)
{
    static const struct { const char *ent, *rep; } ents[] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "''"}, {"&apos;", "'"},
    };
    for (size_t e = 0; e < sizeof ents / sizeof ents[0]; e++) {
        size_t n = strlen(ents[e].ent);
        if (i + n <= lx->n && !strncmp(lx->s + i, ents[e].ent, n)) {
            *repl = ents[e].rep;
            return n;
        }
    }
    return 0;
}

static void tokenize(const lexer *lx, tokbuf *tb)
{
    size_t i = 0;
    int open_quote = 1; /* the next " opens a quotation */
    while (i < lx->n && !tb->failed) {
        size_t l;
        uint32_t c = peek(lx, i, &l);
        if (is_space(c) || is_dropped(c)) {
            i += l;
            continue;
        }
        uint32_t next = cp_at(lx, i + l);
        int prev_word = i > 0 && is_word_char(cp_at(lx, i - 1));
        if (is_word_char(c) || ((c == '-' || c == '+') && is_digit(next) && !prev_word)) {
            i = lex_word(lx, tb, i);
            continue;
        }
        const char *rep = NULL;
        size_t el;
        if (c == '&' && (el = entity(lx, i, &rep))) {
            emit_str(tb, rep);
            i += el;
            continue;
        }
        if (is_apos(c) || c == '`' || c == 0x2018 || c == 0x201B) {
            size_t cl = is_apos(c) ? clitic_len(lx, i) : 0;
            if (cl) { /* 's 're 'll ... */
                emit(tb, lx->s + i, cl);
                i += cl;
            } else if (is_apos(c) && is_digit(next) && is_digit(cp_at(lx, i + l + 1))) {
                size_t j = i + l; /* '90s */
                while (j < lx->n && is_word_char(cp_at(lx, j))) j++;
                emit(tb, lx->s + i, j - i);
                i = j;
            } else { /* single or doubled quote marks */
                int opening = c == '`' || c == 0x2018 || c == 0x201B;
                size_t j = i + l, jl;
                uint32_t d = peek(lx, j, &jl);
                int doubled = jl && (d == c || (is_apos(c) && is_apos(d)));
                emit_str(tb, opening ? (doubled ? "``" : "`") : (doubled ? "''" : "'"));
                i = doubled ? j + jl : j;
            }
            continue;
        }
        if (c == '"' || c == 0x201C || c == 0x201D || c == 0x201E || c == 0xAB || c == 0xBB) {
            int opening = c == 0x201C || c == 0x201E || c == 0xAB || (c == '"' && open_quote);
            if (c == '"') open_quote = !open_quote;
            emit_str(tb, opening ? "``" : "''");
            i += l;
            continue;
        }
        switch (c) {
        case '(': emit_str(tb, "-LRB-"); i += l; continue;
        case ')': emit_str(tb, "-RRB-"); i += l; continue;
        case '[': emit_str(tb, "-LRB-"); i += l; continue;
        case ']': emit_str(tb, "-RRB-"); i += l; continue;
        case '{': emit_str(tb, "-LCB-"); i += l; continue;
        case '}': emit_str(tb, "-RCB-"); i += l; continue;
        case 0x2026: emit_str(tb, "..."); i += l; continue;
        case 0x2012: case 0x2013: case 0x2014: case 0x2015: emit_str(tb, "--"); i += l; continue;
        default: break;
        }
        if (c == '.') {
            if (is_digit(next)) { /* .5 */
                size_t j = i + 1;
                while (j < lx->n && is_digit((unsigned char)lx->s[j])) j++;
                emit(tb, lx->s + i, j - i);
                i = j;
                continue;
            }
            size_t j = i;
            while (j < lx->n && lx->s[j] == '.') j++;
            emit_str(tb, j - i >= 3 ? "..." : ".");
            i = j - i >= 3 ? j : i + 1;
            continue;
        }
        if (c == '-' && i + 5 <= lx->n && lx->s[i + 4] == '-') {
            /* -LRB- -RRB- -LCB- -RCB- -LSB- -RSB-: already escaped brackets */
            static const char *const esc[] = {"lrb", "rrb", "lcb", "rcb", "lsb", "rsb"};
            size_t e = 0;
            for (; e < sizeof esc / sizeof esc[0]; e++)
                if (tolower((unsigned char)lx->s[i + 1]) == esc[e][0] &&
                    tolower((unsigned char)lx->s[i + 2]) == esc[e][1] &&
                    tolower((unsigned char)lx->s[i + 3]) == esc[e][2])
                    break;
            if (e < sizeof esc / sizeof esc[0] && !is_word_char(cp_at(lx, i + 5))) {
                emit(tb, lx->s + i, 5);
                i += 5;
                continue;
            }
        }
        if (is_hyphen(c)) {
            size_t j = i, jl;
            while (is_hyphen(peek(lx, j, &jl)) && jl) j += jl;
            emit_str(tb, j - i > l ? "--" : "-");
            i = j;
            continue;
        }
        if (c == '?' || c == '!') {
            size_t j = i; /* a run of ? and ! is one token: only "?" and "!" alone are removed */
            while (j < lx->n && (lx->s[j] == '?' || lx->s[j] == '!')) j++;
            emit(tb, lx->s + i, j - i);
            i = j;
            continue;
        }
        if (c == '*' || c == '#' || c == '@' || c == '_' || c == '=') {
            size_t j = i; /* runs of the same mark are one token */
            while (j < lx->n && (unsigned char)lx->s[j] == c) j++;
            emit(tb, lx->s + i, j - i);
            i = j;
            continue;
        }
        /* any other symbol or punctuation mark is a token by itself */
        emit(tb, lx->s + i, l);
        i += l;
    }
}

imcap_status imcap_ptb_tokenize(const char *text, char **out)
{
    if (!out) return imcap_fail(IMCAP_E_ARG, "imcap_ptb_tokenize: out is NULL");
    *out = NULL;
    if (!text) return imcap_fail(IMCAP_E_ARG, "imcap_ptb_tokenize: text is NULL");
    lexer lx = {text, strlen(text)};
    tokbuf tb = {0};
    if (!tb_reserve(&tb, 0)) return imcap_fail(IMCAP_E_NOMEM, "imcap_ptb_tokenize: out of memory");
    tokenize(&lx, &tb);
    if (tb.failed) {
        free(tb.out);
        return imcap_fail(IMCAP_E_NOMEM, "imcap_ptb_tokenize: out of memory for %zu bytes of text", lx.n);
    }
    tb.out[tb.len] = 0;
    *out = tb.out;
    return IMCAP_OK;
}
