/* ops_generic.c - the encoder kernels (ops_kernels.h) built for the generic path;
 * the Makefile gives *_generic.c files their instruction-set flags. */
#include "ops_kernels.h"
