/*
 * test_image.c - decoders (JPEG/PNG/BMP variants written here with libjpeg,
 * libpng and by hand), EXIF orientation, failure paths, and the resize
 * against OpenCV goldens (tests/data/resize_golden.bin, scripts/golden_resize.py).
 */
#include "test.h"
#include "internal.h"

#include <dirent.h>
#include <strings.h>
#include <jpeglib.h>
#include <png.h>
#include <stdint.h>

/* ------------------------------------------------------------ helpers */

static const char *tmp_file(const char *name)
{
    static char buf[8][700];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 700, "%s/%s", test_tmpdir(), name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    REQUIRE(len == 0 || fwrite(data, 1, len, fp) == len);
    REQUIRE(fclose(fp) == 0);
}

/* A test pattern of 8x8 solid blocks (JPEG keeps them nearly exact):
 * block (bx, by) has a distinct color. */
static void block_color(int bx, int by, uint8_t c[3])
{
    c[0] = (uint8_t)(30 + 60 * bx);
    c[1] = (uint8_t)(40 + 150 * by);
    c[2] = (uint8_t)(200 - 40 * bx - 30 * by);
}

static uint8_t *block_image(int bw, int bh)
{
    int w = bw * 8, h = bh * 8;
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) block_color(x / 8, y / 8, p + ((size_t)y * w + x) * 3);
    return p;
}

/* Max abs difference between an 8x8 block's centre pixel and c. */
static int block_err(const imcap_image *img, int bx, int by, const uint8_t c[3])
{
    const uint8_t *p = img->rgb + ((size_t)(by * 8 + 4) * img->w + bx * 8 + 4) * 3;
    int e = 0;
    for (int k = 0; k < 3; k++) {
        int d = abs(p[k] - c[k]);
        if (d > e) e = d;
    }
    return e;
}

typedef struct jpeg_opts {
    J_COLOR_SPACE in_space, jpeg_space; /* jpeg_space JCS_UNKNOWN: library default */
    int components, progressive, adobe;  /* adobe: -1 default, 0 off, 1 on */
    const uint8_t *app1;
    size_t app1_len;
} jpeg_opts;

static uint8_t *jpeg_encode(const uint8_t *pix, int w, int h, const jpeg_opts *o, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&c, &buf, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = o->components;
    c.in_color_space = o->in_space;
    jpeg_set_defaults(&c);
    if (o->jpeg_space != JCS_UNKNOWN) jpeg_set_colorspace(&c, o->jpeg_space);
    if (o->adobe >= 0) c.write_Adobe_marker = (boolean)o->adobe;
    jpeg_set_quality(&c, 100, TRUE);
    if (o->progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (o->app1) jpeg_write_marker(&c, JPEG_APP0 + 1, o->app1, (unsigned)o->app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(pix + (size_t)c.next_scanline * w * o->components);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = n;
    return buf;
}

static uint8_t *jpeg_rgb(const uint8_t *pix, int w, int h, int progressive, size_t *len)
{
    jpeg_opts o = {JCS_RGB, JCS_UNKNOWN, 3, progressive, -1, NULL, 0};
    return jpeg_encode(pix, w, h, &o, len);
}

/* APP1 payload "Exif\0\0" + TIFF with one IFD0 entry: Orientation = o. */
static size_t exif_app1(uint8_t *b, int o, int big_endian)
{
    memcpy(b, "Exif\0\0", 6);
    uint8_t *t = b + 6;
    uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)o, 0, 0, 0, 0, 0, 0, 0};
    uint8_t be[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)o, 0, 0, 0, 0, 0, 0};
    memcpy(t, big_endian ? be : le, sizeof le);
    return 6 + sizeof le;
}

/* PNG writer: color type/bit depth as given, rows of raw bytes. */
typedef struct png_opts {
    int ctype, depth, interlace;
    const png_color *palette;
    int n_palette;
    const uint8_t *trns;
    int n_trns;
} png_opts;

static void png_write_file(const char *path, const uint8_t *rows, int w, int h, size_t stride, const png_opts *o)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    REQUIRE(png && info);
    if (setjmp(png_jmpbuf(png))) REQUIRE(!"libpng write failed");
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, o->depth, o->ctype,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (o->palette) png_set_PLTE(png, info, o->palette, o->n_palette);
    if (o->trns) png_set_tRNS(png, info, o->trns, o->n_trns, NULL);
    png_write_info(png, info);
    if (o->depth == 16) png_set_swap(png); /* rows are given little-endian */
    png_bytep *rp = malloc(sizeof *rp * h);
    for (int y = 0; y < h; y++) rp[y] = (png_bytep)(rows + (size_t)y * stride);
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rp);
    REQUIRE(fclose(fp) == 0);
}

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff), put16(p + 2, v >> 16); }

/* BMP writer: 40-byte INFO header (or 124-byte V5 with bit fields for
 * 16/32 bpp when masks given); pixels produced by px(x, y) -> index or
 * packed value; palette colors given as RGB. */
typedef struct bmp_opts {
    int bpp, top_down, n_pal;
    const uint8_t *pal_rgb;
    const uint32_t *masks; /* r, g, b (BI_BITFIELDS) or NULL */
} bmp_opts;

static uint8_t *bmp_encode(int w, int h, const bmp_opts *o, uint32_t (*px)(int x, int y), size_t *len)
{
    size_t stride = (((size_t)w * o->bpp + 31) / 32) * 4;
    size_t hdr = 14 + 40 + (o->masks ? 12 : 0) + (size_t)o->n_pal * 4;
    size_t n = hdr + stride * h;
    uint8_t *b = calloc(1, n);
    b[0] = 'B', b[1] = 'M';
    put32(b + 2, (uint32_t)n);
    put32(b + 10, (uint32_t)hdr);
    put32(b + 14, 40);
    put32(b + 18, (uint32_t)w);
    put32(b + 22, (uint32_t)(o->top_down ? -h : h));
    put16(b + 26, 1);
    put16(b + 28, (unsigned)o->bpp);
    put32(b + 30, o->masks ? 3 : 0);
    put32(b + 34, (uint32_t)(stride * h));
    put32(b + 46, (uint32_t)o->n_pal);
    size_t p = 54;
    if (o->masks)
        for (int i = 0; i < 3; i++, p += 4) put32(b + p, o->masks[i]);
    for (int i = 0; i < o->n_pal; i++, p += 4) {
        b[p] = o->pal_rgb[3 * i + 2], b[p + 1] = o->pal_rgb[3 * i + 1], b[p + 2] = o->pal_rgb[3 * i];
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = b + hdr + stride * (size_t)(o->top_down ? y : h - 1 - y);
        for (int x = 0; x < w; x++) {
            uint32_t v = px(x, y);
            switch (o->bpp) {
            case 1: row[x / 8] |= (uint8_t)(v << (7 - x % 8)); break;
            case 4: row[x / 2] |= (uint8_t)(v << (x % 2 ? 0 : 4)); break;
            case 8: row[x] = (uint8_t)v; break;
            case 16: put16(row + 2 * x, v); break;
            case 24: row[3 * x] = (uint8_t)v, row[3 * x + 1] = (uint8_t)(v >> 8), row[3 * x + 2] = (uint8_t)(v >> 16); break;
            default: put32(row + 4 * x, v); break;
            }
        }
    }
    *len = n;
    return b;
}

/* A decode that must fail with status st and a message containing both the
 * name and the phrase. */
static void expect_fail(const void *data, size_t len, const char *name, imcap_status st, const char *phrase)
{
    imcap_image img = {7, 7, (uint8_t *)&img};
    imcap_status s = imcap_image_decode(data, len, name, &img);
    if (s != st || !strstr(imcap_last_error(), name) || (phrase && !strstr(imcap_last_error(), phrase)))
        test_fail_at(__FILE__, __LINE__, "%s (%zu bytes): status %d, want %d; message \"%s\", want \"%s\"", name, len,
                     (int)s, (int)st, imcap_last_error(), phrase ? phrase : "");
    CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
}

/* --------------------------------------------------------------- tests */

TEST(image_sniff_by_magic_bytes)
{
    const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0}, png[] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10}, bmp[] = {'B', 'M', 0};
    CHECK(imcap_image_sniff(jpg, 4) == IMCAP_IMAGE_JPEG);
    CHECK(imcap_image_sniff(png, 8) == IMCAP_IMAGE_PNG);
    CHECK(imcap_image_sniff(png, 7) == IMCAP_IMAGE_UNKNOWN);
    CHECK(imcap_image_sniff(bmp, 3) == IMCAP_IMAGE_BMP);
    CHECK(imcap_image_sniff("GIF89a", 6) == IMCAP_IMAGE_UNKNOWN);
    CHECK_STR(imcap_image_format_name(IMCAP_IMAGE_PNG), "PNG");
}

TEST(image_jpeg_baseline_and_progressive_from_file_and_memory)
{
    uint8_t *pix = block_image(4, 2);
    for (int prog = 0; prog < 2; prog++) {
        size_t len;
        uint8_t *jpg = jpeg_rgb(pix, 32, 16, prog, &len);
        const char *path = tmp_file(prog ? "prog.jpg" : "base.jpg");
        write_bytes(path, jpg, len);
        imcap_image a, b;
        REQUIRE_OK(imcap_image_load(path, &a));
        REQUIRE_OK(imcap_image_decode(jpg, len, "mem", &b));
        REQUIRE(a.w == 32 && a.h == 16 && b.w == 32 && b.h == 16);
        CHECK(memcmp(a.rgb, b.rgb, 32 * 16 * 3) == 0);
        for (int by = 0; by < 2; by++)
            for (int bx = 0; bx < 4; bx++) {
                uint8_t c[3];
                block_color(bx, by, c);
                CHECK(block_err(&a, bx, by, c) <= 3);
            }
        imcap_image_free(&a);
        imcap_image_free(&b);
        free(jpg);
    }
    free(pix);
}

TEST(image_jpeg_grayscale_to_rgb)
{
    uint8_t g[16 * 16];
    for (int i = 0; i < 256; i++) g[i] = (uint8_t)((i / 16) < 8 ? 40 : 210);
    jpeg_opts o = {JCS_GRAYSCALE, JCS_UNKNOWN, 1, 0, -1, NULL, 0};
    size_t len;
    uint8_t *jpg = jpeg_encode(g, 16, 16, &o, &len);
    imcap_image img;
    REQUIRE_OK(imcap_image_decode(jpg, len, "gray.jpg", &img));
    REQUIRE(img.w == 16 && img.h == 16);
    for (int i = 0; i < 256; i++) {
        CHECK(img.rgb[3 * i] == img.rgb[3 * i + 1] && img.rgb[3 * i] == img.rgb[3 * i + 2]);
        CHECK(abs(img.rgb[3 * i] - g[i]) <= 2);
    }
    imcap_image_free(&img);
    free(jpg);
}

/* CMYK as written by most software (no Adobe marker, 255 = full ink), as
 * Adobe writes it (APP14 marker, inverted values), and YCCK (always Adobe). */
TEST(image_jpeg_cmyk_plain_inverted_and_ycck)
{
    static const uint8_t ink[4][4] = {{0, 0, 0, 0}, {255, 0, 0, 0}, {0, 128, 255, 0}, {50, 100, 150, 100}};
    for (int variant = 0; variant < 3; variant++) {
        uint8_t px[16 * 16 * 4];
        int inverted = variant > 0;
        for (int i = 0; i < 256; i++) {
            const uint8_t *k = ink[((i % 16) / 8) + 2 * ((i / 16) / 8)];
            for (int c = 0; c < 4; c++) px[4 * i + c] = (uint8_t)(inverted ? 255 - k[c] : k[c]);
        }
        jpeg_opts o = {JCS_CMYK, variant == 2 ? JCS_YCCK : JCS_CMYK, 4, 0, variant == 0 ? 0 : 1, NULL, 0};
        size_t len;
        uint8_t *jpg = jpeg_encode(px, 16, 16, &o, &len);
        imcap_image img;
        REQUIRE_OK(imcap_image_decode(jpg, len, "cmyk.jpg", &img));
        REQUIRE(img.w == 16 && img.h == 16);
        for (int q = 0; q < 4; q++) {
            const uint8_t *k = ink[q];
            const uint8_t *p = img.rgb + ((size_t)((q / 2) * 8 + 4) * 16 + (q % 2) * 8 + 4) * 3;
            for (int c = 0; c < 3; c++) {
                int want = (255 - k[c]) * (255 - k[3]) / 255;
                if (abs(p[c] - want) > 3)
                    test_fail_at(__FILE__, __LINE__, "variant %d quadrant %d channel %d: %d, want %d", variant, q, c,
                                 p[c], want);
            }
        }
        imcap_image_free(&img);
        free(jpg);
    }
}

/* Stored image S for a displayed image D under each orientation, built from
 * the EXIF definitions: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
 * 6 displayed = S rotated 90 cw, 7 transverse, 8 displayed = S rotated 90 ccw. */
static void stored_block(int o, int dbw, int dbh, int sbx, int sby, int *dbx, int *dby)
{
    /* the displayed block that the stored block (sbx, sby) shows */
    int sbw = o >= 5 ? dbh : dbw, sbh = o >= 5 ? dbw : dbh;
    switch (o) {
    case 1: *dbx = sbx, *dby = sby; break;
    case 2: *dbx = sbw - 1 - sbx, *dby = sby; break;
    case 3: *dbx = sbw - 1 - sbx, *dby = sbh - 1 - sby; break;
    case 4: *dbx = sbx, *dby = sbh - 1 - sby; break;
    case 5: *dbx = sby, *dby = sbx; break;
    case 6: *dbx = sbh - 1 - sby, *dby = sbx; break; /* rotating S clockwise: column x -> row x */
    case 7: *dbx = sbh - 1 - sby, *dby = sbw - 1 - sbx; break;
    default: *dbx = sby, *dby = sbw - 1 - sbx; break; /* counter-clockwise: row y -> column y */
    }
}

TEST(image_jpeg_exif_orientation_all_eight)
{
    const int dbw = 3, dbh = 2; /* displayed: 3x2 blocks (24x16 pixels) */
    for (int be = 0; be < 2; be++)
        for (int o = 1; o <= 8; o++) {
            int sbw = o >= 5 ? dbh : dbw, sbh = o >= 5 ? dbw : dbh;
            int sw = sbw * 8, sh = sbh * 8;
            uint8_t *s = malloc((size_t)sw * sh * 3);
            for (int y = 0; y < sh; y++)
                for (int x = 0; x < sw; x++) {
                    int dbx, dby;
                    stored_block(o, dbw, dbh, x / 8, y / 8, &dbx, &dby);
                    block_color(dbx, dby, s + ((size_t)y * sw + x) * 3);
                }
            uint8_t app1[64];
            size_t n = exif_app1(app1, o, be);
            jpeg_opts jo = {JCS_RGB, JCS_UNKNOWN, 3, 0, -1, app1, n};
            size_t len;
            uint8_t *jpg = jpeg_encode(s, sw, sh, &jo, &len);
            imcap_image img;
            REQUIRE_OK(imcap_image_decode(jpg, len, "exif.jpg", &img));
            if (img.w != dbw * 8 || img.h != dbh * 8) {
                test_fail_at(__FILE__, __LINE__, "orientation %d: %dx%d", o, img.w, img.h);
            } else {
                for (int by = 0; by < dbh; by++)
                    for (int bx = 0; bx < dbw; bx++) {
                        uint8_t c[3];
                        block_color(bx, by, c);
                        if (block_err(&img, bx, by, c) > 3)
                            test_fail_at(__FILE__, __LINE__, "orientation %d (%s): block %d,%d wrong", o,
                                         be ? "MM" : "II", bx, by);
                    }
            }
            imcap_image_free(&img);
            free(jpg);
            free(s);
        }
}

TEST(image_png_variants)
{
    enum { W = 5, H = 3 };
    uint8_t rows[H * W * 8];
    imcap_image img;
    /* RGB 8-bit, and the same interlaced */
    for (int i = 0; i < W * H * 3; i++) rows[i] = (uint8_t)(i * 17 + 3);
    for (int il = 0; il < 2; il++) {
        png_opts o = {PNG_COLOR_TYPE_RGB, 8, il, NULL, 0, NULL, 0};
        png_write_file(tmp_file("rgb.png"), rows, W, H, W * 3, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("rgb.png"), &img));
        CHECK(img.w == W && img.h == H && memcmp(img.rgb, rows, W * H * 3) == 0);
        imcap_image_free(&img);
    }
    /* RGB 16-bit: v*257 scales back to v exactly */
    for (int i = 0; i < W * H * 3; i++) put16(rows + 2 * i, (unsigned)((i * 17 + 3) & 255) * 257u);
    {
        png_opts o = {PNG_COLOR_TYPE_RGB, 16, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("rgb16.png"), rows, W, H, W * 6, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("rgb16.png"), &img));
        REQUIRE(img.w == W && img.h == H);
        for (int i = 0; i < W * H * 3; i++) CHECK(img.rgb[i] == ((i * 17 + 3) & 255));
        imcap_image_free(&img);
    }
    /* gray 8-bit and gray 16-bit */
    for (int i = 0; i < W * H; i++) rows[i] = (uint8_t)(i * 16);
    {
        png_opts o = {PNG_COLOR_TYPE_GRAY, 8, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("g.png"), rows, W, H, W, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("g.png"), &img));
        for (int i = 0; i < W * H; i++) CHECK(img.rgb[3 * i] == i * 16 && img.rgb[3 * i + 2] == i * 16);
        imcap_image_free(&img);
    }
    for (int i = 0; i < W * H; i++) put16(rows + 2 * i, (unsigned)(i * 16) * 257u);
    {
        png_opts o = {PNG_COLOR_TYPE_GRAY, 16, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("g16.png"), rows, W, H, W * 2, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("g16.png"), &img));
        for (int i = 0; i < W * H; i++) CHECK(img.rgb[3 * i + 1] == i * 16);
        imcap_image_free(&img);
    }
    /* gray 1-bit: 0 -> 0, 1 -> 255 */
    {
        uint8_t bits[H] = {0xa8, 0x50, 0xf8}; /* 10101, 01010, 11111 */
        png_opts o = {PNG_COLOR_TYPE_GRAY, 1, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("g1.png"), bits, W, H, 1, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("g1.png"), &img));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) CHECK(img.rgb[(y * W + x) * 3] == (((bits[y] >> (7 - x)) & 1) ? 255 : 0));
        imcap_image_free(&img);
    }
    /* RGBA: composited on white: (c*a + 255*(255-a) + 127) / 255 */
    for (int i = 0; i < W * H; i++) {
        rows[4 * i] = 200, rows[4 * i + 1] = 10, rows[4 * i + 2] = (uint8_t)(i * 9);
        rows[4 * i + 3] = (uint8_t)(i * 18);
    }
    {
        png_opts o = {PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("rgba.png"), rows, W, H, W * 4, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("rgba.png"), &img));
        for (int i = 0; i < W * H; i++)
            for (int c = 0; c < 3; c++) {
                int a = rows[4 * i + 3];
                CHECK(img.rgb[3 * i + c] == (rows[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
            }
        CHECK(img.rgb[0] == 255 && img.rgb[1] == 255); /* alpha 0 -> white */
        imcap_image_free(&img);
    }
    /* gray + alpha */
    for (int i = 0; i < W * H; i++) rows[2 * i] = 0, rows[2 * i + 1] = (uint8_t)(255 - i);
    {
        png_opts o = {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, NULL, 0, NULL, 0};
        png_write_file(tmp_file("ga.png"), rows, W, H, W * 2, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("ga.png"), &img));
        for (int i = 0; i < W * H; i++) CHECK(img.rgb[3 * i + 1] == (255 * i + 127) / 255);
        imcap_image_free(&img);
    }
    /* palette (4-bit) with a transparent entry */
    {
        png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
        uint8_t trns[3] = {255, 255, 0};
        uint8_t idx[H][3];
        for (int y = 0; y < H; y++) idx[y][0] = 0x01, idx[y][1] = 0x20, idx[y][2] = 0x10; /* 0 1 2 0 1 */
        png_opts o = {PNG_COLOR_TYPE_PALETTE, 4, 0, pal, 3, trns, 3};
        png_write_file(tmp_file("pal.png"), &idx[0][0], W, H, 3, &o);
        REQUIRE_OK(imcap_image_load(tmp_file("pal.png"), &img));
        static const uint8_t want[W][3] = {{255, 0, 0}, {0, 255, 0}, {255, 255, 255}, {255, 0, 0}, {0, 255, 0}};
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) CHECK(memcmp(img.rgb + (y * W + x) * 3, want[x], 3) == 0);
        imcap_image_free(&img);
    }
}

static uint32_t px_index4(int x, int y) { return (uint32_t)((x + 2 * y) % 4); }
static uint32_t px_index2(int x, int y) { return (uint32_t)((x + y) % 2); }
static uint32_t px_rgb24(int x, int y) { return (uint32_t)(x * 40) << 16 | (uint32_t)(y * 60) << 8 | (uint32_t)(x * y); }
static uint32_t px_565(int x, int y) { return (uint32_t)(x * 5) << 11 | (uint32_t)(y * 20) << 5 | 31u; }

TEST(image_bmp_variants)
{
    static const uint8_t pal[4 * 3] = {10, 20, 30, 200, 100, 0, 0, 0, 0, 255, 255, 255};
    const int W = 5, H = 3; /* odd width: rows are padded */
    imcap_image img;
    size_t len;
    /* 24-bit and 32-bit, bottom-up and top-down */
    for (int bpp = 24; bpp <= 32; bpp += 8)
        for (int td = 0; td < 2; td++) {
            bmp_opts o = {bpp, td, 0, NULL, NULL};
            uint8_t *b = bmp_encode(W, H, &o, px_rgb24, &len);
            REQUIRE_OK(imcap_image_decode(b, len, "t.bmp", &img));
            REQUIRE(img.w == W && img.h == H);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const uint8_t *p = img.rgb + (y * W + x) * 3;
                    CHECK(p[0] == x * 40 && p[1] == y * 60 && p[2] == x * y);
                }
            imcap_image_free(&img);
            free(b);
        }
    /* 8-, 4- and 1-bit palettes */
    const int bpps[3] = {8, 4, 1};
    for (int k = 0; k < 3; k++) {
        bmp_opts o = {bpps[k], k == 1, bpps[k] == 1 ? 2 : 4, pal, NULL};
        uint8_t *b = bmp_encode(W, H, &o, bpps[k] == 1 ? px_index2 : px_index4, &len);
        REQUIRE_OK(imcap_image_decode(b, len, "pal.bmp", &img));
        REQUIRE(img.w == W && img.h == H);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint32_t i = bpps[k] == 1 ? px_index2(x, y) : px_index4(x, y);
                CHECK(memcmp(img.rgb + (y * W + x) * 3, pal + 3 * i, 3) == 0);
            }
        imcap_image_free(&img);
        free(b);
    }
    /* 16-bit 5-6-5 bit fields */
    {
        const uint32_t masks[3] = {0xf800, 0x07e0, 0x001f};
        bmp_opts o = {16, 0, 0, NULL, masks};
        uint8_t *b = bmp_encode(W, H, &o, px_565, &len);
        REQUIRE_OK(imcap_image_decode(b, len, "565.bmp", &img));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const uint8_t *p = img.rgb + (y * W + x) * 3;
                CHECK(p[0] == (x * 5 * 255 + 15) / 31 && p[1] == (y * 20 * 255 + 31) / 63 && p[2] == 255);
            }
        imcap_image_free(&img);
        free(b);
    }
    /* a palette index beyond the palette is an error */
    {
        bmp_opts o = {8, 0, 2, pal, NULL};
        uint8_t *b = bmp_encode(W, H, &o, px_index4, &len);
        expect_fail(b, len, "badidx.bmp", IMCAP_E_FORMAT, "palette");
        free(b);
    }
}

TEST(image_failures_are_clear_errors)
{
    imcap_image img = {0, 0, NULL};
    /* missing, zero-size, garbage, unknown format */
    CHECK(imcap_image_load(tmp_file("missing.jpg"), &img) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "missing.jpg") != NULL);
    write_bytes(tmp_file("empty.png"), "", 0);
    CHECK(imcap_image_load(tmp_file("empty.png"), &img) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "empty.png") && strstr(imcap_last_error(), "empty"));
    expect_fail("GIF89a\1\0\1\0", 10, "anim.gif", IMCAP_E_UNSUPPORTED, "unknown image format");
    uint8_t junk[300];
    imcap_rng r;
    imcap_rng_seed(&r, 3);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)imcap_rng_next(&r);
    junk[0] = 0xff, junk[1] = 0xd8, junk[2] = 0xff;
    expect_fail(junk, sizeof junk, "junk.jpg", IMCAP_E_FORMAT, "JPEG");
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    expect_fail(junk, sizeof junk, "junk.png", IMCAP_E_FORMAT, "PNG");
    junk[0] = 'B', junk[1] = 'M';
    expect_fail(junk, sizeof junk, "junk.bmp", IMCAP_E_FORMAT, "BMP");

    /* truncated JPEG (baseline and progressive), PNG and BMP at many lengths */
    uint8_t *pix = block_image(4, 4);
    for (int prog = 0; prog < 2; prog++) {
        size_t len;
        uint8_t *jpg = jpeg_rgb(pix, 32, 32, prog, &len);
        size_t cuts[] = {3, 4, 20, 100, 200, len / 2, len - 200, len - 20, len - 2};
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
            expect_fail(jpg, cuts[i], "cut.jpg", IMCAP_E_FORMAT, "JPEG");
        free(jpg);
    }
    png_opts po = {PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0};
    png_write_file(tmp_file("full.png"), pix, 32, 32, 32 * 3, &po);
    char *png;
    size_t plen;
    REQUIRE_OK(imcap_read_file(tmp_file("full.png"), 1 << 20, &png, &plen));
    for (size_t cut = 8; cut < plen; cut += (cut < 80 ? 7 : 61))
        expect_fail(png, cut, "cut.png", IMCAP_E_FORMAT, "PNG");
    expect_fail(png, plen - 1, "cut.png", IMCAP_E_FORMAT, "PNG");
    size_t blen;
    bmp_opts bo = {24, 0, 0, NULL, NULL};
    uint8_t *bmp = bmp_encode(32, 32, &bo, px_rgb24, &blen);
    size_t bcuts[] = {2, 20, 53, 54, 100, blen / 2, blen - 1};
    for (size_t i = 0; i < sizeof bcuts / sizeof *bcuts; i++)
        expect_fail(bmp, bcuts[i], "cut.bmp", IMCAP_E_FORMAT, "BMP");

    /* enormous dimensions in headers: refused before allocating */
    {
        size_t len;
        uint8_t *jpg = jpeg_rgb(pix, 32, 32, 0, &len);
        for (size_t i = 2; i + 9 < len; i++)
            if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) { /* SOF0: FF C0 len(2) prec(1) h(2) w(2) */
                jpg[i + 5] = jpg[i + 7] = 0xff, jpg[i + 6] = jpg[i + 8] = 0xdc; /* 65500 */
                break;
            }
        expect_fail(jpg, len, "huge.jpg", IMCAP_E_UNSUPPORTED, "65500x65500");
        free(jpg);
    }
    {
        uint8_t *p = (uint8_t *)png; /* IHDR data at 16..28, CRC at 29..32 */
        const uint8_t dim[4] = {0x00, 0x01, 0x86, 0xa0}; /* 100000 */
        memcpy(p + 16, dim, 4);
        memcpy(p + 20, dim, 4);
        uint32_t crc = imcap_crc32(0, p + 12, 17);
        p[29] = (uint8_t)(crc >> 24), p[30] = (uint8_t)(crc >> 16), p[31] = (uint8_t)(crc >> 8), p[32] = (uint8_t)crc;
        expect_fail(p, plen, "huge.png", IMCAP_E_UNSUPPORTED, "100000x100000");
    }
    put32(bmp + 18, 100000);
    put32(bmp + 22, 100000);
    expect_fail(bmp, blen, "huge.bmp", IMCAP_E_UNSUPPORTED, "100000x100000");
    put32(bmp + 18, 0);
    expect_fail(bmp, blen, "zero.bmp", IMCAP_E_FORMAT, "dimensions");
    put32(bmp + 18, 32);
    put32(bmp + 22, 32);
    put32(bmp + 30, 1); /* RLE8 */
    expect_fail(bmp, blen, "rle.bmp", IMCAP_E_UNSUPPORTED, "compression");
    free(bmp);
    free(png);
    free(pix);
}

TEST(image_square_crop_offsets)
{
    int x0, y0, s;
    imcap_image_square_crop(64, 49, &x0, &y0, &s);
    CHECK(x0 == 8 && y0 == 0 && s == 49); /* diff 15: 8 left, 7 right */
    imcap_image_square_crop(45, 70, &x0, &y0, &s);
    CHECK(x0 == 0 && y0 == 13 && s == 45); /* diff 25: 13 top, 12 bottom */
    imcap_image_square_crop(61, 47, &x0, &y0, &s);
    CHECK(x0 == 7 && y0 == 0 && s == 47);
    imcap_image_square_crop(10, 10, &x0, &y0, &s);
    CHECK(x0 == 0 && y0 == 0 && s == 10);
}

static uint8_t golden_src(int x, int y, int c)
{
    uint32_t v = ((uint32_t)x * 73856093u) ^ ((uint32_t)y * 19349663u) ^ ((uint32_t)c * 83492791u);
    return (uint8_t)((v >> 13) & 255);
}

static int32_t rd_i32(const uint8_t *p) { return (int32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }

/* Bit-exact against OpenCV 4.6 cv2.resize(INTER_LINEAR) (scripts/golden_resize.py). */
TEST(image_resize_matches_opencv_golden)
{
    char *blob;
    size_t len;
    REQUIRE_OK(imcap_read_file("tests/data/resize_golden.bin", 1 << 20, &blob, &len));
    const uint8_t *p = (const uint8_t *)blob, *end = p + len;
    REQUIRE(len >= 8 && !memcmp(p, "RSZ1", 4));
    int n = rd_i32(p + 4);
    p += 8;
    REQUIRE(n >= 10);
    for (int k = 0; k < n; k++) {
        REQUIRE(p + 20 <= end);
        int sw = rd_i32(p), sh = rd_i32(p + 4), dw = rd_i32(p + 8), dh = rd_i32(p + 12), crop = rd_i32(p + 16);
        p += 20;
        size_t osz = (size_t)dw * dh * 3;
        REQUIRE(sw > 0 && sh > 0 && dw > 0 && dh > 0 && osz <= (size_t)(end - p));
        imcap_image img = {sw, sh, malloc((size_t)sw * sh * 3)};
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++)
                for (int c = 0; c < 3; c++) img.rgb[((size_t)y * sw + x) * 3 + c] = golden_src(x, y, c);
        uint8_t *out = malloc(osz);
        if (crop) REQUIRE_OK(imcap_image_prepare(&img, dh, dw, out));
        else REQUIRE_OK(imcap_resize_linear_u8(img.rgb, sw, sh, (size_t)sw * 3, 3, out, dw, dh));
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < osz; i++)
            if (out[i] != p[i] && !bad++) first = i;
        if (bad)
            test_fail_at(__FILE__, __LINE__, "case %d (%dx%d -> %dx%d crop %d): %zu of %zu bytes differ, first at %zu "
                         "(%d vs cv2 %d)", k, sw, sh, dw, dh, crop, bad, osz, first, out[first], p[first]);
        p += osz;
        free(out);
        free(img.rgb);
    }
    CHECK(p == end);
    free(blob);
}

TEST(image_resize_same_size_is_identity_and_to_float)
{
    uint8_t src[7 * 5 * 3], dst[7 * 5 * 3];
    for (int i = 0; i < 7 * 5 * 3; i++) src[i] = (uint8_t)(i * 37);
    REQUIRE_OK(imcap_resize_linear_u8(src, 7, 5, 21, 3, dst, 7, 5));
    CHECK(memcmp(src, dst, sizeof src) == 0);
    CHECK(imcap_resize_linear_u8(src, 0, 5, 21, 3, dst, 7, 5) == IMCAP_E_ARG);
    const float scale[3] = {2, 2, 1}, bias[3] = {-1, -1, 0};
    float f[6];
    const uint8_t px[6] = {0, 255, 51, 0, 0, 255};
    imcap_image_to_float(px, 2, scale, bias, f);
    CHECK_NEAR(f[0], -1, 1e-6);
    CHECK_NEAR(f[1], 1, 1e-6);
    CHECK_NEAR(f[2], 0.2, 1e-6);
    CHECK_NEAR(f[5], 1, 1e-6);
}

/* Every sample photo decodes; sizes as recorded by `file`. */
TEST(image_decodes_every_sample_photo)
{
    static const struct { const char *name; int w, h; } known[] = {
        {"data/images/cat_720p.jpg", 1280, 720}, {"data/images/face.jpg", 512, 355},
        {"data/images/grace_hopper.bmp", 512, 600}, {"data/images/hot_dog.jpg", 512, 384},
        {"data/images/parrot.jpg", 512, 929},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        imcap_image img;
        REQUIRE_OK(imcap_image_load(known[i].name, &img));
        CHECK(img.w == known[i].w && img.h == known[i].h);
        imcap_image_free(&img);
    }
    const char *dirs[2] = {"data/images", "data/images/imagenet-val"};
    int n = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        REQUIRE(dir);
        struct dirent *e;
        while ((e = readdir(dir))) {
            const char *dot = strrchr(e->d_name, '.');
            if (!dot || (strcasecmp(dot, ".jpg") && strcasecmp(dot, ".jpeg") && strcasecmp(dot, ".bmp") &&
                         strcasecmp(dot, ".png")))
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            imcap_image img;
            imcap_status st = imcap_image_load(path, &img);
            if (st != IMCAP_OK) {
                test_fail_at(__FILE__, __LINE__, "%s", imcap_last_error());
                continue;
            }
            /* not a flat or blank decode */
            long sum = 0, sq = 0;
            size_t np = (size_t)img.w * img.h * 3;
            for (size_t k = 0; k < np; k++) sum += img.rgb[k], sq += (long)img.rgb[k] * img.rgb[k];
            double mean = (double)sum / np, var = (double)sq / np - mean * mean;
            if (!(mean > 10 && mean < 245 && var > 100)) test_fail_at(__FILE__, __LINE__, "%s: mean %g var %g", path, mean, var);
            uint8_t out[224 * 224 * 3];
            REQUIRE_OK(imcap_image_prepare(&img, 224, 224, out));
            imcap_image_free(&img);
            n++;
        }
        closedir(dir);
    }
    CHECK(n >= 17);
}

/* Random byte corruption of valid files: each decode either succeeds with
 * sane dimensions or fails with a message naming the file (never crashes;
 * the sanitizer build checks memory safety). */
TEST(image_random_corruptions_fail_cleanly)
{
    uint8_t *pix = block_image(4, 4);
    size_t lens[4];
    uint8_t *files[4], app1[64];
    size_t n_app1 = exif_app1(app1, 6, 0);
    jpeg_opts jo = {JCS_RGB, JCS_UNKNOWN, 3, 0, -1, app1, n_app1}; /* EXIF data gets damaged too */
    files[0] = jpeg_encode(pix, 32, 32, &jo, &lens[0]);
    files[1] = jpeg_rgb(pix, 32, 32, 1, &lens[1]);
    png_opts po = {PNG_COLOR_TYPE_RGB, 8, 1, NULL, 0, NULL, 0};
    png_write_file(tmp_file("c.png"), pix, 32, 32, 32 * 3, &po);
    REQUIRE_OK(imcap_read_file(tmp_file("c.png"), 1 << 20, (char **)&files[2], &lens[2]));
    bmp_opts bo = {8, 0, 4, (const uint8_t *)"\1\2\3\4\5\6\7\10\11\12\13\14", NULL};
    files[3] = bmp_encode(32, 32, &bo, px_index4, &lens[3]);
    imcap_rng r;
    imcap_rng_seed(&r, 11);
    int fails = 0, total = 0;
    for (int f = 0; f < 4; f++) {
        uint8_t *buf = malloc(lens[f]);
        for (int t = 0; t < 150; t++) {
            memcpy(buf, files[f], lens[f]);
            int nflip = 1 + (int)imcap_rng_below(&r, 4);
            for (int k = 0; k < nflip; k++) {
                /* mostly the headers, where damage is most dangerous */
                size_t lim = imcap_rng_below(&r, 2) ? lens[f] : (lens[f] < 200 ? lens[f] : 200);
                buf[imcap_rng_below(&r, lim)] = (uint8_t)imcap_rng_next(&r);
            }
            imcap_image img;
            imcap_status st = imcap_image_decode(buf, lens[f], "fuzz.img", &img);
            total++;
            if (st == IMCAP_OK) {
                CHECK(img.w > 0 && img.h > 0 && (int64_t)img.w * img.h <= IMCAP_IMAGE_MAX_PIXELS);
                imcap_image_free(&img);
            } else {
                fails++;
                CHECK(strstr(imcap_last_error(), "fuzz.img") != NULL);
                CHECK(img.rgb == NULL);
            }
        }
        free(buf);
        free(files[f]);
    }
    CHECK(fails > total / 10); /* the corruption does reach the decoders */
    free(pix);
}

/* Decoded pixels and the 224/299 preprocessing of every sample photo equal
 * OpenCV's cv2.imread + crop + cv2.resize, by CRC-32 (scripts/golden_photos.py). */
TEST(image_sample_photos_match_opencv_golden)
{
    FILE *fp = fopen("tests/data/photos_golden.txt", "r");
    REQUIRE(fp);
    char line[1024], name[900];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        int w, h;
        unsigned crc[3];
        if (line[0] == '#') continue;
        REQUIRE(sscanf(line, "%899s %d %d %x %x %x", name, &w, &h, &crc[0], &crc[1], &crc[2]) == 6);
        imcap_image img;
        REQUIRE_OK(imcap_image_load(name, &img));
        CHECK(img.w == w && img.h == h);
        if (img.w == w && img.h == h) {
            unsigned got[3];
            got[0] = imcap_crc32(0, img.rgb, (size_t)w * h * 3);
            static uint8_t out[299 * 299 * 3];
            REQUIRE_OK(imcap_image_prepare(&img, 224, 224, out));
            got[1] = imcap_crc32(0, out, 224 * 224 * 3);
            REQUIRE_OK(imcap_image_prepare(&img, 299, 299, out));
            got[2] = imcap_crc32(0, out, 299 * 299 * 3);
            for (int k = 0; k < 3; k++)
                if (got[k] != crc[k])
                    test_fail_at(__FILE__, __LINE__, "%s: %s CRC %08x, OpenCV %08x", name,
                                 k == 0 ? "decoded" : k == 1 ? "prep224" : "prep299", got[k], crc[k]);
        }
        imcap_image_free(&img);
        n++;
    }
    fclose(fp);
    CHECK(n >= 17);
}

/* Issue 14, finding 5: BI_BITFIELDS masks must be contiguous runs of bits;
 * 0x00F000F0 used to decode to wrong colours without an error. */
TEST(image_bmp_noncontiguous_bitfield_masks_are_refused)
{
    const uint32_t bad[3][3] = {{0x00F000F0, 0x0000FF00, 0x0F000000},
                                {0x00FF0000, 0x0000F00F, 0x000000F0},
                                {0x00FF0000, 0x0000FF00, 0x00000005}};
    for (int k = 0; k < 3; k++) {
        bmp_opts o = {32, 0, 0, NULL, bad[k]};
        size_t len;
        uint8_t *b = bmp_encode(4, 3, &o, px_rgb24, &len);
        expect_fail(b, len, "masks.bmp", IMCAP_E_FORMAT, "contiguous");
        free(b);
    }
    /* contiguous masks of any width and position still decode */
    const uint32_t good[3] = {0x3FF00000, 0x000FFC00, 0x000003FF};
    bmp_opts o = {32, 0, 0, NULL, good};
    size_t len;
    uint8_t *b = bmp_encode(4, 3, &o, px_rgb24, &len);
    imcap_image img;
    REQUIRE_OK(imcap_image_decode(b, len, "ok.bmp", &img));
    imcap_image_free(&img);
    free(b);
}
