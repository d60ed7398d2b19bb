/*
 * captions.c - caption datasets: loaders for the Flickr8k CSV, the original
 * Flickr8k token file and COCO captions JSON, split files, and restriction
 * of a dataset to a split.
 */
#include "strtab.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define CAPTIONS_FILE_MAX ((size_t)1 << 30)

struct imcap_captions {
    char *source;        /* file it came from, for messages */
    size_t n_images, n_caps;
    const char **names;  /* [n_images] */
    size_t *first;       /* [n_images + 1]: captions of image i are caps[first[i] .. first[i+1]) */
    const char **caps;   /* [n_caps] */
    imcap_arena arena;   /* all strings */
    imcap_strmap index;  /* name -> image */
};

/* ------------------------------------------------------------ building */

typedef struct cap_pair { size_t image; const char *text; } cap_pair;

typedef struct builder {
    imcap_arena arena;
    imcap_strmap index;
    const char **names;
    size_t n_names, cap_names;
    cap_pair *pairs;
    size_t n_pairs, cap_pairs;
} builder;

static void builder_free(builder *b)
{
    imcap_arena_free(&b->arena);
    imcap_strmap_free(&b->index);
    free(b->names);
    free(b->pairs);
    memset(b, 0, sizeof *b);
}

/* Problems of an image name or caption, or NULL when it is acceptable. */
static const char *check_name(const char *s, size_t n)
{
    if (n == 0) return "empty image name";
    if (n > IMCAP_NAME_MAX) return "image name longer than " IMCAP_STR(IMCAP_NAME_MAX) " bytes";
    return NULL;
}

static const char *check_caption(size_t n)
{
    return n > IMCAP_CAPTION_MAX ? "caption longer than " IMCAP_STR(IMCAP_CAPTION_MAX) " bytes" : NULL;
}

/* Index of the image called name[0..n), adding it when new. */
static imcap_status builder_image(builder *b, const char *name, size_t n, size_t *image)
{
    char tmp[IMCAP_NAME_MAX + 1];
    memcpy(tmp, name, n);
    tmp[n] = 0;
    int64_t v = imcap_strmap_get(&b->index, tmp);
    if (v >= 0) {
        *image = (size_t)v;
        return IMCAP_OK;
    }
    imcap_status st = imcap_grow((void **)&b->names, &b->cap_names, b->n_names + 1, sizeof *b->names);
    if (st) return st;
    char *s = imcap_arena_strndup(&b->arena, name, n);
    if (!s) return IMCAP_E_NOMEM;
    st = imcap_strmap_put(&b->index, s, (int64_t)b->n_names, NULL);
    if (st) return st;
    b->names[b->n_names] = s;
    *image = b->n_names++;
    return IMCAP_OK;
}

static imcap_status builder_caption(builder *b, size_t image, const char *text, size_t n)
{
    imcap_status st = imcap_grow((void **)&b->pairs, &b->cap_pairs, b->n_pairs + 1, sizeof *b->pairs);
    if (st) return st;
    char *s = imcap_arena_strndup(&b->arena, text, n);
    if (!s) return IMCAP_E_NOMEM;
    b->pairs[b->n_pairs].image = image;
    b->pairs[b->n_pairs].text = s;
    b->n_pairs++;
    return IMCAP_OK;
}

/* Groups the captions by image (stable) and hands the storage over. */
static imcap_status builder_finish(builder *b, const char *source, imcap_captions **out)
{
    imcap_captions *c = calloc(1, sizeof *c);
    if (!c) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a caption dataset");
    c->source = imcap_strdup(source);
    c->first = calloc(b->n_names + 1, sizeof *c->first);
    c->caps = calloc(b->n_pairs ? b->n_pairs : 1, sizeof *c->caps);
    if (!c->source || !c->first || !c->caps) {
        free(c->source);
        free(c->first);
        free(c->caps);
        free(c);
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for a caption dataset of %zu captions", b->n_pairs);
    }
    for (size_t i = 0; i < b->n_pairs; i++) c->first[b->pairs[i].image + 1]++;
    for (size_t i = 0; i < b->n_names; i++) c->first[i + 1] += c->first[i];
    size_t *fill = calloc(b->n_names ? b->n_names : 1, sizeof *fill);
    if (!fill) {
        free(c->source);
        free(c->first);
        free(c->caps);
        free(c);
        return imcap_fail(IMCAP_E_NOMEM, "out of memory for a caption dataset");
    }
    for (size_t i = 0; i < b->n_pairs; i++) {
        size_t im = b->pairs[i].image;
        c->caps[c->first[im] + fill[im]++] = b->pairs[i].text;
    }
    free(fill);
    c->n_images = b->n_names;
    c->n_caps = b->n_pairs;
    c->names = b->names;
    c->arena = b->arena;
    c->index = b->index;
    b->names = NULL;
    b->arena.head = NULL;
    memset(&b->index, 0, sizeof b->index);
    builder_free(b);
    *out = c;
    return IMCAP_OK;
}

/* ------------------------------------------------------------- reading */

static size_t line_of(const char *data, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos; i++) line += data[i] == '\n';
    return line;
}

/* Reads a text file: bounded size, no NUL bytes, valid UTF-8, BOM skipped. */
static imcap_status read_text(const char *path, char **data, size_t *len, size_t *start)
{
    imcap_status st = imcap_read_file(path, CAPTIONS_FILE_MAX, data, len);
    if (st) return st;
    const char *nul = memchr(*data, 0, *len);
    if (nul) {
        size_t line = line_of(*data, (size_t)(nul - *data));
        free(*data);
        return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: NUL byte in a text file", path, line);
    }
    size_t ok = imcap_utf8_valid_prefix(*data, *len);
    if (ok < *len) {
        size_t line = line_of(*data, ok);
        unsigned byte = (unsigned char)(*data)[ok];
        free(*data);
        return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: invalid UTF-8 (byte 0x%02x)", path, line, byte);
    }
    *start = *len >= 3 && memcmp(*data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    return IMCAP_OK;
}

/* ----------------------------------------------------------------- CSV */

typedef struct field_buf { char *p; size_t n, cap; } field_buf;

static imcap_status field_add(field_buf *f, const char *s, size_t n)
{
    imcap_status st = imcap_grow((void **)&f->p, &f->cap, f->n + n + 1, 1);
    if (st) return st;
    memcpy(f->p + f->n, s, n);
    f->n += n;
    return IMCAP_OK;
}

static imcap_status parse_csv(const char *path, const char *d, size_t len, size_t pos, builder *b)
{
    field_buf f[2] = {{0}};
    size_t line = 1;
    int have_header = 0;
    imcap_status st = IMCAP_OK;
#define CSV_FAIL(...) do { st = imcap_fail(IMCAP_E_FORMAT, __VA_ARGS__); goto done; } while (0)
    while (pos < len) {
        size_t rec_line = line;
        if (d[pos] == '\n' || (d[pos] == '\r' && pos + 1 < len && d[pos + 1] == '\n')) {
            pos += d[pos] == '\r' ? 2 : 1; /* blank line */
            line++;
            continue;
        }
        int nf = 0;
        for (;;) {
            field_buf *fb = nf < 2 ? &f[nf] : NULL;
            if (fb) fb->n = 0;
            if (pos < len && d[pos] == '"') {
                size_t open_line = line;
                pos++;
                for (;;) {
                    /* A run up to the next quote, then the quote itself. */
                    size_t s = pos;
                    while (pos < len && d[pos] != '"') line += d[pos++] == '\n';
                    if (pos >= len) CSV_FAIL("%s:%zu: unterminated quoted field (opened on line %zu)", path, line, open_line);
                    int doubled = pos + 1 < len && d[pos + 1] == '"';
                    if (fb) {
                        if (fb->n + (pos - s) + (size_t)doubled > IMCAP_CAPTION_MAX)
                            CSV_FAIL("%s:%zu: quoted field longer than %d bytes (unterminated quote opened on line %zu?)",
                                     path, line, IMCAP_CAPTION_MAX, open_line);
                        if ((st = field_add(fb, d + s, pos - s + (size_t)doubled))) goto done;
                    }
                    pos += doubled ? 2 : 1;
                    if (!doubled) break;
                }
                if (pos < len && d[pos] != ',' && d[pos] != '\n' && !(d[pos] == '\r' && pos + 1 < len && d[pos + 1] == '\n'))
                    CSV_FAIL("%s:%zu: unexpected character '%c' after a closing quote", path, line, d[pos]);
            } else {
                size_t s = pos;
                while (pos < len && d[pos] != ',' && d[pos] != '\n' && d[pos] != '\r') {
                    if (d[pos] == '"') CSV_FAIL("%s:%zu: quote inside an unquoted field", path, line);
                    pos++;
                }
                if (pos < len && d[pos] == '\r' && !(pos + 1 < len && d[pos + 1] == '\n'))
                    CSV_FAIL("%s:%zu: stray carriage return", path, line);
                if (fb) {
                    if (pos - s > IMCAP_CAPTION_MAX) CSV_FAIL("%s:%zu: field longer than %d bytes", path, line, IMCAP_CAPTION_MAX);
                    if ((st = field_add(fb, d + s, pos - s))) goto done;
                }
            }
            nf++;
            if (pos < len && d[pos] == ',') {
                pos++;
                continue;
            }
            if (pos < len) pos += d[pos] == '\r' ? 2 : 1;
            line++;
            break;
        }
        if (!have_header) {
            if (nf != 2 || f[0].n != 5 || memcmp(f[0].p, "image", 5) != 0 || f[1].n != 7 ||
                memcmp(f[1].p, "caption", 7) != 0)
                CSV_FAIL("%s:%zu: expected the header line 'image,caption'", path, rec_line);
            have_header = 1;
            continue;
        }
        if (nf != 2) CSV_FAIL("%s:%zu: expected 2 fields (image,caption), found %d", path, rec_line, nf);
        const char *problem = check_name(f[0].p, f[0].n);
        if (!problem) problem = check_caption(f[1].n);
        if (problem) CSV_FAIL("%s:%zu: %s", path, rec_line, problem);
        size_t image;
        if ((st = builder_image(b, f[0].p, f[0].n, &image))) goto done;
        if ((st = builder_caption(b, image, f[1].n ? f[1].p : "", f[1].n))) goto done;
    }
    if (!have_header) CSV_FAIL("%s:1: empty file (expected the header line 'image,caption')", path);
#undef CSV_FAIL
done:
    free(f[0].p);
    free(f[1].p);
    return st;
}

/* ---------------------------------------------------- line-based files */

/* Next line [*s, *e) of d starting at *pos (CR before LF stripped). */
static int next_line(const char *d, size_t len, size_t *pos, size_t *s, size_t *e)
{
    if (*pos >= len) return 0;
    *s = *pos;
    const char *nl = memchr(d + *pos, '\n', len - *pos);
    size_t end = nl ? (size_t)(nl - d) : len;
    *pos = nl ? end + 1 : len;
    if (end > *s && d[end - 1] == '\r') end--;
    *e = end;
    return 1;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static imcap_status parse_tokens(const char *path, const char *d, size_t len, size_t pos, builder *b)
{
    size_t s, e, line = 0;
    while (next_line(d, len, &pos, &s, &e)) {
        line++;
        size_t k = s;
        while (k < e && is_blank(d[k])) k++;
        if (k == e) continue;
        const char *tab = memchr(d + s, '\t', e - s);
        if (!tab) return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: missing tab between 'image#index' and the caption", path, line);
        size_t t = (size_t)(tab - d), h = t;
        while (h > s && d[h - 1] != '#') h--;
        if (h == s || h == t)
            return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: expected 'image#index' before the tab, found '%.*s'", path, line,
                              (int)(t - s > 80 ? 80 : t - s), d + s);
        for (size_t i = h; i < t; i++)
            if (d[i] < '0' || d[i] > '9')
                return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: caption index '%.*s' is not a number", path, line,
                                  (int)(t - h > 20 ? 20 : t - h), d + h);
        size_t name_len = h - 1 - s;
        const char *problem = check_name(d + s, name_len);
        if (!problem) problem = check_caption(e - t - 1);
        if (problem) return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: %s", path, line, problem);
        size_t image;
        imcap_status st = builder_image(b, d + s, name_len, &image);
        if (!st) st = builder_caption(b, image, d + t + 1, e - t - 1);
        if (st) return st;
    }
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- COCO */

typedef struct coco_image { double id; size_t pos; } coco_image;

static int cmp_coco_image(const void *a, const void *b)
{
    double x = ((const coco_image *)a)->id, y = ((const coco_image *)b)->id;
    return x < y ? -1 : x > y;
}

static int coco_int(const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double x = v->valuedouble;
    if (!(x >= 0 && x <= 9007199254740992.0) || x != (double)(int64_t)x) return 0;
    *out = x;
    return 1;
}

static imcap_status parse_coco(const char *path, const char *d, size_t len, size_t pos, builder *b)
{
    cJSON *root = cJSON_ParseWithLength(d + pos, len - pos);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t at = ep && ep >= d && ep <= d + len ? (size_t)(ep - d) : len;
        return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: invalid JSON", path, line_of(d, at));
    }
    imcap_status st = IMCAP_OK;
    coco_image *ims = NULL;
    size_t *image_of = NULL;
    size_t *owner = NULL;
#define COCO_FAIL(...) do { st = imcap_fail(IMCAP_E_FORMAT, __VA_ARGS__); goto done; } while (0)
    if (!cJSON_IsObject(root)) COCO_FAIL("%s: expected a JSON object at the top level", path);
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(images)) COCO_FAIL("%s: missing \"images\" array", path);
    if (!cJSON_IsArray(anns)) COCO_FAIL("%s: missing \"annotations\" array", path);
    size_t n_im = (size_t)cJSON_GetArraySize(images);
    ims = calloc(n_im ? n_im : 1, sizeof *ims);
    image_of = calloc(n_im ? n_im : 1, sizeof *image_of);
    owner = calloc(n_im ? n_im : 1, sizeof *owner);
    if (!ims || !image_of || !owner) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for %zu images", path, n_im);
        goto done;
    }
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, images) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "file_name");
        if (!cJSON_IsObject(it)) COCO_FAIL("%s: images[%zu]: not an object", path, i);
        if (!coco_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &ims[i].id))
            COCO_FAIL("%s: images[%zu]: missing or non-integer \"id\"", path, i);
        if (!cJSON_IsString(name)) COCO_FAIL("%s: images[%zu]: missing \"file_name\" string", path, i);
        const char *problem = check_name(name->valuestring, strlen(name->valuestring));
        if (problem) COCO_FAIL("%s: images[%zu]: %s", path, i, problem);
        ims[i].pos = i;
        i++;
    }
    qsort(ims, n_im, sizeof *ims, cmp_coco_image);
    for (i = 1; i < n_im; i++)
        if (ims[i].id == ims[i - 1].id)
            COCO_FAIL("%s: images[%zu] and images[%zu] have the same id %.0f", path, ims[i - 1].pos, ims[i].pos, ims[i].id);
    /* First pass: which images have captions (they are added in "images" order). */
    for (i = 0; i < n_im; i++) image_of[i] = SIZE_MAX;
    i = 0;
    cJSON_ArrayForEach(it, anns) {
        double id = 0;
        if (!cJSON_IsObject(it)) COCO_FAIL("%s: annotations[%zu]: not an object", path, i);
        if (!coco_int(cJSON_GetObjectItemCaseSensitive(it, "image_id"), &id))
            COCO_FAIL("%s: annotations[%zu]: missing or non-integer \"image_id\"", path, i);
        const cJSON *cap = cJSON_GetObjectItemCaseSensitive(it, "caption");
        if (!cJSON_IsString(cap)) COCO_FAIL("%s: annotations[%zu]: missing \"caption\" string", path, i);
        const char *problem = check_caption(strlen(cap->valuestring));
        if (problem) COCO_FAIL("%s: annotations[%zu]: %s", path, i, problem);
        coco_image key = {id, 0};
        coco_image *hit = bsearch(&key, ims, n_im, sizeof *ims, cmp_coco_image);
        if (!hit) COCO_FAIL("%s: annotations[%zu]: unknown image_id %.0f", path, i, id);
        image_of[hit->pos] = 0;
        i++;
    }
    size_t j = 0;
    cJSON_ArrayForEach(it, images) {
        if (image_of[j] != SIZE_MAX) {
            const char *name = cJSON_GetObjectItemCaseSensitive(it, "file_name")->valuestring;
            size_t before = b->n_names;
            if ((st = builder_image(b, name, strlen(name), &image_of[j]))) goto done;
            if (b->n_names == before) {
                size_t other = owner[image_of[j]];
                COCO_FAIL("%s: images[%zu] and images[%zu] have the same file_name '%s'", path, other, j, name);
            }
            owner[image_of[j]] = j;
        }
        j++;
    }
    cJSON_ArrayForEach(it, anns) {
        double id = 0;
        coco_int(cJSON_GetObjectItemCaseSensitive(it, "image_id"), &id);
        coco_image key = {id, 0};
        const coco_image *hit = bsearch(&key, ims, n_im, sizeof *ims, cmp_coco_image);
        const char *cap = cJSON_GetObjectItemCaseSensitive(it, "caption")->valuestring;
        if ((st = builder_caption(b, image_of[hit->pos], cap, strlen(cap)))) goto done;
    }
#undef COCO_FAIL
done:
    free(ims);
    free(image_of);
    free(owner);
    cJSON_Delete(root);
    return st;
}

/* ------------------------------------------------------------- loading */

typedef imcap_status (*parse_fn)(const char *, const char *, size_t, size_t, builder *);

static imcap_status load_with(const char *path, parse_fn parse, imcap_captions **out)
{
    *out = NULL;
    char *data;
    size_t len, start;
    imcap_status st = read_text(path, &data, &len, &start);
    if (st) return st;
    builder b = {0};
    st = imcap_strmap_init(&b.index, 1024);
    if (!st) st = parse(path, data, len, start, &b);
    free(data);
    if (!st && b.n_pairs == 0) st = imcap_fail(IMCAP_E_FORMAT, "%s: no captions in the file", path);
    if (st) {
        builder_free(&b);
        return st;
    }
    return builder_finish(&b, path, out);
}

imcap_status imcap_captions_load_csv(const char *path, imcap_captions **out) { return load_with(path, parse_csv, out); }
imcap_status imcap_captions_load_tokens(const char *path, imcap_captions **out) { return load_with(path, parse_tokens, out); }
imcap_status imcap_captions_load_coco(const char *path, imcap_captions **out) { return load_with(path, parse_coco, out); }

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m) return 0;
    for (size_t i = 0; i < m; i++) {
        char c = s[n - m + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[i]) return 0;
    }
    return 1;
}

imcap_status imcap_captions_load(const char *path, imcap_captions **out)
{
    if (ends_with(path, ".json")) return imcap_captions_load_coco(path, out);
    if (ends_with(path, ".csv")) return imcap_captions_load_csv(path, out);
    return imcap_captions_load_tokens(path, out);
}

void imcap_captions_free(imcap_captions *c)
{
    if (!c) return;
    free(c->source);
    free(c->names);
    free(c->first);
    free(c->caps);
    imcap_arena_free(&c->arena);
    imcap_strmap_free(&c->index);
    free(c);
}

size_t imcap_captions_n_images(const imcap_captions *c) { return c->n_images; }
size_t imcap_captions_n_total(const imcap_captions *c) { return c->n_caps; }
const char *imcap_captions_image(const imcap_captions *c, size_t i) { return i < c->n_images ? c->names[i] : NULL; }
size_t imcap_captions_count(const imcap_captions *c, size_t i) { return i < c->n_images ? c->first[i + 1] - c->first[i] : 0; }

const char *imcap_captions_text(const imcap_captions *c, size_t i, size_t k)
{
    if (i >= c->n_images || k >= c->first[i + 1] - c->first[i]) return NULL;
    return c->caps[c->first[i] + k];
}

int64_t imcap_captions_find(const imcap_captions *c, const char *name) { return imcap_strmap_get(&c->index, name); }

/* -------------------------------------------------------------- splits */

/* Loads a split file; *lines_out (if not NULL) receives each name's line. */
static imcap_status split_load(const char *path, char ***names_out, size_t *n_out, size_t **lines_out)
{
    *names_out = NULL;
    *n_out = 0;
    char *d;
    size_t len, pos;
    imcap_status st = read_text(path, &d, &len, &pos);
    if (st) return st;
    /* Pass 1: count names and their bytes, and check them. */
    size_t s, e, line = 0, n = 0, bytes = 0;
    size_t p = pos;
    while (next_line(d, len, &p, &s, &e)) {
        line++;
        while (s < e && is_blank(d[s])) s++;
        while (e > s && is_blank(d[e - 1])) e--;
        if (s == e) continue;
        const char *problem = check_name(d + s, e - s);
        if (problem) {
            free(d);
            return imcap_fail(IMCAP_E_FORMAT, "%s:%zu: %s", path, line, problem);
        }
        n++;
        bytes += e - s + 1;
    }
    if (n == 0) {
        free(d);
        return imcap_fail(IMCAP_E_FORMAT, "%s: no image names in the split file", path);
    }
    size_t total;
    char **names = NULL;
    if (imcap_mul_size(n, sizeof(char *), &total) && imcap_add_size(total, bytes, &total)) names = malloc(total);
    size_t *lines = calloc(n, sizeof *lines);
    imcap_strmap seen = {0};
    if (!names || !lines || imcap_strmap_init(&seen, n)) {
        free(names);
        free(lines);
        free(d);
        imcap_strmap_free(&seen);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for %zu names", path, n);
    }
    char *str = (char *)(names + n);
    size_t k = 0;
    line = 0;
    p = pos;
    while (next_line(d, len, &p, &s, &e)) {
        line++;
        while (s < e && is_blank(d[s])) s++;
        while (e > s && is_blank(d[e - 1])) e--;
        if (s == e) continue;
        memcpy(str, d + s, e - s);
        str[e - s] = 0;
        int64_t old;
        st = imcap_strmap_put(&seen, str, (int64_t)k, &old);
        if (!st && old >= 0)
            st = imcap_fail(IMCAP_E_FORMAT, "%s:%zu: image '%s' is listed twice (first on line %zu)", path, line, str,
                            lines[old]);
        if (st) {
            free(names);
            free(lines);
            free(d);
            imcap_strmap_free(&seen);
            return st;
        }
        lines[k] = line;
        names[k++] = str;
        str += e - s + 1;
    }
    if (lines_out) *lines_out = lines;
    else free(lines);
    free(d);
    imcap_strmap_free(&seen);
    *names_out = names;
    *n_out = n;
    return IMCAP_OK;
}

imcap_status imcap_split_load(const char *path, char ***names, size_t *n) { return split_load(path, names, n, NULL); }

static imcap_status subset(const imcap_captions *all, const char *const *names, size_t n, const size_t *lines,
                           const char *where, imcap_captions **out)
{
    *out = NULL;
    builder b = {0};
    imcap_status st = imcap_strmap_init(&b.index, n);
    for (size_t i = 0; i < n && !st; i++) {
        int64_t src = imcap_captions_find(all, names[i]);
        if (src < 0) {
            if (lines)
                st = imcap_fail(IMCAP_E_MISMATCH, "%s:%zu: image '%s' has no captions in %s", where, lines[i], names[i],
                                all->source);
            else
                st = imcap_fail(IMCAP_E_MISMATCH, "%s: image '%s' has no captions in %s", where, names[i], all->source);
            break;
        }
        size_t image, before = b.n_names;
        st = builder_image(&b, names[i], strlen(names[i]), &image);
        if (!st && b.n_names == before) st = imcap_fail(IMCAP_E_ARG, "%s: image '%s' is listed twice", where, names[i]);
        for (size_t k = all->first[src]; k < all->first[src + 1] && !st; k++)
            st = builder_caption(&b, image, all->caps[k], strlen(all->caps[k]));
    }
    if (!st && b.n_pairs == 0) st = imcap_fail(IMCAP_E_ARG, "%s: no images", where);
    if (st) {
        builder_free(&b);
        return st;
    }
    return builder_finish(&b, all->source, out);
}

imcap_status imcap_captions_subset(const imcap_captions *all, const char *const *names, size_t n, const char *where,
                                   imcap_captions **out)
{
    return subset(all, names, n, NULL, where ? where : "subset", out);
}

imcap_status imcap_captions_restrict(const imcap_captions *all, const char *split_path, imcap_captions **out)
{
    *out = NULL;
    char **names;
    size_t n, *lines;
    imcap_status st = split_load(split_path, &names, &n, &lines);
    if (st) return st;
    st = subset(all, (const char *const *)names, n, lines, split_path, out);
    free(names);
    free(lines);
    return st;
}
