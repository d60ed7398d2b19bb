/*
 * embfile.c - the embeddings file (docs/FORMATS.md "Embeddings file"):
 * a validated reader, an appending writer that survives being killed (the
 * header count trails the rows, each row carries a CRC, resume drops a torn
 * tail) and an atomic whole-file writer. Version 2 files carry a grid shape
 * (rows x cols x channels per image, e.g. a CNN's 7x7x2048 feature map) and
 * may store values as float16; the reader always returns float32.
 */
#define _POSIX_C_SOURCE 200809L
#include "f16.h"
#include "strtab.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "embfile.c stores float32 rows with memcpy and assumes a little-endian host"
#endif

#define EMB_MAGIC "IMCAPEMB"
#define EMB_VERSION 1u      /* flat float32 rows */
#define EMB_VERSION_GRID 2u /* grid shape and storage type in the header */
#define EMB_HEADER 128u
#define EMB_ENCODER_FIELD 64u
#define EMB_MAX_ROWS ((uint64_t)1 << 32)
#define EMB_FLUSH_EVERY 64

/* Header layout (little-endian):
 *   0 magic "IMCAPEMB"   8 u32 version   12 u32 header size (128)
 *  16 u32 dim            20 u32 name width   24 u64 row count
 *  32 char encoder[64] (NUL-padded)
 *  version 1:  96 28 zero bytes
 *  version 2:  96 u32 grid rows  100 u32 grid cols  104 u32 channels  108 u32 dtype (0 f32, 1 f16)  112 12 zero bytes
 * 124 u32 CRC-32 of bytes 0..123 */
typedef struct emb_header {
    uint32_t version, dim, name_width;
    uint32_t rows, cols, channels, dtype; /* version 1: 1, 1, dim, f32 */
    uint64_t count;
    char encoder[EMB_ENCODER_FIELD];
} emb_header;

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static void header_encode(uint8_t out[EMB_HEADER], const emb_header *h)
{
    memset(out, 0, EMB_HEADER);
    memcpy(out, EMB_MAGIC, 8);
    put32(out + 8, h->version);
    put32(out + 12, EMB_HEADER);
    put32(out + 16, h->dim);
    put32(out + 20, h->name_width);
    put64(out + 24, h->count);
    memcpy(out + 32, h->encoder, EMB_ENCODER_FIELD);
    if (h->version == EMB_VERSION_GRID) {
        put32(out + 96, h->rows);
        put32(out + 100, h->cols);
        put32(out + 104, h->channels);
        put32(out + 108, h->dtype);
    }
    put32(out + 124, imcap_crc32(0, out, 124));
}

static int valid_name_width(uint64_t w) { return w >= 8 && w <= IMCAP_EMB_NAME_WIDTH_MAX && w % 4 == 0; }

static imcap_status header_decode(const char *path, const uint8_t *b, size_t got, emb_header *h)
{
    if (got < 8 || memcmp(b, EMB_MAGIC, 8) != 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: not an imcap embeddings file (magic is not \"" EMB_MAGIC "\")", path);
    if (got < EMB_HEADER)
        return imcap_fail(IMCAP_E_FORMAT, "%s: truncated header (%zu of %u bytes)", path, got, EMB_HEADER);
    uint32_t stored = get32(b + 124), crc = imcap_crc32(0, b, 124);
    if (stored != crc)
        return imcap_fail(IMCAP_E_FORMAT, "%s: header CRC mismatch (stored %08x, computed %08x)", path, stored, crc);
    uint32_t version = get32(b + 8);
    if (version != EMB_VERSION && version != EMB_VERSION_GRID)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: embeddings file version %u (this build reads versions %u and %u)",
                          path, version, EMB_VERSION, EMB_VERSION_GRID);
    h->version = version;
    if (get32(b + 12) != EMB_HEADER)
        return imcap_fail(IMCAP_E_FORMAT, "%s: header size %u, expected %u", path, get32(b + 12), EMB_HEADER);
    h->dim = get32(b + 16);
    h->name_width = get32(b + 20);
    h->count = get64(b + 24);
    size_t reserved = 96;
    if (version == EMB_VERSION_GRID) {
        h->rows = get32(b + 96), h->cols = get32(b + 100), h->channels = get32(b + 104), h->dtype = get32(b + 108);
        reserved = 112;
        if (h->dtype != IMCAP_EMB_F32 && h->dtype != IMCAP_EMB_F16)
            return imcap_fail(IMCAP_E_FORMAT, "%s: value type %u is neither 0 (float32) nor 1 (float16)", path, h->dtype);
        if (!h->rows || !h->cols || !h->channels || h->rows > IMCAP_EMB_GRID_SIDE_MAX ||
            h->cols > IMCAP_EMB_GRID_SIDE_MAX || h->channels > IMCAP_EMB_DIM_MAX ||
            (uint64_t)h->rows * h->cols * h->channels != h->dim || h->dim > IMCAP_EMB_GRID_DIM_MAX)
            return imcap_fail(IMCAP_E_FORMAT,
                              "%s: grid %u x %u x %u does not fit dimension %u (sides 1..%d, channels 1..%d, at most "
                              "%d values)",
                              path, h->rows, h->cols, h->channels, h->dim, IMCAP_EMB_GRID_SIDE_MAX, IMCAP_EMB_DIM_MAX,
                              IMCAP_EMB_GRID_DIM_MAX);
    } else {
        h->rows = h->cols = 1, h->channels = h->dim, h->dtype = IMCAP_EMB_F32;
        if (h->dim == 0 || h->dim > IMCAP_EMB_DIM_MAX)
            return imcap_fail(IMCAP_E_FORMAT, "%s: dimension %u is outside 1..%d", path, h->dim, IMCAP_EMB_DIM_MAX);
    }
    if (!valid_name_width(h->name_width))
        return imcap_fail(IMCAP_E_FORMAT, "%s: name width %u is not a multiple of 4 in 8..%d", path, h->name_width,
                          IMCAP_EMB_NAME_WIDTH_MAX);
    if (h->count > EMB_MAX_ROWS)
        return imcap_fail(IMCAP_E_FORMAT, "%s: row count %llu is more than the limit of %llu", path,
                          (unsigned long long)h->count, (unsigned long long)EMB_MAX_ROWS);
    memcpy(h->encoder, b + 32, EMB_ENCODER_FIELD);
    size_t el = strnlen(h->encoder, EMB_ENCODER_FIELD);
    if (el == EMB_ENCODER_FIELD) return imcap_fail(IMCAP_E_FORMAT, "%s: encoder field is not NUL-terminated", path);
    for (size_t i = el; i < EMB_ENCODER_FIELD; i++)
        if (h->encoder[i]) return imcap_fail(IMCAP_E_FORMAT, "%s: encoder field is not NUL-padded", path);
    for (size_t i = reserved; i < 124; i++)
        if (b[i]) return imcap_fail(IMCAP_E_FORMAT, "%s: reserved header byte %zu is not zero", path, i);
    return IMCAP_OK;
}

static size_t value_size(const emb_header *h) { return h->dtype == IMCAP_EMB_F16 ? 2 : 4; }
/* Name field and stored values (the part the record CRC covers). */
static size_t record_body(const emb_header *h) { return (size_t)h->name_width + value_size(h) * (size_t)h->dim; }
static size_t record_size(const emb_header *h) { return record_body(h) + 4; }

/* Validates record `row`; on success *name points at its NUL-terminated name
 * inside rec. Returns IMCAP_E_FORMAT with a message on any problem. */
static imcap_status check_record(const char *path, const uint8_t *rec, const emb_header *h, uint64_t row,
                                 const char **name)
{
    size_t body = record_body(h);
    uint32_t stored = get32(rec + body), crc = imcap_crc32(0, rec, body);
    if (stored != crc)
        return imcap_fail(IMCAP_E_FORMAT, "%s: row %llu: CRC mismatch (stored %08x, computed %08x)", path,
                          (unsigned long long)row, stored, crc);
    size_t nl = strnlen((const char *)rec, h->name_width);
    if (nl == 0) return imcap_fail(IMCAP_E_FORMAT, "%s: row %llu: empty image name", path, (unsigned long long)row);
    if (nl == h->name_width)
        return imcap_fail(IMCAP_E_FORMAT, "%s: row %llu: image name is not NUL-terminated", path, (unsigned long long)row);
    for (size_t i = nl; i < h->name_width; i++)
        if (rec[i]) return imcap_fail(IMCAP_E_FORMAT, "%s: row %llu: name field is not NUL-padded", path, (unsigned long long)row);
    const uint8_t *p = rec + h->name_width;
    for (size_t i = 0; i < h->dim; i++) {
        float x = 0;
        if (h->dtype == IMCAP_EMB_F16) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            if (!imcap_f16_finite(v)) x = INFINITY;
        } else {
            memcpy(&x, p + 4 * i, 4);
        }
        if (!isfinite(x))
            return imcap_fail(IMCAP_E_FORMAT, "%s: row %llu ('%s'): value %zu is not finite", path,
                              (unsigned long long)row, (const char *)rec, i);
    }
    *name = (const char *)rec;
    return IMCAP_OK;
}

static imcap_status read_all(int fd, const char *path, void *buf, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, (uint8_t *)buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return imcap_fail(IMCAP_E_IO, "%s: read error: %s", path, strerror(errno));
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return IMCAP_OK;
}

static imcap_status write_all(int fd, const char *path, const void *buf, size_t n, off_t at)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = imcap_fault_hit(IMCAP_FAULT_WRITE) ? -1
                    : at >= 0 ? pwrite(fd, (const uint8_t *)buf + done, n - done, at + (off_t)done)
                            : write(fd, (const uint8_t *)buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return imcap_fail(IMCAP_E_IO, "%s: write error: %s", path, strerror(errno));
        done += (size_t)r;
    }
    return IMCAP_OK;
}

/* --------------------------------------------------------------- reader */

struct imcap_embfile {
    char *path;
    emb_header h;
    size_t count;
    float *rows;          /* [count][dim], imcap_alloc */
    const char **names;   /* [count] */
    imcap_arena arena;
    imcap_strmap index;
};

void imcap_embfile_close(imcap_embfile *f)
{
    if (!f) return;
    free(f->path);
    imcap_free(f->rows);
    free(f->names);
    imcap_arena_free(&f->arena);
    imcap_strmap_free(&f->index);
    free(f);
}

imcap_status imcap_embfile_open(const char *path, imcap_embfile **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return imcap_fail(IMCAP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return imcap_fail(IMCAP_E_IO, "%s: not a regular file", path);
    }
    uint8_t hb[EMB_HEADER];
    size_t got;
    imcap_embfile *f = NULL;
    uint8_t *buf = NULL;
    uint16_t *half = NULL; /* [dim] one float16 row */
    imcap_status st = read_all(fd, path, hb, EMB_HEADER, &got);
    emb_header h;
    if (!st) st = header_decode(path, hb, got, &h);
    if (st) goto fail;
    size_t rec = record_size(&h);
    uint64_t size = (uint64_t)sb.st_size, body = size - EMB_HEADER;
    if (h.count > body / rec) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: truncated: the header counts %llu rows of %zu bytes but the file holds %llu "
                                        "complete rows",
                        path, (unsigned long long)h.count, rec, (unsigned long long)(body / rec));
        goto fail;
    }
    if (body != h.count * rec) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: %llu bytes after the %llu rows the header counts (an interrupted "
                                        "extraction: resume it to repair the file)",
                        path, (unsigned long long)(body - h.count * rec), (unsigned long long)h.count);
        goto fail;
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->path = imcap_strdup(path))) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    f->h = h;
    f->count = (size_t)h.count;
    f->names = calloc(f->count ? f->count : 1, sizeof *f->names);
    f->rows = imcap_alloc(f->count ? f->count : 1, 4 * (size_t)h.dim);
    if (!f->names || !f->rows) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for %zu rows of dimension %u", path, f->count, h.dim);
        goto fail;
    }
    if ((st = imcap_strmap_init(&f->index, f->count))) goto fail;
    size_t per = rec >= (1u << 20) ? 1 : (1u << 20) / rec;
    buf = malloc(per * rec);
    if (h.dtype == IMCAP_EMB_F16) half = malloc(2 * (size_t)h.dim);
    if (!buf || (h.dtype == IMCAP_EMB_F16 && !half)) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for a read buffer", path);
        goto fail;
    }
    for (size_t i = 0; i < f->count;) {
        size_t k = f->count - i < per ? f->count - i : per;
        if ((st = read_all(fd, path, buf, k * rec, &got))) goto fail;
        if (got != k * rec) {
            st = imcap_fail(IMCAP_E_IO, "%s: file shrank while being read", path);
            goto fail;
        }
        for (size_t j = 0; j < k; j++, i++) {
            const uint8_t *r = buf + j * rec;
            const char *name;
            if ((st = check_record(path, r, &h, i, &name))) goto fail;
            char *s = imcap_arena_strndup(&f->arena, name, strlen(name));
            if (!s) {
                st = IMCAP_E_NOMEM;
                goto fail;
            }
            int64_t old;
            if ((st = imcap_strmap_put(&f->index, s, (int64_t)i, &old))) goto fail;
            if (old >= 0) {
                st = imcap_fail(IMCAP_E_FORMAT, "%s: rows %lld and %zu have the same image name '%s'", path,
                                (long long)old, i, s);
                goto fail;
            }
            f->names[i] = s;
            if (h.dtype == IMCAP_EMB_F16) {
                memcpy(half, r + h.name_width, 2 * (size_t)h.dim);
                imcap_f16_to_f32_n(half, f->rows + i * h.dim, h.dim);
            } else {
                memcpy(f->rows + i * h.dim, r + h.name_width, 4 * (size_t)h.dim);
            }
        }
    }
    free(buf);
    free(half);
    close(fd);
    *out = f;
    return IMCAP_OK;
fail:
    free(buf);
    free(half);
    imcap_embfile_close(f);
    close(fd);
    return st;
}

size_t imcap_embfile_count(const imcap_embfile *f) { return f->count; }
size_t imcap_embfile_dim(const imcap_embfile *f) { return f->h.dim; }
const char *imcap_embfile_encoder(const imcap_embfile *f) { return f->h.encoder; }

static imcap_emb_layout layout_of(const emb_header *h)
{
    imcap_emb_layout l = {h->rows, h->cols, h->channels, (int)h->dtype};
    return l;
}
imcap_emb_layout imcap_embfile_layout(const imcap_embfile *f) { return layout_of(&f->h); }
const char *imcap_embfile_name(const imcap_embfile *f, size_t i) { return i < f->count ? f->names[i] : NULL; }
const float *imcap_embfile_row(const imcap_embfile *f, size_t i) { return i < f->count ? f->rows + i * f->h.dim : NULL; }
const float *imcap_embfile_data(const imcap_embfile *f) { return f->rows; }
int64_t imcap_embfile_find(const imcap_embfile *f, const char *name) { return imcap_strmap_get(&f->index, name); }

imcap_status imcap_embfile_match(const imcap_embfile *f, const imcap_captions *c, int32_t *rows)
{
    size_t missing = 0;
    const char *first = NULL;
    for (size_t i = 0; i < imcap_captions_n_images(c); i++) {
        int64_t r = imcap_embfile_find(f, imcap_captions_image(c, i));
        rows[i] = (int32_t)r;
        if (r < 0 && !missing++) first = imcap_captions_image(c, i);
    }
    if (missing)
        return imcap_fail(IMCAP_E_MISMATCH, "%s: no embedding for image '%s' (%zu of %zu images missing)", f->path,
                          first, missing, imcap_captions_n_images(c));
    if (f->count > INT32_MAX) return imcap_fail(IMCAP_E_ARG, "%s: too many rows for int32 indices", f->path);
    return IMCAP_OK;
}

/* --------------------------------------------------------------- writer */

struct imcap_embfile_writer {
    int fd;
    char *path;
    emb_header h;
    size_t rec, flush_every;
    uint64_t count, committed; /* rows written; rows the header counts */
    uint8_t *buf;              /* [rec] */
    uint16_t *half;            /* [dim] a row converted to float16 (float16 files) */
    imcap_arena arena;
    imcap_strmap names;
};

static void writer_free(imcap_embfile_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    free(w->path);
    free(w->buf);
    free(w->half);
    imcap_arena_free(&w->arena);
    imcap_strmap_free(&w->names);
    free(w);
}

static imcap_status writer_alloc(const char *path, const emb_header *h, imcap_embfile_writer **out)
{
    imcap_embfile_writer *w = calloc(1, sizeof *w);
    if (!w) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->h = *h;
    w->rec = record_size(h);
    w->flush_every = EMB_FLUSH_EVERY;
    w->path = imcap_strdup(path);
    w->buf = malloc(w->rec);
    if (h->dtype == IMCAP_EMB_F16) w->half = malloc(2 * (size_t)h->dim);
    if (!w->path || !w->buf || (h->dtype == IMCAP_EMB_F16 && !w->half) || imcap_strmap_init(&w->names, 1024)) {
        writer_free(w);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    }
    *out = w;
    return IMCAP_OK;
}

static imcap_status set_encoder(const char *path, emb_header *h, const char *encoder)
{
    memset(h->encoder, 0, sizeof h->encoder);
    if (!encoder) return IMCAP_OK;
    size_t n = strlen(encoder);
    if (n > IMCAP_EMB_ENCODER_MAX)
        return imcap_fail(IMCAP_E_ARG, "%s: encoder id '%s' is longer than %d bytes", path, encoder, IMCAP_EMB_ENCODER_MAX);
    memcpy(h->encoder, encoder, n);
    return IMCAP_OK;
}

/* Fills the header's version, shape and value type from a layout. */
static imcap_status check_shape(const char *path, const imcap_emb_layout *l, size_t *name_width, emb_header *h)
{
    if (l->dtype != IMCAP_EMB_F32 && l->dtype != IMCAP_EMB_F16)
        return imcap_fail(IMCAP_E_ARG, "%s: value type %d is neither IMCAP_EMB_F32 nor IMCAP_EMB_F16", path, l->dtype);
    size_t dim;
    if (!l->rows || !l->cols || !l->channels || l->rows > IMCAP_EMB_GRID_SIDE_MAX || l->cols > IMCAP_EMB_GRID_SIDE_MAX ||
        l->channels > IMCAP_EMB_DIM_MAX || !imcap_mul_size(l->rows * l->cols, l->channels, &dim) ||
        dim > IMCAP_EMB_GRID_DIM_MAX)
        return imcap_fail(IMCAP_E_ARG,
                          "%s: grid %zu x %zu x %zu is outside sides 1..%d, channels 1..%d, at most %d values", path,
                          l->rows, l->cols, l->channels, IMCAP_EMB_GRID_SIDE_MAX, IMCAP_EMB_DIM_MAX,
                          IMCAP_EMB_GRID_DIM_MAX);
    int flat = l->rows == 1 && l->cols == 1 && l->dtype == IMCAP_EMB_F32;
    if (flat && (dim == 0 || dim > IMCAP_EMB_DIM_MAX))
        return imcap_fail(IMCAP_E_ARG, "%s: dimension %zu is outside 1..%d", path, dim, IMCAP_EMB_DIM_MAX);
    h->version = flat ? EMB_VERSION : EMB_VERSION_GRID;
    h->dim = (uint32_t)dim;
    h->rows = (uint32_t)l->rows, h->cols = (uint32_t)l->cols, h->channels = (uint32_t)l->channels;
    h->dtype = (uint32_t)l->dtype;
    if (*name_width == 0) *name_width = IMCAP_EMB_NAME_WIDTH;
    if (!valid_name_width(*name_width))
        return imcap_fail(IMCAP_E_ARG, "%s: name width %zu is not a multiple of 4 in 8..%d", path, *name_width,
                          IMCAP_EMB_NAME_WIDTH_MAX);
    return IMCAP_OK;
}

static imcap_status write_header(imcap_embfile_writer *w)
{
    uint8_t hb[EMB_HEADER];
    w->h.count = w->count;
    header_encode(hb, &w->h);
    imcap_status st = write_all(w->fd, w->path, hb, EMB_HEADER, 0);
    if (st) return st;
    w->committed = w->count;
    return IMCAP_OK;
}

static imcap_emb_layout flat_layout(size_t dim)
{
    imcap_emb_layout l = {1, 1, dim, IMCAP_EMB_F32};
    return l;
}

imcap_status imcap_embfile_create(const char *path, size_t dim, size_t name_width, const char *encoder,
                                  imcap_embfile_writer **out)
{
    imcap_emb_layout l = flat_layout(dim);
    if (dim == 0 || dim > IMCAP_EMB_DIM_MAX)
        return imcap_fail(IMCAP_E_ARG, "%s: dimension %zu is outside 1..%d", path, dim, IMCAP_EMB_DIM_MAX);
    return imcap_embfile_create_grid(path, &l, name_width, encoder, out);
}

imcap_status imcap_embfile_create_grid(const char *path, const imcap_emb_layout *layout, size_t name_width,
                                       const char *encoder, imcap_embfile_writer **out)
{
    *out = NULL;
    emb_header h = {0};
    imcap_status st = check_shape(path, layout, &name_width, &h);
    if (!st) st = set_encoder(path, &h, encoder);
    if (st) return st;
    h.name_width = (uint32_t)name_width;
    imcap_embfile_writer *w;
    if ((st = writer_alloc(path, &h, &w))) return st;
    w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
        st = imcap_fail(IMCAP_E_IO, "%s: cannot create: %s", path, strerror(errno));
        writer_free(w);
        return st;
    }
    st = write_header(w);
    if (!st && lseek(w->fd, EMB_HEADER, SEEK_SET) < 0) st = imcap_fail(IMCAP_E_IO, "%s: seek failed: %s", path, strerror(errno));
    if (st) {
        writer_free(w);
        return st;
    }
    *out = w;
    return IMCAP_OK;
}

imcap_status imcap_embfile_resume(const char *path, size_t dim, const char *encoder, imcap_embfile_writer **out,
                                  size_t *n_dropped)
{
    *out = NULL;
    if (n_dropped) *n_dropped = 0;
    int fd = open(path, O_RDWR);
    if (fd < 0) return imcap_fail(IMCAP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t hb[EMB_HEADER];
    size_t got;
    emb_header h;
    imcap_embfile_writer *w = NULL;
    struct stat sb;
    imcap_status st = read_all(fd, path, hb, EMB_HEADER, &got);
    if (!st) st = header_decode(path, hb, got, &h);
    if (st) goto fail;
    if (dim && dim != h.dim) {
        st = imcap_fail(IMCAP_E_MISMATCH, "%s: rows have dimension %u, expected %zu", path, h.dim, dim);
        goto fail;
    }
    if (encoder && strcmp(encoder, h.encoder) != 0) {
        st = imcap_fail(IMCAP_E_MISMATCH, "%s: written by encoder '%s', not '%s'", path, h.encoder, encoder);
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        st = imcap_fail(IMCAP_E_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if ((st = writer_alloc(path, &h, &w))) goto fail;
    w->fd = fd;
    uint64_t body = (uint64_t)sb.st_size - EMB_HEADER, full = body / w->rec;
    /* Keep the longest prefix of valid rows. */
    uint64_t keep = 0;
    for (; keep < full; keep++) {
        if ((st = read_all(fd, path, w->buf, w->rec, &got))) goto fail;
        const char *name;
        if (got != w->rec || check_record(path, w->buf, &h, keep, &name)) break;
        char *s = imcap_arena_strndup(&w->arena, name, strlen(name));
        int64_t old;
        if (!s) {
            st = IMCAP_E_NOMEM;
            goto fail;
        }
        if ((st = imcap_strmap_put(&w->names, s, (int64_t)keep, &old))) goto fail;
        if (old >= 0) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s: rows %lld and %llu have the same image name '%s'", path, (long long)old,
                            (unsigned long long)keep, s);
            goto fail;
        }
    }
    if (n_dropped) *n_dropped = (size_t)(full - keep) + (body % w->rec ? 1 : 0);
    w->count = keep;
    off_t end = (off_t)(EMB_HEADER + keep * w->rec);
    if (ftruncate(fd, end) != 0 || fsync(fd) != 0) {
        st = imcap_fail(IMCAP_E_IO, "%s: cannot truncate the torn tail: %s", path, strerror(errno));
        goto fail;
    }
    if ((st = write_header(w))) goto fail;
    if (fdatasync(fd) != 0 || lseek(fd, end, SEEK_SET) < 0) {
        st = imcap_fail(IMCAP_E_IO, "%s: sync failed: %s", path, strerror(errno));
        goto fail;
    }
    imcap_clear_error();
    *out = w;
    return IMCAP_OK;
fail:
    if (w) writer_free(w);
    else close(fd);
    return st;
}

void imcap_embfile_writer_set_flush_every(imcap_embfile_writer *w, size_t rows) { w->flush_every = rows ? rows : 1; }
size_t imcap_embfile_writer_count(const imcap_embfile_writer *w) { return (size_t)w->count; }
int imcap_embfile_writer_has(const imcap_embfile_writer *w, const char *name) { return imcap_strmap_get(&w->names, name) >= 0; }
imcap_emb_layout imcap_embfile_writer_layout(const imcap_embfile_writer *w) { return layout_of(&w->h); }

/* Encodes one record into buf; checks the name and values (half: [dim]
 * scratch for float16 files). */
static imcap_status encode_record(const char *path, const emb_header *h, uint8_t *buf, uint16_t *half,
                                  const char *name, const float *row)
{
    size_t nl = strlen(name);
    if (nl == 0) return imcap_fail(IMCAP_E_ARG, "%s: empty image name", path);
    if (nl >= h->name_width)
        return imcap_fail(IMCAP_E_ARG, "%s: image name '%s' is longer than %u bytes", path, name, h->name_width - 1);
    for (size_t i = 0; i < h->dim; i++)
        if (!isfinite(row[i])) return imcap_fail(IMCAP_E_ARG, "%s: '%s': value %zu is not finite", path, name, i);
    memset(buf, 0, h->name_width);
    memcpy(buf, name, nl);
    if (h->dtype == IMCAP_EMB_F16) {
        imcap_f32_to_f16_n(row, half, h->dim);
        for (size_t i = 0; i < h->dim; i++)
            if (!imcap_f16_finite(half[i]))
                return imcap_fail(IMCAP_E_ARG, "%s: '%s': value %zu (%g) is outside the float16 range", path, name, i,
                                  (double)row[i]);
        memcpy(buf + h->name_width, half, 2 * (size_t)h->dim);
    } else {
        memcpy(buf + h->name_width, row, 4 * (size_t)h->dim);
    }
    size_t body = record_body(h);
    put32(buf + body, imcap_crc32(0, buf, body));
    return IMCAP_OK;
}

imcap_status imcap_embfile_append(imcap_embfile_writer *w, const char *name, const float *row)
{
    if (w->count >= EMB_MAX_ROWS) return imcap_fail(IMCAP_E_ARG, "%s: row limit reached", w->path);
    if (imcap_embfile_writer_has(w, name)) return imcap_fail(IMCAP_E_ARG, "%s: image '%s' already has a row", w->path, name);
    imcap_status st = encode_record(w->path, &w->h, w->buf, w->half, name, row);
    if (st) return st;
    char *s = imcap_arena_strndup(&w->arena, name, strlen(name));
    if (!s) return IMCAP_E_NOMEM;
    if ((st = imcap_strmap_put(&w->names, s, (int64_t)w->count, NULL))) return st;
    if ((st = write_all(w->fd, w->path, w->buf, w->rec, -1))) return st;
    w->count++;
    if (w->count - w->committed >= w->flush_every) return imcap_embfile_flush(w);
    return IMCAP_OK;
}

imcap_status imcap_embfile_flush(imcap_embfile_writer *w)
{
    /* Rows reach the disk before the header that counts them. */
    if (fdatasync(w->fd) != 0) return imcap_fail(IMCAP_E_IO, "%s: sync failed: %s", w->path, strerror(errno));
    imcap_status st = write_header(w);
    if (st) return st;
    if (fdatasync(w->fd) != 0) return imcap_fail(IMCAP_E_IO, "%s: sync failed: %s", w->path, strerror(errno));
    return IMCAP_OK;
}

imcap_status imcap_embfile_writer_close(imcap_embfile_writer *w)
{
    if (!w) return IMCAP_OK;
    imcap_status st = imcap_embfile_flush(w);
    if (close(w->fd) != 0 && !st) st = imcap_fail(IMCAP_E_IO, "%s: close failed: %s", w->path, strerror(errno));
    w->fd = -1;
    writer_free(w);
    return st;
}

imcap_status imcap_embfile_write(const char *path, size_t dim, const char *encoder, size_t n, const char *const *names,
                                 const float *rows)
{
    size_t name_width = 0;
    emb_header h = {0};
    imcap_emb_layout l = flat_layout(dim);
    imcap_status st = check_shape(path, &l, &name_width, &h);
    if (!st) st = set_encoder(path, &h, encoder);
    if (st) return st;
    if ((uint64_t)n > EMB_MAX_ROWS) return imcap_fail(IMCAP_E_ARG, "%s: %zu rows is too many", path, n);
    h.name_width = (uint32_t)name_width;
    h.count = n;
    size_t rec = record_size(&h);
    uint8_t hb[EMB_HEADER], *buf = malloc(rec);
    if (!buf) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    imcap_strmap seen = {0};
    if ((st = imcap_strmap_init(&seen, n))) {
        free(buf);
        return st;
    }
    for (size_t i = 0; i < n && !st; i++) {
        int64_t old;
        st = imcap_strmap_put(&seen, names[i], (int64_t)i, &old);
        if (!st && old >= 0)
            st = imcap_fail(IMCAP_E_ARG, "%s: rows %lld and %zu have the same image name '%s'", path, (long long)old, i,
                            names[i]);
    }
    imcap_strmap_free(&seen);
    imcap_atomic_file af;
    if (!st) st = imcap_atomic_open(&af, path);
    if (st) {
        free(buf);
        return st;
    }
    header_encode(hb, &h);
    st = imcap_atomic_write(&af, hb, EMB_HEADER);
    for (size_t i = 0; i < n && !st; i++) {
        st = encode_record(path, &h, buf, NULL, names[i], rows + i * dim);
        if (!st) st = imcap_atomic_write(&af, buf, rec);
    }
    free(buf);
    if (st) {
        imcap_atomic_abort(&af);
        return st;
    }
    return imcap_atomic_commit(&af);
}
