/* fuzz_image_jpeg.c - the JPEG decoder. */
#define FUZZ_IMAGE_FORMAT IMCAP_IMAGE_JPEG
#include "fuzz_image.h"
