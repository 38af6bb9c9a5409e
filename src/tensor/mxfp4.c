/* tensor/mxfp4.c - owns the MXFP4 format of the OCP microscaling spec as
 * gpt-oss checkpoints publish their experts: blocks of 32 e2m1 values (4 bits
 * each, two per byte, the low nibble first) sharing one e8m0 scale byte s
 * (value = e2m1 * 2^(s - 127)). Exact dequantisation to F32 and BF16 (every
 * such value is exactly representable in both, down to 2^-128; with s = 255
 * magnitudes above 0.5 overflow to +-inf as transformers' ldexp does) and round-to-nearest
 * quantisation from F32 for synthetic checkpoints. */
#include <math.h>
#include <string.h>
#include "moesz/tensor.h"

static const float E2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float moesz_e2m1_to_f32(uint8_t nibble) { return E2M1[nibble & 15]; }

/* 2^(s - 127) as a float for s < 255 (s = 255, 2^128, is not a float). */
static float e8m0(uint8_t s) {
  if (s == 0) { uint32_t u = 0x00400000u; float f; memcpy(&f, &u, 4); return f; } /* 2^-127, subnormal */
  uint32_t u = (uint32_t)s << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void moesz_mxfp4_to_f32(const uint8_t *blocks, const uint8_t *scales, size_t ngroups, float *dst) {
  for (size_t g = 0; g < ngroups; g++) {
    const uint8_t *b = blocks + g * 16;
    float *o = dst + g * 32;
    if (scales[g] == 255) {   /* ldexp(v, 128): 0.5 gives 2^127, larger magnitudes overflow to inf */
      for (int i = 0; i < 32; i++) o[i] = ldexpf(E2M1[(b[i / 2] >> (4 * (i & 1))) & 15], 128);
      continue;
    }
    float sc = e8m0(scales[g]);
    for (int i = 0; i < 16; i++) {
      float lo = E2M1[b[i] & 15], hi = E2M1[b[i] >> 4];
      o[2 * i] = lo * sc;       /* exact: a power of two times at most 2 significant bits */
      o[2 * i + 1] = hi * sc;
    }
  }
}

/* BF16 bits of the e2m1 values at scale 2^0; a power-of-two scale 2^k adds
 * k to the exponent field (bits 7..14) of the non-zero ones while the result
 * stays a normal number: 0.5 * 2^k >= 2^-126 and 6 * 2^k < 2^128. */
static const uint16_t E2M1_BF16[16] = {0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
                                       0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0};

void moesz_mxfp4_to_bf16(const uint8_t *blocks, const uint8_t *scales, size_t ngroups, uint16_t *dst) {
  float tmp[32];
  for (size_t g = 0; g < ngroups; g++) {
    const uint8_t *b = blocks + g * 16;
    uint16_t *o = dst + g * 32;
    int s = scales[g];
    if (s >= 2 && s <= 252) {
      uint16_t tab[16];
      int delta = (s - 127) * 128;
      for (int i = 0; i < 16; i++) tab[i] = (E2M1_BF16[i] & 0x7fff) ? (uint16_t)(E2M1_BF16[i] + delta) : E2M1_BF16[i];
      for (int i = 0; i < 16; i++) {
        o[2 * i] = tab[b[i] & 15];
        o[2 * i + 1] = tab[b[i] >> 4];
      }
      continue;
    }
    moesz_mxfp4_to_f32(b, scales + g, 1, tmp);   /* subnormal or overflowing scales */
    for (int i = 0; i < 32; i++) {
      uint32_t u;
      memcpy(&u, &tmp[i], 4);
      o[i] = (uint16_t)(u >> 16);   /* exact: at most 2 significant bits */
    }
  }
}

/* Nearest e2m1 code of x (|x| <= 6 after scaling), ties to the even code. */
static uint8_t e2m1_code(float x) {
  uint8_t sign = signbit(x) ? 8 : 0;
  float a = fabsf(x);
  int best = 0;
  float bd = INFINITY;
  for (int c = 0; c < 8; c++) {
    float dlt = fabsf(a - E2M1[c]);
    if (dlt < bd || (dlt == bd && (c & 1) == 0)) { bd = dlt; best = c; }
  }
  return (uint8_t)(sign | best);
}

void moesz_mxfp4_from_f32(const float *src, size_t ngroups, uint8_t *blocks, uint8_t *scales) {
  for (size_t g = 0; g < ngroups; g++) {
    const float *x = src + g * 32;
    float amax = 0;
    for (int i = 0; i < 32; i++)
      if (isfinite(x[i]) && fabsf(x[i]) > amax) amax = fabsf(x[i]);
    /* the largest e2m1 magnitude is 6 = 1.5 * 2^2: scale 2^(floor(log2 amax) - 2) */
    int e = amax > 0 ? (int)floorf(log2f(amax)) - 2 : -127;
    if (e < -127) e = -127;
    if (e > 127) e = 127;
    scales[g] = (uint8_t)(e + 127);
    for (int i = 0; i < 16; i++) {
      uint8_t lo = e2m1_code(ldexpf(x[2 * i], -e)), hi = e2m1_code(ldexpf(x[2 * i + 1], -e));
      blocks[g * 16 + (size_t)i] = (uint8_t)(lo | hi << 4);
    }
  }
}
