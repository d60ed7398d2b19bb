/* dec_avx512.c - the decoder kernels (dec_simd.h) built for the avx512 path;
 * the Makefile gives *_avx512.c files their instruction-set flags. */
#include "dec_simd.h"
