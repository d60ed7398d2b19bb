/*
 * f16.h - IEEE 754 binary16 (half precision) conversions, for float16
 * storage of embeddings and feature grids (src/encoder/embfile.c).
 */
#ifndef IMCAP_F16_H
#define IMCAP_F16_H

#include <stddef.h>
#include <stdint.h>

/* Round to nearest, ties to even; values of magnitude >= 65520 become
 * infinity, NaN stays NaN (quiet). */
uint16_t imcap_f32_to_f16(float x);
/* Exact (every half is a float). */
float imcap_f16_to_f32(uint16_t h);
/* Arrays: the same results as the scalar functions (F16C when built with it). */
void imcap_f32_to_f16_n(const float *x, uint16_t *h, size_t n);
void imcap_f16_to_f32_n(const uint16_t *h, float *x, size_t n);
/* Whether a half is finite (not inf or NaN). */
static inline int imcap_f16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

#endif
