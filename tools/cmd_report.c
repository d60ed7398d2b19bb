/* cmd_report.c - `imcap report`: one self-contained HTML page showing a
 * captioner at work on a split: each photo (re-encoded small, embedded as a
 * base64 data URI) with the generated caption beside the human captions,
 * COCO metrics of the sample, and the training loss curves (the SVG that
 * `imcap train` writes next to its checkpoint). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "internal.h"

#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const REPORT_HELP =
    "usage: imcap report [--model M] [--encoder E] --split NAMES.txt [-n 50] --out report.html\n"
    "                    [--captions data/flickr8k/captions.csv] [--images DIR]\n"
    "                    [--history LOSS.svg] [--beam K] [--max-len N] [--thumb PX]\n"
    "Captions the first N images of the split and writes one self-contained HTML\n"
    "page: each photo with the generated caption beside its human captions (and\n"
    "its CIDEr-D), the sample's BLEU-4 / ROUGE-L / CIDEr-D, and the training loss\n"
    "curves. Photos are embedded as small JPEGs; the page needs no other file.\n"
    "  --model M         captioning model (default $IMCAP_MODEL, else models/default.imcap)\n"
    "  --split F         image names, one a line (e.g. data/flickr8k/dev.txt)\n"
    "  --precision P     encoder arithmetic: int8, float, bf16 or auto (default)\n"
    "  --captions F      human captions (default data/flickr8k/captions.csv)\n"
    "  --images DIR      where the split's photos are (default: the split file's\n"
    "                    directory + /images, e.g. data/flickr8k/images)\n"
    "  --history F       loss plot SVG (default: next to the model's training\n"
    "                    checkpoint, X.loss.svg for X.gguf or X.best.gguf)\n"
    "  --beam K, --max-len N   generation settings (default: the model's)\n"
    "  --thumb PX        longest side of the embedded photos (default 240)\n"
    "  --attention N     attention models: for the first N photos, each word of the\n"
    "                    caption with its attention map as a translucent heat map over\n"
    "                    the encoder's view of the photo (default 6; 0: none)\n";

/* ----------------------------------------------------------- text buffer */

typedef struct sbuf {
    char *d;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + n + 1) cap *= 2;
        char *d = realloc(b->d, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->n, s, n);
    b->n += n;
    b->d[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) IMCAP_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Text escaped for HTML element content and attribute values. */
static void sb_html(sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default: sb_add(b, s, 1);
        }
    }
}

static void sb_base64(sbuf *b, const unsigned char *p, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        q[0] = A[v >> 18 & 63];
        q[1] = A[v >> 12 & 63];
        q[2] = i + 1 < n ? A[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? A[v & 63] : '=';
        sb_add(b, q, 4);
    }
}

/* ------------------------------------------------------------ thumbnails */

/* rgb [h][w][3] as a JPEG (quality 82) in a malloc'ed buffer (*jpg, *len). */
static void jpeg_rgb(const uint8_t *rgb, int w, int h, unsigned char **jpg, unsigned long *len)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    *jpg = NULL;
    *len = 0;
    jpeg_mem_dest(&ci, jpg, len);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 82, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
}

/* Photo -> JPEG of longest side <= px in *jpg (free()). */
static int thumbnail(const imcap_image *img, int px, unsigned char **jpg, unsigned long *len)
{
    int w = img->w, h = img->h;
    if (w > px || h > px) {
        if (w >= h) {
            h = (int)((long)h * px / w);
            w = px;
        } else {
            w = (int)((long)w * px / h);
            h = px;
        }
        if (w < 1) w = 1;
        if (h < 1) h = 1;
    }
    uint8_t *small = malloc((size_t)w * h * 3);
    if (!small) return 1;
    if (imcap_resize_linear_u8(img->rgb, img->w, img->h, (size_t)img->w * 3, 3, small, w, h)) {
        free(small);
        return 1;
    }
    jpeg_rgb(small, w, h, jpg, len);
    free(small);
    return 0;
}

/* -------------------------------------------------------------- the page */

static const char *const CSS =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1180px;"
    "color:#1d2327;background:#f6f7f9;padding:0 16px}"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px}"
    ".meta{color:#50575e;font-size:13.5px;line-height:1.55}"
    ".meta code{background:#eceef1;padding:1px 5px;border-radius:4px;font-size:12.5px}"
    ".scores{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}"
    ".score{background:#fff;border:1px solid #dcdfe3;border-radius:8px;padding:8px 14px;min-width:92px}"
    ".score b{display:block;font-size:21px}.score span{color:#50575e;font-size:12px}"
    ".loss{background:#fff;border:1px solid #dcdfe3;border-radius:8px;padding:10px;text-align:center}"
    ".loss img{max-width:100%}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(540px,100%),1fr));gap:14px}"
    ".card{display:flex;flex-wrap:wrap;gap:14px;background:#fff;border:1px solid #dcdfe3;border-radius:8px;padding:12px}"
    ".card img{width:240px;height:auto;max-height:240px;object-fit:contain;border-radius:4px;flex:none;"
    "background:#eceef1}"
    ".card .txt{flex:1 1 240px;min-width:0;font-size:14px}"
    ".gen{font-size:16px;font-weight:600;color:#0b57d0;margin:0 0 4px}"
    ".alt{color:#50575e;font-size:12.5px;margin:0 0 8px}"
    ".name{color:#8c8f94;font-size:11.5px;word-break:break-all;margin-bottom:6px}"
    ".card ul{margin:4px 0 0;padding-left:18px;color:#1d2327}.card li{margin:2px 0}"
    ".failed{color:#b32d2e}"
    ".att{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px;width:100%}"
    ".att figure{margin:0;width:96px;font-size:12px;text-align:center}"
    ".att img{display:block;width:96px;height:96px;border-radius:3px}";

/* The photo view sq [px][px][3] lit by one word's attention w [rows][cols]:
 * the weights (over their maximum) interpolated bilinearly between the
 * regions' centres, each pixel scaled by 0.15 + 0.85 * weight (the dark
 * parts were not looked at), into out (same size). */
static void attention_frame(const uint8_t *sq, int px, const float *w, int rows, int cols, uint8_t *out)
{
    float mx = 0;
    for (int k = 0; k < rows * cols; k++) mx = w[k] > mx ? w[k] : mx;
    const float inv = mx > 0 ? 1.0f / mx : 0.0f;
    for (int y = 0; y < px; y++) {
        float gy = ((float)y + 0.5f) * (float)rows / (float)px - 0.5f;
        gy = gy < 0 ? 0 : gy > (float)(rows - 1) ? (float)(rows - 1) : gy;
        const int y0 = (int)gy, y1 = y0 + 1 < rows ? y0 + 1 : y0;
        const float fy = gy - (float)y0;
        for (int x = 0; x < px; x++) {
            float gx = ((float)x + 0.5f) * (float)cols / (float)px - 0.5f;
            gx = gx < 0 ? 0 : gx > (float)(cols - 1) ? (float)(cols - 1) : gx;
            const int x0 = (int)gx, x1 = x0 + 1 < cols ? x0 + 1 : x0;
            const float fx = gx - (float)x0;
            const float a = (1 - fy) * ((1 - fx) * w[y0 * cols + x0] + fx * w[y0 * cols + x1]) +
                            fy * ((1 - fx) * w[y1 * cols + x0] + fx * w[y1 * cols + x1]);
            const float gain = 0.15f + 0.85f * a * inv;
            for (int c = 0; c < 3; c++) {
                const size_t i = ((size_t)y * px + x) * 3 + c;
                out[i] = (uint8_t)(sq[i] * gain + 0.5f);
            }
        }
    }
}

/* Per word of the best caption, the encoder's square view of the photo
 * (sq [px][px][3]) lit by that word's attention map, as a JPEG tile. */
static void attention_maps(sbuf *b, const imcap_caption *cap, const uint8_t *sq, int px)
{
    const imcap_caption_alt *a = &cap->alt[0];
    const int L = cap->grid_rows * cap->grid_cols;
    uint8_t *frame = malloc((size_t)px * px * 3);
    if (!frame) return;
    sb_puts(b, "<div class=\"att\">");
    const char *p = a->text;
    for (int i = 0; i < a->n_words; i++) {
        const char *e = strchr(p, ' ');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char word[256];
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), p);
        attention_frame(sq, px, a->attention + (size_t)i * L, cap->grid_rows, cap->grid_cols, frame);
        unsigned char *jpg;
        unsigned long len;
        jpeg_rgb(frame, px, px, &jpg, &len);
        sb_printf(b, "<figure><img width=\"%d\" height=\"%d\" alt=\"where the model looked for ", px, px);
        sb_html(b, word);
        sb_puts(b, "\" src=\"data:image/jpeg;base64,");
        sb_base64(b, jpg, len);
        free(jpg);
        sb_puts(b, "\"><figcaption>");
        sb_html(b, word);
        sb_puts(b, "</figcaption></figure>");
        p = e ? e + 1 : p + n;
    }
    sb_puts(b, "</div>");
    free(frame);
}

typedef struct report_opts {
    const char *model, *encoder, *split, *captions, *images, *history, *out;
    int n, thumb, beam, max_len, attention;
    imcap_precision precision;
} report_opts;

static char *default_images_dir(const char *split)
{
    const char *slash = strrchr(split, '/');
    size_t dl = slash ? (size_t)(slash - split) : 1;
    char *d = malloc(dl + 16);
    if (d) snprintf(d, dl + 16, "%.*s/images", (int)dl, slash ? split : ".");
    return d;
}

/* X.gguf -> X.loss.svg; for the best-validation model X.best.gguf that
 * `imcap train` also writes, the run's X.loss.svg. */
static char *default_history(const char *ckpt)
{
    if (!ckpt || !ckpt[0]) return NULL;
    size_t n = strlen(ckpt);
    if (n > 5 && !strcmp(ckpt + n - 5, ".gguf")) n -= 5;
    char *s = malloc(n + 16);
    if (!s) return NULL;
    snprintf(s, n + 16, "%.*s.loss.svg", (int)n, ckpt);
    struct stat st;
    if (stat(s, &st) != 0 && n > 5 && !strncmp(ckpt + n - 5, ".best", 5))
        snprintf(s, n + 16, "%.*s.loss.svg", (int)(n - 5), ckpt);
    return s;
}

static const char *model_default(void)
{
    const char *env = getenv("IMCAP_MODEL");
    return env && *env ? env : "models/default.imcap";
}

int cmd_report(int argc, char **argv)
{
    report_opts o = {.captions = "data/flickr8k/captions.csv", .n = 50, .thumb = 240, .attention = 6};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(REPORT_HELP, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imcap report: %s needs a value (or unknown option)\n%s", a, REPORT_HELP);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--encoder")) o.encoder = v;
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(a, v, &o.precision)) return 2;
        } else if (!strcmp(a, "--split")) o.split = v;
        else if (!strcmp(a, "--captions")) o.captions = v;
        else if (!strcmp(a, "--images")) o.images = v;
        else if (!strcmp(a, "--history")) o.history = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "-n")) {
            if (cli_parse_int(a, v, 1, 100000, &x)) return 2;
            o.n = (int)x;
        } else if (!strcmp(a, "--attention")) {
            if (cli_parse_int(a, v, 0, 100000, &x)) return 2;
            o.attention = (int)x;
        } else if (!strcmp(a, "--thumb")) {
            if (cli_parse_int(a, v, 32, 2048, &x)) return 2;
            o.thumb = (int)x;
        } else if (!strcmp(a, "--beam")) {
            if (cli_parse_int(a, v, 1, 64, &x)) return 2;
            o.beam = (int)x;
        } else if (!strcmp(a, "--max-len")) {
            if (cli_parse_int(a, v, 1, 100, &x)) return 2;
            o.max_len = (int)x;
        } else {
            fprintf(stderr, "imcap report: unknown option %s\n%s", a, REPORT_HELP);
            return 2;
        }
    }
    if (!o.split || !o.out) {
        fprintf(stderr, "imcap report: --split and --out are required\n%s", REPORT_HELP);
        return 2;
    }
    if (!o.model) o.model = model_default();
    /* the page is written after every photo is captioned: check it can be, first */
    imcap_status ost = imcap_check_output(o.out, "report");
    if (ost) return cli_error("report", ost);

    int rc = 1;
    imcap_status st;
    imcap_captioner *c = NULL;
    imcap_captions *all = NULL, *sub = NULL;
    char *images_dir = NULL, *hist_path = NULL, *svg = NULL;
    size_t svg_len = 0;
    sbuf page = {0};
    char **gen_text = NULL;
    const char ***refs = NULL;
    imcap_score_item *items = NULL;
    double *cider = NULL;
    size_t n = 0;

    if ((st = imcap_captioner_load(o.model, o.encoder, &c)) || (st = imcap_captioner_set_precision(c, o.precision))) {
        cli_error("report", st);
        goto out;
    }
    if ((st = imcap_captions_load(o.captions, &all)) || (st = imcap_captions_restrict(all, o.split, &sub))) {
        cli_error("report", st);
        goto out;
    }
    images_dir = o.images ? strdup(o.images) : default_images_dir(o.split);
    hist_path = o.history ? strdup(o.history) : default_history(imcap_captioner_checkpoint(c));
    if (!images_dir) goto oom;
    if (hist_path && imcap_read_file(hist_path, 16u << 20, &svg, &svg_len)) {
        fprintf(stderr, "imcap report: no loss curves: %s\n", imcap_last_error());
        svg = NULL;
    }
    imcap_gen_params gp = imcap_captioner_gen_params(c);
    if (o.beam) gp.beam = o.beam;
    if (o.max_len) gp.max_len = o.max_len;

    n = imcap_captions_n_images(sub);
    if (n > (size_t)o.n) n = (size_t)o.n;
    gen_text = calloc(n ? n : 1, sizeof *gen_text);
    refs = calloc(n ? n : 1, sizeof *refs);
    items = calloc(n ? n : 1, sizeof *items);
    cider = calloc(n ? n : 1, sizeof *cider);
    if (!gen_text || !refs || !items || !cider) goto oom;

    /* Caption and render every photo; the cards are assembled after scoring. */
    sbuf *cards = calloc(n ? n : 1, sizeof *cards);
    if (!cards) goto oom;
    cli_progress prog;
    cli_progress_init(&prog, "report");
    size_t n_ok = 0, failed = 0;
    int *ok_index = calloc(n ? n : 1, sizeof *ok_index);
    if (!ok_index) {
        free(cards);
        goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = imcap_captions_image(sub, i);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", images_dir, name);
        imcap_image img;
        imcap_caption *cap = NULL;
        unsigned char *jpg = NULL;
        unsigned long jlen = 0;
        if ((st = imcap_image_load(path, &img))) {
            fprintf(stderr, "imcap report: skipped: %s\n", imcap_last_error());
            failed++;
            continue;
        }
        if ((st = imcap_caption_image(c, &img, &gp, &cap)) || thumbnail(&img, o.thumb, &jpg, &jlen)) {
            fprintf(stderr, "imcap report: skipped %s: %s\n", path, st ? imcap_last_error() : "thumbnail failed");
            imcap_image_free(&img);
            imcap_caption_free(cap);
            free(jpg);
            failed++;
            continue;
        }
        sbuf *b = &cards[i];
        sb_puts(b, "<div class=\"card\"><img alt=\"");
        sb_html(b, name);
        sb_puts(b, "\" src=\"data:image/jpeg;base64,");
        sb_base64(b, jpg, jlen);
        sb_puts(b, "\"><div class=\"txt\"><div class=\"name\">");
        sb_html(b, name);
        sb_printf(b, " &middot; %dx%d</div><p class=\"gen\">", img.w, img.h);
        sb_html(b, cap->alt[0].text);
        sb_printf(b, "</p><p class=\"alt\">log p = %.2f &middot; CIDEr-D %%CIDER%zu%% &middot; %.0f ms</p>"
                     "<div>Human captions:</div><ul>",
                  cap->alt[0].logprob, i, 1e3 * (cap->t_encode + cap->t_generate));
        size_t nr = imcap_captions_count(sub, i);
        refs[n_ok] = calloc(nr, sizeof(char *));
        if (!refs[n_ok] || !(gen_text[n_ok] = strdup(cap->alt[0].text))) {
            imcap_image_free(&img);
            imcap_caption_free(cap);
            free(jpg);
            free(cards);
            free(ok_index);
            goto oom;
        }
        for (size_t k = 0; k < nr; k++) {
            const char *r = imcap_captions_text(sub, i, k);
            refs[n_ok][k] = r;
            sb_puts(b, "<li>");
            sb_html(b, r);
            sb_puts(b, "</li>");
        }
        sb_puts(b, "</ul></div>");
        if (cap->alt[0].attention && n_ok < (size_t)o.attention) {
            enum { PX = 96 }; /* the encoder's square view, as the maps cover it */
            uint8_t *sq = malloc((size_t)PX * PX * 3);
            if (sq && imcap_image_prepare(&img, PX, PX, sq) == IMCAP_OK) attention_maps(b, cap, sq, PX);
            free(sq);
        }
        sb_puts(b, "</div>\n");
        items[n_ok].candidate = gen_text[n_ok];
        items[n_ok].refs = refs[n_ok];
        items[n_ok].n_refs = nr;
        ok_index[n_ok++] = (int)i;
        imcap_image_free(&img);
        imcap_caption_free(cap);
        free(jpg);
        cli_progress_fn(&prog, i + 1, n, "photos");
    }
    imcap_scores sc;
    memset(&sc, 0, sizeof sc);
    int have_scores = n_ok > 0 && imcap_score(items, n_ok, 1, &sc, cider, NULL) == IMCAP_OK;
    if (n_ok > 0 && !have_scores) fprintf(stderr, "imcap report: scoring failed: %s\n", imcap_last_error());

    /* The page. */
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    sb_puts(&page, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>imcap report: ");
    sb_html(&page, o.model);
    sb_puts(&page, "</title><style>");
    sb_puts(&page, CSS);
    sb_puts(&page, "</style></head><body>\n<h1>imcap captions</h1><div class=\"meta\">Model <code>");
    sb_html(&page, o.model);
    sb_puts(&page, "</code> &middot; encoder <code>");
    sb_html(&page, imcap_captioner_encoder_name(c));
    sb_printf(&page, "</code> &middot; %d-word vocabulary &middot; ", imcap_captioner_vocab_size(c));
    if (gp.beam > 1) sb_printf(&page, "beam search, %d beams, length alpha %.2g", gp.beam, (double)gp.length_alpha);
    else sb_puts(&page, "greedy decoding");
    sb_printf(&page, ", at most %d words<br>Split <code>", gp.max_len);
    sb_html(&page, o.split);
    sb_printf(&page, "</code>: the first %zu images (%zu captioned, %zu failed) &middot; written %s</div>\n", n, n_ok,
              failed, when);
    if (have_scores)
        sb_printf(&page,
                  "<h2>Scores on this sample</h2><div class=\"scores\">"
                  "<div class=\"score\"><b>%.3f</b><span>BLEU-1</span></div>"
                  "<div class=\"score\"><b>%.3f</b><span>BLEU-4</span></div>"
                  "<div class=\"score\"><b>%.3f</b><span>ROUGE-L</span></div>"
                  "<div class=\"score\"><b>%.3f</b><span>CIDEr-D</span></div></div>"
                  "<div class=\"meta\">COCO caption toolkit definitions (PTB tokenization; CIDEr-D document "
                  "frequencies from these %zu images' references only, so not comparable with full-split "
                  "scores).</div>\n",
                  sc.bleu[0], sc.bleu[3], sc.rouge_l, sc.cider_d, n_ok);
    sb_puts(&page, "<h2>Training loss</h2>");
    if (svg) {
        sb_puts(&page, "<div class=\"loss\"><img alt=\"training and validation loss per epoch\" "
                       "src=\"data:image/svg+xml;base64,");
        sb_base64(&page, (const unsigned char *)svg, svg_len);
        sb_puts(&page, "\"></div><div class=\"meta\">From <code>");
        sb_html(&page, hist_path);
        sb_puts(&page, "</code>.</div>\n");
    } else {
        sb_puts(&page, "<div class=\"meta failed\">No loss history found");
        if (hist_path) {
            sb_puts(&page, " (looked for <code>");
            sb_html(&page, hist_path);
            sb_puts(&page, "</code>)");
        }
        sb_puts(&page, ".</div>\n");
    }
    sb_puts(&page, "<h2>Photos</h2><div class=\"grid\">\n");
    for (size_t k = 0; k < n_ok; k++) {
        const char *card = cards[ok_index[k]].d;
        char tag[48];
        snprintf(tag, sizeof tag, "%%CIDER%d%%", ok_index[k]);
        const char *at = strstr(card, tag);
        if (at) {
            sb_add(&page, card, (size_t)(at - card));
            if (have_scores) sb_printf(&page, "%.2f", cider[k]);
            else sb_puts(&page, "n/a");
            sb_puts(&page, at + strlen(tag));
        } else {
            sb_puts(&page, card);
        }
    }
    sb_puts(&page, "</div></body></html>\n");
    for (size_t i = 0; i < n; i++) free(cards[i].d);
    free(cards);
    free(ok_index);
    if (page.oom) goto oom;

    imcap_atomic_file af;
    if ((st = imcap_atomic_open(&af, o.out)) || (st = imcap_atomic_write(&af, page.d, page.n)) ||
        (st = imcap_atomic_commit(&af))) {
        imcap_atomic_abort(&af);
        cli_error("report", st);
        goto out;
    }
    fprintf(stderr, "imcap report: %s: %zu photos (%.1f KiB)%s\n", o.out, n_ok, page.n / 1024.0,
            failed ? ", some photos failed" : "");
    rc = failed || n_ok == 0 ? 1 : 0;
    goto out;
oom:
    fprintf(stderr, "imcap report: out of memory\n");
out:
    for (size_t i = 0; i < n && gen_text; i++) free(gen_text[i]);
    for (size_t i = 0; i < n && refs; i++) free((void *)refs[i]);
    free(gen_text);
    free(refs);
    free(items);
    free(cider);
    free(page.d);
    free(svg);
    free(images_dir);
    free(hist_path);
    imcap_captions_free(sub);
    imcap_captions_free(all);
    imcap_captioner_free(c);
    return rc;
}
