/* qops_avx2.c - the uint8 kernels (qops_kernels.h) built for the avx2 path;
 * the Makefile gives *_avx2.c files their instruction-set flags. */
#include "qops_kernels.h"
