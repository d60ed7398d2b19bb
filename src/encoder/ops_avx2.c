/* ops_avx2.c - the encoder kernels (ops_kernels.h) built for the avx2 path;
 * the Makefile gives *_avx2.c files their instruction-set flags. */
#include "ops_kernels.h"
