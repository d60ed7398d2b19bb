/* dec_avx2.c - the decoder kernels (dec_simd.h) built for the avx2 path;
 * the Makefile gives *_avx2.c files their instruction-set flags. */
#include "dec_simd.h"
