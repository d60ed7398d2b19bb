/* dec_generic.c - the decoder kernels (dec_simd.h) built for the generic path;
 * the Makefile gives *_generic.c files their instruction-set flags. */
#include "dec_simd.h"
