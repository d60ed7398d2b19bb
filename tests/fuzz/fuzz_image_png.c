/* fuzz_image_png.c - the PNG decoder. */
#define FUZZ_IMAGE_FORMAT IMCAP_IMAGE_PNG
#include "fuzz_image.h"
