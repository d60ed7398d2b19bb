/*
 * tfjs.c - TensorFlow.js layers model importer (see tfjs.h): model file
 * text -> JSON, weight shards -> float tensors, Keras layers -> enc_graph.
 */
#define _POSIX_C_SOURCE 200809L
#include "tfjs.h"
#include "qgraph.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
    MAX_MODEL_BYTES = 256 << 20,   /* model.json / model.min.js */
    MAX_DEPTH = 256,               /* JS literal nesting */
    MAX_LAYERS = 10000,
    MAX_WEIGHT_SPECS = 100000,
    MAX_CONCAT = ENC_MAX_INPUTS,
};
#define MAX_SHARD_BYTES ((size_t)1 << 32)        /* one shard file (base64 text included) */
#define MAX_WEIGHT_ELEMS ((size_t)1 << 31)       /* all weights together */

/* ------------------------------------------------------------ text buffer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_putc(sbuf *b, char c) { sb_put(b, &c, 1); }

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* ------------------------------------------------- JS object literal -> JSON */

/* 1-based line of offset i, for messages. */
static int line_of(const char *s, size_t i)
{
    int line = 1;
    for (size_t k = 0; k < i; k++) line += s[k] == '\n';
    return line;
}

static bool is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$'; }
static bool is_ident_char(int c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

typedef struct jsconv {
    const char *path, *s;
    size_t n, i;
    sbuf out;
} jsconv;

static imcap_status js_err(jsconv *c, const char *what)
{
    return imcap_fail(IMCAP_E_FORMAT, "%s:%d: cannot read the model's object literal: %s", c->path,
                      line_of(c->s, c->i < c->n ? c->i : c->n), what);
}

static imcap_status js_skip_space(jsconv *c)
{
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
            c->i++;
        } else if (ch == '/' && c->i + 1 < c->n && c->s[c->i + 1] == '/') {
            while (c->i < c->n && c->s[c->i] != '\n') c->i++;
        } else if (ch == '/' && c->i + 1 < c->n && c->s[c->i + 1] == '*') {
            const char *end = NULL;
            for (size_t k = c->i + 2; k + 1 < c->n; k++)
                if (c->s[k] == '*' && c->s[k + 1] == '/') {
                    end = c->s + k;
                    break;
                }
            if (!end) return js_err(c, "unterminated comment");
            c->i = (size_t)(end - c->s) + 2;
        } else {
            break;
        }
    }
    return IMCAP_OK;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Appends code point cp (< 0x110000) as a JSON \u escape (surrogate pair above the BMP). */
static void put_u_escape(sbuf *b, unsigned cp)
{
    char tmp[16];
    if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else {
        snprintf(tmp, sizeof tmp, "\\u%04x", cp);
    }
    sb_puts(b, tmp);
}

/* A JS string literal ('...' or "...") at c->i -> a JSON string. */
static imcap_status js_string(jsconv *c)
{
    char q = c->s[c->i++];
    sb_putc(&c->out, '"');
    for (;;) {
        if (c->i >= c->n) return js_err(c, "unterminated string");
        char ch = c->s[c->i++];
        if (ch == q) break;
        if (ch == '\n' || ch == '\r') return js_err(c, "line break inside a string");
        if (ch == '"') {
            sb_puts(&c->out, "\\\"");
        } else if ((unsigned char)ch < 0x20) {
            put_u_escape(&c->out, (unsigned char)ch);
        } else if (ch != '\\') {
            sb_putc(&c->out, ch);
        } else {
            if (c->i >= c->n) return js_err(c, "unterminated string");
            char e = c->s[c->i++];
            switch (e) {
            case 'n': sb_puts(&c->out, "\\n"); break;
            case 't': sb_puts(&c->out, "\\t"); break;
            case 'r': sb_puts(&c->out, "\\r"); break;
            case 'b': sb_puts(&c->out, "\\b"); break;
            case 'f': sb_puts(&c->out, "\\f"); break;
            case 'v': sb_puts(&c->out, "\\u000b"); break;
            case '0':
                if (c->i < c->n && is_digit(c->s[c->i])) return js_err(c, "octal escape in a string");
                sb_puts(&c->out, "\\u0000");
                break;
            case '\\': sb_puts(&c->out, "\\\\"); break;
            case '"': sb_puts(&c->out, "\\\""); break;
            case '\n': break; /* line continuation */
            case 'x': {
                if (c->i + 2 > c->n) return js_err(c, "bad \\x escape");
                int h = hexval(c->s[c->i]), l = hexval(c->s[c->i + 1]);
                if (h < 0 || l < 0) return js_err(c, "bad \\x escape");
                c->i += 2;
                put_u_escape(&c->out, (unsigned)(h * 16 + l));
                break;
            }
            case 'u': {
                unsigned cp = 0;
                if (c->i < c->n && c->s[c->i] == '{') {
                    c->i++;
                    int nd = 0;
                    while (c->i < c->n && c->s[c->i] != '}') {
                        int v = hexval(c->s[c->i++]);
                        if (v < 0 || ++nd > 6) return js_err(c, "bad \\u{} escape");
                        cp = cp * 16 + (unsigned)v;
                    }
                    if (c->i >= c->n || nd == 0 || cp >= 0x110000) return js_err(c, "bad \\u{} escape");
                    c->i++;
                } else {
                    if (c->i + 4 > c->n) return js_err(c, "bad \\u escape");
                    for (int k = 0; k < 4; k++) {
                        int v = hexval(c->s[c->i++]);
                        if (v < 0) return js_err(c, "bad \\u escape");
                        cp = cp * 16 + (unsigned)v;
                    }
                }
                put_u_escape(&c->out, cp);
                break;
            }
            default:
                if (is_digit(e)) return js_err(c, "octal escape in a string");
                sb_putc(&c->out, e); /* \' \/ and identity escapes */
                break;
            }
        }
    }
    sb_putc(&c->out, '"');
    return IMCAP_OK;
}

/* A JS numeric literal (with an optional leading '-') -> a JSON number. */
static imcap_status js_number(jsconv *c)
{
    size_t st = c->i;
    char buf[80];
    double v;
    if (c->s[c->i] == '-' || c->s[c->i] == '+') c->i++;
    if (c->i + 1 < c->n && c->s[c->i] == '0' && (c->s[c->i + 1] == 'x' || c->s[c->i + 1] == 'X')) {
        c->i += 2;
        uint64_t u = 0;
        int nd = 0;
        while (c->i < c->n && hexval(c->s[c->i]) >= 0) {
            if (++nd > 15) return js_err(c, "hexadecimal number too large");
            u = u * 16 + (uint64_t)hexval(c->s[c->i++]);
        }
        if (nd == 0) return js_err(c, "bad hexadecimal number");
        v = (double)u;
        if (c->s[st] == '-') v = -v;
    } else {
        int nd = 0;
        while (c->i < c->n && is_digit(c->s[c->i])) c->i++, nd++;
        if (c->i < c->n && c->s[c->i] == '.') {
            c->i++;
            while (c->i < c->n && is_digit(c->s[c->i])) c->i++, nd++;
        }
        if (nd == 0) return js_err(c, "bad number");
        if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
            c->i++;
            if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) c->i++;
            int ne = 0;
            while (c->i < c->n && is_digit(c->s[c->i])) c->i++, ne++;
            if (ne == 0) return js_err(c, "bad number exponent");
        }
        size_t len = c->i - st;
        if (len >= sizeof buf) return js_err(c, "number too long");
        memcpy(buf, c->s + st, len);
        buf[len] = 0;
        v = strtod(buf, NULL);
    }
    if (c->i < c->n && is_ident_char(c->s[c->i])) return js_err(c, "bad number");
    if (!isfinite(v)) return js_err(c, "number out of range");
    snprintf(buf, sizeof buf, "%.17g", v);
    sb_puts(&c->out, buf);
    return IMCAP_OK;
}

static bool js_word(jsconv *c, const char *w)
{
    size_t n = strlen(w);
    if (c->i + n > c->n || memcmp(c->s + c->i, w, n) != 0) return false;
    if (c->i + n < c->n && is_ident_char(c->s[c->i + n])) return false;
    c->i += n;
    return true;
}

/* The JS value starting at c->i (a literal made of objects, arrays,
 * strings, numbers, true/false/!0/!1, null/undefined/void 0) -> JSON text
 * in c->out; c->i ends just after it. Iterative, depth-limited. */
static imcap_status js_value(jsconv *c)
{
    char stack[MAX_DEPTH];
    bool want_key[MAX_DEPTH];
    int depth = 0;
    imcap_status st;
    for (;;) {
        if ((st = js_skip_space(c))) return st;
        if (c->i >= c->n) return js_err(c, "unexpected end of text");
        char ch = c->s[c->i];
        if (depth > 0 && (ch == '}' || ch == ']')) {
            /* closing a container, possibly after a trailing comma */
            if (ch != (stack[depth - 1] == '{' ? '}' : ']')) return js_err(c, "mismatched bracket");
            if (c->out.n > 0 && c->out.p[c->out.n - 1] == ',') c->out.n--;
            sb_putc(&c->out, ch);
            c->i++;
            depth--;
        } else if (depth > 0 && stack[depth - 1] == '{' && want_key[depth - 1]) {
            /* a key: string, identifier or number */
            if (ch == '"' || ch == '\'') {
                if ((st = js_string(c))) return st;
            } else if (is_ident_start(ch) || is_digit(ch)) {
                size_t k = c->i;
                while (c->i < c->n && is_ident_char(c->s[c->i])) c->i++;
                sb_putc(&c->out, '"');
                sb_put(&c->out, c->s + k, c->i - k);
                sb_putc(&c->out, '"');
            } else {
                return js_err(c, "expected a key");
            }
            if ((st = js_skip_space(c))) return st;
            if (c->i >= c->n || c->s[c->i] != ':') return js_err(c, "expected ':' after a key");
            c->i++;
            sb_putc(&c->out, ':');
            want_key[depth - 1] = false;
            continue;
        } else if (ch == '{' || ch == '[') {
            if (depth == MAX_DEPTH) return js_err(c, "nesting too deep");
            stack[depth] = ch;
            want_key[depth] = ch == '{';
            depth++;
            sb_putc(&c->out, ch);
            c->i++;
            continue;
        } else if (ch == '"' || ch == '\'') {
            if ((st = js_string(c))) return st;
        } else if (ch == '-' || ch == '+' || ch == '.' || is_digit(ch)) {
            if ((st = js_number(c))) return st;
        } else if (ch == '!') {
            c->i++;
            if ((st = js_skip_space(c))) return st;
            if (js_word(c, "0")) sb_puts(&c->out, "true");
            else if (js_word(c, "1")) sb_puts(&c->out, "false");
            else return js_err(c, "unsupported expression after '!'");
        } else if (js_word(c, "true") || js_word(c, "false") || js_word(c, "null")) {
            size_t k = c->i;
            while (k > 0 && is_ident_char(c->s[k - 1])) k--;
            sb_put(&c->out, c->s + k, c->i - k);
        } else if (js_word(c, "undefined")) {
            sb_puts(&c->out, "null");
        } else if (js_word(c, "void")) {
            if ((st = js_skip_space(c))) return st;
            if (!js_word(c, "0")) return js_err(c, "unsupported 'void' expression");
            sb_puts(&c->out, "null");
        } else {
            return js_err(c, "unsupported expression (not a plain literal)");
        }
        /* a value (or a container) is complete */
        if (depth == 0) break;
        if ((st = js_skip_space(c))) return st;
        if (c->i >= c->n) return js_err(c, "unexpected end of text");
        ch = c->s[c->i];
        if (ch == ',') {
            sb_putc(&c->out, ',');
            c->i++;
            if (stack[depth - 1] == '{') want_key[depth - 1] = true;
        } else if (ch != '}' && ch != ']') {
            return js_err(c, "expected ',' or a closing bracket");
        }
    }
    if (c->out.oom) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory converting the model text", c->path);
    return IMCAP_OK;
}

/* Finds `key:` (bare or quoted) followed by a value starting with `open`;
 * returns the offset of the value or SIZE_MAX. */
static size_t js_find_key(const char *s, size_t n, const char *key, char open)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < n; i++) {
        if (memcmp(s + i, key, kl) != 0) continue;
        if (i > 0 && is_ident_char(s[i - 1])) continue;
        char q = i > 0 && (s[i - 1] == '"' || s[i - 1] == '\'') ? s[i - 1] : 0;
        size_t j = i + kl;
        if (q) {
            if (j >= n || s[j] != q) continue;
            j++;
        } else if (j < n && is_ident_char(s[j])) {
            continue;
        }
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
        if (j >= n || s[j] != ':') continue;
        j++;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
        if (j < n && s[j] == open) return j;
    }
    return SIZE_MAX;
}

static imcap_status json_parse(const char *path, const char *text, size_t len, cJSON **out)
{
    *out = cJSON_ParseWithLength(text, len);
    if (!*out) {
        const char *e = cJSON_GetErrorPtr();
        size_t off = e && e >= text && e <= text + len ? (size_t)(e - text) : 0;
        return imcap_fail(IMCAP_E_FORMAT, "%s:%d: invalid JSON", path, line_of(text, off));
    }
    return IMCAP_OK;
}

imcap_status tfjs_parse_model_text(const char *path, const char *text, size_t len, cJSON **out)
{
    *out = NULL;
    size_t i = 0;
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        i = 3;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    imcap_status st;
    if (i < len && text[i] == '{') {
        /* plain JSON (model.json) */
        if ((st = json_parse(path, text + i, len - i, out))) return st;
    } else {
        /* a JS module: pull the two object-literal members out of it */
        size_t at[2] = {js_find_key(text, len, "modelTopology", '{'),
                        js_find_key(text, len, "weightsManifest", '[')};
        if (at[0] == SIZE_MAX)
            return imcap_fail(IMCAP_E_FORMAT, "%s: neither JSON nor a JS module with a 'modelTopology: {...}' "
                              "object literal", path);
        if (at[1] == SIZE_MAX)
            return imcap_fail(IMCAP_E_FORMAT, "%s: no 'weightsManifest: [...]' in the JS module", path);
        jsconv c = {.path = path, .s = text, .n = len};
        sb_puts(&c.out, "{\"modelTopology\":");
        c.i = at[0];
        if ((st = js_value(&c))) goto js_done;
        sb_puts(&c.out, ",\"weightsManifest\":");
        c.i = at[1];
        if ((st = js_value(&c))) goto js_done;
        sb_putc(&c.out, '}');
        if (c.out.oom) {
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory converting the model text", path);
            goto js_done;
        }
        st = json_parse(path, c.out.p, c.out.n, out);
        if (st) st = imcap_fail(IMCAP_E_INTERNAL, "%s: the converted object literal is not valid JSON", path);
    js_done:
        free(c.out.p);
        if (st) return st;
    }
    if (!cJSON_IsObject(*out) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(*out, "modelTopology"))) {
        cJSON_Delete(*out);
        *out = NULL;
        return imcap_fail(IMCAP_E_FORMAT, "%s: no \"modelTopology\" object", path);
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(*out, "weightsManifest"))) {
        cJSON_Delete(*out);
        *out = NULL;
        return imcap_fail(IMCAP_E_FORMAT, "%s: no \"weightsManifest\" array", path);
    }
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ base64 */

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

imcap_status tfjs_base64_decode(const char *path, const char *s, size_t n, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) n--, pad++;
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return imcap_fail(IMCAP_E_FORMAT, "%s: base64 data has a bad length (%zu characters, %zu padding)", path,
                          n, pad);
    size_t bytes = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    unsigned char *o = imcap_alloc(bytes ? bytes : 1, 1);
    if (!o) return imcap_fail_prefix(IMCAP_E_NOMEM, "%s", path);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            imcap_free(o);
            return imcap_fail(IMCAP_E_FORMAT, "%s: invalid base64 character 0x%02x at offset %zu", path,
                              (unsigned char)s[i], i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {
        imcap_free(o);
        return imcap_fail(IMCAP_E_FORMAT, "%s: base64 data has non-zero trailing bits", path);
    }
    *out = o;
    *out_len = k;
    return IMCAP_OK;
}

imcap_status tfjs_find_base64_literal(const char *path, const char *text, size_t len, const char **s, size_t *n)
{
    size_t best = 0, best_at = 0;
    size_t i = 0;
    while (i < len) {
        char q = text[i];
        if (q != '"' && q != '\'' && q != '`') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && b64val((unsigned char)text[j]) >= 0) j++;
        size_t e = j;
        while (e < len && e - j < 2 && text[e] == '=') e++;
        if (e < len && text[e] == q && e > i + 1) {
            if (e - i - 1 > best) best = e - i - 1, best_at = i + 1;
            i = e + 1;
        } else {
            i = j > i + 1 ? j : i + 1;
        }
    }
    if (best == 0) return imcap_fail(IMCAP_E_FORMAT, "%s: no base64 string literal in the shard module", path);
    *s = text + best_at;
    *n = best;
    return IMCAP_OK;
}

/* ----------------------------------------------------------------- weights */

typedef enum wkind { W_F32, W_U8, W_U16, W_F16 } wkind;

typedef struct wspec {
    const char *name;     /* points into the cJSON tree */
    int n_dims;
    int shape[4];
    size_t count, offset; /* floats, into ctx->w */
    int group;            /* manifest group */
    wkind kind;           /* storage in the shard */
    double qmin, qscale;  /* uint8/uint16: value = q * qscale + qmin */
} wspec;

typedef struct tl {
    const char *name, *cls;
    const cJSON *cfg;
    int n_in;
    int *in;           /* layer indices */
    int n_cons, cons0; /* how many times it is consumed; first consumer */
    int state;         /* 0 pending, 1 emitted */
    int value;         /* value id of its output */
    int logits;        /* value id before a final softmax, or -1 */
    bool requested;    /* must keep its own value (output, pooled) */
} tl;

typedef struct ctx {
    const char *path; /* model file */
    char dir[4096];
    bool js_bundle;
    cJSON *root;
    wspec *ws;
    size_t n_ws;
    float *w;
    tl *L;
    int n_layers;
    int *in_store;
    int input_layer, output_layer;
    int bgr_conv;      /* options.bgr: the Conv2D that reads the input (through zero padding), else -1 */
    enc_graph *g;
    const tfjs_options *opt;
} ctx;

static bool path_is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    uint32_t bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int sh = 0;
            while (!(m & 1024)) m <<= 1, sh++;
            m &= 1023;
            bits = sign | ((uint32_t)(127 - 15 + 1 - sh) << 23) | (m << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7F800000u | (m << 13);
    } else {
        bits = sign | ((e - 15 + 127) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Reads one shard named by the manifest and appends its bytes to buf;
 * the group may hold at most limit bytes. */
static imcap_status read_shard(ctx *c, const char *rel, size_t limit, unsigned char **buf, size_t *len,
                                size_t *cap)
{
    if (!*rel || rel[0] == '/' || strstr(rel, "..") || strlen(rel) > 1024)
        return imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest: refusing shard path \"%s\" (empty, absolute or "
                          "leaving the model directory)", c->path, rel);
    char p[6000];
    bool b64 = false;
    snprintf(p, sizeof p, "%s/%s", c->dir, rel);
    if (path_is_file(p)) {
        b64 = ends_with(p, ".js");
    } else {
        snprintf(p, sizeof p, "%s/%s.min.js", c->dir, rel);
        if (!path_is_file(p)) snprintf(p, sizeof p, "%s/%s.js", c->dir, rel);
        if (!path_is_file(p))
            return imcap_fail(IMCAP_E_IO, "%s: weight shard \"%s\" not found in %s (nor as %s.min.js or %s.js)",
                              c->path, rel, c->dir, rel, rel);
        b64 = true;
    }
    /* refuse a file far larger than what the group still needs before reading it */
    struct stat sb;
    size_t room = limit - *len, max_file = b64 ? room / 3 * 4 + 4 + (1 << 20) : room;
    if (stat(p, &sb) == 0 && (uint64_t)sb.st_size > (uint64_t)max_file)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %lld bytes, more than the %zu bytes of weights its group still needs "
                          "(%s)", p, (long long)sb.st_size, room, c->path);
    char *data;
    size_t n;
    imcap_status st = imcap_read_file(p, MAX_SHARD_BYTES, &data, &n);
    if (st) return st;
    const unsigned char *bytes = (const unsigned char *)data;
    unsigned char *dec = NULL;
    if (b64) {
        const char *s;
        size_t sn;
        if ((st = tfjs_find_base64_literal(p, data, n, &s, &sn)) ||
            (st = tfjs_base64_decode(p, s, sn, &dec, &n))) {
            free(data);
            return st;
        }
        bytes = dec;
    }
    size_t need;
    if (!imcap_add_size(*len, n, &need) || need > limit) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: the shards of its group hold more than the %zu bytes its weights "
                        "need (%s)", p, limit, c->path);
    } else {
        if (need > *cap) {
            size_t nc = *cap ? *cap : (1 << 20);
            while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
            unsigned char *nb = realloc(*buf, nc);
            if (!nb) st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory reading weights", p);
            else *buf = nb, *cap = nc;
        }
        if (!st && n) { /* an empty shard adds nothing (and *buf may still be NULL) */
            memcpy(*buf + *len, bytes, n);
            *len = need;
        }
    }
    imcap_free(dec);
    free(data);
    return st;
}

static imcap_status get_dims(ctx *c, const cJSON *arr, int max_dims, int *n_dims, int *shape, size_t *count,
                             const char *what)
{
    if (!cJSON_IsArray(arr)) return imcap_fail(IMCAP_E_FORMAT, "%s: %s: shape is not an array", c->path, what);
    int nd = cJSON_GetArraySize(arr);
    if (nd > max_dims)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s: %d dimensions (at most %d supported)", c->path, what, nd,
                          max_dims);
    size_t cnt = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, arr)
    {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e9 ||
            d->valuedouble != floor(d->valuedouble))
            return imcap_fail(IMCAP_E_FORMAT, "%s: %s: bad dimension in shape", c->path, what);
        shape[k++] = (int)d->valuedouble;
        if (!imcap_mul_size(cnt, (size_t)d->valuedouble, &cnt) || cnt > MAX_WEIGHT_ELEMS)
            return imcap_fail(IMCAP_E_FORMAT, "%s: %s: shape too large", c->path, what);
    }
    *n_dims = nd;
    *count = cnt;
    return IMCAP_OK;
}

/* Reads the weightsManifest: the specs (names, shapes, storage), then every
 * group's shards (never more bytes than its specs need), checked to hold
 * exactly its weights, then decodes all of them to float32 in c->w. */
static imcap_status load_weights(ctx *c)
{
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(c->root, "weightsManifest");
    size_t n_specs = 0, total = 0;
    int n_groups = cJSON_GetArraySize(man);
    const cJSON *grp;
    cJSON_ArrayForEach(grp, man)
    {
        const cJSON *wts = cJSON_GetObjectItemCaseSensitive(grp, "weights");
        if (!cJSON_IsObject(grp) || !cJSON_IsArray(wts) ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(grp, "paths")))
            return imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest: a group lacks its \"paths\" or \"weights\" "
                              "array", c->path);
        n_specs += (size_t)cJSON_GetArraySize(wts);
    }
    if (n_specs > MAX_WEIGHT_SPECS)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: weightsManifest lists %zu weights (at most %d)", c->path, n_specs,
                          MAX_WEIGHT_SPECS);
    c->ws = imcap_calloc(n_specs ? n_specs : 1, sizeof *c->ws);
    size_t *need = imcap_calloc((size_t)n_groups + 1, sizeof *need);
    unsigned char **bufs = imcap_calloc((size_t)n_groups + 1, sizeof *bufs);
    imcap_status st = IMCAP_OK;
    if (!c->ws || !need || !bufs) {
        st = IMCAP_E_NOMEM;
        goto done;
    }
    /* pass 1: specs, storage and the bytes each group needs */
    int gi = 0;
    cJSON_ArrayForEach(grp, man)
    {
        const cJSON *wt;
        cJSON_ArrayForEach(wt, cJSON_GetObjectItemCaseSensitive(grp, "weights"))
        {
            wspec *w = &c->ws[c->n_ws];
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(wt, "name");
            const cJSON *dt = cJSON_GetObjectItemCaseSensitive(wt, "dtype");
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(wt, "quantization");
            if (!cJSON_IsString(nm)) {
                st = imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest group %d: weight %zu has no name", c->path, gi,
                                c->n_ws);
                goto done;
            }
            w->name = nm->valuestring;
            char what[300];
            snprintf(what, sizeof what, "weightsManifest: weight \"%s\"", w->name);
            if ((st = get_dims(c, cJSON_GetObjectItemCaseSensitive(wt, "shape"), 4, &w->n_dims, w->shape, &w->count,
                               what)))
                goto done;
            if (!cJSON_IsString(dt)) {
                st = imcap_fail(IMCAP_E_FORMAT, "%s: weight \"%s\": no dtype", c->path, w->name);
                goto done;
            }
            if (strcmp(dt->valuestring, "float32") != 0) {
                st = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: weight \"%s\": dtype %s (only float32 weights are "
                                "supported)", c->path, w->name, dt->valuestring);
                goto done;
            }
            w->kind = W_F32;
            if (q && !cJSON_IsNull(q)) {
                const cJSON *qd = cJSON_GetObjectItemCaseSensitive(q, "dtype");
                if (!cJSON_IsObject(q) || !cJSON_IsString(qd)) {
                    st = imcap_fail(IMCAP_E_FORMAT, "%s: weight \"%s\": quantization without a dtype", c->path,
                                    w->name);
                    goto done;
                }
                if (!strcmp(qd->valuestring, "uint8")) w->kind = W_U8;
                else if (!strcmp(qd->valuestring, "uint16")) w->kind = W_U16;
                else if (!strcmp(qd->valuestring, "float16")) w->kind = W_F16;
                else {
                    st = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: weight \"%s\": quantization dtype %s (supported: "
                                    "uint8, uint16, float16)", c->path, w->name, qd->valuestring);
                    goto done;
                }
                if (w->kind != W_F16) {
                    /* as TF.js: value = float32(q * scale + min) computed in double */
                    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(q, "min");
                    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(q, "scale");
                    if (!cJSON_IsNumber(mn) || !cJSON_IsNumber(sc) || !isfinite(mn->valuedouble) ||
                        !isfinite(sc->valuedouble)) {
                        st = imcap_fail(IMCAP_E_FORMAT, "%s: weight \"%s\": %s quantization needs numeric \"min\" "
                                        "and \"scale\"", c->path, w->name, qd->valuestring);
                        goto done;
                    }
                    w->qmin = mn->valuedouble;
                    w->qscale = sc->valuedouble;
                }
            }
            static const size_t per[] = {[W_F32] = 4, [W_U8] = 1, [W_U16] = 2, [W_F16] = 2};
            w->group = gi;
            w->offset = total;
            total += w->count;
            need[gi] += w->count * per[w->kind]; /* count <= 2^31, groups' sum bounded below */
            if (total > MAX_WEIGHT_ELEMS) {
                st = imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest: more than %zu weights in all", c->path,
                                MAX_WEIGHT_ELEMS);
                goto done;
            }
            c->n_ws++;
        }
        gi++;
    }
    /* pass 2: each group's shards, concatenated, exactly its weights */
    gi = 0;
    cJSON_ArrayForEach(grp, man)
    {
        size_t len = 0, cap = 0;
        char first[1100] = "";
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(grp, "paths"))
        {
            if (!cJSON_IsString(p)) {
                st = imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest group %d: a path is not a string", c->path, gi);
                goto done;
            }
            if (!first[0]) snprintf(first, sizeof first, "%s", p->valuestring);
            if ((st = read_shard(c, p->valuestring, need[gi], &bufs[gi], &len, &cap))) goto done;
        }
        if (len != need[gi]) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s: weightsManifest group %d: its weights need %zu bytes but its shards "
                            "(%s...) hold %zu", c->path, gi, need[gi], first[0] ? first : "none", len);
            goto done;
        }
        gi++;
    }
    /* pass 3: decode */
    c->w = imcap_alloc(total ? total : 1, sizeof(float));
    if (!c->w) {
        st = imcap_fail_prefix(IMCAP_E_NOMEM, "%s", c->path);
        goto done;
    }
    size_t off = 0;
    for (size_t k = 0; k < c->n_ws; k++) {
        wspec *w = &c->ws[k];
        if (k == 0 || w->group != c->ws[k - 1].group) off = 0;
        const unsigned char *src = bufs[w->group] + off;
        float *dst = c->w + w->offset;
        switch (w->kind) {
        case W_F32:
            for (size_t i = 0; i < w->count; i++) {
                uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 | (uint32_t)src[4 * i + 2] << 16 |
                             (uint32_t)src[4 * i + 3] << 24;
                memcpy(&dst[i], &u, 4);
            }
            off += 4 * w->count;
            break;
        case W_U8:
            for (size_t i = 0; i < w->count; i++) dst[i] = (float)((double)src[i] * w->qscale + w->qmin);
            off += w->count;
            break;
        case W_U16:
            for (size_t i = 0; i < w->count; i++)
                dst[i] = (float)((double)(src[2 * i] | src[2 * i + 1] << 8) * w->qscale + w->qmin);
            off += 2 * w->count;
            break;
        case W_F16:
            for (size_t i = 0; i < w->count; i++) dst[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
            off += 2 * w->count;
            break;
        }
        const size_t bad = imcap_first_nonfinite(dst, w->count);
        if (bad < w->count) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s: weight \"%s\": element %zu is not finite", c->path, w->name, bad);
            goto done;
        }
    }
done:
    for (int i = 0; bufs && i < n_groups; i++) free(bufs[i]);
    imcap_free(bufs);
    imcap_free(need);
    return st;
}

/* The weight "<layer>/<suffix>" (or ".../<layer>/<suffix>"), or NULL. */
static const wspec *find_weight(ctx *c, const char *layer, const char *suffix)
{
    char full[512];
    snprintf(full, sizeof full, "%s/%s", layer, suffix);
    const wspec *hit = NULL;
    for (size_t i = 0; i < c->n_ws; i++)
        if (!strcmp(c->ws[i].name, full)) return &c->ws[i];
    size_t fl = strlen(full);
    for (size_t i = 0; i < c->n_ws; i++) {
        size_t nl = strlen(c->ws[i].name);
        if (nl > fl && c->ws[i].name[nl - fl - 1] == '/' && !strcmp(c->ws[i].name + nl - fl, full)) {
            if (hit) return NULL;
            hit = &c->ws[i];
        }
    }
    return hit;
}

/* ------------------------------------------------------------------ layers */

static imcap_status lfail(ctx *c, const tl *l, imcap_status s, const char *fmt, ...) IMCAP_PRINTF(4, 5);
static imcap_status lfail(ctx *c, const tl *l, imcap_status s, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return imcap_fail(s, "%s: layer '%s' (%s): %s", c->path, l->name, l->cls, msg);
}

/* A weight of layer l with the given shape (-1: any); *out points into c->w. */
static imcap_status get_weight(ctx *c, const tl *l, const char *suffix, int n_dims, const int *shape,
                               const float **out)
{
    const wspec *w = find_weight(c, l->name, suffix);
    if (!w)
        return lfail(c, l, IMCAP_E_FORMAT, "weight \"%s/%s\" is missing from the weights manifest (or ambiguous)",
                     l->name, suffix);
    bool ok = w->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = shape[i] < 0 || shape[i] == w->shape[i];
    if (!ok) {
        char want[128] = "", got[128] = "";
        for (int i = 0; i < n_dims; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", shape[i]);
        for (int i = 0; i < w->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "", w->shape[i]);
        return lfail(c, l, IMCAP_E_FORMAT, "weight \"%s\" has shape [%s], expected [%s]", w->name, got, want);
    }
    *out = c->w + w->offset;
    return IMCAP_OK;
}

static imcap_status cfg_num(ctx *c, const tl *l, const char *key, double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (isnan(def)) return lfail(c, l, IMCAP_E_FORMAT, "config has no \"%s\"", key);
        *out = def;
        return IMCAP_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lfail(c, l, IMCAP_E_FORMAT, "config \"%s\" is not a number", key);
    *out = v->valuedouble;
    return IMCAP_OK;
}

static imcap_status cfg_int(ctx *c, const tl *l, const char *key, double def, int lo, int hi, int *out)
{
    double d;
    imcap_status st = cfg_num(c, l, key, def, &d);
    if (st) return st;
    if (d != floor(d) || d < lo || d > hi)
        return lfail(c, l, IMCAP_E_FORMAT, "config \"%s\" = %g is not an integer in [%d, %d]", key, d, lo, hi);
    *out = (int)d;
    return IMCAP_OK;
}

/* An int or a pair of ints (kernel_size, strides, ...); def_a < 0: required. */
static imcap_status cfg_pair(ctx *c, const tl *l, const char *key, int def_a, int def_b, int *a, int *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (def_a < 0) return lfail(c, l, IMCAP_E_FORMAT, "config has no \"%s\"", key);
        *a = def_a;
        *b = def_b;
        return IMCAP_OK;
    }
    const cJSON *x = v, *y = v;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) != 2) return lfail(c, l, IMCAP_E_UNSUPPORTED, "config \"%s\" is not 2-D", key);
        x = cJSON_GetArrayItem(v, 0);
        y = cJSON_GetArrayItem(v, 1);
    }
    if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || x->valuedouble != floor(x->valuedouble) ||
        y->valuedouble != floor(y->valuedouble) || x->valuedouble < 1 || y->valuedouble < 1 ||
        x->valuedouble > 65536 || y->valuedouble > 65536)
        return lfail(c, l, IMCAP_E_FORMAT, "config \"%s\" is not a pair of positive integers", key);
    *a = (int)x->valuedouble;
    *b = (int)y->valuedouble;
    return IMCAP_OK;
}

/* A string config value; def NULL: required. */
static imcap_status cfg_str(ctx *c, const tl *l, const char *key, const char *def, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, key);
    if (!v || cJSON_IsNull(v)) {
        if (!def) return lfail(c, l, IMCAP_E_FORMAT, "config has no \"%s\"", key);
        *out = def;
        return IMCAP_OK;
    }
    if (!cJSON_IsString(v)) return lfail(c, l, IMCAP_E_FORMAT, "config \"%s\" is not a string", key);
    *out = v->valuestring;
    return IMCAP_OK;
}

static imcap_status cfg_bool(ctx *c, const tl *l, const char *key, bool def, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return IMCAP_OK;
    }
    if (!cJSON_IsBool(v)) return lfail(c, l, IMCAP_E_FORMAT, "config \"%s\" is not a boolean", key);
    *out = cJSON_IsTrue(v);
    return IMCAP_OK;
}

static imcap_status check_channels_last(ctx *c, const tl *l)
{
    const char *df = NULL;
    imcap_status st = cfg_str(c, l, "data_format", "channels_last", &df);
    if (st) return st;
    if (strcmp(df, "channels_last") != 0)
        return lfail(c, l, IMCAP_E_UNSUPPORTED, "data_format %s (only channels_last)", df);
    return IMCAP_OK;
}

static imcap_status get_padding(ctx *c, const tl *l, enc_pad *pad)
{
    const char *p = NULL;
    imcap_status st = cfg_str(c, l, "padding", "valid", &p);
    if (st) return st;
    if (!strcmp(p, "valid")) *pad = ENC_PAD_VALID;
    else if (!strcmp(p, "same")) *pad = ENC_PAD_SAME;
    else return lfail(c, l, IMCAP_E_UNSUPPORTED, "padding \"%s\" (supported: valid, same)", p);
    return IMCAP_OK;
}

/* ZeroPadding2D "padding": n, [rows, cols] or [[top, bottom], [left, right]]
 * -> pad[4] = top, bottom, left, right. */
static imcap_status get_zero_padding(ctx *c, const tl *l, int pad[4])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, "padding");
    const cJSON *e[4] = {v, v, v, v};
    if (cJSON_IsArray(v)) {
        const cJSON *r = cJSON_GetArrayItem(v, 0), *q = cJSON_GetArrayItem(v, 1);
        if (cJSON_GetArraySize(v) != 2) return lfail(c, l, IMCAP_E_FORMAT, "config \"padding\" is not 2-D");
        e[0] = e[1] = r, e[2] = e[3] = q;
        if (cJSON_IsArray(r) || cJSON_IsArray(q)) {
            if (!cJSON_IsArray(r) || !cJSON_IsArray(q) || cJSON_GetArraySize(r) != 2 || cJSON_GetArraySize(q) != 2)
                return lfail(c, l, IMCAP_E_FORMAT, "config \"padding\" is not [[top, bottom], [left, right]]");
            e[0] = cJSON_GetArrayItem(r, 0), e[1] = cJSON_GetArrayItem(r, 1);
            e[2] = cJSON_GetArrayItem(q, 0), e[3] = cJSON_GetArrayItem(q, 1);
        }
    }
    for (int i = 0; i < 4; i++) {
        if (!cJSON_IsNumber(e[i]) || e[i]->valuedouble != floor(e[i]->valuedouble) || e[i]->valuedouble < 0 ||
            e[i]->valuedouble > 65536)
            return lfail(c, l, IMCAP_E_FORMAT, "config \"padding\" is not made of integers in [0, 65536]");
        pad[i] = (int)e[i]->valuedouble;
    }
    return IMCAP_OK;
}

/* Activation name -> act; *softmax set for "softmax". */
static imcap_status parse_act(ctx *c, const tl *l, const char *name, enc_act *act, bool *softmax)
{
    *softmax = false;
    *act = ENC_ACT_NONE;
    if (!strcmp(name, "linear")) return IMCAP_OK;
    if (!strcmp(name, "relu")) *act = ENC_ACT_RELU;
    else if (!strcmp(name, "relu6")) *act = ENC_ACT_RELU6;
    else if (!strcmp(name, "sigmoid")) *act = ENC_ACT_SIGMOID;
    else if (!strcmp(name, "softmax")) *softmax = true;
    else return lfail(c, l, IMCAP_E_UNSUPPORTED, "activation \"%s\" (supported: linear, relu, relu6, sigmoid, "
                      "softmax)", name);
    return IMCAP_OK;
}

/* The activation a layer applies by itself (Activation, ReLU, Softmax). */
static imcap_status layer_act(ctx *c, const tl *l, enc_act *act, bool *softmax)
{
    imcap_status st;
    if (!strcmp(l->cls, "Activation")) {
        const char *a = NULL;
        if ((st = cfg_str(c, l, "activation", NULL, &a))) return st;
        return parse_act(c, l, a, act, softmax);
    }
    if (!strcmp(l->cls, "Softmax")) {
        int axis;
        if ((st = cfg_int(c, l, "axis", -1, -1, 3, &axis))) return st;
        if (axis != -1 && axis != 3) return lfail(c, l, IMCAP_E_UNSUPPORTED, "softmax over axis %d", axis);
        *act = ENC_ACT_NONE;
        *softmax = true;
        return IMCAP_OK;
    }
    /* ReLU */
    double mx, slope, thr;
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(l->cfg, "max_value");
    if ((st = cfg_num(c, l, "negative_slope", 0, &slope)) || (st = cfg_num(c, l, "threshold", 0, &thr))) return st;
    if (slope != 0 || thr != 0) return lfail(c, l, IMCAP_E_UNSUPPORTED, "leaky or thresholded ReLU");
    *softmax = false;
    if (!mv || cJSON_IsNull(mv)) {
        *act = ENC_ACT_RELU;
        return IMCAP_OK;
    }
    if ((st = cfg_num(c, l, "max_value", 0, &mx))) return st;
    if (mx != 6) return lfail(c, l, IMCAP_E_UNSUPPORTED, "ReLU with max_value %g (only 6)", mx);
    *act = ENC_ACT_RELU6;
    return IMCAP_OK;
}

static bool is_act_layer(const tl *l)
{
    return !strcmp(l->cls, "Activation") || !strcmp(l->cls, "ReLU") || !strcmp(l->cls, "Softmax");
}

/* The layer that alone consumes layer i's output, if i may be fused into it. */
static int sole_follower(ctx *c, int i)
{
    const tl *l = &c->L[i];
    if (l->requested || l->n_cons != 1) return -1;
    const tl *f = &c->L[l->cons0];
    if (f->n_in != 1 || f->state != 0) return -1;
    return l->cons0;
}

static enc_node node_new(enc_op op, const char *name)
{
    enc_node nd;
    memset(&nd, 0, sizeof nd);
    nd.op = op;
    nd.kh = nd.kw = nd.sh = nd.sw = 1;
    nd.pad = ENC_PAD_VALID;
    nd.act = ENC_ACT_NONE;
    nd.mult = 1;
    nd.weight = nd.bias = -1;
    snprintf(nd.name, sizeof nd.name, "%s", name);
    return nd;
}

static imcap_status add_node(ctx *c, const tl *l, enc_node *nd, const char *out_name, int *value)
{
    *value = enc_graph_add_node(c->g, nd, out_name);
    if (*value < 0) return lfail(c, l, IMCAP_E_FORMAT, "%s", imcap_last_error());
    return IMCAP_OK;
}

static const enc_value *in_value(ctx *c, const tl *l, int k) { return enc_graph_value(c->g, c->L[l->in[k]].value); }

/* Batch-norm parameters of layer b over n channels -> per-channel s, t with
 * y = x * s + t (computed in double as TF.js does). */
static imcap_status bn_params(ctx *c, const tl *b, int n, double *s, double *t)
{
    imcap_status st;
    int axis;
    const cJSON *ax = cJSON_GetObjectItemCaseSensitive(b->cfg, "axis");
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) != 1)
        return lfail(c, b, IMCAP_E_UNSUPPORTED, "normalisation over several axes");
    if ((st = cfg_int(c, b, "axis", -1, -4, 3, &axis))) return st;
    if (axis != -1 && axis != 3) return lfail(c, b, IMCAP_E_UNSUPPORTED, "axis %d (only the channel axis)", axis);
    double eps;
    bool center, scale;
    if ((st = cfg_num(c, b, "epsilon", 1e-3, &eps)) || (st = cfg_bool(c, b, "center", true, &center)) ||
        (st = cfg_bool(c, b, "scale", true, &scale)))
        return st;
    if (!(eps >= 0)) return lfail(c, b, IMCAP_E_FORMAT, "negative epsilon");
    const float *gamma = NULL, *beta = NULL, *mean, *var;
    int shp[1] = {n};
    if ((scale && (st = get_weight(c, b, "gamma", 1, shp, &gamma))) ||
        (center && (st = get_weight(c, b, "beta", 1, shp, &beta))) ||
        (st = get_weight(c, b, "moving_mean", 1, shp, &mean)) ||
        (st = get_weight(c, b, "moving_variance", 1, shp, &var)))
        return st;
    for (int i = 0; i < n; i++) {
        if (!(var[i] + eps > 0))
            return lfail(c, b, IMCAP_E_FORMAT, "moving_variance[%d] + epsilon = %g is not positive", i,
                         (double)var[i] + eps);
        s[i] = (gamma ? gamma[i] : 1.0) / sqrt((double)var[i] + eps);
        t[i] = (beta ? beta[i] : 0.0) - mean[i] * s[i];
    }
    return IMCAP_OK;
}

static imcap_status add_param(ctx *c, const tl *l, const char *suffix, int n_dims, const int *shape,
                              const float *data, int *id)
{
    char nm[ENC_NAME_LEN + 32];
    snprintf(nm, sizeof nm, "%s/%s", l->name, suffix);
    *id = enc_graph_add_param(c->g, nm, n_dims, shape, data);
    if (*id < 0) return lfail(c, l, IMCAP_E_FORMAT, "%s", imcap_last_error());
    return IMCAP_OK;
}

/* Marks layers first..last of a fused chain as emitted with value v. */
static void mark_chain(ctx *c, const int *chain, int n, int v)
{
    for (int k = 0; k < n; k++) {
        c->L[chain[k]].state = 1;
        c->L[chain[k]].value = v;
        c->L[chain[k]].logits = -1;
    }
}

/* Conv2D, DepthwiseConv2D, Dense, with a following batch norm folded in and
 * a following activation fused when they alone consume it. */
static imcap_status emit_weighted(ctx *c, int li)
{
    tl *l = &c->L[li];
    imcap_status st;
    const enc_value *iv = in_value(c, l, 0);
    enc_node nd;
    int cout, wdims, wshape[4], kshape[4], kdims;
    const char *kname = "kernel";
    bool use_bias;
    const char *act_name = NULL;
    if ((st = cfg_bool(c, l, "use_bias", true, &use_bias)) || (st = cfg_str(c, l, "activation", "linear", &act_name)))
        return st;
    if (!strcmp(l->cls, "Dense")) {
        nd = node_new(ENC_DENSE, l->name);
        if ((st = cfg_int(c, l, "units", NAN, 1, 1 << 24, &cout))) return st; /* per pixel, as Keras */
        kdims = wdims = 2;
        kshape[0] = wshape[0] = iv->c;
        kshape[1] = wshape[1] = cout;
    } else {
        bool dw = !strcmp(l->cls, "DepthwiseConv2D");
        nd = node_new(dw ? ENC_DWCONV2D : ENC_CONV2D, l->name);
        int dh, dwd, groups;
        if ((st = check_channels_last(c, l)) || (st = cfg_pair(c, l, "kernel_size", -1, -1, &nd.kh, &nd.kw)) ||
            (st = cfg_pair(c, l, "strides", 1, 1, &nd.sh, &nd.sw)) || (st = get_padding(c, l, &nd.pad)) ||
            (st = cfg_pair(c, l, "dilation_rate", 1, 1, &dh, &dwd)) ||
            (st = cfg_int(c, l, "groups", 1, 1, 1 << 20, &groups)))
            return st;
        if (dh != 1 || dwd != 1) return lfail(c, l, IMCAP_E_UNSUPPORTED, "dilation %dx%d", dh, dwd);
        if (groups != 1) return lfail(c, l, IMCAP_E_UNSUPPORTED, "grouped convolution (groups %d)", groups);
        kdims = 4;
        kshape[0] = nd.kh;
        kshape[1] = nd.kw;
        kshape[2] = iv->c;
        if (dw) {
            if ((st = cfg_int(c, l, "depth_multiplier", 1, 1, 1 << 16, &nd.mult))) return st;
            kname = "depthwise_kernel";
            kshape[3] = nd.mult;
            cout = iv->c * nd.mult;
            wdims = 3;
            wshape[0] = nd.kh;
            wshape[1] = nd.kw;
            wshape[2] = cout;
        } else {
            if ((st = cfg_int(c, l, "filters", NAN, 1, 1 << 24, &cout))) return st;
            kshape[3] = cout;
            wdims = 4;
            memcpy(wshape, kshape, sizeof wshape);
        }
    }
    enc_act act;
    bool softmax;
    if ((st = parse_act(c, l, act_name, &act, &softmax))) return st;
    const float *k, *b0 = NULL;
    if ((st = get_weight(c, l, kname, kdims, kshape, &k))) return st;
    if (use_bias && (st = get_weight(c, l, "bias", 1, &cout, &b0))) return st;
    size_t wn = 1;
    for (int i = 0; i < kdims; i++) wn *= (size_t)kshape[i];
    float *w = imcap_alloc(wn, sizeof *w);
    float *bias = imcap_alloc((size_t)cout, sizeof *bias);
    double *s = imcap_alloc((size_t)cout, sizeof *s), *t = imcap_alloc((size_t)cout, sizeof *t);
    if (!w || !bias || !s || !t) {
        st = IMCAP_E_NOMEM;
        goto done;
    }
    memcpy(w, k, wn * sizeof *w);
    bool has_bias = use_bias;
    for (int o = 0; o < cout; o++) bias[o] = b0 ? b0[o] : 0.0f;
    int chain[3] = {li}, n_chain = 1;
    const char *out_name = l->name;
    if (act == ENC_ACT_NONE && !softmax) {
        int f = sole_follower(c, li);
        if (f >= 0 && !strcmp(c->L[f].cls, "BatchNormalization")) {
            if ((st = bn_params(c, &c->L[f], cout, s, t))) goto done;
            /* the output channel is the fastest-varying index of every layout */
            for (size_t i = 0; i < wn; i++) w[i] = (float)((double)k[i] * s[i % (size_t)cout]);
            for (int o = 0; o < cout; o++) bias[o] = (float)(((double)(b0 ? b0[o] : 0.0f)) * s[o] + t[o]);
            has_bias = true;
            chain[n_chain++] = f;
            out_name = c->L[f].name;
        }
        f = sole_follower(c, chain[n_chain - 1]);
        if (f >= 0 && is_act_layer(&c->L[f])) {
            enc_act a;
            bool sm;
            if ((st = layer_act(c, &c->L[f], &a, &sm))) goto done;
            if (!sm) {
                act = a;
                chain[n_chain++] = f;
                out_name = c->L[f].name;
            }
        }
    }
    if (li == c->bgr_conv) {
        /* the model reads BGR; ours is RGB: swap input channels 0 and 2 of the kernel [kh][kw][3][cout] */
        for (int p = 0; p < nd.kh * nd.kw; p++)
            for (int o = 0; o < cout; o++) {
                float *q = w + (size_t)p * 3 * (size_t)cout + o, tmp = q[0];
                q[0] = q[2 * (size_t)cout];
                q[2 * (size_t)cout] = tmp;
            }
    }
    nd.act = act;
    nd.n_inputs = 1;
    nd.inputs[0] = c->L[l->in[0]].value;
    if ((st = add_param(c, l, kname, wdims, wshape, w, &nd.weight))) goto done;
    if (has_bias && (st = add_param(c, l, "bias", 1, &cout, bias, &nd.bias))) goto done;
    char lname[ENC_NAME_LEN + 16];
    if (softmax) {
        snprintf(lname, sizeof lname, "%s/logits", l->name);
        out_name = lname;
    }
    int v;
    if ((st = add_node(c, l, &nd, out_name, &v))) goto done;
    mark_chain(c, chain, n_chain, v);
    if (softmax) {
        enc_node sm = node_new(ENC_SOFTMAX, l->name);
        sm.n_inputs = 1;
        sm.inputs[0] = v;
        int v2;
        if ((st = add_node(c, l, &sm, l->name, &v2))) goto done;
        l->value = v2;
        l->logits = v;
    }
done:
    imcap_free(w);
    imcap_free(bias);
    imcap_free(s);
    imcap_free(t);
    return st;
}

static imcap_status emit_layer(ctx *c, int li)
{
    tl *l = &c->L[li];
    imcap_status st;
    if (l->state) return IMCAP_OK; /* fused into its producer */
    l->logits = -1;
    const char *cls = l->cls;
    if (!strcmp(cls, "InputLayer")) {
        if (li != c->input_layer)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "a second input (only single-input models)");
        const cJSON *shp = cJSON_GetObjectItemCaseSensitive(l->cfg, "batch_input_shape");
        if (!shp) shp = cJSON_GetObjectItemCaseSensitive(l->cfg, "batch_shape");
        if (!cJSON_IsArray(shp) || cJSON_GetArraySize(shp) != 4)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "input is not a batch of HxWxC images");
        int d[3];
        for (int i = 0; i < 3; i++) {
            const cJSON *x = cJSON_GetArrayItem(shp, i + 1);
            d[i] = cJSON_IsNumber(x) && x->valuedouble >= 1 && x->valuedouble <= 65536 &&
                           x->valuedouble == floor(x->valuedouble)
                       ? (int)x->valuedouble
                       : cJSON_IsNull(x) ? 0 : -1;
            if (d[i] < 0) return lfail(c, l, IMCAP_E_FORMAT, "bad input shape");
        }
        if (d[0] == 0) d[0] = c->opt->preproc.in_h;
        if (d[1] == 0) d[1] = c->opt->preproc.in_w;
        if (d[0] <= 0 || d[1] <= 0)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "the input size is not fixed (give it in the options)");
        if (d[2] != 3) return lfail(c, l, IMCAP_E_UNSUPPORTED, "%d input channels (only RGB)", d[2]);
        l->value = enc_graph_add_input(c->g, l->name, d[0], d[1], d[2]);
        if (l->value < 0) return lfail(c, l, IMCAP_E_FORMAT, "%s", imcap_last_error());
        l->state = 1;
        return IMCAP_OK;
    }
    if (l->n_in == 0) return lfail(c, l, IMCAP_E_FORMAT, "has no inputs");
    if (strcmp(cls, "Concatenate") != 0 && strcmp(cls, "Add") != 0 && l->n_in != 1)
        return lfail(c, l, IMCAP_E_UNSUPPORTED, "%d inputs (expected 1)", l->n_in);
    const enc_value *iv = in_value(c, l, 0);
    int v = -1;
    if (!strcmp(cls, "Conv2D") || !strcmp(cls, "DepthwiseConv2D") || !strcmp(cls, "Dense"))
        return emit_weighted(c, li);
    if (!strcmp(cls, "BatchNormalization")) {
        double *s = imcap_alloc((size_t)iv->c, sizeof *s), *t = imcap_alloc((size_t)iv->c, sizeof *t);
        float *fs = imcap_alloc((size_t)iv->c, sizeof *fs), *ft = imcap_alloc((size_t)iv->c, sizeof *ft);
        enc_node nd = node_new(ENC_AFFINE, l->name);
        nd.n_inputs = 1;
        nd.inputs[0] = c->L[l->in[0]].value;
        st = !s || !t || !fs || !ft ? IMCAP_E_NOMEM : bn_params(c, l, iv->c, s, t);
        if (!st) {
            for (int i = 0; i < iv->c; i++) fs[i] = (float)s[i], ft[i] = (float)t[i];
            if (!(st = add_param(c, l, "scale", 1, &iv->c, fs, &nd.weight)) &&
                !(st = add_param(c, l, "shift", 1, &iv->c, ft, &nd.bias)))
                st = add_node(c, l, &nd, l->name, &v);
        }
        imcap_free(s);
        imcap_free(t);
        imcap_free(fs);
        imcap_free(ft);
        if (st) return st;
    } else if (is_act_layer(l)) {
        enc_act a;
        bool sm;
        if ((st = layer_act(c, l, &a, &sm))) return st;
        if (sm) {
            enc_node nd = node_new(ENC_SOFTMAX, l->name);
            nd.n_inputs = 1;
            nd.inputs[0] = c->L[l->in[0]].value;
            if ((st = add_node(c, l, &nd, l->name, &v))) return st;
            l->logits = nd.inputs[0];
        } else if (a == ENC_ACT_NONE) {
            v = c->L[l->in[0]].value;
        } else {
            enc_node nd = node_new(ENC_ACT, l->name);
            nd.n_inputs = 1;
            nd.inputs[0] = c->L[l->in[0]].value;
            nd.act = a;
            if ((st = add_node(c, l, &nd, l->name, &v))) return st;
        }
    } else if (!strcmp(cls, "MaxPooling2D") || !strcmp(cls, "AveragePooling2D")) {
        enc_node nd = node_new(cls[0] == 'M' ? ENC_MAXPOOL : ENC_AVGPOOL, l->name);
        if ((st = check_channels_last(c, l)) || (st = cfg_pair(c, l, "pool_size", 2, 2, &nd.kh, &nd.kw)) ||
            (st = cfg_pair(c, l, "strides", nd.kh, nd.kw, &nd.sh, &nd.sw)) || (st = get_padding(c, l, &nd.pad)))
            return st;
        nd.n_inputs = 1;
        nd.inputs[0] = c->L[l->in[0]].value;
        if ((st = add_node(c, l, &nd, l->name, &v))) return st;
    } else if (!strcmp(cls, "ZeroPadding2D")) {
        int pad[4];
        if ((st = check_channels_last(c, l)) || (st = get_zero_padding(c, l, pad))) return st;
        if (!pad[0] && !pad[1] && !pad[2] && !pad[3]) {
            v = c->L[l->in[0]].value;
        } else {
            enc_node nd = node_new(ENC_PAD, l->name);
            nd.kh = pad[0], nd.sh = pad[1], nd.kw = pad[2], nd.sw = pad[3];
            nd.n_inputs = 1;
            nd.inputs[0] = c->L[l->in[0]].value;
            if ((st = add_node(c, l, &nd, l->name, &v))) return st;
        }
    } else if (!strcmp(cls, "GlobalAveragePooling2D")) {
        if ((st = check_channels_last(c, l))) return st;
        enc_node nd = node_new(ENC_GAP, l->name);
        nd.n_inputs = 1;
        nd.inputs[0] = c->L[l->in[0]].value;
        if ((st = add_node(c, l, &nd, l->name, &v))) return st;
    } else if (!strcmp(cls, "Concatenate")) {
        int axis;
        if ((st = cfg_int(c, l, "axis", -1, -4, 3, &axis))) return st;
        if (axis != -1 && axis != 3) return lfail(c, l, IMCAP_E_UNSUPPORTED, "concatenation along axis %d", axis);
        if (l->n_in > MAX_CONCAT)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "%d inputs (at most %d)", l->n_in, MAX_CONCAT);
        if (l->n_in == 1) {
            v = c->L[l->in[0]].value;
        } else {
            enc_node nd = node_new(ENC_CONCAT, l->name);
            nd.n_inputs = l->n_in;
            for (int i = 0; i < l->n_in; i++) nd.inputs[i] = c->L[l->in[i]].value;
            if ((st = add_node(c, l, &nd, l->name, &v))) return st;
        }
    } else if (!strcmp(cls, "Add")) {
        /* an activation that alone consumes the sum is fused into the last add */
        int f = sole_follower(c, li);
        enc_act a = ENC_ACT_NONE;
        bool sm = true;
        if (f >= 0 && is_act_layer(&c->L[f]) && (st = layer_act(c, &c->L[f], &a, &sm))) return st;
        if (sm) f = -1, a = ENC_ACT_NONE;
        v = c->L[l->in[0]].value;
        for (int i = 1; i < l->n_in; i++) {
            enc_node nd = node_new(ENC_ADD, l->name);
            char nm[ENC_NAME_LEN + 16];
            if (i + 1 < l->n_in) snprintf(nm, sizeof nm, "%s/%d", l->name, i);
            else snprintf(nm, sizeof nm, "%s", f >= 0 ? c->L[f].name : l->name);
            nd.n_inputs = 2;
            nd.inputs[0] = v;
            nd.inputs[1] = c->L[l->in[i]].value;
            if (i + 1 == l->n_in) nd.act = a;
            if ((st = add_node(c, l, &nd, nm, &v))) return st;
        }
        if (f >= 0) {
            int chain[1] = {f};
            mark_chain(c, chain, 1, v);
        }
    } else if (!strcmp(cls, "Flatten")) {
        if (iv->h != 1 || iv->w != 1)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "flattening a %dx%dx%d value (only 1x1xC)", iv->h, iv->w, iv->c);
        v = c->L[l->in[0]].value;
    } else if (!strcmp(cls, "Dropout") || !strcmp(cls, "SpatialDropout2D")) {
        v = c->L[l->in[0]].value; /* identity at inference */
    } else {
        return lfail(c, l, IMCAP_E_UNSUPPORTED, "layer class not supported");
    }
    l->value = v;
    l->state = 1;
    return IMCAP_OK;
}

/* -------------------------------------------------------------- topology */

static int find_layer(ctx *c, const char *name)
{
    for (int i = 0; i < c->n_layers; i++)
        if (!strcmp(c->L[i].name, name)) return i;
    return -1;
}

/* The layer name of an inbound / input_layers / output_layers entry
 * ["name", node_index, tensor_index, ...]. */
static imcap_status ref_name(ctx *c, const tl *l, const cJSON *e, const char **name)
{
    const cJSON *nm = cJSON_GetArrayItem(e, 0), *ni = cJSON_GetArrayItem(e, 1), *ti = cJSON_GetArrayItem(e, 2);
    if (!cJSON_IsArray(e) || !cJSON_IsString(nm)) {
        if (l) return lfail(c, l, IMCAP_E_UNSUPPORTED, "inbound node not in the Keras 2 [name, node, tensor] form");
        return imcap_fail(IMCAP_E_FORMAT, "%s: bad input/output layer reference", c->path);
    }
    if ((ni && (!cJSON_IsNumber(ni) || ni->valuedouble != 0)) || (ti && (!cJSON_IsNumber(ti) || ti->valuedouble != 0))) {
        if (l) return lfail(c, l, IMCAP_E_UNSUPPORTED, "uses output %g of call %g of layer '%s' (shared layers or "
                            "multi-output layers)", ti ? ti->valuedouble : 0, ni ? ni->valuedouble : 0,
                            nm->valuestring);
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: model input/output '%s' is not a layer's first output", c->path,
                          nm->valuestring);
    }
    *name = nm->valuestring;
    return IMCAP_OK;
}

static imcap_status parse_topology(ctx *c)
{
    const cJSON *topo = cJSON_GetObjectItemCaseSensitive(c->root, "modelTopology");
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(topo, "model_config");
    if (!mc) mc = topo;
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(mc, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(mc, "config");
    if (!cJSON_IsString(cn))
        return imcap_fail(IMCAP_E_FORMAT, "%s: modelTopology has no model class_name", c->path);
    bool seq = !strcmp(cn->valuestring, "Sequential");
    if (!seq && strcmp(cn->valuestring, "Model") != 0 && strcmp(cn->valuestring, "Functional") != 0)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: model class %s (supported: Model, Functional, Sequential)",
                          c->path, cn->valuestring);
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : cJSON_GetObjectItemCaseSensitive(cfg, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) == 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: model config has no layers", c->path);
    int n = cJSON_GetArraySize(layers);
    if (n > MAX_LAYERS) return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %d layers (at most %d)", c->path, n, MAX_LAYERS);
    const cJSON *first_cfg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(layers, 0), "config");
    const cJSON *first_cls = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(layers, 0), "class_name");
    bool synth_input = seq && !(cJSON_IsString(first_cls) && !strcmp(first_cls->valuestring, "InputLayer"));
    int total = n + synth_input;
    c->L = imcap_calloc((size_t)total, sizeof *c->L);
    if (!c->L) return IMCAP_E_NOMEM;
    c->n_layers = 0;
    if (synth_input) {
        tl *in = &c->L[c->n_layers++];
        in->name = "input";
        in->cls = "InputLayer";
        in->cfg = first_cfg;
    }
    const cJSON *ly;
    size_t n_refs = 0;
    cJSON_ArrayForEach(ly, layers)
    {
        tl *l = &c->L[c->n_layers];
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(ly, "class_name");
        const cJSON *lcfg = cJSON_GetObjectItemCaseSensitive(ly, "config");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(ly, "name");
        if (!cJSON_IsString(nm)) nm = cJSON_GetObjectItemCaseSensitive(lcfg, "name");
        if (!cJSON_IsString(lc) || !cJSON_IsObject(lcfg) || !cJSON_IsString(nm))
            return imcap_fail(IMCAP_E_FORMAT, "%s: layer %d lacks class_name, name or config", c->path, c->n_layers);
        l->name = nm->valuestring;
        l->cls = lc->valuestring;
        l->cfg = lcfg;
        if (strlen(l->name) >= ENC_NAME_LEN - 16)
            return lfail(c, l, IMCAP_E_UNSUPPORTED, "name longer than %d characters", ENC_NAME_LEN - 17);
        if (find_layer(c, l->name) >= 0) return lfail(c, l, IMCAP_E_FORMAT, "duplicate layer name");
        c->n_layers++;
        if (!seq) {
            const cJSON *ib = cJSON_GetObjectItemCaseSensitive(ly, "inbound_nodes");
            if (!cJSON_IsArray(ib)) return lfail(c, l, IMCAP_E_FORMAT, "no inbound_nodes");
            if (cJSON_GetArraySize(ib) > 1)
                return lfail(c, l, IMCAP_E_UNSUPPORTED, "shared layer (called %d times)", cJSON_GetArraySize(ib));
            if (cJSON_GetArraySize(ib) == 1) {
                const cJSON *node = cJSON_GetArrayItem(ib, 0);
                if (!cJSON_IsArray(node))
                    return lfail(c, l, IMCAP_E_UNSUPPORTED, "inbound node not in the Keras 2 form (Keras 3 file?)");
                n_refs += (size_t)cJSON_GetArraySize(node);
            }
        } else {
            n_refs++;
        }
    }
    c->in_store = imcap_calloc(n_refs + 1, sizeof(int));
    if (!c->in_store) return IMCAP_E_NOMEM;
    size_t used = 0;
    int li = synth_input;
    cJSON_ArrayForEach(ly, layers)
    {
        tl *l = &c->L[li];
        l->in = c->in_store + used;
        if (seq) {
            if (li > 0) l->in[l->n_in++] = li - 1;
        } else {
            const cJSON *node = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ly, "inbound_nodes"), 0);
            const cJSON *e;
            cJSON_ArrayForEach(e, node)
            {
                const char *src;
                imcap_status st = ref_name(c, l, e, &src);
                if (st) return st;
                int si = find_layer(c, src);
                if (si < 0) return lfail(c, l, IMCAP_E_FORMAT, "input layer '%s' does not exist", src);
                l->in[l->n_in++] = si;
            }
        }
        used += (size_t)l->n_in;
        li++;
    }
    for (int i = 0; i < c->n_layers; i++)
        for (int k = 0; k < c->L[i].n_in; k++) {
            tl *s = &c->L[c->L[i].in[k]];
            if (s->n_cons++ == 0) s->cons0 = i;
        }
    /* model input and output */
    if (seq) {
        c->input_layer = 0;
        c->output_layer = c->n_layers - 1;
    } else {
        const cJSON *ins = cJSON_GetObjectItemCaseSensitive(cfg, "input_layers");
        const cJSON *outs = cJSON_GetObjectItemCaseSensitive(cfg, "output_layers");
        if (!cJSON_IsArray(ins) || !cJSON_IsArray(outs))
            return imcap_fail(IMCAP_E_FORMAT, "%s: model config lacks input_layers / output_layers", c->path);
        if (cJSON_GetArraySize(ins) != 1 || cJSON_GetArraySize(outs) != 1)
            return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %d inputs and %d outputs (only one of each)", c->path,
                              cJSON_GetArraySize(ins), cJSON_GetArraySize(outs));
        const char *a, *b;
        imcap_status st;
        if ((st = ref_name(c, NULL, cJSON_GetArrayItem(ins, 0), &a)) ||
            (st = ref_name(c, NULL, cJSON_GetArrayItem(outs, 0), &b)))
            return st;
        c->input_layer = find_layer(c, a);
        c->output_layer = find_layer(c, b);
        if (c->input_layer < 0 || c->output_layer < 0)
            return imcap_fail(IMCAP_E_FORMAT, "%s: model input '%s' or output '%s' is not a layer", c->path, a, b);
        if (strcmp(c->L[c->input_layer].cls, "InputLayer") != 0)
            return imcap_fail(IMCAP_E_FORMAT, "%s: model input '%s' is not an InputLayer", c->path, a);
    }
    c->L[c->output_layer].requested = true;
    return IMCAP_OK;
}

/* Emits all layers in a topological order (Kahn, list order among ready ones). */
static imcap_status emit_all(ctx *c)
{
    int n = c->n_layers;
    int *indeg = imcap_calloc((size_t)n, sizeof(int)), *queue = imcap_alloc((size_t)n, sizeof(int));
    int *cons_start = imcap_calloc((size_t)n + 1, sizeof(int));
    size_t n_edges = 0;
    for (int i = 0; i < n; i++) n_edges += (size_t)c->L[i].n_in;
    int *cons = imcap_alloc(n_edges + 1, sizeof(int)), *fill = imcap_calloc((size_t)n, sizeof(int));
    imcap_status st = IMCAP_OK;
    if (!indeg || !queue || !cons_start || !cons || !fill) {
        st = IMCAP_E_NOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c->L[i].n_in; k++) cons_start[c->L[i].in[k] + 1]++;
    for (int i = 0; i < n; i++) cons_start[i + 1] += cons_start[i];
    for (int i = 0; i < n; i++) {
        indeg[i] = c->L[i].n_in;
        for (int k = 0; k < c->L[i].n_in; k++) {
            int s = c->L[i].in[k];
            cons[cons_start[s] + fill[s]++] = i;
        }
    }
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0) queue[tail++] = i;
    while (head < tail) {
        int i = queue[head++];
        if ((st = emit_layer(c, i))) goto done;
        for (int e = cons_start[i]; e < cons_start[i + 1]; e++)
            if (--indeg[cons[e]] == 0) queue[tail++] = cons[e];
    }
    if (tail < n) {
        for (int i = 0; i < n; i++)
            if (indeg[i] > 0) {
                st = lfail(c, &c->L[i], IMCAP_E_FORMAT, "part of a cycle in the layer graph");
                break;
            }
    }
done:
    imcap_free(indeg);
    imcap_free(queue);
    imcap_free(cons_start);
    imcap_free(cons);
    imcap_free(fill);
    return st;
}

static imcap_status add_pooled_output(ctx *c, int li, const char *out)
{
    tl *l = &c->L[li];
    enc_node nd = node_new(ENC_GAP, l->name);
    nd.n_inputs = 1;
    nd.inputs[0] = l->value;
    char nm[ENC_NAME_LEN + 8];
    snprintf(nm, sizeof nm, "%s/gap", l->name);
    int v;
    imcap_status st = add_node(c, l, &nd, nm, &v);
    if (st) return st;
    return enc_graph_set_output(c->g, out, v);
}

/* ----------------------------------------------------------------- import */

void tfjs_default_options(tfjs_options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < 3; i++) o->preproc.scale[i] = 1.0f;
}

void tfjs_caffe_options(tfjs_options *o)
{
    static const float mean_bgr[3] = {103.939f, 116.779f, 123.68f};
    for (int i = 0; i < 3; i++) {
        o->preproc.scale[i] = 255.0f;
        o->preproc.bias[i] = -mean_bgr[2 - i];
    }
    o->bgr = true;
}

static imcap_status build(ctx *c)
{
    imcap_status st;
    if ((st = parse_topology(c))) return st;
    const tfjs_options *o = c->opt;
    /* layers whose own value must survive fusion */
    int emb = -1;
    if (o->embedding) {
        emb = find_layer(c, o->embedding);
        if (emb < 0) return imcap_fail(IMCAP_E_ARG, "%s: no layer named '%s' to pool as the embedding", c->path,
                                       o->embedding);
        c->L[emb].requested = true;
    }
    const char *def_pool[1] = {"mixed5"};
    const char *const *pooled = o->pooled;
    int n_pooled = o->n_pooled;
    if (!pooled) {
        pooled = def_pool;
        n_pooled = find_layer(c, "mixed5") >= 0;
    }
    for (int i = 0; i < n_pooled; i++) {
        int p = find_layer(c, pooled[i]);
        if (p < 0) return imcap_fail(IMCAP_E_ARG, "%s: no layer named '%s' to pool", c->path, pooled[i]);
        c->L[p].requested = true;
    }
    c->bgr_conv = -1;
    if (o->bgr) {
        int cur = c->input_layer;
        while (c->L[cur].n_cons == 1 && !strcmp(c->L[c->L[cur].cons0].cls, "ZeroPadding2D")) cur = c->L[cur].cons0;
        int f = c->L[cur].n_cons == 1 ? c->L[cur].cons0 : -1;
        if (f < 0 || strcmp(c->L[f].cls, "Conv2D") != 0)
            return imcap_fail(IMCAP_E_UNSUPPORTED,
                              "%s: BGR input order needs the input to feed one Conv2D (through zero padding only)",
                              c->path);
        c->bgr_conv = f;
    }
    if ((st = load_weights(c))) return st;
    char gname[256];
    if (o->name) {
        snprintf(gname, sizeof gname, "%s", o->name);
    } else {
        const char *b = strrchr(c->dir, '/');
        snprintf(gname, sizeof gname, "%s", b ? b + 1 : c->dir);
    }
    c->g = enc_graph_new(gname);
    if (!c->g) return IMCAP_E_NOMEM;
    if ((st = emit_all(c))) return st;
    /* classifier head */
    tl *out = &c->L[c->output_layer];
    if (out->logits >= 0) {
        if ((st = enc_graph_set_output(c->g, "probs", out->value)) ||
            (st = enc_graph_set_output(c->g, "logits", out->logits)))
            return st;
    } else {
        bool linear = !strcmp(out->cls, "Dense") || !strcmp(out->cls, "Conv2D");
        if (linear) {
            const char *a = NULL;
            if ((st = cfg_str(c, out, "activation", "linear", &a))) return st;
            linear = !strcmp(a, "linear");
        }
        if ((st = enc_graph_set_output(c->g, linear ? "logits" : "output", out->value))) return st;
    }
    /* embedding: the last spatial value on the single-input chain into the output */
    if (emb < 0) {
        int cur = c->output_layer;
        while (c->L[cur].n_in == 1) {
            int p = c->L[cur].in[0];
            const enc_value *pv = enc_graph_value(c->g, c->L[p].value);
            if (pv->h > 1 || pv->w > 1) {
                emb = p;
                break;
            }
            cur = p;
        }
    }
    if (emb >= 0 && (st = add_pooled_output(c, emb, "embedding"))) return st;
    for (int i = 0; i < n_pooled; i++)
        if ((st = add_pooled_output(c, find_layer(c, pooled[i]), pooled[i]))) return st;
    /* preprocessing: pixel/255 * scale + bias at the input size */
    enc_preproc pp = o->preproc;
    const enc_value *iv = enc_graph_value(c->g, c->L[c->input_layer].value);
    pp.in_h = iv->h;
    pp.in_w = iv->w;
    enc_graph_set_preproc(c->g, &pp);
    return IMCAP_OK;
}

imcap_status tfjs_import(const char *path, const tfjs_options *opt, enc_graph **out)
{
    *out = NULL;
    tfjs_options def;
    if (!opt) {
        tfjs_default_options(&def);
        opt = &def;
    }
    if (!path || !*path) return imcap_fail(IMCAP_E_ARG, "tfjs: no model path");
    ctx c;
    memset(&c, 0, sizeof c);
    c.opt = opt;
    char model[4200];
    struct stat sb;
    if (stat(path, &sb) != 0) return imcap_fail(IMCAP_E_IO, "%s: %s", path, strerror(errno));
    if (strlen(path) >= sizeof c.dir) return imcap_fail(IMCAP_E_ARG, "%s: path too long", path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(c.dir, sizeof c.dir, "%s", path);
        size_t dl = strlen(c.dir);
        while (dl > 1 && c.dir[dl - 1] == '/') c.dir[--dl] = 0;
        const char *names[] = {"model.json", "model.min.js", "model.js"};
        model[0] = 0;
        for (int i = 0; i < 3 && !model[0]; i++) {
            snprintf(model, sizeof model, "%s/%s", c.dir, names[i]);
            if (!path_is_file(model)) model[0] = 0;
        }
        if (!model[0])
            return imcap_fail(IMCAP_E_IO, "%s: no model.json, model.min.js or model.js in this directory", path);
    } else {
        snprintf(model, sizeof model, "%s", path);
        snprintf(c.dir, sizeof c.dir, "%s", path);
        char *sl = strrchr(c.dir, '/');
        if (sl) *sl = 0;
        else snprintf(c.dir, sizeof c.dir, ".");
    }
    c.path = model;
    char *text;
    size_t len;
    imcap_status st = imcap_read_file(model, MAX_MODEL_BYTES, &text, &len);
    if (st) return st;
    st = tfjs_parse_model_text(model, text, len, &c.root);
    free(text);
    if (!st) st = build(&c);
    if (st) {
        enc_graph_free(c.g);
    } else {
        enc_qgraph_disable(c.g, "%s: a TF.js model has float32 weights, no quantized ones", model);
        *out = c.g;
    }
    cJSON_Delete(c.root);
    imcap_free(c.ws);
    imcap_free(c.w);
    imcap_free(c.L);
    imcap_free(c.in_store);
    return st;
}
