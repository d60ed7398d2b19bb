/*
 * image.c - image decoding (JPEG via libjpeg-turbo, PNG via libpng, BMP by
 * hand) to 8-bit RGB, EXIF orientation (libexif), and the encoder recipe's
 * preprocessing: square center crop + OpenCV-exact INTER_LINEAR resize.
 *
 * Safety: every decoder checks the header's dimensions against
 * IMCAP_IMAGE_MAX_PIXELS before allocating anything image-sized; libjpeg and
 * libpng report errors through setjmp/longjmp error managers that turn them
 * into imcap_fail() messages naming the file. Truncation and entropy-data
 * corruption, which libjpeg only warns about (filling the rest with gray),
 * are treated as errors.
 */
#include "internal.h"

#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Files larger than this are refused before reading (a 100 Mpx BMP is 300 MB). */
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

imcap_image_format imcap_image_sniff(const void *data, size_t len)
{
    const uint8_t *p = data;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return IMCAP_IMAGE_JPEG;
    if (len >= 8 && !memcmp(p, png_sig, 8)) return IMCAP_IMAGE_PNG;
    if (len >= 2 && p[0] == 'B' && p[1] == 'M') return IMCAP_IMAGE_BMP;
    return IMCAP_IMAGE_UNKNOWN;
}

const char *imcap_image_format_name(imcap_image_format f)
{
    switch (f) {
    case IMCAP_IMAGE_JPEG: return "JPEG";
    case IMCAP_IMAGE_PNG: return "PNG";
    case IMCAP_IMAGE_BMP: return "BMP";
    case IMCAP_IMAGE_UNKNOWN: break;
    }
    return "unknown";
}

void imcap_image_free(imcap_image *img)
{
    if (!img) return;
    imcap_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

/* Checks dimensions from a header and allocates the RGB buffer. */
static imcap_status alloc_rgb(const char *name, const char *fmt, uint64_t w, uint64_t h, imcap_image *out)
{
    if (w == 0 || h == 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s header gives an empty image (%llux%llu)", name, fmt,
                          (unsigned long long)w, (unsigned long long)h);
    if (w > IMCAP_IMAGE_MAX_PIXELS || h > IMCAP_IMAGE_MAX_PIXELS || w * h > IMCAP_IMAGE_MAX_PIXELS)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s image is %llux%llu pixels, more than the limit of %d pixels",
                          name, fmt, (unsigned long long)w, (unsigned long long)h, IMCAP_IMAGE_MAX_PIXELS);
    out->rgb = imcap_alloc((size_t)(w * h), 3);
    if (!out->rgb) return imcap_fail_prefix(IMCAP_E_NOMEM, "%s", name);
    out->w = (int)w;
    out->h = (int)h;
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ EXIF */

/* Orientation (1..8) from the APP1 "Exif" marker of a JPEG; 1 if absent or unreadable. */
static int exif_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || m->data_length < 14 || memcmp(m->data, "Exif\0\0", 6)) continue;
        ExifData *ed = exif_data_new_from_data(m->data, m->data_length);
        if (!ed) return 1;
        int o = 1;
        ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
        if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data && e->size >= 2) {
            int v = exif_get_short(e->data, exif_data_get_byte_order(ed));
            if (v >= 1 && v <= 8) o = v;
        }
        exif_data_unref(ed);
        return o;
    }
    return 1;
}

/* Applies EXIF orientation o so that the image is as meant to be displayed.
 * For output pixel (x, y), the stored pixel read is listed per case. */
static imcap_status apply_orientation(const char *name, imcap_image *img, int o)
{
    if (o <= 1 || o > 8) return IMCAP_OK;
    int w = img->w, h = img->h;
    int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    uint8_t *dst = imcap_alloc((size_t)w * h, 3);
    if (!dst) return imcap_fail_prefix(IMCAP_E_NOMEM, "%s", name);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;              /* mirrored horizontally */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;      /* rotated 180 */
            case 4: sx = x; sy = h - 1 - y; break;              /* mirrored vertically */
            case 5: sx = y; sy = x; break;                      /* transposed */
            case 6: sx = y; sy = h - 1 - x; break;              /* needs 90 clockwise */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;      /* transverse */
            default: sx = w - 1 - y; sy = x; break;             /* 8: needs 90 counter-clockwise */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    imcap_free(img->rgb);
    img->rgb = dst;
    img->w = ow;
    img->h = oh;
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings that mean the data is truncated or corrupt become errors;
 * informational ones (unknown JFIF revision, extraneous bytes) are ignored. */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level)
{
    if (level >= 0) return;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC ||
        code == JWRN_HUFF_BAD_CODE || code == JWRN_ARITH_BAD_CODE || code == JWRN_NOT_SEQUENTIAL ||
        code == JWRN_BOGUS_PROGRESSION)
        jpeg_error_exit_cb(cinfo);
}

static imcap_status decode_jpeg(const uint8_t *data, size_t len, const char *name, imcap_image *out)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    /* volatile: modified between setjmp and a possible longjmp */
    uint8_t *volatile row = NULL;
    volatile imcap_status st = IMCAP_OK;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_error_exit_cb;
    jerr.pub.emit_message = jpeg_emit_message_cb;
    jerr.msg[0] = 0;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        imcap_image_free(out);
        if (st != IMCAP_OK) return st;
        return imcap_fail(IMCAP_E_FORMAT, "%s: JPEG: %s", name, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    /* Bound libjpeg's own working memory (coefficient buffers of a
     * progressive 100 Mpx image with 4:4:4 sampling need about 600 MB). */
    cinfo.mem->max_memory_to_use = 1024L * 1024 * 1024;
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    if (len > 0xffffffffUL) {
        jpeg_destroy_decompress(&cinfo);
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: JPEG file too large (%zu bytes)", name, len);
    }
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    st = alloc_rgb(name, "JPEG", cinfo.image_width, cinfo.image_height, out);
    if (st != IMCAP_OK) longjmp(jerr.jb, 1);
    int cmyk = 0, inverted = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        /* Adobe applications write CMYK with inverted values (0 = full ink)
         * and mark it with the Adobe APP14 marker; YCCK always has it. */
        inverted = cinfo.saw_Adobe_marker;
        break;
    case JCS_GRAYSCALE:
    case JCS_RGB:
    case JCS_YCbCr:
        cinfo.out_color_space = JCS_RGB;
        break;
    default:
        st = imcap_fail(IMCAP_E_UNSUPPORTED, "%s: JPEG: unsupported color space %d with %d components", name,
                        (int)cinfo.jpeg_color_space, cinfo.num_components);
        longjmp(jerr.jb, 1);
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != (JDIMENSION)out->w || cinfo.output_height != (JDIMENSION)out->h ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        st = imcap_fail(IMCAP_E_INTERNAL, "%s: JPEG: unexpected output geometry", name);
        longjmp(jerr.jb, 1);
    }
    if (cmyk) {
        row = malloc((size_t)out->w * 4);
        if (!row) {
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", name);
            longjmp(jerr.jb, 1);
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = out->rgb + (size_t)cinfo.output_scanline * out->w * 3;
        JSAMPROW rp = cmyk ? row : dst;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s: JPEG: decoder returned no scanline at row %u", name,
                            cinfo.output_scanline);
            longjmp(jerr.jb, 1);
        }
        if (cmyk) {
            for (int x = 0; x < out->w; x++) {
                int c = row[4 * x], m = row[4 * x + 1], y = row[4 * x + 2], k = row[4 * x + 3];
                if (!inverted) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
                /* now c,m,y,k are "amount of paper left": R = C' * K' / 255 */
                dst[3 * x] = (uint8_t)((c * k + 127) / 255);
                dst[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
                dst[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
            }
        }
    }
    int orient = exif_orientation(&cinfo);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    imcap_status s = apply_orientation(name, out, orient);
    if (s != IMCAP_OK) imcap_image_free(out);
    return s;
}

/* ------------------------------------------------------------------- PNG */

typedef struct png_src {
    const uint8_t *data;
    size_t len, pos;
    char msg[256];
} png_src;

static void png_error_cb(png_structp png, png_const_charp msg)
{
    png_src *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_cb(png_structp png, png_bytep out, png_size_t n)
{
    png_src *src = png_get_io_ptr(png);
    if (n > src->len - src->pos) png_error(png, "file is truncated");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

/* Alpha (from an alpha channel or a tRNS chunk) is composited on white:
 * out = (c*a + 255*(255-a)) / 255, rounded; photos with transparency then
 * look as they do on a white page rather than revealing hidden colors. */
static imcap_status decode_png(const uint8_t *data, size_t len, const char *name, imcap_image *out)
{
    png_src src = {data, len, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
    if (!png) return imcap_fail(IMCAP_E_NOMEM, "%s: PNG: cannot create reader", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    volatile imcap_status st = IMCAP_OK;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return imcap_fail(IMCAP_E_NOMEM, "%s: PNG: cannot create reader", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        imcap_free(buf);
        imcap_image_free(out);
        if (st != IMCAP_OK) return st;
        return imcap_fail(IMCAP_E_FORMAT, "%s: PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_cb);
    png_set_user_limits(png, 1u << 30, 1u << 30);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    st = alloc_rgb(name, "PNG", w, h, out);
    if (st != IMCAP_OK) png_longjmp(png, 1);
    png_set_expand(png); /* palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha */
    png_set_scale_16(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || (ch != 3 && ch != 4)) {
        st = imcap_fail(IMCAP_E_INTERNAL, "%s: PNG: unexpected layout after transforms", name);
        png_longjmp(png, 1);
    }
    uint8_t *pix = out->rgb;
    if (ch == 4) {
        buf = imcap_alloc((size_t)w * h, 4);
        if (!buf) {
            st = imcap_fail_prefix(IMCAP_E_NOMEM, "%s", name);
            png_longjmp(png, 1);
        }
        pix = buf;
    }
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", name);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + (size_t)y * w * ch;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    if (ch == 4) {
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++) {
            int a = buf[4 * i + 3];
            for (int c = 0; c < 3; c++)
                out->rgb[3 * i + c] = (uint8_t)((buf[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    imcap_free(buf);
    return IMCAP_OK;
}

/* ------------------------------------------------------------------- BMP */

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Extracts an 8-bit channel from a packed pixel through a bit mask. */
static uint8_t mask_channel(uint32_t v, uint32_t mask)
{
    if (!mask) return 0;
    int shift = 0, bits = 0;
    while (!((mask >> shift) & 1)) shift++;
    while (shift + bits < 32 && ((mask >> (shift + bits)) & 1)) bits++;
    uint32_t x = (v & mask) >> shift, maxv = bits >= 32 ? 0xffffffffu : (1u << bits) - 1;
    return (uint8_t)(((uint64_t)x * 255 + maxv / 2) / maxv);
}

/* BMP: headers CORE (12), INFO (40), V2/V3 (52/56), V4 (108), V5 (124);
 * 1/4/8-bit palette, 16/32-bit with bit fields (alpha dropped), 24-bit;
 * bottom-up (height > 0) and top-down (height < 0). RLE is refused. */
static imcap_status decode_bmp(const uint8_t *d, size_t len, const char *name, imcap_image *out)
{
    if (len < 26) return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: truncated header (%zu bytes)", name, len);
    uint32_t off = rd32(d + 10), hsize = rd32(d + 14);
    int64_t w, h;
    int bpp, comp = 0;
    uint32_t ncolors = 0;
    if (hsize == 12) {
        w = rd16(d + 18);
        h = (int16_t)rd16(d + 20);
        bpp = rd16(d + 24);
    } else if (hsize == 40 || hsize == 52 || hsize == 56 || hsize == 108 || hsize == 124) {
        if (len < 14 + (size_t)hsize)
            return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: truncated header (%zu bytes)", name, len);
        w = (int32_t)rd32(d + 18);
        h = (int32_t)rd32(d + 22);
        bpp = rd16(d + 28);
        comp = (int)rd32(d + 30);
        ncolors = rd32(d + 46);
    } else {
        return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: unknown header size %u", name, hsize);
    }
    int top_down = h < 0;
    if (top_down) h = -h;
    if (w <= 0 || h <= 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: invalid dimensions %lldx%lld", name, (long long)w,
                          (long long)(top_down ? -h : h));
    if (comp != 0 && comp != 3)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: BMP: compression %d (RLE/JPEG/PNG) is not supported", name, comp);
    if (!(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32))
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: BMP: %d bits per pixel is not supported", name, bpp);
    if (comp == 3 && bpp != 16 && bpp != 32)
        return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: bit fields with %d bits per pixel", name, bpp);
    uint32_t rmask = 0, gmask = 0, bmask = 0;
    if (bpp == 16) rmask = 0x7c00, gmask = 0x03e0, bmask = 0x001f;
    if (bpp == 32) rmask = 0xff0000, gmask = 0xff00, bmask = 0xff;
    if (comp == 3) {
        size_t mo = 14 + 40; /* INFO: masks follow the header; V2+: inside it */
        if (len < mo + 12) return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: truncated bit-field masks", name);
        rmask = rd32(d + mo), gmask = rd32(d + mo + 4), bmask = rd32(d + mo + 8);
        /* The format requires each mask to be one contiguous run of bits. */
        const uint32_t masks[3] = {rmask, gmask, bmask};
        for (int k = 0; k < 3; k++) {
            uint32_t low = masks[k] ? masks[k] >> __builtin_ctz(masks[k]) : 0;
            if (low & (low + 1))
                return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: %s bit-field mask 0x%08x is not one contiguous run of bits",
                                  name, k == 0 ? "red" : k == 1 ? "green" : "blue", masks[k]);
        }
    }
    /* palette */
    const uint8_t *pal = NULL;
    int pal_entry = hsize == 12 ? 3 : 4;
    if (bpp <= 8) {
        if (ncolors == 0 || ncolors > (1u << bpp)) ncolors = 1u << bpp;
        size_t pal_off = 14 + (size_t)hsize + (comp == 3 ? 12 : 0);
        if (pal_off + (size_t)ncolors * pal_entry > len || pal_off + (size_t)ncolors * pal_entry > off)
            return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: palette of %u colors does not fit before the pixels", name,
                              ncolors);
        pal = d + pal_off;
    }
    uint64_t stride = (((uint64_t)w * bpp + 31) / 32) * 4;
    if (off > len || stride * (uint64_t)h > len - off) {
        if ((uint64_t)w * (uint64_t)h > IMCAP_IMAGE_MAX_PIXELS) /* say which problem is the real one */
            return alloc_rgb(name, "BMP", (uint64_t)w, (uint64_t)h, out);
        return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: truncated: %llux%llu pixels at %d bits need %llu bytes from "
                          "offset %u, file has %zu", name, (unsigned long long)w, (unsigned long long)h, bpp,
                          (unsigned long long)(stride * (uint64_t)h), off, len);
    }
    imcap_status st = alloc_rgb(name, "BMP", (uint64_t)w, (uint64_t)h, out);
    if (st != IMCAP_OK) return st;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *src = d + off + stride * (uint64_t)(top_down ? y : h - 1 - y);
        uint8_t *dst = out->rgb + (size_t)y * (size_t)w * 3;
        for (int64_t x = 0; x < w; x++, dst += 3) {
            if (bpp <= 8) {
                unsigned idx;
                if (bpp == 8) idx = src[x];
                else if (bpp == 4) idx = (src[x >> 1] >> ((x & 1) ? 0 : 4)) & 15;
                else idx = (src[x >> 3] >> (7 - (x & 7))) & 1;
                if (idx >= ncolors) {
                    imcap_image_free(out);
                    return imcap_fail(IMCAP_E_FORMAT, "%s: BMP: pixel (%lld,%lld) uses color %u of a %u-color palette",
                                      name, (long long)x, (long long)y, idx, ncolors);
                }
                const uint8_t *c = pal + (size_t)idx * pal_entry;
                dst[0] = c[2], dst[1] = c[1], dst[2] = c[0];
            } else if (bpp == 24) {
                dst[0] = src[3 * x + 2], dst[1] = src[3 * x + 1], dst[2] = src[3 * x];
            } else {
                uint32_t v = bpp == 16 ? rd16(src + 2 * x) : rd32(src + 4 * x);
                dst[0] = mask_channel(v, rmask), dst[1] = mask_channel(v, gmask), dst[2] = mask_channel(v, bmask);
            }
        }
    }
    return IMCAP_OK;
}

/* ---------------------------------------------------------------- entry */

imcap_status imcap_image_decode(const void *data, size_t len, const char *name, imcap_image *out)
{
    if (!out) return imcap_fail(IMCAP_E_ARG, "imcap_image_decode: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "(memory)";
    if (!data || len == 0) return imcap_fail(IMCAP_E_FORMAT, "%s: empty image file (0 bytes)", name);
    switch (imcap_image_sniff(data, len)) {
    case IMCAP_IMAGE_JPEG: return decode_jpeg(data, len, name, out);
    case IMCAP_IMAGE_PNG: return decode_png(data, len, name, out);
    case IMCAP_IMAGE_BMP: return decode_bmp(data, len, name, out);
    case IMCAP_IMAGE_UNKNOWN: break;
    }
    const uint8_t *p = data;
    return imcap_fail(IMCAP_E_UNSUPPORTED,
                      "%s: unknown image format (first bytes %02x %02x %02x %02x; JPEG, PNG and BMP are supported)",
                      name, p[0], len > 1 ? p[1] : 0, len > 2 ? p[2] : 0, len > 3 ? p[3] : 0);
}

imcap_status imcap_image_load(const char *path, imcap_image *out)
{
    if (!out || !path) return imcap_fail(IMCAP_E_ARG, "imcap_image_load: NULL argument");
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    imcap_status st = imcap_read_file(path, IMAGE_MAX_FILE_BYTES, &data, &len);
    if (st != IMCAP_OK) return st;
    st = imcap_image_decode(data, len, path, out);
    free(data);
    return st;
}

/* -------------------------------------------------------- preprocessing */

void imcap_image_square_crop(int w, int h, int *x0, int *y0, int *side)
{
    int s = w < h ? w : h;
    int dx = w - s, dy = h - s;
    /* odd difference: the extra pixel is cut on the left/top side */
    *x0 = dx - dx / 2;
    *y0 = dy - dy / 2;
    *side = s;
}

/*
 * Bilinear resize with OpenCV's cv::resize INTER_LINEAR semantics for
 * 8-bit images (checked against OpenCV 4.6, tests/data/resize_golden.bin):
 *   source coordinate fx = (float)((dx + 0.5) * (sw/dw) - 0.5), sx = floor(fx),
 *   weights (1-fx, fx) as float, rounded to 11-bit fixed point (x2048);
 *   coordinates left of 0 or right of sw-1 clamp to the edge pixel.
 *   Horizontal pass in exact integers: H = S[sx]*a0 + S[sx+1]*a1 (<= 255*2048).
 *   Vertical pass as OpenCV's SIMD kernel computes it (used for every pixel
 *   in the x86 build): ((H0>>4)*b0 >> 16) + ((H1>>4)*b1 >> 16), then
 *   (v + 2) >> 2, saturated to 0..255. This differs by at most 1 from the
 *   exactly rounded (H0*b0 + H1*b1 + 2^21) >> 22.
 */
typedef struct lin_tab { int ofs; int16_t a0, a1; } lin_tab;

static void linear_table(int s, int d, lin_tab *t, int clamp)
{
    double scale = 1.0 / ((double)d / s);
    for (int i = 0; i < d; i++) {
        float f = (float)((i + 0.5) * scale - 0.5);
        int si = (int)floorf(f);
        f -= (float)si;
        if (clamp) {
            if (si < 0) si = 0, f = 0.f;
            if (si >= s - 1) si = s - 1, f = 0.f;
        }
        t[i].ofs = si;
        t[i].a0 = (int16_t)lrintf((1.f - f) * 2048.f);
        t[i].a1 = (int16_t)lrintf(f * 2048.f);
    }
}

imcap_status imcap_resize_linear_u8(const uint8_t *src, int sw, int sh, size_t src_stride, int cn, uint8_t *dst,
                                    int dw, int dh)
{
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || cn <= 0 || cn > 4 ||
        src_stride < (size_t)sw * cn)
        return imcap_fail(IMCAP_E_ARG, "imcap_resize_linear_u8: bad arguments (%dx%d -> %dx%d, %d channels)", sw, sh,
                          dw, dh, cn);
    if (sw == dw && sh == dh) { /* weights (2048, 0) everywhere: OpenCV's result is the source */
        for (int y = 0; y < sh; y++) memcpy(dst + (size_t)y * dw * cn, src + (size_t)y * src_stride, (size_t)dw * cn);
        return IMCAP_OK;
    }
    lin_tab *xt = malloc(sizeof *xt * dw), *yt = malloc(sizeof *yt * dh);
    int32_t *h0 = malloc(sizeof *h0 * (size_t)dw * cn), *h1 = malloc(sizeof *h1 * (size_t)dw * cn);
    if (!xt || !yt || !h0 || !h1) {
        free(xt), free(yt), free(h0), free(h1);
        return imcap_fail(IMCAP_E_NOMEM, "imcap_resize_linear_u8: out of memory");
    }
    linear_table(sw, dw, xt, 1);
    linear_table(sh, dh, yt, 0);
    int32_t *buf[2] = {h0, h1};
    int tag[2] = {-1, -1}; /* source row held by each buffer */
    for (int y = 0; y < dh; y++) {
        int need[2] = {yt[y].ofs, yt[y].ofs + 1};
        int32_t *row[2];
        for (int k = 0; k < 2; k++) need[k] = need[k] < 0 ? 0 : need[k] >= sh ? sh - 1 : need[k];
        for (int k = 0; k < 2; k++) {
            int j = tag[0] == need[k] ? 0 : tag[1] == need[k] ? 1 : -1;
            if (j < 0) {
                /* overwrite the buffer the other needed row does not use */
                if (k == 0) j = tag[0] == need[1] ? 1 : 0;
                else j = row[0] == buf[0] ? 1 : 0;
                const uint8_t *s = src + (size_t)need[k] * src_stride;
                int32_t *o = buf[j];
                /* tables clamp so that ofs + 1 < sw or a1 == 0: read the
                 * right neighbour only where it exists */
                int x = 0;
                if (cn == 3)
                    for (; x < dw && xt[x].ofs + 1 < sw; x++) {
                        const uint8_t *p = s + (size_t)xt[x].ofs * 3;
                        int a0 = xt[x].a0, a1 = xt[x].a1;
                        o[3 * x] = p[0] * a0 + p[3] * a1;
                        o[3 * x + 1] = p[1] * a0 + p[4] * a1;
                        o[3 * x + 2] = p[2] * a0 + p[5] * a1;
                    }
                for (; x < dw; x++) {
                    const uint8_t *p = s + (size_t)xt[x].ofs * cn;
                    int a0 = xt[x].a0, a1 = xt[x].a1;
                    if (xt[x].ofs + 1 < sw)
                        for (int c = 0; c < cn; c++) o[x * cn + c] = p[c] * a0 + p[c + cn] * a1;
                    else
                        for (int c = 0; c < cn; c++) o[x * cn + c] = p[c] * 2048;
                }
                tag[j] = need[k];
            }
            row[k] = buf[j];
        }
        const int32_t *r0 = row[0], *r1 = row[1];
        int b0 = yt[y].a0, b1 = yt[y].a1;
        uint8_t *d = dst + (size_t)y * dw * cn;
        for (int i = 0; i < dw * cn; i++) {
            int v = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
            v = (v + 2) >> 2;
            d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(xt), free(yt), free(h0), free(h1);
    return IMCAP_OK;
}

imcap_status imcap_image_prepare(const imcap_image *img, int out_h, int out_w, uint8_t *out)
{
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0 || !out || out_h <= 0 || out_w <= 0)
        return imcap_fail(IMCAP_E_ARG, "imcap_image_prepare: bad arguments");
    int x0, y0, side;
    imcap_image_square_crop(img->w, img->h, &x0, &y0, &side);
    const uint8_t *start = img->rgb + ((size_t)y0 * img->w + x0) * 3;
    return imcap_resize_linear_u8(start, side, side, (size_t)img->w * 3, 3, out, out_w, out_h);
}

void imcap_image_to_float(const uint8_t *hwc, size_t n_pixels, const float scale[3], const float bias[3], float *out)
{
    for (size_t i = 0; i < n_pixels; i++)
        for (int c = 0; c < 3; c++) out[3 * i + c] = (float)hwc[3 * i + c] / 255.f * scale[c] + bias[c];
}
