/* codec/quant.c - owns the quantizer: q = round(x / step), x' = q * step in
 * double, then rounded to the stream's out dtype (F32 delivery of a 16-bit
 * out dtype is that value widened); a value is coded only if the delivered
 * value is within eb - with q, a neighbour of q, or q nudged (the other
 * rounding) - else it is stored verbatim. Decoder and
 * encoder share codec_value() and deliver*() so they agree bit for bit
 * (build with -ffp-contract=off). */
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


static inline float deliver(float f, moesz_dtype out) {
  if (out == MOESZ_DT_BF16) return moesz_bf16_to_f32(moesz_f32_to_bf16(f));
  if (out == MOESZ_DT_F16) return moesz_f16_to_f32(moesz_f32_to_f16(f));
  return f;
}

/* f rounded to out (BF16/F16) in the other direction than nearest: one step
 * of out's grid from the nearest value, towards f (sign-magnitude, so a step
 * in magnitude is +-1 on the bits; the sign of the nearest value is f's). */
static inline float deliver_nudged(float f, moesz_dtype out) {
  if (out == MOESZ_DT_F32) return f;
  float g = deliver(f, out);
  if (g == f) return g;
  uint16_t h = codec_nudge16(out == MOESZ_DT_BF16 ? moesz_f32_to_bf16(f) : moesz_f32_to_f16(f), g, f);
  return out == MOESZ_DT_BF16 ? moesz_bf16_to_f32(h) : moesz_f16_to_f32(h);
}

/* 1 if code q, nudged, delivers x within eb in out (a 16-bit dtype). */
static inline int meets_nudged(double q, double x, double step, double eb, moesz_dtype out) {
  if (!(fabs(q) <= CODEC_QMAX)) return 0;
  return fabs((double)deliver_nudged(codec_value((int32_t)q, step), out) - x) <= eb;
}

/* 1 if code q delivers x within eb in out. F32 delivery of a stream whose out
 * dtype is 16-bit is the out-dtype value widened (codec_dequantize), so the
 * out-dtype check covers it. */
static inline int meets(double q, double x, double step, double eb, moesz_dtype out) {
  if (!(fabs(q) <= CODEC_QMAX)) return 0;
  return fabs((double)deliver(codec_value((int32_t)q, step), out) - x) <= eb;
}

/* The code of one value: its nearest code if that meets the bound, else a
 * neighbour that does, else the nearest code nudged, else CODE_VERB. */
static uint32_t quant_one(double x, double inv, double step, double eb, moesz_dtype out) {
  /* nearest code by multiplication; the check below decides, so an ulp of
   * difference from x / step near a tie is harmless */
  double r = x * inv;
  /* round half to even without a libm call (|r| < 2^51; larger or NaN fail the range test) */
  double q = fabs(r) < 0x1p51 ? (r + 0x1.8p52) - 0x1.8p52 : r;
  if (!isfinite(x) || (x == 0 && signbit(x)) || !(fabs(q) <= CODEC_QMAX)) return CODE_VERB;
  if (meets(q, x, step, eb, out)) return zz_enc((int32_t)q);
  /* Rounding to the delivered dtype moved x' out of the bound: when that
   * dtype's spacing exceeds 2 eb a neighbouring code lands in x's own
   * rounding cell, so try a few neighbours before storing verbatim. */
  static const double TRY[] = {-1, 1, -2, 2};
  for (int t = 0; t < 4; t++)
    if (meets(q + TRY[t], x, step, eb, out)) return zz_enc((int32_t)(q + TRY[t]));
  /* else the other rounding of x' (see CODE_NUDGE) */
  if (out != MOESZ_DT_F32 && meets_nudged(q, x, step, eb, out)) return zz_enc((int32_t)q) | CODE_NUDGE;
  return CODE_VERB;
}

#if defined(__x86_64__)
/* Four values at a time: the same arithmetic as quant_one (round half to
 * even, x' = (float)(q * step), rounded to out) with the checks as masks;
 * a group where any value fails goes through quant_one. Returns values done. */
__attribute__((target("avx2,f16c"))) static size_t quant_avx2(const float *x, size_t m, double inv, double step,
                                                         double eb, moesz_dtype out, uint32_t *codes) {
  const __m256d vinv = _mm256_set1_pd(inv), vstep = _mm256_set1_pd(step), veb = _mm256_set1_pd(eb);
  const __m256d qmax = _mm256_set1_pd(CODEC_QMAX), absm = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
  const __m128i r7 = _mm_set1_epi32(0x7fff), one = _mm_set1_epi32(1), hi = _mm_set1_epi32((int)0xffff0000u);
  size_t i = 0;
  for (; i + 4 <= m; i += 4) {
    __m128 xf = _mm_loadu_ps(x + i);
    __m256d xd = _mm256_cvtps_pd(xf);
    __m256d q = _mm256_round_pd(_mm256_mul_pd(xd, vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d ok = _mm256_cmp_pd(_mm256_and_pd(q, absm), qmax, _CMP_LE_OQ);       /* also false for NaN */
    __m256d qc = _mm256_and_pd(q, ok);                                           /* keep cvt in range */
    __m128 f = _mm256_cvtpd_ps(_mm256_mul_pd(qc, vstep));
    __m128 d = f;
    if (out == MOESZ_DT_BF16) {
      __m128i b = _mm_castps_si128(f);
      b = _mm_and_si128(_mm_add_epi32(b, _mm_add_epi32(r7, _mm_and_si128(_mm_srli_epi32(b, 16), one))), hi);
      d = _mm_castsi128_ps(b);
    } else if (out == MOESZ_DT_F16) {
      d = _mm_cvtph_ps(_mm_cvtps_ph(f, 0));
    }
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(_mm256_and_pd(_mm256_sub_pd(_mm256_cvtps_pd(d), xd), absm), veb, _CMP_LE_OQ));
    /* -0 is stored verbatim so it comes back bit-exact */
    __m128i negz = _mm_cmpeq_epi32(_mm_castps_si128(xf), _mm_set1_epi32((int)0x80000000u));
    int bad = _mm_movemask_ps(_mm_castsi128_ps(negz)) | (~_mm256_movemask_pd(ok) & 15);
    if (__builtin_expect(bad != 0, 0)) {
      for (int k = 0; k < 4; k++) codes[i + (size_t)k] = quant_one(x[i + (size_t)k], inv, step, eb, out);
      continue;
    }
    __m128i qi = _mm256_cvtpd_epi32(q);
    __m128i zz = _mm_xor_si128(_mm_slli_epi32(qi, 1), _mm_srai_epi32(qi, 31));
    _mm_storeu_si128((__m128i *)(void *)(codes + i), zz);
  }
  return i;
}
#endif

size_t codec_quantize(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double step, double eb,
                      uint32_t *codes, uint64_t *hist) {
  size_t nv = 0;
  const double inv = 1.0 / step;
  float buf[1024];
#if defined(__x86_64__)
  int simd = moesz_cpu_avx2();
#endif
  for (size_t b = 0; b < n; b += 1024) {
    size_t m = n - b < 1024 ? n - b : 1024, k = 0;
    moesz_to_f32(in, (const char *)src + b * moesz_dtype_size(in), buf, m);
#if defined(__x86_64__)
    if (simd) k = quant_avx2(buf, m, inv, step, eb, out, codes + b);
#endif
    for (; k < m; k++) codes[b + k] = quant_one(buf[k], inv, step, eb, out);
    if (hist)
      for (k = 0; k < m; k++) hist[huf_sym(codes[b + k])]++;
    else
      for (k = 0; k < m; k++) nv += codes[b + k] == CODE_VERB;
  }
  return hist ? hist[HUF_VERB] : nv;
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

static void deq_plain(const uint32_t *codes, size_t n, double step, moesz_dtype dt, void *dst, int simd) {
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

void codec_dequantize(const uint32_t *codes, size_t n, double step, moesz_dtype dt, moesz_dtype out, void *dst,
                      int simd) {
  if (dt != MOESZ_DT_F32 || out == MOESZ_DT_F32) { deq_plain(codes, n, step, dt, dst, simd); return; }
  /* F32 from a stream checked in a 16-bit dtype: that dtype's values, widened */
  uint16_t h[256];
  for (size_t b = 0; b < n; b += 256) {
    size_t m = n - b < 256 ? n - b : 256;
    deq_plain(codes + b, m, step, out, h, simd);
    moesz_to_f32(out, h, (float *)dst + b, m);
  }
}

void codec_dequantize_nudged(const uint32_t *codes, size_t n, double step, moesz_dtype dt, moesz_dtype out,
                             void *dst) {
  for (size_t i = 0; i < n; i++) {
    uint32_t z = codes[i];
    float f = codec_value(zz_dec(z & ~CODE_NUDGE), step);
    /* in the out dtype, or F32 as the out dtype's value widened */
    if (out != MOESZ_DT_F32 && (dt == out || dt == MOESZ_DT_F32))
      f = z != CODE_VERB && (z & CODE_NUDGE) ? deliver_nudged(f, out) : deliver(f, out);
    if (dt == MOESZ_DT_F32) memcpy((float *)dst + i, &f, 4);
    else ((uint16_t *)dst)[i] = dt == MOESZ_DT_BF16 ? moesz_f32_to_bf16(f) : moesz_f32_to_f16(f);
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

size_t codec_first_undeliverable(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double eb, double *x,
                                 double *y) {
  for (size_t i = 0; i < n; i++) {
    double v = load(src, in, i);
    if (!isfinite(v)) continue;                 /* NaN and Inf are delivered as they are */
    double d = deliver((float)v, out);
    if (!(fabs(d - v) <= eb)) {
      *x = v;
      *y = d;
      return i;
    }
  }
  return n;
}
