/* ops_avx512.c - the encoder kernels (ops_kernels.h) built for the avx512 path;
 * the Makefile gives *_avx512.c files their instruction-set flags. */
#include "ops_kernels.h"
