/* tensor/dtype.c - owns dtype names/sizes and exact float conversions
 * (bf16, f16, f8 e4m3 <-> f32, round to nearest even). */
#include <math.h>
#include <string.h>
#include "moesz/tensor.h"

static const struct { const char *name; size_t size; } DT[MOESZ_DT_COUNT] = {
  [MOESZ_DT_F32] = {"F32", 4},  [MOESZ_DT_F16] = {"F16", 2}, [MOESZ_DT_BF16] = {"BF16", 2},
  [MOESZ_DT_F8_E4M3] = {"F8_E4M3", 1}, [MOESZ_DT_I8] = {"I8", 1}, [MOESZ_DT_U8] = {"U8", 1},
  [MOESZ_DT_I16] = {"I16", 2}, [MOESZ_DT_I32] = {"I32", 4}, [MOESZ_DT_I64] = {"I64", 8},
  [MOESZ_DT_F64] = {"F64", 8}, [MOESZ_DT_BOOL] = {"BOOL", 1},
};

size_t moesz_dtype_size(moesz_dtype t) { return (unsigned)t < MOESZ_DT_COUNT ? DT[t].size : 0; }
const char *moesz_dtype_name(moesz_dtype t) { return (unsigned)t < MOESZ_DT_COUNT ? DT[t].name : "?"; }

int moesz_dtype_parse(const char *s, moesz_dtype *out) {
  for (int i = 0; i < MOESZ_DT_COUNT; i++)
    if (!strcmp(s, DT[i].name)) { *out = (moesz_dtype)i; return MOESZ_OK; }
  return MOESZ_E_UNSUPPORTED;
}

int moesz_dtype_is_float(moesz_dtype t) {
  return t == MOESZ_DT_F32 || t == MOESZ_DT_F16 || t == MOESZ_DT_BF16 || t == MOESZ_DT_F8_E4M3 ||
         t == MOESZ_DT_F64;
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float moesz_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t moesz_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float moesz_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return u2f(sign | 0x7f800000u | (man << 13));  /* inf / nan */
  if (exp == 0) {
    if (man == 0) return u2f(sign);
    float v = (float)man * 0x1p-24f;                               /* subnormal, exact */
    return sign ? -v : v;
  }
  return u2f(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t moesz_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));   /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* >= 65520 rounds to inf */
  if (a < 0x38800000u) {                                     /* below 2^-14: subnormal f16 */
    /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
    float v = u2f(a) * 0x1p24f;                              /* exact: scaling by power of 2 */
    float r = nearbyintf(v);                                 /* default mode: ties to even */
    return (uint16_t)(sign | (uint16_t)r);
  }
  uint32_t e = (a >> 23) - 112u, m = a & 0x7fffffu;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  /* carries into exponent correctly */
  return (uint16_t)(sign | h);
}

float moesz_f8e4m3_to_f32(uint8_t b) {
  uint32_t s = b >> 7, e = (b >> 3) & 0xfu, m = b & 7u;
  float v;
  if (e == 0xf && m == 7) return s ? -NAN : NAN;
  if (e == 0) v = (float)m * 0x1p-9f;
  else v = ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
  return s ? -v : v;
}

void moesz_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  uint32_t *d = (uint32_t *)(void *)dst;
  for (size_t i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}

void moesz_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = moesz_f32_to_bf16(src[i]);
}

void moesz_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = moesz_f16_to_f32(src[i]);
}

void moesz_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = moesz_f32_to_f16(src[i]);
}

int moesz_to_f32(moesz_dtype t, const void *src, float *dst, size_t n) {
  switch (t) {
    case MOESZ_DT_F32: memmove(dst, src, n * 4); return MOESZ_OK;
    case MOESZ_DT_BF16: moesz_bf16_to_f32_n(src, dst, n); return MOESZ_OK;
    case MOESZ_DT_F16: moesz_f16_to_f32_n(src, dst, n); return MOESZ_OK;
    case MOESZ_DT_F8_E4M3:
      for (size_t i = 0; i < n; i++) dst[i] = moesz_f8e4m3_to_f32(((const uint8_t *)src)[i]);
      return MOESZ_OK;
    case MOESZ_DT_F64:
      for (size_t i = 0; i < n; i++) { double v; memcpy(&v, (const char *)src + 8 * i, 8); dst[i] = (float)v; }
      return MOESZ_OK;
    case MOESZ_DT_I8:
      for (size_t i = 0; i < n; i++) dst[i] = ((const int8_t *)src)[i];
      return MOESZ_OK;
    case MOESZ_DT_U8: case MOESZ_DT_BOOL:
      for (size_t i = 0; i < n; i++) dst[i] = ((const uint8_t *)src)[i];
      return MOESZ_OK;
    case MOESZ_DT_I16:
      for (size_t i = 0; i < n; i++) { int16_t v; memcpy(&v, (const char *)src + 2 * i, 2); dst[i] = v; }
      return MOESZ_OK;
    case MOESZ_DT_I32:
      for (size_t i = 0; i < n; i++) { int32_t v; memcpy(&v, (const char *)src + 4 * i, 4); dst[i] = (float)v; }
      return MOESZ_OK;
    case MOESZ_DT_I64:
      for (size_t i = 0; i < n; i++) { int64_t v; memcpy(&v, (const char *)src + 8 * i, 8); dst[i] = (float)v; }
      return MOESZ_OK;
    default: return MOESZ_E_UNSUPPORTED;
  }
}

int moesz_from_f32(moesz_dtype t, const float *src, void *dst, size_t n) {
  switch (t) {
    case MOESZ_DT_F32: memmove(dst, src, n * 4); return MOESZ_OK;
    case MOESZ_DT_BF16: moesz_f32_to_bf16_n(src, dst, n); return MOESZ_OK;
    case MOESZ_DT_F16: moesz_f32_to_f16_n(src, dst, n); return MOESZ_OK;
    default: return MOESZ_E_UNSUPPORTED;
  }
}
