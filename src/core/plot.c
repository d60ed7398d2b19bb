/*
 * plot.c - per-epoch line charts as SVG (training histories: loss, reward,
 * CIDEr-D), written atomically.
 */
#include "plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct strbuf { char *p; size_t n, cap; bool oom; } strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) IMCAP_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

imcap_status plot_epochs_svg(const char *path, const char *title, const char *ylabel, int n, int n_series,
                             const float *const *series, const char *const *labels)
{
    const double W = 640, H = 400, L = 60, R = 20, T = 30, B = 50;
    double lo = INFINITY, hi = -INFINITY;
    for (int e = 0; e < n; e++)
        for (int k = 0; k < n_series; k++)
            if (isfinite(series[k][e])) {
                lo = fmin(lo, series[k][e]);
                hi = fmax(hi, series[k][e]);
            }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-3) lo -= 0.5, hi += 0.5;
    const double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    const int xmax = n > 1 ? n : 2;
#define XP(e) (L + ((double)(e) - 1) / (xmax - 1) * (W - L - R))
#define YP(v) (T + (hi - (v)) / (hi - lo) * (H - T - B))
    strbuf b = {0};
    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n"
              "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
              "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
              W, H, W, H, W / 2, title);
    sb_printf(&b, "<g stroke=\"#888\" stroke-width=\"1\">\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n</g>\n",
              L, H - B, W - R, H - B, L, T, L, H - B);
    for (int k = 0; k <= 5; k++) {
        double v = lo + (hi - lo) * k / 5;
        sb_printf(&b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                  L, YP(v), W - R, YP(v), L - 6, YP(v) + 4, v);
    }
    const int xstep = xmax <= 12 ? 1 : (xmax + 11) / 12;
    for (int e = 1; e <= xmax; e += xstep)
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", XP(e), H - B + 18, e);
    sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epoch</text>\n", (L + W - R) / 2, H - 10);
    sb_printf(&b, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">"
                  "%s</text>\n",
              (T + H - B) / 2, (T + H - B) / 2, ylabel);
    static const char *const color[4] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"};
    for (int k = 0; k < n_series && k < 4; k++) {
        const float *h = series[k];
        sb_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color[k]);
        for (int e = 0; e < n; e++)
            if (isfinite(h[e])) sb_printf(&b, "%.1f,%.1f ", XP(e + 1), YP(h[e]));
        sb_printf(&b, "\"/>\n");
        for (int e = 0; e < n; e++)
            if (isfinite(h[e]))
                sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", XP(e + 1), YP(h[e]),
                          color[k]);
        sb_printf(&b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                  W - R - 110, T + 10 + 16.0 * k, W - R - 90, T + 10 + 16.0 * k, color[k], W - R - 84,
                  T + 14 + 16.0 * k, labels[k]);
    }
    sb_printf(&b, "</svg>\n");
#undef XP
#undef YP
    if (b.oom) {
        free(b.p);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for the plot", path);
    }
    imcap_atomic_file af;
    imcap_status s = imcap_atomic_open(&af, path);
    if (!s) s = imcap_atomic_write(&af, b.p, b.n);
    if (!s) s = imcap_atomic_commit(&af);
    else imcap_atomic_abort(&af);
    free(b.p);
    return s;
}

