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
