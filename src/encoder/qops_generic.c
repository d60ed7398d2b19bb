/* qops_generic.c - the uint8 kernels (qops_kernels.h) built for the generic path;
 * the Makefile gives *_generic.c files their instruction-set flags. */
#include "qops_kernels.h"
