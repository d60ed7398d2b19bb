/* qops_avx512.c - the uint8 kernels (qops_kernels.h) built for the avx512 path;
 * the Makefile gives *_avx512.c files their instruction-set flags (and this one VNNI). */
#include "qops_kernels.h"
