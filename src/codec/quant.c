/* codec/quant.c - owns the quantizer: q = round(x / step), x' = q * step in
 * double, then rounded to the delivered dtype; a value is coded only if the
 * delivered value is within eb in F32 and in the stream's out dtype, else it
 * is stored verbatim. Decoder and encoder share codec_value() so they agree
 * bit for bit (build with -ffp-contract=off). */
#include <math.h>
#include <string.h>
#include "base/cpu.h"
#include "codec/codec_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline double load(const void *src, moesz_dtype in, size_t i) {
  uint16_t h;
  switch (in) {
    case MOESZ_DT_F32: { float f; memcpy(&f, (const char *)src + 4 * i, 4); return f; }
    case MOESZ_DT_BF16: memcpy(&h, (const char *)src + 2 * i, 2); return moesz_bf16_to_f32(h);
    default: memcpy(&h, (const char *)src + 2 * i, 2); return moesz_f16_to_f32(h);
  }
}

/* The delivered F32 value of code q. */
static inline float codec_value(int32_t q, double step) { return (float)((double)q * step); }

static inline float deliver(float f, moesz_dtype out) {
  if (out == MOESZ_DT_BF16) return moesz_bf16_to_f32(moesz_f32_to_bf16(f));
  if (out == MOESZ_DT_F16) return moesz_f16_to_f32(moesz_f32_to_f16(f));
  return f;
}

/* 1 if code q delivers x within eb in F32 and in out. */
static inline int meets(double q, double x, double step, double eb, moesz_dtype out) {
  if (!(fabs(q) <= CODEC_QMAX)) return 0;
  float f = codec_value((int32_t)q, step);
  return fabs((double)f - x) <= eb && fabs((double)deliver(f, out) - x) <= eb;
}

size_t codec_quantize(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double step, double eb,
                      uint32_t *codes) {
  size_t nv = 0;
  const double inv = 1.0 / step;
  float buf[1024];
  for (size_t b = 0; b < n; b += 1024) {
    size_t m = n - b < 1024 ? n - b : 1024;
    moesz_to_f32(in, (const char *)src + b * moesz_dtype_size(in), buf, m);
    for (size_t k = 0; k < m; k++) {
      double x = buf[k];
      /* nearest code by multiplication; the check below decides, so an ulp
       * of difference from x / step near a tie is harmless */
      double r = x * inv;
      /* round half to even without a libm call (|r| < 2^51; larger or NaN fail the range test) */
      double q = fabs(r) < 0x1p51 ? (r + 0x1.8p52) - 0x1.8p52 : r;
      uint32_t z;
      if (fabs(q) <= CODEC_QMAX && meets(q, x, step, eb, out) && !(x == 0 && signbit(x))) {
        z = zz_enc((int32_t)q);
      } else if (!isfinite(x) || (x == 0 && signbit(x)) || fabs(q) > CODEC_QMAX) {
        z = CODE_VERB;
      } else {
        /* Rounding to the delivered dtype moved x' out of the bound: when that
         * dtype's spacing exceeds 2 eb a neighbouring code lands in x's own
         * rounding cell, so try a few neighbours before storing verbatim. */
        static const double TRY[] = {-1, 1, -2, 2};
        z = CODE_VERB;
        for (int t = 0; t < 4; t++)
          if (meets(q + TRY[t], x, step, eb, out)) { z = zz_enc((int32_t)(q + TRY[t])); break; }
      }
      nv += z == CODE_VERB;
      codes[b + k] = z;
    }
  }
  return nv;
}

#if defined(__x86_64__)
/* 8 codes -> 8 floats, exactly (float)((double)q * step) as codec_value. */
__attribute__((target("avx2"))) static inline __m256 deq8(const uint32_t *c, __m256d st) {
  __m256i z = _mm256_loadu_si256((const __m256i *)(const void *)c);
  __m256i q = _mm256_xor_si256(_mm256_srli_epi32(z, 1), _mm256_sub_epi32(_mm256_setzero_si256(),
                                                                          _mm256_and_si256(z, _mm256_set1_epi32(1))));
  __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(q)), st));
  __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(q, 1)), st));
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

__attribute__((target("avx2,f16c"))) static size_t deq_avx2(const uint32_t *codes, size_t n, double step, moesz_dtype dt,
                                                     void *dst) {
  __m256d st = _mm256_set1_pd(step);
  size_t i = 0;
  if (dt == MOESZ_DT_F32) {
    float *d = dst;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, deq8(codes + i, st));
  } else if (dt == MOESZ_DT_BF16) {
    uint16_t *d = dst;
    const __m256i r7 = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    for (; i + 16 <= n; i += 16) {
      __m256i a = _mm256_castps_si256(deq8(codes + i, st)), b = _mm256_castps_si256(deq8(codes + i + 8, st));
      /* round to nearest even (values are finite) */
      a = _mm256_srli_epi32(_mm256_add_epi32(a, _mm256_add_epi32(r7, _mm256_and_si256(_mm256_srli_epi32(a, 16), one))), 16);
      b = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(r7, _mm256_and_si256(_mm256_srli_epi32(b, 16), one))), 16);
      __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
      _mm256_storeu_si256((__m256i *)(void *)(d + i), p);
    }
  } else {
    uint16_t *d = dst;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(void *)(d + i), _mm256_cvtps_ph(deq8(codes + i, st), 0));
  }
  return i;
}
#endif

void codec_dequantize(const uint32_t *codes, size_t n, double step, moesz_dtype dt, void *dst, int simd) {
  size_t i = 0;
#if defined(__x86_64__)
  if (simd) i = deq_avx2(codes, n, step, dt, dst);
#else
  (void)simd;
#endif
  if (dt == MOESZ_DT_F32) {
    float *d = dst;
    for (; i < n; i++) d[i] = codec_value(zz_dec(codes[i]), step);
  } else if (dt == MOESZ_DT_BF16) {
    uint16_t *d = dst;
    for (; i < n; i++) d[i] = moesz_f32_to_bf16(codec_value(zz_dec(codes[i]), step));
  } else {
    uint16_t *d = dst;
    for (; i < n; i++) d[i] = moesz_f32_to_f16(codec_value(zz_dec(codes[i]), step));
  }
}

void codec_put_value(const void *src, moesz_dtype in, size_t i, void *dst, moesz_dtype out, size_t j) {
  size_t es = moesz_dtype_size(in), eo = moesz_dtype_size(out);
  if (in == out) { memcpy((char *)dst + eo * j, (const char *)src + es * i, es); return; }
  float f = (float)load(src, in, i);
  if (out == MOESZ_DT_F32) memcpy((char *)dst + 4 * j, &f, 4);
  else {
    uint16_t h = out == MOESZ_DT_BF16 ? moesz_f32_to_bf16(f) : moesz_f32_to_f16(f);
    memcpy((char *)dst + 2 * j, &h, 2);
  }
}
