/* infer/kernels_x512.c - AVX-512 kernels for products of many tokens and
 * AVX512_BF16 dot products (see kernels_x512.h); kernels.c picks them at run
 * time (kctx.simd, kctx.dpbf16) after checking them against its AVX2 kernels
 * on this CPU.
 *
 * - moesz_kx_mm_f32: the packed path's micro-kernel, 4 rows x 6 tokens of
 *   16-column FMAs (24 of the 32 registers accumulate). Exact as the AVX2
 *   one: products in f32.
 * - moesz_kx_bf16_rows: BF16 rows as they lie against x rounded to BF16,
 *   vdpbf16ps (two products a lane per instruction, no widening, no packing),
 *   4 rows x 6 tokens. Rounding x to BF16 is the approximation llama.cpp makes
 *   for BF16 weights; kernels.c takes this path only when asked (--fast-dot).
 * - moesz_kx_cl8_mm: the compute layout's 8-bit tile (kernels_cl.c,
 *   --fast-dot=8 prompts) with AVX512_VNNI: 16 rows x up to 6 tokens, one
 *   vpdpbusd per quad of columns and token (4 byte products into each row's
 *   int32 lane), where the AVX2 kernel needs vpmaddubsw, an int16 add and a
 *   widening vpmaddwd. The same integer sums, scaled the same way: the same
 *   results bit for bit.
 * - moesz_kx_cl_quant_x, moesz_kx_cl_rows: the compute layout against 1..4
 *   tokens with AVX512_VBMI + VNNI (vpermb, vpmultishiftqb, vpdpbusd against
 *   x quantized to 24 bits a block of 256 columns); kernels_cl.c takes it for one token's
 *   exact products (kctx.simd 3). Explained at its section below.
 *
 * The functions carry __attribute__((target(...))) so the file builds for any
 * x86-64. tests/test_kernels_x512.c includes this file with MOESZ_KX_EMULATE
 * defined: the same code against SIMDe's portable AVX-512, so its indexing,
 * tails are checked on CPUs without AVX-512. */
#if defined(MOESZ_KX_EMULATE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define TGT512
#define TGTBF
#define TGTVNNI
#define MOESZ_KX_X86 1
#elif defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TGT512 __attribute__((target("avx2,fma,f16c,avx512f")))
#define TGTBF __attribute__((target("avx2,fma,f16c,avx512f,avx512bf16")))
#define TGTVNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vnni")))
#define MOESZ_KX_X86 1
#else
#define MOESZ_KX_X86 0
#endif
#include <string.h>
#include "infer/kernels_x512.h"
#include "moesz/tensor.h"

size_t KX(moesz_kx_bf16_ld)(size_t cols) {
  return (cols + 31) / 32 * 32;
}

#if MOESZ_KX_X86 && !defined(MOESZ_KX_EMULATE)   /* SIMDe 0.7.4 lacks vpmovdw */
#define KX_TO_BF16_16 1
/* x to BF16 as moesz_f32_to_bf16 (nearest even, NaN kept quiet), 16 values a
 * step: the same bits (vcvtne2ps2bf16 would flush subnormals). */
TGT512 static void to_bf16_16(const float *x, uint16_t *d, size_t n) {
  const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), abs = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x40);
  size_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + k));
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs), inf);
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, half), _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
    r = _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_srli_epi32(u, 16), quiet);
    _mm256_storeu_si256((__m256i *)(d + k), _mm512_cvtepi32_epi16(r));
  }
  moesz_f32_to_bf16_n(x + k, d + k, n - k);
}
#endif

void KX(moesz_kx_x_to_bf16)(const float *x, size_t ldx, int n, size_t cols, uint16_t *xb, size_t ldb) {
  for (int t = 0; t < n; t++) {
    uint16_t *d = xb + (size_t)t * ldb;
#ifdef KX_TO_BF16_16
    to_bf16_16(x + (size_t)t * ldx, d, cols);
#else
    moesz_f32_to_bf16_n(x + (size_t)t * ldx, d, cols);
#endif
    for (size_t k = cols; k < ldb; k++) d[k] = 0;
  }
}

#if MOESZ_KX_X86
/* Sum of the 16 lanes. */
TGT512 static inline float hsum16(__m512 v) {
  __m256 lo = _mm512_castps512_ps256(v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

/* Every micro-kernel: R rows w (row stride ldw) times T tokens x (row stride
 * ldx) over cols columns; y[j * ldy + i] (+)= the sum for row i, token j. */
typedef void mk_fn(const void *w, size_t ldw, const void *x, size_t ldx, size_t cols, float *y,
                   size_t ldy, int acc);

/* f32 rows and tokens, 16 columns a step; the last cols % 16 columns one at
 * a time. */
#define MK512(R, T)                                                                      \
  TGT512 static void mk512_##R##x##T(const void *wp, size_t ldw, const void *xp, size_t ldx, \
                                     size_t cols, float *y, size_t ldy, int acc) {       \
    const float *w = wp, *x = xp;                                                        \
    __m512 a[R][T];                                                                      \
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                  \
      _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) a[i][j] = _mm512_setzero_ps(); \
    size_t k = 0;                                                                        \
    for (; k + 16 <= cols; k += 16) {                                                    \
      __m512 wv[R];                                                                      \
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = _mm512_loadu_ps(w + (size_t)i * ldw + k); \
      _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) {                              \
        __m512 xv = _mm512_loadu_ps(x + (size_t)j * ldx + k);                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) a[i][j] = _mm512_fmadd_ps(wv[i], xv, a[i][j]); \
      }                                                                                  \
    }                                                                                    \
    for (int i = 0; i < R; i++)                                                          \
      for (int j = 0; j < T; j++) {                                                      \
        float s = hsum16(a[i][j]), *o = y + (size_t)j * ldy + i;                         \
        for (size_t kk = k; kk < cols; kk++) s += w[(size_t)i * ldw + kk] * x[(size_t)j * ldx + kk]; \
        *o = acc ? *o + s : s;                                                           \
      }                                                                                  \
  }

/* BF16 rows and BF16 tokens, 32 columns a step; the last cols % 32 columns
 * one at a time (each product of two BF16 values is exact in f32). */
#define KBF(R, T)                                                                        \
  TGTBF static void kbf_##R##x##T(const void *wp, size_t ldw, const void *xp, size_t ldx, \
                                  size_t cols, float *y, size_t ldy, int acc) {          \
    const uint16_t *w = wp, *x = xp;                                                     \
    __m512 a[R][T];                                                                      \
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                  \
      _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) a[i][j] = _mm512_setzero_ps(); \
    size_t k = 0;                                                                        \
    for (; k + 32 <= cols; k += 32) {                                                    \
      __m512i wv[R];                                                                     \
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                \
        wv[i] = _mm512_loadu_si512((const void *)(w + (size_t)i * ldw + k));             \
      _Pragma("GCC unroll 6") for (int j = 0; j < T; j++) {                              \
        __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)j * ldx + k));        \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                              \
          a[i][j] = _mm512_dpbf16_ps(a[i][j], (__m512bh)wv[i], (__m512bh)xv);            \
      }                                                                                  \
    }                                                                                    \
    for (int i = 0; i < R; i++)                                                          \
      for (int j = 0; j < T; j++) {                                                      \
        float s = hsum16(a[i][j]), *o = y + (size_t)j * ldy + i;                         \
        for (size_t kk = k; kk < cols; kk++)                                             \
          s += moesz_bf16_to_f32(w[(size_t)i * ldw + kk]) * moesz_bf16_to_f32(x[(size_t)j * ldx + kk]); \
        *o = acc ? *o + s : s;                                                           \
      }                                                                                  \
  }

#define SHAPES(M) M(4, 1) M(4, 2) M(4, 3) M(4, 4) M(4, 5) M(4, 6) M(1, 1) M(1, 2) M(1, 3) M(1, 4) M(1, 5) M(1, 6)
SHAPES(MK512)
SHAPES(KBF)
#define ENTRY512(R, T) mk512_##R##x##T,
#define ENTRYBF(R, T) kbf_##R##x##T,
/* [4-row block?][tokens - 1] */
static mk_fn *const MK_F32[2][6] = {{ENTRY512(1, 1) ENTRY512(1, 2) ENTRY512(1, 3) ENTRY512(1, 4) ENTRY512(1, 5) ENTRY512(1, 6)},
                                   {ENTRY512(4, 1) ENTRY512(4, 2) ENTRY512(4, 3) ENTRY512(4, 4) ENTRY512(4, 5) ENTRY512(4, 6)}};
static mk_fn *const MK_BF16[2][6] = {{ENTRYBF(1, 1) ENTRYBF(1, 2) ENTRYBF(1, 3) ENTRYBF(1, 4) ENTRYBF(1, 5) ENTRYBF(1, 6)},
                                    {ENTRYBF(4, 1) ENTRYBF(4, 2) ENTRYBF(4, 3) ENTRYBF(4, 4) ENTRYBF(4, 5) ENTRYBF(4, 6)}};

/* nr rows x nt tokens: rows in blocks of 4 (then one at a time), tokens in
 * blocks of 6 (then the rest in one call); es = bytes per element. */
static void tiles(mk_fn *const mk[2][6], size_t es, const void *w, size_t ldw, int nr, const void *x,
                  size_t ldx, int nt, size_t cols, float *y, size_t ldy, int acc) {
  for (int r = 0; r < nr;) {
    int four = r + 4 <= nr;
    const char *wr = (const char *)w + (size_t)r * ldw * es;
    for (int t = 0; t < nt; t += 6) {
      int tn = nt - t < 6 ? nt - t : 6;
      mk[four][tn - 1](wr, ldw, (const char *)x + (size_t)t * ldx * es, ldx, cols,
                       y + (size_t)t * ldy + r, ldy, acc);
    }
    r += four ? 4 : 1;
  }
}

void KX(moesz_kx_mm_f32)(const float *p, int nr, const float *x, size_t ldx, int nt, size_t c,
                         float *y, size_t ldy, int acc) {
  tiles(MK_F32, sizeof(float), p, c, nr, x, ldx, nt, c, y, ldy, acc);
}

void KX(moesz_kx_bf16_rows)(const uint16_t *w, size_t ld, size_t cols, int nr, const uint16_t *xb,
                            size_t ldb, int nt, float *y, size_t ldy, int acc) {
  tiles(MK_BF16, sizeof(uint16_t), w, ld, nr, xb, ldb, nt, cols, y, ldy, acc);
}

/* int32 lanes to f32 (nearest even, as vcvtdq2ps). SIMDe 0.7.4 has no
 * _mm512_cvtepi32_ps: the portable build converts lane by lane. */
TGTVNNI static inline __m512 cvt_i32(__m512i a) {
#if defined(MOESZ_KX_EMULATE)
  int32_t v[16];
  float f[16];
  _mm512_storeu_si512((void *)v, a);
  for (int i = 0; i < 16; i++) f[i] = (float)v[i];
  return _mm512_loadu_ps(f);
#else
  return _mm512_cvtepi32_ps(a);
#endif
}

/* 16 rows of the 8-bit tile by T tokens: f32 sums s8 * u * x8 per row and
 * token into out [T][16]. */
#define CL8_VNNI(T)                                                                              \
  TGTVNNI static void cl8v_##T(const uint8_t *tile, int64_t ng, const int8_t *const *x8, const float *const *s8, \
                               float *out) {                                                     \
    __m512 f[T];                                                                                 \
    for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();                                      \
    for (int64_t h = 0; h < 2 * ng; h++) {   /* 32 columns: 8 quads */                           \
      const uint8_t *w = tile + (size_t)h * 512;                                                 \
      __m512i a[T];                                                                              \
      for (int t = 0; t < T; t++) a[t] = _mm512_setzero_si512();                                 \
      for (int k = 0; k < 8; k++) {                                                              \
        __m512i wk = _mm512_loadu_si512((const void *)(w + 64 * k));                             \
        for (int t = 0; t < T; t++) {                                                            \
          int32_t xq;                                                                            \
          memcpy(&xq, x8[t] + (size_t)h * 32 + 4 * k, 4);                                        \
          a[t] = _mm512_dpbusd_epi32(a[t], wk, _mm512_set1_epi32(xq));                           \
        }                                                                                        \
      }                                                                                          \
      for (int t = 0; t < T; t++)                                                                \
        f[t] = _mm512_fmadd_ps(cvt_i32(a[t]), _mm512_set1_ps(s8[t][h >> 1]), f[t]);              \
    }                                                                                            \
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + 16 * t, f[t]);                            \
  }
CL8_VNNI(1)
CL8_VNNI(2)
CL8_VNNI(3)
CL8_VNNI(4)
CL8_VNNI(5)
CL8_VNNI(6)

void KX(moesz_kx_cl8_mm)(const uint8_t *tile, int64_t ng, const int8_t *const *x8, const float *const *s8, int nt,
                         float *out) {
  static void (*const K[6])(const uint8_t *, int64_t, const int8_t *const *, const float *const *, float *) = {
      cl8v_1, cl8v_2, cl8v_3, cl8v_4, cl8v_5, cl8v_6};
  K[(nt < 1 ? 1 : nt > 6 ? 6 : nt) - 1](tile, ng, x8, s8, out);
}
#endif

/* ---- The compute layout against 1 to 4 tokens (AVX-512 VBMI + VNNI) ----
 * x of each block of CLK = 4 groups (256 columns) is h s with s = max |x| /
 * 127 * 2^-16 over the block and |h| <= 127 * 2^16 an integer (nearest, in
 * f32: f32's precision at the block's largest value), held as three signed
 * digits d2 2^16 + d1 2^8 + d0 (each in [-128, 127]). A group's 64 codes of width b <= 8 are one masked
 * load, vpermb (each 8 codes' b bytes into a 64-bit lane) and vpmultishiftqb
 * (code i into the top b bits of byte i), then one vpternlogd masks the bits
 * below and flips the sign bit: unsigned bytes u = q 2^(8 - b) + 128. Per
 * token three vpdpbusd (u times each digit, four byte products into each
 * int32 lane) give S = (sum u d2) 2^8 + sum u d1 and T = sum u d0 exactly, and
 * the group adds s (256 S + T) - 128 s sum h, all times 2^(b - 8): the
 * codes' offset comes off through the per-group sum of x the quantizer
 * keeps. A row's groups of its usual width add their three digit sums in
 * int32 through a block (at most 16 byte products of 255 * 128 a lane and
 * digit: S stays below 2^28) and convert once a block; other widths convert
 * once a group. Against the AVX2 path's 16-bit codes times two 16-bit halves
 * of x (kernels_cl.c), a group of 64 codes of the usual width costs 7
 * 512-bit instructions a token and 7 more a block instead of 30 256-bit
 * ones. Groups wider than 8 bits (rare: the encoder
 * escapes outliers) are multiplied one code at a time.
 * With x at 16 bits (fast_dot, one token) h stays within 127 * 257, so the
 * top digit is zero and its vpdpbusd is skipped: two a token instead of
 * three. Every usual width from 2 to 8 has its own instantiation (width 2
 * is most groups at loose bounds). */
#if MOESZ_KX_X86
#include "infer/kernels_cl512_tab.h"
#include "moesz/codec.h"
#if defined(MOESZ_KX_EMULATE)
#define TGTVB
#define CL5_INL static __attribute__((noinline)) /* emulated: compiled once, not per kernel (build time) */
#else
#define TGTVB __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vbmi,avx512vnni")))
#define CL5_INL static inline __attribute__((always_inline)) /* constant NT, ND, UB per kernel */
#endif
#define CLG 64
#ifndef CL5_PF
#define CL5_PF 2048 /* codes prefetched this far ahead */
#endif
#define CLX_HMAX 8323072 /* 127 * 65536: three balanced base-256 digits stay within [-128, 127] */
#define CLX_HMAX16 32639  /* 127 * 257: two such digits, the third zero (x to 16 bits, fast_dot) */
#define CLK 4         /* groups sharing one scale of x: a row's usual-width groups of a block add up in int32 */

size_t KX(moesz_kx_cl_xq_bytes)(int64_t ng) {
  return (size_t)ng * (3 * CLG + 2 * sizeof(float));
}

#if !defined(MOESZ_KX_EMULATE)
/* One full group of x at xg (64 values, finite) as quant_x below does it,
 * 16 values a step; returns the group's sum of h. */
TGTVB static int32_t quant_group5(const float *xg, float inv, int8_t *d2) {
  const __m512i hmax = _mm512_set1_epi32(CLX_HMAX), hmin = _mm512_set1_epi32(-CLX_HMAX);
  __m512i hs = _mm512_setzero_si512();
  for (int j = 0; j < 4; j++) {
    __m512i h = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + 16 * j), _mm512_set1_ps(inv)));
    h = _mm512_min_epi32(_mm512_max_epi32(h, hmin), hmax);
    hs = _mm512_add_epi32(hs, h);
    __m512i e0 = _mm512_srai_epi32(_mm512_slli_epi32(h, 24), 24);
    __m512i h1 = _mm512_srai_epi32(_mm512_sub_epi32(h, e0), 8);
    __m512i e1 = _mm512_srai_epi32(_mm512_slli_epi32(h1, 24), 24);
    __m512i e2 = _mm512_srai_epi32(_mm512_sub_epi32(h1, e1), 8);
    _mm_storeu_si128((__m128i *)(d2 + 16 * j), _mm512_cvtepi32_epi8(e2));
    _mm_storeu_si128((__m128i *)(d2 + CLG + 16 * j), _mm512_cvtepi32_epi8(e1));
    _mm_storeu_si128((__m128i *)(d2 + 2 * CLG + 16 * j), _mm512_cvtepi32_epi8(e0));
  }
  return _mm512_reduce_add_epi32(hs);
}

/* Largest |x| of a full group (NaN/Inf: returns Inf). */
TGTVB static float group_max5(const float *xg) {
  __m512 mx = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (int j = 0; j < 4; j++) {
    __m512 v = _mm512_abs_ps(_mm512_loadu_ps(xg + 16 * j));
    bad |= _mm512_cmp_ps_mask(v, _mm512_set1_ps(3.0e38f), _CMP_NLE_UQ);   /* > 3e38 or NaN */
    mx = _mm512_max_ps(mx, v);
  }
  return bad ? __builtin_inff() : _mm512_reduce_max_ps(mx);
}
#endif

/* Largest |x| of group g of x [cols] (NaN/Inf: returns Inf). */
TGTVB static float cl5_gmax(const float *x, int64_t cols, int64_t g) {
#if !defined(MOESZ_KX_EMULATE)
  if ((g + 1) * CLG <= cols) return group_max5(x + g * CLG);
#endif
  int64_t c0 = g * CLG, n = cols - c0 < CLG ? cols - c0 : CLG;
  float m = 0;
  for (int64_t k = 0; k < n; k++) {
    float a = x[c0 + k] < 0 ? -x[c0 + k] : x[c0 + k];
    if (!(a <= 3.0e38f)) return __builtin_inff();   /* NaN or Inf */
    m = a > m ? a : m;
  }
  return m;
}

/* Group g of x [cols] times inv as three digit planes at d2; returns the
 * group's sum of h. */
TGTVB static int32_t cl5_gquant(const float *x, int64_t cols, int64_t g, float inv, int8_t *d2) {
#if !defined(MOESZ_KX_EMULATE)
  if ((g + 1) * CLG <= cols) return quant_group5(x + g * CLG, inv, d2);
#endif
  int64_t c0 = g * CLG, n = cols - c0 < CLG ? cols - c0 : CLG;
  int8_t *d1 = d2 + CLG, *d0 = d1 + CLG;
  int32_t hs = 0;
  for (int64_t k = 0; k < CLG; k++) {
    float v = k < n ? x[c0 + k] * inv : 0.0f;
    int32_t h = (int32_t)__builtin_rintf(v);   /* nearest even, as vcvtps2dq */
    h = h > CLX_HMAX ? CLX_HMAX : h < -CLX_HMAX ? -CLX_HMAX : h;
    hs += h;
    int32_t e0 = (int8_t)(uint8_t)(h & 255), h1 = (h - e0) / 256, e1 = (int8_t)(uint8_t)(h1 & 255);
    d0[k] = (int8_t)e0;
    d1[k] = (int8_t)e1;
    d2[k] = (int8_t)((h1 - e1) / 256);
  }
  return hs;
}

int KX(moesz_kx_cl_quant_x)(const float *x, int64_t cols, int64_t ng, int digits, void *xq) {
  const float hmax = digits == 2 ? (float)CLX_HMAX16 : (float)CLX_HMAX;
  int8_t *d = xq;
  float *s = (float *)(d + (size_t)ng * 3 * CLG), *sx = s + ng;
  for (int64_t g0 = 0; g0 < ng; g0 += CLK) {   /* one scale a block of CLK groups */
    int64_t g1 = g0 + CLK < ng ? g0 + CLK : ng;
    float m = 0;
    for (int64_t g = g0; g < g1; g++) {
      float mg = cl5_gmax(x, cols, g);
      if (!(mg <= 3.0e38f)) return 0;
      m = mg > m ? mg : m;
    }
    float sc = m > 0 ? m / hmax : 1.0f, inv = m > 0 ? hmax / m : 0.0f;
    for (int64_t g = g0; g < g1; g++) {
      s[g] = sc;
      sx[g] = sc * (float)cl5_gquant(x, cols, g, inv, d + (size_t)g * 3 * CLG);
    }
  }
  return 1;
}

/* vpmultishiftqb: byte i of each 64-bit lane of a rotated right by the
 * lane's control byte i (mod 64). The portable build writes it out here:
 * SIMDe 0.7.4's shifts by 64 for a control of 0 (undefined; UBSan). */
TGTVB static inline __m512i multishift(__m512i ctrl, __m512i a) {
#if defined(MOESZ_KX_EMULATE)
  uint64_t av[8], r[8];
  uint8_t cv[64];
  _mm512_storeu_si512((void *)av, a);
  _mm512_storeu_si512((void *)cv, ctrl);
  for (int j = 0; j < 8; j++) {
    r[j] = 0;
    for (int i = 0; i < 8; i++) {
      unsigned c = cv[8 * j + i] & 63;
      uint64_t rot = (av[j] >> c) | (av[j] << ((64 - c) & 63));
      r[j] |= (rot & 0xff) << (8 * i);
    }
  }
  return _mm512_loadu_si512((const void *)r);
#else
  return _mm512_multishift_epi64_epi8(ctrl, a);
#endif
}

/* 64 codes of width b (1..8) at p as bytes q 2^(8 - b) + 128. Masked load:
 * the data's 16 bytes of padding cover a group's 8 b bytes only. */
TGTVB CL5_INL __m512i cl5_codes(const uint8_t *p, int b, __m512i perm,
                                                                      __m512i msh) {
#if defined(MOESZ_KX_EMULATE)   /* SIMDe 0.7.4 has no masked byte load */
  uint8_t buf[64] = {0};
  memcpy(buf, p, (size_t)(8 * b));
  __m512i raw = _mm512_loadu_si512((const void *)buf);
#else
  __m512i raw = b >= 6 ? _mm512_loadu_si512((const void *)p) : _mm512_maskz_loadu_epi8(b == 8 ? ~0ull : (1ull << (8 * b)) - 1, p);
#endif
  __m512i v = multishift(msh, _mm512_permutexvar_epi8(perm, raw));
  return _mm512_ternarylogic_epi32(v, _mm512_set1_epi8((char)((0xff << (8 - b)) & 0xff)),
                                   _mm512_set1_epi8((char)0x80), 0x6a);   /* (v & mask) ^ 0x80 */
}

/* One group's codes v against NT tokens (their digits d, scales s and sums
 * of x sx; group g), f the group's scale relative to the row's (a power of
 * two): 256 S + T into a (S) and c (T), sx into corr. */
TGTVB CL5_INL void cl5_group(__m512i v, int NT, int ND, const int8_t *const *d,
                                                                   const float *const *s, const float *const *sx,
                                                                   int64_t g, float f, __m512 *a, __m512 *c,
                                                                   float *corr) {
  for (int u = 0; u < NT; u++) {
    const int8_t *dg = d[u] + g * 3 * CLG;
    __m512i S = _mm512_setzero_si512();
    if (ND == 3) S = _mm512_slli_epi32(_mm512_dpbusd_epi32(S, v, _mm512_loadu_si512((const void *)dg)), 8);
    S = _mm512_dpbusd_epi32(S, v, _mm512_loadu_si512((const void *)(dg + CLG)));
    __m512i T = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, _mm512_loadu_si512((const void *)(dg + 2 * CLG)));
    __m512 sv = _mm512_set1_ps(s[u][g] * f);
    a[u] = _mm512_fmadd_ps(cvt_i32(S), sv, a[u]);
    c[u] = _mm512_fmadd_ps(cvt_i32(T), sv, c[u]);
    corr[u] += sx[u][g] * f;
  }
}

static const float CL5_P2[9] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

/* Group g of width b (any) at p, the row's usual width UB (0: none). */
TGTVB CL5_INL void cl5_any(const moesz_cl *m, const uint8_t *p, int b, int UB,
                                                                 int NT, int ND, const int8_t *const *d, const float *const *s,
                                                                 const float *const *sx, const float *const *x,
                                                                 int64_t g, __m512 *a, __m512 *c, float *corr,
                                                                 float *extra) {
  if (!b) return;
  if (b <= 8) {
    __m512i v = cl5_codes(p, b, _mm512_load_si512((const void *)CL5_PERM[b]), _mm512_load_si512((const void *)CL5_MSH[b]));
    cl5_group(v, NT, ND, d, s, sx, g, CL5_P2[b] / CL5_P2[UB], a, c, corr);
    return;
  }
  int64_t n = m->cols - g * CLG < CLG ? m->cols - g * CLG : CLG;   /* wider: one code at a time */
  for (int u = 0; u < NT; u++) {
    float e = 0;
    for (int64_t k = 0; k < n; k++) e += (float)moesz_cl_code(p, b, (int)k) * x[u][g * CLG + k];
    extra[u] += e;
  }
}

/* A pair of groups of the usual width UB at p: their digit sums added to
 * p2, p1, p0 (int32, over the block; its x shares one scale). */
TGTVB CL5_INL void cl5_upair(const uint8_t *p, int UB, int NT, int ND, __m512i perm,
                                                                   __m512i msh, const int8_t *const *d, int64_t k,
                                                                   __m512i *p2, __m512i *p1, __m512i *p0) {
  __m512i v0 = cl5_codes(p, UB, perm, msh), v1 = cl5_codes(p + 8 * UB, UB, perm, msh);
  for (int u = 0; u < NT; u++) {
    const int8_t *d0 = d[u] + 2 * k * 3 * CLG, *d1 = d0 + 3 * CLG;
    if (ND == 3) p2[u] = _mm512_dpbusd_epi32(p2[u], v0, _mm512_loadu_si512((const void *)d0));
    p1[u] = _mm512_dpbusd_epi32(p1[u], v0, _mm512_loadu_si512((const void *)(d0 + CLG)));
    p0[u] = _mm512_dpbusd_epi32(p0[u], v0, _mm512_loadu_si512((const void *)(d0 + 2 * CLG)));
    if (ND == 3) p2[u] = _mm512_dpbusd_epi32(p2[u], v1, _mm512_loadu_si512((const void *)d1));
    p1[u] = _mm512_dpbusd_epi32(p1[u], v1, _mm512_loadu_si512((const void *)(d1 + CLG)));
    p0[u] = _mm512_dpbusd_epi32(p0[u], v1, _mm512_loadu_si512((const void *)(d1 + 2 * CLG)));
  }
}

/* Row r against NT tokens, UB its usual width (both groups of most width
 * bytes; 0: none): out[u] = sum of q x (before step and escapes). tot[u]:
 * token u's sum of sx over the row's full pairs of groups (the codes' offset
 * of a row whose groups all have the usual width; other groups correct it).
 * A block of CLK = 4 groups whose both pairs have the usual width is the
 * common case: twelve vpdpbusd a token from zero, then one conversion. */
TGTVB CL5_INL void cl5_row(const moesz_cl *m, int64_t r, int NT, int ND, int UB,
                                                                 const int8_t *const *d, const float *const *s,
                                                                 const float *const *sx, const float *const *x,
                                                                 const float *tot, float *out) {
  const uint8_t *p = m->data + m->row_off[r], *wd = m->widths + r * m->wstride;
  int64_t ng = m->ngroups, npair = ng >> 1;
  __m512 a[4], c[4];
  __m512i p2[4], p1[4], p0[4];   /* a block's usual-width groups: sums of u times each digit of x */
  float corr[4], extra[4];
  for (int u = 0; u < NT; u++) {
    a[u] = c[u] = _mm512_setzero_ps();
    corr[u] = UB ? tot[u] : 0;
    extra[u] = 0;
  }
  __m512i perm = _mm512_setzero_si512(), msh = perm;
  if (UB) { perm = _mm512_load_si512((const void *)CL5_PERM[UB]); msh = _mm512_load_si512((const void *)CL5_MSH[UB]); }
  const size_t uu = (size_t)UB * 17;   /* a width byte: the usual width twice */
  for (int64_t k = 0; k < npair; k += 2) {   /* a block: pairs k and k + 1 */
    _mm_prefetch((const char *)p + CL5_PF, _MM_HINT_T0);
    _mm_prefetch((const char *)p + CL5_PF + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)p + CL5_PF + 128, _MM_HINT_T0);
    _mm_prefetch((const char *)p + CL5_PF + 192, _MM_HINT_T0);
    for (int u = 0; u < NT; u++) p2[u] = p1[u] = p0[u] = _mm512_setzero_si512();
    int pend = 0;
    if (UB && __builtin_expect(k + 1 < npair && wd[k] == uu && wd[k + 1] == uu, 1)) {
      cl5_upair(p, UB, NT, ND, perm, msh, d, k, p2, p1, p0);
      cl5_upair(p + 16 * UB, UB, NT, ND, perm, msh, d, k + 1, p2, p1, p0);
      p += 32 * UB;
      pend = 1;
    } else {
      for (int64_t j = k; j < k + 2 && j < npair; j++) {
        size_t wb = wd[j];
        if (UB && wb == uu) {
          cl5_upair(p, UB, NT, ND, perm, msh, d, j, p2, p1, p0);
          p += 16 * UB;
          pend = 1;
          continue;
        }
        int b0 = (int)(wb & 15), b1 = (int)(wb >> 4);
        if (UB)
          for (int u = 0; u < NT; u++) corr[u] -= sx[u][2 * j] + sx[u][2 * j + 1];
        cl5_any(m, p, b0, UB, NT, ND, d, s, sx, x, 2 * j, a, c, corr, extra);
        p += 8 * b0;
        cl5_any(m, p, b1, UB, NT, ND, d, s, sx, x, 2 * j + 1, a, c, corr, extra);
        p += 8 * b1;
      }
    }
    if (pend)   /* the block's usual-width sums to f32 */
      for (int u = 0; u < NT; u++) {
        __m512 sv = _mm512_set1_ps(s[u][2 * k]);
        a[u] = _mm512_fmadd_ps(cvt_i32(ND == 3 ? _mm512_add_epi32(_mm512_slli_epi32(p2[u], 8), p1[u]) : p1[u]), sv, a[u]);
        c[u] = _mm512_fmadd_ps(cvt_i32(p0[u]), sv, c[u]);
      }
  }
  if (ng & 1) cl5_any(m, p, wd[npair] & 15, UB, NT, ND, d, s, sx, x, ng - 1, a, c, corr, extra);
  for (int u = 0; u < NT; u++)
    out[u] = (hsum16(_mm512_fmadd_ps(a[u], _mm512_set1_ps(256.0f), c[u])) - 128.0f * corr[u]) * (CL5_P2[UB] / 256.0f) +
             extra[u];
}

/* Row r's usual width (moesz_cl.usual) if in 2..8, else 0. */
static inline int cl5_usual(const moesz_cl *m, int64_t r) {
  int u = m->usual[r] & 15;
  return u >= 2 && u <= 8 ? u : 0;
}

/* Rows r0..r1, all of usual width UB, against NT tokens (x in ND digits) into out[u * ldo + i]. */
#define CL5_ROW(NT, ND, UB) TGTVB static void cl5_rows_##NT##_##ND##_##UB(const moesz_cl *m, int64_t r0, int64_t r1, \
    const int8_t *const *d, const float *const *s, const float *const *sx, const float *const *x,            \
    const float *tot, float *out, size_t ldo) {                                                                 \
  for (int64_t r = r0; r < r1; r++) {                                                                           \
    float v[NT];                                                                                                \
    cl5_row(m, r, NT, ND, UB, d, s, sx, x, tot, v);                                                                      \
    for (int u = 0; u < NT; u++) out[(size_t)u * ldo + (size_t)(r - r0)] = v[u];                                \
  }                                                                                                             \
}
#define CL5_NT(NT, ND) CL5_ROW(NT, ND, 0) CL5_ROW(NT, ND, 2) CL5_ROW(NT, ND, 3) CL5_ROW(NT, ND, 4) CL5_ROW(NT, ND, 5) \
                       CL5_ROW(NT, ND, 6) CL5_ROW(NT, ND, 7) CL5_ROW(NT, ND, 8)
CL5_NT(1, 3)
CL5_NT(2, 3)
CL5_NT(3, 3)
CL5_NT(4, 3)
CL5_NT(1, 2)
typedef void cl5_fn(const moesz_cl *, int64_t, int64_t, const int8_t *const *, const float *const *,
                    const float *const *, const float *const *, const float *, float *, size_t);
#define CL5_E(NT, ND) {cl5_rows_##NT##_##ND##_0, NULL, cl5_rows_##NT##_##ND##_2, cl5_rows_##NT##_##ND##_3, \
                       cl5_rows_##NT##_##ND##_4, cl5_rows_##NT##_##ND##_5, cl5_rows_##NT##_##ND##_6,         \
                       cl5_rows_##NT##_##ND##_7, cl5_rows_##NT##_##ND##_8}
/* [x in 3 digits, or 2 with one token][nt - 1][usual width]: x to 16 bits (its top digit zero) skips that
 * digit's products for one token; with more tokens the three-digit kernels give the same sums */
static cl5_fn *const CL5_K[2][4][9] = {{CL5_E(1, 3), CL5_E(2, 3), CL5_E(3, 3), CL5_E(4, 3)}, {CL5_E(1, 2)}};

void KX(moesz_kx_cl_rows)(const moesz_cl *m, int64_t r0, int64_t r1, const void *const *xq, const float *const *x,
                          int nt, int digits, float *out, size_t ldo) {
  const int8_t *d[4];
  const float *s[4], *sx[4];
  float tot[4];   /* sum of sx over the full pairs of groups (cl5_row) */
  for (int u = 0; u < nt; u++) {
    d[u] = xq[u];
    s[u] = (const float *)(d[u] + (size_t)m->ngroups * 3 * CLG);
    sx[u] = s[u] + m->ngroups;
    tot[u] = 0;
    for (int64_t g = 0; g < (m->ngroups & ~(int64_t)1); g++) tot[u] += sx[u][g];
  }
  for (int64_t r = r0; r < r1;) {   /* runs of rows of one usual width: one call each */
    int ub = cl5_usual(m, r);
    int64_t e = r + 1;
    while (e < r1 && cl5_usual(m, e) == ub) e++;
    int two = digits == 2 && nt == 1;
    CL5_K[two][two ? 0 : nt - 1][ub](m, r, e, d, s, sx, x, tot, out + (r - r0), ldo);
    r = e;
  }
}
#endif
