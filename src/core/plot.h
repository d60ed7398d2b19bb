/*
 * plot.h - per-epoch line charts as SVG for training histories.
 */
#ifndef IMCAP_PLOT_H
#define IMCAP_PLOT_H

#include "internal.h"

/* A chart of n_series (at most 4) curves over epochs 1..n: series[k][e] is
 * the value of curve labels[k] after epoch e + 1 (NaN: no point); y axis
 * from the values' range. Written atomically to path. */
imcap_status plot_epochs_svg(const char *path, const char *title, const char *ylabel, int n, int n_series,
                             const float *const *series, const char *const *labels);

#endif
