/* fuzz_image_bmp.c - the BMP decoder. */
#define FUZZ_IMAGE_FORMAT IMCAP_IMAGE_BMP
#include "fuzz_image.h"
