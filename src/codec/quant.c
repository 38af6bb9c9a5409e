/* codec/quant.c - owns the quantizer: q = round(x / step), x' = q * step in
 * double, then rounded to the delivered dtype; a value is coded only if the
 * delivered value is within eb in F32 and in the stream's out dtype, else it
 * is stored verbatim. Decoder and encoder share codec_value() so they agree
 * bit for bit (build with -ffp-contract=off). */
#include <math.h>
#include <string.h>
#include "codec/codec_internal.h"

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
  if (fabs(q) > CODEC_QMAX) return 0;
  float f = codec_value((int32_t)q, step);
  return fabs((double)f - x) <= eb && fabs((double)deliver(f, out) - x) <= eb;
}

size_t codec_quantize(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double step, double eb,
                      uint32_t *codes) {
  size_t nv = 0;
  for (size_t i = 0; i < n; i++) {
    double x = load(src, in, i);
    int bad = !isfinite(x) || (x == 0 && signbit(x));
    double q = 0;
    if (!bad) {
      q = nearbyint(x / step);
      if (!meets(q, x, step, eb, out)) {
        /* Rounding to the delivered dtype moved x' out of the bound. When that
         * dtype's spacing exceeds 2 eb a neighbouring code lands on x's own
         * rounding cell: search a few neighbours before storing verbatim. */
        static const double TRY[] = {-1, 1, -2, 2};
        int found = 0;
        for (int t = 0; t < 4 && !found; t++)
          if (meets(q + TRY[t], x, step, eb, out)) { q += TRY[t]; found = 1; }
        bad = !found;
      }
    }
    codes[i] = bad ? CODE_VERB : zz_enc((int32_t)q);
    nv += (size_t)bad;
  }
  return nv;
}

void codec_dequantize(const uint32_t *codes, size_t n, double step, moesz_dtype dt, void *dst) {
  if (dt == MOESZ_DT_F32) {
    float *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = codec_value(zz_dec(codes[i]), step);
  } else if (dt == MOESZ_DT_BF16) {
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = moesz_f32_to_bf16(codec_value(zz_dec(codes[i]), step));
  } else {
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = moesz_f32_to_f16(codec_value(zz_dec(codes[i]), step));
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
