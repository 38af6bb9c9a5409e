/* infer/kernels_cl.c - owns the linear kernels over the codec's compute
 * layout (moesz/codec.h): Y[t, r] (+)= step * sum_c q[r, c] X[t, c] + the
 * row's escapes (+ half * sum_c X[t, c] on the half grid), for one token
 * (matvec) or a few (small-batch GEMM, the codes of each group unpacked once
 * for up to 4 tokens), without materialising the weights.
 *
 * AVX2, two paths chosen per group of 64 codes:
 * - integer (width <= 8): 16 codes into 16-bit lanes (one broadcast load, a
 *   byte shuffle, a multiply as the per-lane left shift, an arithmetic shift),
 *   multiplied with vpmaddwd against x split per block of CLK = 4 groups as
 *   s_b (h + l / 2^16), h and l 16-bit (the block's largest |x| scaled to
 *   32767; l the residual's next 16 bits), summed exactly in int32 and
 *   scaled once per group, or for one or two tokens once per block for a
 *   row's usual-width groups; x is then
 *   represented to about 2^-31 of its block's largest value, finer than the
 *   f32 rounding of the sums, so the result equals the f32 product with the
 *   decoded weights up to rounding (tests/test_clayout.c);
 * - float (any width): 8 codes into 32-bit lanes (shuffle, variable shift,
 *   arithmetic shift), converted and multiplied with FMA.
 * The integer path walks a row for 1 to 4 tokens (row_dotn): two groups per
 * byte of widths, no branch on the width, each group unpacked once for all
 * the tokens, and for one or two tokens a copy per usual width 2..6 for rows
 * that keep one width nearly throughout (constant offsets and tables).
 * act (kctx.cl_act): 0 x split exactly as above; 1 h only (x rounded to 16
 * bits); 2 as 1, and in decode a row of 4-bit groups (row_dot8) or one
 * mostly of 2-bit groups (row_dot2) against x rounded to 8 bits per 128
 * columns: offset codes (nibbles q + 8, crumbs q + 2) by vpmaddubsw, the
 * offset's share subtracted once per row; with 2 to 4 tokens rows mostly of
 * 2-bit groups, and with 5 or more a task of such rows, four tokens at a time
 * (row_dot2n), other tasks through the 8-bit tile (moesz_k_cl8_rows: a
 * task's rows of groups 1 to 4 bits wide rearranged once into bytes q + 8
 * in column quads, vpmaddubsw, or vpdpbusd
 * in kernels_x512.c with AVX512_VNNI). Escapes: a flat loop, or per row by
 * AVX2 gathers where rows average more than four (esc_dots_rows). Also the
 * f32 tile of the packed path (moesz_k_cl_unpack).
 * A token whose x is not finite takes the float path throughout. The scalar
 * twin computes the same sums (up to summation order). */
#include "infer/kernels.h"
#include "infer/simd.h"
#include "infer/kernels_x512.h"
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOESZ_X86 1
#else
#define MOESZ_X86 0
#endif
#include "moesz/codec.h"

#define G MOESZ_CL_GROUP
#define TBLK 4          /* tokens per pass over a row's codes */
#define CLK 4           /* groups of x sharing one scale: a row's usual-width groups of a block add up in int32 */
#ifndef CL_PF_BYTES
#define CL_PF_BYTES 1024 /* codes prefetched this far ahead of the group being read (0: none) */
#endif
#ifndef CL_UNIFORM
#define CL_UNIFORM 1     /* row_dotn copies per usual width (0: off, for comparison) */
#endif
#define XQ_BYTES(ng) ((size_t)(ng) * (G * 4 + 4))   /* quantized x of one token: h, l, scale per group */
/* x to 8 bits (one token): x8, scale and bias per group, their total, the sum of x */
#define XQ8_BYTES(ng) ((size_t)(ng) * (G + 8) + 32)
#define XQ8P_BYTES(ng) ((size_t)((ng) + 1) / 2 * 2 * G)  /* x8 again in the order of 2-bit codes (one token's decode) */

/* Rows a..b's escape sums against x: es[r - a] = sum of w_e x[c_e] over row
 * r's escapes in their order, by one flat loop over them. A row has none to a few,
 * and a loop per row mispredicts its exit about once a row (Zen 4, 8-layer
 * OLMoE-shaped model at eb 1e-3: 4.5% of decode samples). An escape's row is
 * (idx + 1/2) / cols in double: the quotient is at least 1/(2 cols) from an
 * integer, its rounding error below 2^32 * 2^-52. */
static void esc_dots(const moesz_cl *m, int64_t a, int64_t b, const float *x, float *es) {
  for (int64_t i = 0; i < b - a; i++) es[i] = 0;
  size_t cols = (size_t)m->cols;
  double inv = 1.0 / (double)cols;
  for (uint32_t e = m->esc_start[a]; e < m->esc_start[b]; e++) {
    uint32_t idx = m->esc_idx[e];
    int64_t r = (int64_t)(((double)idx + 0.5) * inv);
    es[r - a] += (m->esc_val[e] - m->half) * x[idx - (size_t)r * cols];
  }
}

/* The half grid's share of a row's sum against x: half * sum of x[0..cols)
 * (every column's weight holds half; an escape's is taken back in the
 * escape sums); 0 on the zero grid. Eight partial sums. */
static float half_share(const moesz_cl *m, const float *x) {
  if (m->half == 0) return 0;
  float a[8] = {0};
  int64_t c = 0;
  for (; c + 8 <= m->cols; c += 8)
    for (int k = 0; k < 8; k++) a[k] += x[c + k];
  for (; c < m->cols; c++) a[0] += x[c];
  return m->half * (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])));
}

static void cl_scalar(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                      size_t ldy, int acc) {
  int64_t cols = m->cols;
  for (int t = 0; t < nt; t++) {
    const float *xt = x + (size_t)t * ldx;
    float hx = half_share(m, xt);   /* once per token */
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t *p = m->data + m->row_off[r];
      float s = 0;
      for (int64_t g = 0; g < m->ngroups; g++) {
        int b = moesz_cl_width(m, r, g);
        if (!b) continue;
        float sg = 0;
        for (int i = 0; i < G && g * G + i < cols; i++) sg += (float)moesz_cl_code(p, b, i) * xt[g * G + i];
        s += sg;
        p += 8 * b;
      }
      float e;
      esc_dots(m, r, r + 1, xt, &e);
      float v = s * m->step + e + hx;
      float *o = y + (size_t)t * ldy + (r - r0);
      *o = acc ? *o + v : v;
    }
  }
}

#if MOESZ_X86
#include "infer/kernels_cl_tab.h"
#define TGT __attribute__((target("avx2,fma")))

/* esc_dots on AVX2: each row's escapes 8 at a time (masked loads of their
 * positions and values, a masked gather of x, FMA), summed as a tree. A row
 * of at most 8 escapes takes no data-dependent branch; the flat loop's adds
 * into one row's sum wait on each other, which at eb 1.6e-2 (about 7 to 10
 * escapes a row of 2048) made it a quarter of a prompt's 8-bit path. Rarer
 * escapes (eb 1e-3: about 2 a row) are cheaper in the flat loop
 * (esc_dots_rows chooses). */
TGT static void esc_dots_avx2(const moesz_cl *m, int64_t a, int64_t b, const float *x, float *es) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 hv = _mm256_set1_ps(m->half);
  for (int64_t r = a; r < b; r++) {
    uint32_t e = m->esc_start[r], e1 = m->esc_start[r + 1];
    /* position - r cols, mod 2^32: the column (below 2^31) */
    __m256i base = _mm256_set1_epi32((int)(uint32_t)((uint64_t)r * (uint64_t)m->cols));
    __m256 acc = _mm256_setzero_ps();
    do {
      __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(e1 - e)), iota);
      __m256i pos = _mm256_maskload_epi32((const int *)(m->esc_idx + e), mk);
      __m256i col = _mm256_and_si256(_mm256_sub_epi32(pos, base), mk);
      __m256 xv = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, col, _mm256_castsi256_ps(mk), 4);
      acc = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_maskload_ps(m->esc_val + e, mk), hv), xv, acc);
      e += 8;
    } while (e < e1);
    es[r - a] = moesz_hsum8(acc);
  }
}

/* Sum of x[0..n) on AVX2: four chains of 8 partial sums (about 70 cycles for
 * 2048 columns, against 800 for the portable loop's SSE code). */
TGT static float x_sum_avx2(const float *x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + c));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + c + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + c + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + c + 24));
  }
  for (; c + 8 <= n; c += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + c));
  float s = moesz_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; c < n; c++) s += x[c];
  return s;
}

/* half_share on AVX2. */
TGT static float half_share_avx2(const moesz_cl *m, const float *x) {
  return m->half == 0 ? 0 : m->half * x_sum_avx2(x, m->cols);
}

/* The escape sums of rows [a, b): esc_dots_avx2 where the rows average more
 * than 4 escapes, the flat loop where they are rarer (its few adds beat the
 * per-row vector setup: AVX2 kernel on Zen 4, 256 x 2048, median of 7, ns
 * per group: eb 1e-3, 2.6 a row, exact 3.29 flat, 4.15 vector; eb 1.6e-2 on
 * the zero grid, 10 a row, exact 4.11 flat, 3.77 vector, 8-bit x 2.40 flat,
 * 2.09 vector; on the half grid, 2.6 a row, 8-bit x 1.45 flat, 1.49 vector,
 * exact VBMI 2.13 / 2.16, AVX2 3.34 / 3.36; 4.7 to 12 a row at mixed widths:
 * a tie). */
TGT static void esc_dots_rows(const moesz_cl *m, int64_t a, int64_t b, const float *x, float *es) {
  if (m->esc_start[b] - m->esc_start[a] > 4 * (uint64_t)(b - a))
    esc_dots_avx2(m, a, b, x, es);
  else
    esc_dots(m, a, b, x, es);
}

/* 8 codes of width b at p as floats. */
#define UNPACK8(p, shuf, shl, sra)                                                                   \
  _mm256_cvtepi32_ps(_mm256_sra_epi32(                                                             \
      _mm256_sllv_epi32(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p))), shuf), shl), \
      sra))
/* 16 codes of width b <= 8 at p as int16. */
#define UNPACK16(p, shuf, mul, sra)                                                                  \
  _mm256_sra_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(                                         \
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p))), shuf), mul), sra)

/* Group g of x [cols] as 64 floats (the last group zero-padded into tail)
 * and its largest |x| in *m (a NaN may or may not show there: quant_x also
 * checks each value). */
TGT static inline const float *x_group(const float *x, int64_t cols, int64_t g, float *tail, float *m) {
  const float *xg = x + g * G;
  if ((g + 1) * G > cols) {
    memset(tail, 0, G * sizeof(float));
    memcpy(tail, xg, (size_t)(cols - g * G) * sizeof(float));
    xg = tail;
  }
  const __m256 sgn = _mm256_set1_ps(-0.0f);
  __m256 mx = _mm256_setzero_ps();
  for (int j = 0; j < G; j += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sgn, _mm256_loadu_ps(xg + j)));
  *m = moesz_hmax8(mx);
  return xg;
}

/* Splits x [cols] per group of 64 (zero-padded) into h, l [ng * 64] and s [ng]
 * with x ~ s (h + l / 65536), s one scale a block of CLK groups (s[g] the
 * block's). 0 if x has a non-finite value. */
TGT static int quant_x(const float *x, int64_t cols, int64_t ng, int16_t *h, int16_t *l, float *s) {
  float tail[G] __attribute__((aligned(32)));
  for (int64_t g0 = 0; g0 < ng; g0 += CLK) {   /* one scale a block of CLK groups */
    int64_t g1 = g0 + CLK < ng ? g0 + CLK : ng;
    float m = 0;
    for (int64_t g = g0; g < g1; g++) {
      float mg;
      const float *xg = x_group(x, cols, g, tail, &mg);
      if (!(mg <= 3.0e38f)) return 0;          /* NaN or Inf (max_ps keeps the NaN operand here) */
      for (int j = 0; j < G; j += 8) {
        __m256 v = _mm256_loadu_ps(xg + j);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) return 0;
      }
      m = mg > m ? mg : m;
    }
    float sc = m > 0 ? m / 32767.0f : 1.0f, inv = m > 0 ? 32767.0f / m : 0.0f;
    for (int64_t g = g0; g < g1; g++) {
      const float *xg = (g + 1) * G > cols ? tail : x + g * G;   /* tail: the last group, copied above */
      s[g] = sc;
      __m256 vi = _mm256_set1_ps(inv), vs = _mm256_set1_ps(sc), vl = _mm256_set1_ps(inv * 65536.0f);
      __m256 lim = _mm256_set1_ps(32767.0f);
      for (int j = 0; j < G; j += 16) {
        __m256 a = _mm256_loadu_ps(xg + j), b = _mm256_loadu_ps(xg + j + 8);
        __m256 ha = _mm256_round_ps(_mm256_mul_ps(a, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 hb = _mm256_round_ps(_mm256_mul_ps(b, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        ha = _mm256_min_ps(_mm256_max_ps(ha, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        hb = _mm256_min_ps(_mm256_max_ps(hb, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        /* residual x - h s, exact by FMA, in units of s / 65536 */
        __m256 ra = _mm256_mul_ps(_mm256_fnmadd_ps(ha, vs, a), vl), rb = _mm256_mul_ps(_mm256_fnmadd_ps(hb, vs, b), vl);
        ra = _mm256_min_ps(_mm256_max_ps(ra, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        rb = _mm256_min_ps(_mm256_max_ps(rb, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        __m256i hi = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvtps_epi32(ha), _mm256_cvtps_epi32(hb)), 0xd8);
        __m256i lo = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvtps_epi32(ra), _mm256_cvtps_epi32(rb)), 0xd8);
        _mm256_storeu_si256((__m256i *)(h + g * G + j), hi);
        _mm256_storeu_si256((__m256i *)(l + g * G + j), lo);
      }
    }
  }
  return 1;
}

/* 64 bytes of a group in column order (c[0]: columns 0..31, c[1]: 32..63)
 * split into its even columns (*e) and its odd ones (*o), each in order: the
 * order of the low and high nibbles of a 4-bit group's 32 code bytes. */
TGT static inline void split_eo(const __m256i c[2], __m256i *e, __m256i *o) {
  const __m256i even = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  /* per 16 columns (a 128-bit lane): 8 even, 8 odd */
  __m256i b0 = _mm256_shuffle_epi8(c[0], even), b1 = _mm256_shuffle_epi8(c[1], even);
  *e = _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(b0, b1), 0xd8);
  *o = _mm256_permute4x64_epi64(_mm256_unpackhi_epi64(b0, b1), 0xd8);
}

/* 64 values of xg times inv rounded to int8 into x8 (the even then the odd
 * columns, split_eo); returns their sum. */
TGT static inline int quant_group8(const float *xg, __m256 vi, int8_t *x8) {
  __m256i acc = _mm256_setzero_si256();
  __m256i b[2], e, o;
  for (int j = 0; j < 2; j++) {   /* 32 values -> 32 bytes in column order */
    const float *xj = xg + 32 * j;
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xj), vi));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xj + 8), vi));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xj + 16), vi));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xj + 24), vi));
    acc = _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    b[j] = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
  split_eo(b, &e, &o);
  _mm256_storeu_si256((__m256i *)x8, e);
  _mm256_storeu_si256((__m256i *)(x8 + 32), o);
  __m128i a4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  a4 = _mm_add_epi32(a4, _mm_shuffle_epi32(a4, 0x4e));
  a4 = _mm_add_epi32(a4, _mm_shuffle_epi32(a4, 0xb1));
  return _mm_cvtsi128_si32(a4);
}

/* x [cols] (finite) to 8 bits, one scale per pair of groups (128 columns,
 * the last group alone when ng is odd; zero-padded): x ~ s8 x8 with x8 in
 * [-127, 127], s8[g] the scale of group g's pair; bias[g] = 8 s8[g] sum x8
 * of the group (what the offset codes q + 8 add), *btot their sum. x8p
 * (XQ8P_BYTES, may be NULL): the same values in the order of a pair of 2-bit
 * groups' code bytes (crumb_dot): per pair k and field f = 0..3, 32 bytes,
 * group 2k's columns 4j + f (j = 0..15), then group 2k + 1's. */
TGT static void quant_x8(const float *x, int64_t cols, int64_t ng, int8_t *x8, float *s8, float *bias, float *btot,
                         int8_t *x8p) {
  float tail[G] __attribute__((aligned(32)));
  float tot = 0;
  for (int64_t g = 0; g < ng; g += 2) {
    float m, m1 = 0;
    const float *x0 = x_group(x, cols, g, tail, &m), *x1 = g + 1 < ng ? x_group(x, cols, g + 1, tail, &m1) : NULL;
    if (m1 > m) m = m1;
    float sc = m > 0 ? m / 127.0f : 1.0f, inv = m > 0 ? 127.0f / m : 0.0f;
    __m256 vi = _mm256_set1_ps(inv);
    for (int64_t k = g; k < g + 2 && k < ng; k++) {
      s8[k] = sc;
      bias[k] = 8.0f * sc * (float)quant_group8(k == g ? x0 : x1, vi, x8 + k * G);
      tot += bias[k];
    }
  }
  *btot = tot;
  if (!x8p) return;
  /* column c = 4 j + f is x8[c / 2] (f even: the even columns' list) or
   * x8[32 + c / 2] (f odd): fields 0 and 2 are the even list's even and odd
   * bytes, 1 and 3 the odd list's; per 128-bit lane the even bytes to its
   * low half, then the lanes' halves side by side. */
  const __m256i eo = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                      0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t g = 0; g < ng; g++) {
    int8_t *o = x8p + (g >> 1) * 2 * G + (g & 1) * 16;
    for (int h = 0; h < 2; h++) {   /* h 0: the even columns' list (fields 0, 2), 1: the odd's (1, 3) */
      __m256i v = _mm256_loadu_si256((const __m256i *)(x8 + g * G + 32 * h));
      v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, eo), 0xd8);
      _mm_storeu_si128((__m128i *)(o + 32 * h), _mm256_castsi256_si128(v));
      _mm_storeu_si128((__m128i *)(o + 32 * (h + 2)), _mm256_extracti128_si256(v, 1));
    }
  }
}

/* Row r of m against tokens nt <= TBLK in the float path, any width (x not
 * split: no scratch, or a non-finite x); writes sums[t] (before step and
 * escapes). */
TGT static inline __attribute__((always_inline)) void row_float(const moesz_cl *m, int64_t r, int nt,
                                                                 const float *const *xr, const float *const *xt,
                                                                 float *sums) {
  int64_t full = m->cols / G, ng = m->ngroups;
  const uint8_t *p = m->data + m->row_off[r];
  __m256 a[TBLK], c[TBLK];
  for (int t = 0; t < TBLK; t++) a[t] = c[t] = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; g++) {
    int b = moesz_cl_width(m, r, g);
    if (CL_PF_BYTES) _mm_prefetch((const char *)p + CL_PF_BYTES, _MM_HINT_T0);
    if (!b) continue;
    __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[b]);
    __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[b]);
    __m128i sra = _mm_cvtsi32_si128(32 - b);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      __m256 f = UNPACK8(p + j * b, shuf, shl, sra);
      for (int t = 0; t < nt; t++) {
        const float *xg = g < full ? xr[t] + g * G : xt[t];
        if (j & 1) c[t] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg + 8 * j), c[t]);
        else a[t] = _mm256_fmadd_ps(f, _mm256_loadu_ps(xg + 8 * j), a[t]);
      }
    }
    p += 8 * b;
  }
  for (int t = 0; t < nt; t++) sums[t] = moesz_hsum8(_mm256_add_ps(a[t], c[t]));
}

/* The float path for one group of width b (any) against x (64 floats): adds
 * to *acc. Out of line: the one-token loop below takes it for the rare group
 * wider than 8 bits. */
TGT static __attribute__((noinline)) __m256 group_float(const uint8_t *p, int b, const float *xg, __m256 acc) {
  __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[b]);
  __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[b]);
  __m128i sra = _mm_cvtsi32_si128(32 - b);
  for (int j = 0; j < 8; j++) acc = _mm256_fmadd_ps(UNPACK8(p + j * b, shuf, shl, sra), _mm256_loadu_ps(xg + 8 * j), acc);
  return acc;
}

/* The one-token integer path's constants per width b <= 8: shuffle and
 * multiplier of UNPACK16 and the shift count, one 128-byte block a width. */
typedef struct cl_w16 {
  __m256i shuf, mul;
  __m128i sra;
  uint8_t pad[48];
} cl_w16;

/* 16 codes times 16 x values each, 4 times: the int32 sums of a group. */
TGT static inline __attribute__((always_inline)) __m256i dot64(__m256i q0, __m256i q1, __m256i q2, __m256i q3,
                                                              const int16_t *x) {
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(q0, _mm256_loadu_si256((const __m256i *)x)),
                                           _mm256_madd_epi16(q1, _mm256_loadu_si256((const __m256i *)(x + 16)))),
                          _mm256_add_epi32(_mm256_madd_epi16(q2, _mm256_loadu_si256((const __m256i *)(x + 32))),
                                           _mm256_madd_epi16(q3, _mm256_loadu_si256((const __m256i *)(x + 48)))));
}

/* A group's 64 codes of width b <= 8 at p as 16-bit lanes q[0..3]. */
TGT static inline __attribute__((always_inline)) void unpack64(const uint8_t *p, size_t b, const cl_w16 *t,
                                                                __m256i *q) {
  q[0] = UNPACK16(p, t->shuf, t->mul, t->sra);
  q[1] = UNPACK16(p + 2 * b, t->shuf, t->mul, t->sra);
  q[2] = UNPACK16(p + 4 * b, t->shuf, t->mul, t->sra);
  q[3] = UNPACK16(p + 6 * b, t->shuf, t->mul, t->sra);
}

/* One group of width b <= 8 (b = 0 included: its tables give zero codes) in
 * the integer path for NT <= TBLK tokens (a constant at each use), the codes
 * unpacked once: token u's 16-bit codes times its split x (group o of
 * h[u], l[u], s[u]), the int32 sums converted and scaled once (h into a[u],
 * l into c[u], both by s: the caller scales c by 2^-16 at the end, exactly). */
TGT static inline __attribute__((always_inline)) void groupn(const uint8_t *p, size_t b, const cl_w16 *tab, int NT,
                                                              const int16_t *const *h, const int16_t *const *l,
                                                              const float *const *s, int64_t o, __m256 *a, __m256 *c,
                                                              int lo) {
  __m256i q[4];
  unpack64(p, b, tab + b, q);
  for (int u = 0; u < NT; u++) {
    __m256 sv = _mm256_broadcast_ss(s[u] + o);
    a[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot64(q[0], q[1], q[2], q[3], h[u] + o * G)), sv, a[u]);
    if (lo) c[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot64(q[0], q[1], q[2], q[3], l[u] + o * G)), sv, c[u]);
  }
}
/* One token's group: groupn with NT = 1. */
TGT static inline __attribute__((always_inline)) void group1(const uint8_t *p, size_t b, const cl_w16 *tab,
                                                              const int16_t *h, const int16_t *l, const float *s,
                                                              __m256 *a, __m256 *c, int lo) {
  groupn(p, b, tab, 1, &h, &l, &s, 0, a, c, lo);
}

/* The int32 sums ih, il of NT tokens' pending groups (of the block holding
 * group g, one scale of x) converted and scaled into a, c, then cleared;
 * returns 0 (nothing pending). */
TGT static inline __attribute__((always_inline)) int flush_block(int NT, __m256i *ih, __m256i *il,
                                                                 const float *const *xs, int64_t g, __m256 *a,
                                                                 __m256 *c, int lo) {
  for (int u = 0; u < NT; u++) {
    __m256 sv = _mm256_broadcast_ss(xs[u] + g);
    a[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ih[u]), sv, a[u]);
    if (lo) c[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(il[u]), sv, c[u]);
    ih[u] = il[u] = _mm256_setzero_si256();
  }
  return 0;
}

/* Row r's usual width (moesz_cl.usual: both groups of at least 7 in 8 of its
 * width bytes) if in {3, 4, 5, 6}, else 0: row_dotn then takes those pairs
 * with constant offsets (the branch is predictable only where the width
 * rarely changes). */
static inline size_t row_usual_width(const moesz_cl *m, int64_t r) {
  size_t u = m->usual[r] & 15;
  return u >= 2 && u <= 6 ? u : 0;
}

/* Row r against NT <= TBLK tokens (a constant at each use) in the integer
 * path (AVX2): the groups two at a time (one byte of widths), no branch on
 * the width but for a group wider than 8 bits (the float path), each group's
 * codes unpacked once for all tokens; writes sums[u] (before step and
 * escapes). */
TGT static inline __attribute__((always_inline)) void row_dotn(const moesz_cl *m, int64_t r, const cl_w16 *tab, int NT,
                                                                const float *const *xr, const float *const *xt,
                                                                const int16_t *const *xh, const int16_t *const *xl,
                                                                const float *const *xs, int lo, size_t ub, float *sums) {
  int64_t full = m->cols / G, ng = m->ngroups, npair = ng >> 1;
  const uint8_t *p = m->data + m->row_off[r], *wd = m->widths + r * m->wstride;
  __m256 a[TBLK], c[TBLK];   /* a also takes the float path's sums */
  __m256i ih[TBLK], il[TBLK];   /* NT <= 2: a block's usual-width groups, int32 sums with h and l */
  int pend = 0;
  for (int u = 0; u < NT; u++) {
    a[u] = c[u] = _mm256_setzero_ps();
    ih[u] = il[u] = _mm256_setzero_si256();
  }
  for (int64_t k = 0; k < npair; k++) {
    size_t wb = wd[k], b0 = wb & 15, b1 = wb >> 4;
    int64_t g = 2 * k;
    if (CL_PF_BYTES) {
      _mm_prefetch((const char *)p + CL_PF_BYTES, _MM_HINT_T0);
      _mm_prefetch((const char *)p + CL_PF_BYTES + 64, _MM_HINT_T0);
    }
    if (ub && __builtin_expect(wb == ub * 17, 1)) {   /* the row's usual width twice: constant offsets */
      if (NT <= 2) {   /* int32 through the block (|lane| <= 4 groups x 8 x 128 x 32767 < 2^28), one conversion */
        for (int j = 0; j < 2; j++) {
          __m256i q[4];
          unpack64(p + 8 * ub * (size_t)j, ub, tab + ub, q);
          for (int u = 0; u < NT; u++) {
            ih[u] = _mm256_add_epi32(ih[u], dot64(q[0], q[1], q[2], q[3], xh[u] + (g + j) * G));
            if (lo) il[u] = _mm256_add_epi32(il[u], dot64(q[0], q[1], q[2], q[3], xl[u] + (g + j) * G));
          }
        }
        pend = 1;
      } else {
        groupn(p, ub, tab, NT, xh, xl, xs, g, a, c, lo);
        groupn(p + 8 * ub, ub, tab, NT, xh, xl, xs, g + 1, a, c, lo);
      }
      p += 16 * ub;
      if (pend && (g + 2) % CLK == 0) pend = flush_block(NT, ih, il, xs, g, a, c, lo);
      continue;
    }
    if (pend) pend = flush_block(NT, ih, il, xs, g, a, c, lo);   /* the pending groups are this block's */
    if (__builtin_expect((wb & 0x88) != 0, 0) && (b0 > 8 || b1 > 8)) {   /* a width above 8 */
      for (int h = 0; h < 2; h++, g++) {
        size_t b = h ? b1 : b0;
        if (b <= 8) groupn(p, b, tab, NT, xh, xl, xs, g, a, c, lo);
        else
          for (int u = 0; u < NT; u++) a[u] = group_float(p, (int)b, g < full ? xr[u] + g * G : xt[u], a[u]);
        p += 8 * b;
      }
      continue;
    }
    groupn(p, b0, tab, NT, xh, xl, xs, g, a, c, lo);
    p += 8 * b0;
    groupn(p, b1, tab, NT, xh, xl, xs, g + 1, a, c, lo);
    p += 8 * b1;
  }
  if (pend) flush_block(NT, ih, il, xs, 2 * npair - 2, a, c, lo);
  if (ng & 1) {
    int64_t g = ng - 1;
    size_t b = wd[npair] & 15;
    if (b <= 8) groupn(p, b, tab, NT, xh, xl, xs, g, a, c, lo);
    else
      for (int u = 0; u < NT; u++) a[u] = group_float(p, (int)b, g < full ? xr[u] + g * G : xt[u], a[u]);
  }
  for (int u = 0; u < NT; u++)
    sums[u] = moesz_hsum8(_mm256_fmadd_ps(c[u], _mm256_set1_ps(1.0f / 65536), a[u]));
}

/* One 4-bit group against x8 (64 bytes: even, odd columns) in the 8-bit
 * path: the 32 code bytes as offset codes u = q + 8 (xor 0x88), low and high
 * nibbles multiplied with vpmaddubsw (|sum of a pair| <= 2 * 15 * 127);
 * returns the int16 sums (the caller subtracts the bias 8 s8 sum x8). */
TGT static inline __attribute__((always_inline)) __m256i nib_dot(const uint8_t *p, const int8_t *x8) {
  const __m256i m0f = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8((char)0x88);
  __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), off);
  __m256i e = _mm256_and_si256(v, m0f), o = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
  return _mm256_add_epi16(_mm256_maddubs_epi16(e, _mm256_loadu_si256((const __m256i *)x8)),
                          _mm256_maddubs_epi16(o, _mm256_loadu_si256((const __m256i *)(x8 + 32))));
}

/* int16 sums s widened, converted and scaled by *s8 into acc. */
TGT static inline __attribute__((always_inline)) __m256 scale16(__m256i s, const float *s8, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s, _mm256_set1_epi16(1))), _mm256_broadcast_ss(s8), acc);
}

/* One 4-bit group, or two sharing the scale *s8 (their int16 sums added:
 * |lane| <= 4 * 15 * 127), into acc. */
TGT static inline __attribute__((always_inline)) __m256 group8(const uint8_t *p, const int8_t *x8, const float *s8,
                                                              __m256 acc) {
  return scale16(nib_dot(p, x8), s8, acc);
}
TGT static inline __attribute__((always_inline)) __m256 group8x2(const uint8_t *p, const int8_t *x8, const float *s8,
                                                                __m256 acc) {
  return scale16(_mm256_add_epi16(nib_dot(p, x8), nib_dot(p + 32, x8 + 64)), s8, acc);
}

/* Row r against one token with x also at 8 bits (x8, s8, bias, btot from
 * quant_x8), for a row whose usual width is 4 (row_usual_width; other rows
 * take row_dotn with 16-bit x): 4-bit groups take group8, any other width
 * the 16-bit path of row_dotn (h, lo = 0) and its bias comes off the total.
 * Sums before step and escapes, as row_dotn's. */
TGT static inline __attribute__((always_inline)) float row_dot8(const moesz_cl *m, int64_t r, const cl_w16 *tab,
                                                                 const float *xr, const float *xt, const int16_t *xh,
                                                                 const float *xs, const int8_t *x8, const float *s8,
                                                                 const float *bias, float btot) {
  int64_t full = m->cols / G, ng = m->ngroups, npair = ng >> 1;
  const uint8_t *p = m->data + m->row_off[r], *wd = m->widths + r * m->wstride;
  __m256 a = _mm256_setzero_ps(), f = _mm256_setzero_ps();
  float bsum = btot;
  for (int64_t k = 0; k < npair; k++, xh += 2 * G, xs += 2, x8 += 2 * G, s8 += 2, bias += 2) {
    size_t wb = wd[k];
    if (CL_PF_BYTES) {
      _mm_prefetch((const char *)p + CL_PF_BYTES, _MM_HINT_T0);
      _mm_prefetch((const char *)p + CL_PF_BYTES + 64, _MM_HINT_T0);
    }
    if (__builtin_expect(wb == 0x44, 1)) {   /* two 4-bit groups, one scale: int16 sums of both */
      a = group8x2(p, x8, s8, a);
      p += 64;
      continue;
    }
    for (int h = 0; h < 2; h++) {
      size_t b = h ? wb >> 4 : wb & 15;
      int64_t g = 2 * k + h;
      if (b == 4) a = group8(p, x8 + h * G, s8 + h, a);
      else {
        bsum -= bias[h];
        if (b <= 8) group1(p, b, tab, xh + h * G, NULL, xs + h, &f, NULL, 0);
        else f = group_float(p, (int)b, g < full ? xr + g * G : xt, f);
      }
      p += 8 * b;
    }
  }
  if (ng & 1) {
    int64_t g = ng - 1;
    size_t b = wd[npair] & 15;
    if (b == 4) a = group8(p, x8, s8, a);
    else {
      bsum -= bias[0];
      if (b <= 8) group1(p, b, tab, xh, NULL, xs, &f, NULL, 0);
      else f = group_float(p, (int)b, g < full ? xr + g * G : xt, f);
    }
  }
  return moesz_hsum8(_mm256_add_ps(a, f)) - bsum;
}

/* A pair of 2-bit groups (32 code bytes: 128 codes, four to a byte) against
 * x8p (quant_x8) in the 8-bit path: offset codes u = q + 2 (xor 0xaa), the
 * four 2-bit fields multiplied with vpmaddubsw (|lane| <= 4 * 2 * 3 * 127);
 * returns the int16 sums (the caller subtracts the bias 2 s8 sum x8). */
TGT static inline __attribute__((always_inline)) __m256i crumb_dot(const uint8_t *p, const int8_t *xp) {
  const __m256i m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8((char)0xaa);
  __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), off);
  __m256i f0 = _mm256_and_si256(v, m3), f1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
  __m256i f2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), f3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
  return _mm256_add_epi16(
      _mm256_add_epi16(_mm256_maddubs_epi16(f0, _mm256_loadu_si256((const __m256i *)xp)),
                       _mm256_maddubs_epi16(f1, _mm256_loadu_si256((const __m256i *)(xp + 32)))),
      _mm256_add_epi16(_mm256_maddubs_epi16(f2, _mm256_loadu_si256((const __m256i *)(xp + 64))),
                       _mm256_maddubs_epi16(f3, _mm256_loadu_si256((const __m256i *)(xp + 96)))));
}
/* One 2-bit group's 16 code bytes as its four fields of offset codes
 * u = q + 2 (f[k]: columns 4 j + k, j = 0..15). */
TGT static inline __attribute__((always_inline)) void crumb_fields(const uint8_t *p, __m128i f[4]) {
  const __m128i m3 = _mm_set1_epi8(3);
  __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_set1_epi8((char)0xaa));
  for (int k = 0; k < 4; k++) f[k] = _mm_and_si128(_mm_srli_epi16(v, 2 * k), m3);
}

/* One 2-bit group (16 code bytes) alone: xp its first 16 bytes in x8p (its
 * fields 32 bytes apart), the sums widened, converted and scaled by *s8 into
 * acc. Its fields are made in the loop, not by crumb_fields: through that
 * array the 8-bit decode path was 2% slower (cl_kernel1, eb 1.6e-2). */
TGT static inline __attribute__((always_inline)) __m128 crumb_dot1(const uint8_t *p, const int8_t *xp, const float *s8,
                                                                   __m128 acc) {
  const __m128i m3 = _mm_set1_epi8(3), off = _mm_set1_epi8((char)0xaa);
  __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), off), s = _mm_setzero_si128();
  for (int f = 0; f < 4; f++)
    s = _mm_add_epi16(s, _mm_maddubs_epi16(_mm_and_si128(_mm_srli_epi16(v, 2 * f), m3),
                                           _mm_loadu_si128((const __m128i *)(xp + 32 * f))));
  return _mm_fmadd_ps(_mm_cvtepi32_ps(_mm_madd_epi16(s, _mm_set1_epi16(1))), _mm_broadcast_ss(s8), acc);
}

/* Row r against one token with x also at 8 bits, for a row mostly of 2-bit
 * groups (MOESZ_CL_MOSTLY2, set at parse): pairs of 2-bit groups take crumb_dot, a 2-bit group alone crumb_dot1,
 * 4-bit groups group8, any other width the 16-bit path of row_dotn (h, lo =
 * 0); the offsets' bias (2 s8 sum x8 a 2-bit group, 8 s8 sum x8 a 4-bit one)
 * comes off once per row: a quarter of btot, corrected by the groups of other
 * widths (no scalar add in the 2-bit pairs' loop). Sums before step and escapes, as row_dotn's. */
TGT static inline __attribute__((always_inline)) float row_dot2(const moesz_cl *m, int64_t r, const cl_w16 *tab,
                                                                 const float *xr, const float *xt, const int16_t *xh,
                                                                 const float *xs, const int8_t *x8, const int8_t *x8p,
                                                                 const float *s8, const float *bias, float btot) {
  int64_t full = m->cols / G, ng = m->ngroups;
  const uint8_t *p = m->data + m->row_off[r], *wd = m->widths + r * m->wstride;
  __m256 a = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), f = _mm256_setzero_ps();
  __m128 a1 = _mm_setzero_ps();
  float bsum = 0.25f * btot;   /* every group's 2-bit bias; other widths give theirs back */
  for (int64_t k = 0; 2 * k < ng; k++) {
    size_t wb = wd[k];
    if (CL_PF_BYTES) _mm_prefetch((const char *)p + CL_PF_BYTES, _MM_HINT_T0);
    if (__builtin_expect(wb == 0x22 && 2 * k + 1 < ng, 1)) {   /* two 2-bit groups, one scale */
      if (k & 1) a2 = scale16(crumb_dot(p, x8p + k * 2 * G), s8 + 2 * k, a2);   /* two chains of FMAs */
      else a = scale16(crumb_dot(p, x8p + k * 2 * G), s8 + 2 * k, a);
      p += 32;
      continue;
    }
    for (int h = 0; h < 2 && 2 * k + h < ng; h++) {
      size_t b = h ? wb >> 4 : wb & 15;
      int64_t g = 2 * k + h;
      if (b == 2) {
        a1 = crumb_dot1(p, x8p + k * 2 * G + h * 16, s8 + g, a1);
      } else if (b == 4) {
        a = group8(p, x8 + g * G, s8 + g, a);
        bsum += 0.75f * bias[g];   /* 8 s8 sum x8, not 2 s8 sum x8 */
      } else {
        bsum -= 0.25f * bias[g];
        if (b <= 8) group1(p, b, tab, xh + g * G, NULL, xs + g, &f, NULL, 0);
        else f = group_float(p, (int)b, g < full ? xr + g * G : xt, f);
      }
      p += 8 * b;
    }
  }
  a = _mm256_add_ps(_mm256_add_ps(a, a2), _mm256_insertf128_ps(_mm256_setzero_ps(), a1, 0));
  return moesz_hsum8(_mm256_add_ps(a, f)) - bsum;
}

/* Row r against NT <= 4 tokens with x at 8 bits (several tokens, rows mostly
 * of 2-bit groups: the tile's place in prompts), as row_dot2 for one token:
 * a pair of 2-bit groups' four fields are made once and multiplied with each
 * token's x8p, a 2-bit group alone with crumb_dot1, a 4-bit group with group8,
 * any other width in f32 against x (no 16-bit x here; on the half grid at eb
 * 1.6e-2 such groups are 1% of the codes). sums[t]: before step and escapes,
 * the offsets' bias taken off. xq[t]: token t's XQ8 block (x8, s8, bias,
 * btot) followed by its x8p; xt[t]: its last, zero-padded group of x. */
TGT static inline __attribute__((always_inline)) void row_dot2n(const moesz_cl *m, int64_t r, int NT,
                                                                 const uint8_t *const *xq, const float *const *xr,
                                                                 const float *const *xt, float *sums) {
  int64_t full = m->cols / G, ng = m->ngroups;
  const uint8_t *p = m->data + m->row_off[r], *wd = m->widths + r * m->wstride;
  const __m256i m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8((char)0xaa);
  const int8_t *x8[4], *x8p[4];
  const float *s8[4], *bias[4];
  __m256 a[4];
  __m128 a1[4];
  float bsum[4];
  for (int t = 0; t < NT; t++) {
    x8[t] = (const int8_t *)xq[t];
    s8[t] = (const float *)(xq[t] + ng * G);
    bias[t] = s8[t] + ng;
    x8p[t] = (const int8_t *)(xq[t] + XQ8_BYTES(ng));
    a[t] = _mm256_setzero_ps();
    a1[t] = _mm_setzero_ps();
    bsum[t] = 0.25f * s8[t][2 * ng];   /* every group's 2-bit bias; other widths give theirs back */
  }
  for (int64_t k = 0; 2 * k < ng; k++) {
    size_t wb = wd[k];
    if (CL_PF_BYTES) _mm_prefetch((const char *)p + CL_PF_BYTES, _MM_HINT_T0);
    if (__builtin_expect(wb == 0x22 && 2 * k + 1 < ng, 1)) {   /* two 2-bit groups: fields made once */
      __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), off);
      __m256i f0 = _mm256_and_si256(v, m3), f1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
      __m256i f2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), f3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
      for (int t = 0; t < NT; t++) {
        const int8_t *xp = x8p[t] + k * 2 * G;
        __m256i sv = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(f0, _mm256_loadu_si256((const __m256i *)xp)),
                             _mm256_maddubs_epi16(f1, _mm256_loadu_si256((const __m256i *)(xp + 32)))),
            _mm256_add_epi16(_mm256_maddubs_epi16(f2, _mm256_loadu_si256((const __m256i *)(xp + 64))),
                             _mm256_maddubs_epi16(f3, _mm256_loadu_si256((const __m256i *)(xp + 96)))));
        a[t] = scale16(sv, s8[t] + 2 * k, a[t]);
      }
      p += 32;
      continue;
    }
    for (int h = 0; h < 2 && 2 * k + h < ng; h++) {
      size_t b = h ? wb >> 4 : wb & 15;
      int64_t g = 2 * k + h;
      for (int t = 0; t < NT; t++) {
        if (b == 2) {
          a1[t] = crumb_dot1(p, x8p[t] + k * 2 * G + h * 16, s8[t] + g, a1[t]);
        } else if (b == 4) {
          a[t] = group8(p, x8[t] + g * G, s8[t] + g, a[t]);
          bsum[t] += 0.75f * bias[t][g];   /* 8 s8 sum x8, not 2 s8 sum x8 */
        } else {
          bsum[t] -= 0.25f * bias[t][g];
          if (b) a[t] = group_float(p, (int)b, g < full ? xr[t] + g * G : xt[t], a[t]);
        }
      }
      p += 8 * b;
    }
  }
  for (int t = 0; t < NT; t++)
    sums[t] = moesz_hsum8(_mm256_add_ps(a[t], _mm256_insertf128_ps(_mm256_setzero_ps(), a1[t], 0))) - bsum[t];
}

/* The 8-bit tile (act 2, several tokens: prompts). A task's rows (at most
 * CL8_ROWS) become offset codes u = q + 8 in bytes, in blocks of 8 rows: per
 * group of 64 columns 16 column quads of 32 bytes (8 rows x 4 codes), the
 * group's columns in x8's order (its even columns, then its odd ones: the low
 * and high nibbles of its 32 code bytes). Groups of widths 1..3 (|q| <= 4)
 * become the same bytes through 16-bit codes. A group wider than 4 bits
 * holds u = 8 (q = 0) and is listed as a fix, multiplied in f32 afterwards.
 * The two blocks' 32 bytes of a quad lie side by side (64 bytes: 16 rows x 4
 * codes), so an AVX-512 kernel reads both at once.
 * The micro-kernel multiplies 8 rows by up to 6 tokens: per quad one 32-byte
 * load, a broadcast of each token's 4 bytes of x8 and vpmaddubsw, the int16
 * pair sums added over 8 quads (|lane| <= 8 * 2 * 15 * 127 = 30480), then
 * widened, converted and scaled by the token's s8 once per 32 columns. The
 * quad loop stays rolled: unrolled, GCC reassociates each token's int16 sums
 * into trees and spills the 48 products to the stack (1.1-1.2x slower in
 * bench/expert_decode). */
#define CL8_ROWS 16
#define CL8_FIX_MAX(ng) ((size_t)(ng) * CL8_ROWS / 8)   /* more fixes: the f32 tile instead */

typedef struct cl8_fix {
  uint32_t off;          /* byte offset of the group's codes in m->data */
  uint16_t g;            /* group */
  uint8_t i, b;          /* row within the tile, width */
} cl8_fix;

/* Rows r0..r1 (r1 - r0 <= CL8_ROWS) into tile [ng][16][2][32] and fix
 * [*nfix]; 0 if more than CL8_FIX_MAX groups need a fix. */
TGT static int cl8_tile(const moesz_cl *m, int64_t r0, int64_t r1, uint8_t *tile, cl8_fix *fix, size_t *nfix) {
  const __m256i off = _mm256_set1_epi8((char)0x88), m0f = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
  const __m256i eight16 = _mm256_set1_epi16(8), six = _mm256_set1_epi8(6);   /* (q + 2) + 6 = q + 8 */
  int64_t ng = m->ngroups;
  size_t nf = 0, maxf = CL8_FIX_MAX(ng);
  for (int blk = 0; blk < CL8_ROWS / 8; blk++) {   /* both blocks, rows past r1 as u = 8 */
    uint32_t pos[8];
    int nr = (int)(r1 - r0 - 8 * blk);
    if (nr > 8) nr = 8;
    for (int i = 0; i < nr; i++) pos[i] = m->row_off[r0 + 8 * blk + i];
    uint8_t *tb = tile + 32 * (size_t)blk;
    for (int64_t g = 0; g < ng; g++) {
      __m256 e[8], o[8];
      for (int i = 0; i < 8; i++) {
        __m256i ev = eight, ov = eight;
        if (i < nr) {
          int64_t r = r0 + 8 * blk + i;
          int b = moesz_cl_width(m, r, g);
          if (b == 4) {
            __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(m->data + pos[i])), off);
            ev = _mm256_and_si256(v, m0f);
            ov = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
          } else if (b == 2) {   /* four fields a byte: columns 4j + f; even = fields 0, 2 interleaved */
            __m128i f[4];
            crumb_fields(m->data + pos[i], f);
            ev = _mm256_add_epi8(_mm256_setr_m128i(_mm_unpacklo_epi8(f[0], f[2]), _mm_unpackhi_epi8(f[0], f[2])), six);
            ov = _mm256_add_epi8(_mm256_setr_m128i(_mm_unpacklo_epi8(f[1], f[3]), _mm_unpackhi_epi8(f[1], f[3])), six);
          } else if (b && b < 4) {   /* 16-bit codes + 8, bytes in column order, split */
            const uint8_t *p = m->data + pos[i];
            __m256i sh = _mm256_load_si256((const __m256i *)CL_SHUF16[b]), mu = _mm256_load_si256((const __m256i *)CL_MUL16[b]);
            __m128i sr = _mm_load_si128((const __m128i *)CL_SRA16[b]);
            __m256i c[2];
            for (int h = 0; h < 2; h++) {
              __m256i q0 = _mm256_add_epi16(UNPACK16(p + 4 * b * h, sh, mu, sr), eight16);
              __m256i q1 = _mm256_add_epi16(UNPACK16(p + 4 * b * h + 2 * b, sh, mu, sr), eight16);
              c[h] = _mm256_permute4x64_epi64(_mm256_packus_epi16(q0, q1), 0xd8);
            }
            split_eo(c, &ev, &ov);
          } else if (b) {
            if (nf == maxf) return 0;
            fix[nf++] = (cl8_fix){pos[i], (uint16_t)g, (uint8_t)(8 * blk + i), (uint8_t)b};
          }
          pos[i] += 8 * (uint32_t)b;
        }
        e[i] = _mm256_castsi256_ps(ev);
        o[i] = _mm256_castsi256_ps(ov);
      }
      moesz_tr8(e);
      moesz_tr8(o);
      uint8_t *q = tb + (size_t)g * 1024;
      for (int k = 0; k < 8; k++) {
        _mm256_store_ps((float *)(q + 64 * k), e[k]);
        _mm256_store_ps((float *)(q + 512 + 64 * k), o[k]);
      }
    }
  }
  *nfix = nf;
  return 1;
}

/* 8 rows (tile block tb: quad k of group g at tb + (16 g + k) * 64) by T
 * tokens (x8[t] [ng * 64], s8[t] [ng]): out[t] = the 8 rows' sums s8 * u *
 * x8 (before the offset's bias). */
#define CL8_MM(T)                                                                                  \
  TGT static void mm8_##T(const uint8_t *tb, int64_t ng, const int8_t *const *x8, const float *const *s8, \
                          __m256 *out) {                                                           \
    const __m256i ones = _mm256_set1_epi16(1);                                                     \
    __m256 f[T];                                                                                   \
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) f[t] = _mm256_setzero_ps();                \
    for (int64_t h = 0; h < 2 * ng; h++) {   /* halves of groups: 8 quads, 32 columns */           \
      const uint8_t *w = tb + (size_t)h * 512;                                                     \
      __m256i a[T];                                                                                \
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) a[t] = _mm256_setzero_si256();           \
      _Pragma("GCC unroll 1") for (int k = 0; k < 8; k++) {                                        \
        __m256i wk = _mm256_load_si256((const __m256i *)(w + 64 * k));                             \
        _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {                                      \
          int32_t xq;                                                                              \
          memcpy(&xq, x8[t] + (size_t)h * 32 + 4 * k, 4);                                          \
          a[t] = _mm256_add_epi16(a[t], _mm256_maddubs_epi16(wk, _mm256_set1_epi32(xq)));          \
        }                                                                                          \
      }                                                                                            \
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++)                                          \
        f[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(a[t], ones)),                  \
                               _mm256_broadcast_ss(s8[t] + (h >> 1)), f[t]);                       \
    }                                                                                              \
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) out[t] = f[t];                             \
  }
CL8_MM(6)
CL8_MM(5)
CL8_MM(4)
CL8_MM(3)
CL8_MM(2)
CL8_MM(1)
static void (*const MM8[6])(const uint8_t *, int64_t, const int8_t *const *, const float *const *, __m256 *) = {
    mm8_1, mm8_2, mm8_3, mm8_4, mm8_5, mm8_6};

/* x [cols] has only finite values. */
TGT static int x_finite(const float *x, int64_t cols) {
  __m256 bad = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 v = _mm256_loadu_ps(x + c);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
  }
  int ok = !_mm256_movemask_ps(bad);
  for (; c < cols; c++) ok &= x[c] - x[c] == 0.0f;
  return ok;
}

/* One token's outputs of a task's rows r0..r1 (<= CL8_ROWS) from their code
 * sums part[]: y[i] (+)= part[i] step + row r0 + i's escape sums + the half
 * grid's share (the sum of x from its slot after s8, bias and btot in
 * quant_x8's layout). */
TGT static void cl8_finish(const moesz_cl *m, int64_t r0, int64_t r1, const float *part, const float *xt,
                           const float *s8, float *yt, int acc) {
  float es[CL8_ROWS], hx = m->half == 0 ? 0 : m->half * s8[2 * m->ngroups + 1];
  esc_dots_rows(m, r0, r1, xt, es);
  for (int64_t i = 0; i < r1 - r0; i++) {
    float v = part[i] * m->step + es[i] + hx;
    yt[i] = acc ? yt[i] + v : v;
  }
}

/* Rows r0..r1 (<= CL8_ROWS) of m against nt tokens through the 8-bit tile,
 * x8 of token t at xq + t * xb (quant_x8's layout). */
TGT static void cl8_rows(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                         size_t ldy, int acc, const uint8_t *xq, size_t xb, const uint8_t *tile, const cl8_fix *fix,
                         size_t nfix, int vnni) {
  int64_t ng = m->ngroups, cols = m->cols;
  int nr = (int)(r1 - r0);
  for (int t0 = 0; t0 < nt; t0 += 6) {
    int T = nt - t0 < 6 ? nt - t0 : 6;
    const int8_t *x8[6];
    const float *s8[6];
    float part[6][CL8_ROWS];
    for (int t = 0; t < T; t++) {
      const uint8_t *q = xq + (size_t)(t0 + t) * xb;
      x8[t] = (const int8_t *)q;
      s8[t] = (const float *)(q + ng * G);
    }
    if (vnni) {   /* AVX512_VNNI: both blocks at once (kernels_x512.c), the same sums */
      float o16[6 * CL8_ROWS];
      moesz_kx_cl8_mm(tile, ng, x8, s8, T, o16);
      for (int t = 0; t < T; t++) memcpy(part[t], o16 + CL8_ROWS * t, sizeof part[t]);
    }
    for (int blk = 0; !vnni && 8 * blk < nr; blk++) {
      __m256 out[6];
      const uint8_t *tb = tile + 32 * (size_t)blk;
      MM8[T - 1](tb, ng, x8, s8, out);
      for (int t = 0; t < T; t++) _mm256_storeu_ps(part[t] + 8 * blk, out[t]);
    }
    for (int t = 0; t < T; t++) {   /* the offset's share: btot (after s8 and bias in quant_x8's layout) */
      float btot = s8[t][2 * ng];
      for (int i = 0; i < nr; i++) part[t][i] -= btot;
    }
    /* the fixes: codes of other widths against x in f32 (the last group zero-padded) */
    for (size_t k = 0; k < nfix; k++) {
      const cl8_fix *fx = &fix[k];
      float wq[G] __attribute__((aligned(32)));
      __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[fx->b]);
      __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[fx->b]);
      __m128i sra = _mm_cvtsi32_si128(32 - fx->b);
      for (int j = 0; j < 8; j++) _mm256_store_ps(wq + 8 * j, UNPACK8(m->data + fx->off + (size_t)j * fx->b, shuf, shl, sra));
      int64_t c0 = (int64_t)fx->g * G, n = cols - c0 < G ? cols - c0 : G;
      for (int t = 0; t < T; t++) {
        const float *xg = x + (size_t)(t0 + t) * ldx + c0;
        float s = 0;
        if (n == G) {
          __m256 a = _mm256_setzero_ps();
          for (int j = 0; j < G; j += 8) a = _mm256_fmadd_ps(_mm256_load_ps(wq + j), _mm256_loadu_ps(xg + j), a);
          s = moesz_hsum8(a);
        } else
          for (int64_t j = 0; j < n; j++) s += wq[j] * xg[j];
        part[t][fx->i] += s;
      }
    }
    for (int t = 0; t < T; t++)
      cl8_finish(m, r0, r1, part[t], x + (size_t)(t0 + t) * ldx, s8[t], y + (size_t)(t0 + t) * ldy, acc);
  }
}

/* nt <= TBLK tokens, rows r0..r1. scratch: XQ_BYTES(ng) per token, or NULL (float path only). */
TGT static int cl_avx2(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                       size_t ldy, int acc, uint8_t *scratch, int have_xq, int act) {
  int lo = act == 0;
  int64_t full = m->cols / G, ng = m->ngroups;
  float xt[TBLK][G] __attribute__((aligned(32)));
  const float *xr[TBLK], *xtp[TBLK], *xs[TBLK];
  const int16_t *xh[TBLK], *xl[TBLK];
  int useint = scratch != NULL;
  for (int t = 0; t < nt; t++) {
    xr[t] = x + (size_t)t * ldx;
    xtp[t] = xt[t];
    if (ng > full) {
      memset(xt[t], 0, sizeof xt[t]);
      memcpy(xt[t], xr[t] + full * G, (size_t)(m->cols - full * G) * sizeof(float));
    }
    if (useint) {
      uint8_t *q = scratch + (size_t)t * XQ_BYTES(ng);
      int16_t *h = (int16_t *)q, *l = h + ng * G;
      float *sc = (float *)(l + ng * G);
      if (!have_xq && !quant_x(xr[t], m->cols, ng, h, l, sc)) useint = 0;
      xh[t] = h; xl[t] = l; xs[t] = sc;
    }
  }
  cl_w16 tab[9];
  const uint8_t *xq8[TBLK];   /* act 2: each token's x8 block, its x8p after it (row_dot2n's layout) */
  int8_t *x8 = NULL, *x8p = NULL;
  float *s8 = NULL, *bias = NULL, *btot = NULL;
  if (useint) {
    for (int b = 0; b <= 8; b++) {
      tab[b].shuf = _mm256_load_si256((const __m256i *)CL_SHUF16[b]);
      tab[b].mul = _mm256_load_si256((const __m256i *)CL_MUL16[b]);
      tab[b].sra = _mm_load_si128((const __m128i *)CL_SRA16[b]);
    }
    if (act == 2) {   /* x also at 8 bits (and in the 2-bit order), each token: rows of 2- and 4-bit groups */
      for (int t = 0; t < nt; t++) {
        uint8_t *q = scratch + TBLK * XQ_BYTES(ng) + (size_t)t * (XQ8_BYTES(ng) + XQ8P_BYTES(ng));
        float *qs = (float *)(q + ng * G);
        xq8[t] = q;
        if (!have_xq) quant_x8(xr[t], m->cols, ng, (int8_t *)q, qs, qs + ng, qs + 2 * ng, (int8_t *)(q + XQ8_BYTES(ng)));
      }
      x8 = (int8_t *)xq8[0];   /* token 0's, for one token's row_dot8 / row_dot2 */
      s8 = (float *)(xq8[0] + ng * G); bias = s8 + ng; btot = bias + ng;
      x8p = (int8_t *)(xq8[0] + XQ8_BYTES(ng));
    }
  }
  enum { EPF = 32 };
  float es[TBLK][EPF];   /* escape sums of a chunk of EPF rows (esc_dots) */
  float hx[TBLK];        /* the half grid's share of every row */
  for (int t = 0; t < nt; t++) hx[t] = half_share_avx2(m, xr[t]);
  for (int64_t r = r0; r < r1; r++) {
    float v[TBLK];
    if ((r - r0) % EPF == 0)
      for (int t = 0; t < nt; t++) esc_dots_rows(m, r, r + EPF < r1 ? r + EPF : r1, xr[t], es[t]);
    size_t ub = useint && (CL_UNIFORM || x8) ? row_usual_width(m, r) : 0;
    if (!useint) switch (nt) {   /* constants per copy: accumulators stay in registers */
      case 1: row_float(m, r, 1, xr, xtp, v); break;
      case 2: row_float(m, r, 2, xr, xtp, v); break;
      case 3: row_float(m, r, 3, xr, xtp, v); break;
      default: row_float(m, r, TBLK, xr, xtp, v); break;
    }
    else if (x8 && nt == 1 && (ub == 4 || (m->ngroups == 1 && (m->widths[r * m->wstride] & 15) == 4)))
      v[0] = row_dot8(m, r, tab, xr[0], xtp[0], xh[0], xs[0], x8, s8, bias, *btot);
    else if (x8 && nt == 1 && m->usual[r] & MOESZ_CL_MOSTLY2)
      v[0] = row_dot2(m, r, tab, xr[0], xtp[0], xh[0], xs[0], x8, x8p, s8, bias, *btot);
    else if (x8 && m->usual[r] & MOESZ_CL_MOSTLY2) switch (nt) {   /* 2..4 tokens: the fields made once */
      case 2: row_dot2n(m, r, 2, xq8, xr, xtp, v); break;
      case 3: row_dot2n(m, r, 3, xq8, xr, xtp, v); break;
      default: row_dot2n(m, r, 4, xq8, xr, xtp, v); break;
    }
    else
#define ROWN(NT, LO, UB) row_dotn(m, r, tab, NT, xr, xtp, xh, xl, xs, LO, UB, v)
      switch (nt > 2 ? 0 : ((CL_UNIFORM ? ub : 0) * 2 + (size_t)lo) * 2 + (size_t)(nt - 1)) {   /* a copy per usual width: constant offsets and tables */
      case (6 * 2) * 2: ROWN(1, 0, 6); break;
      case (6 * 2 + 1) * 2: ROWN(1, 1, 6); break;
      case (4 * 2) * 2: ROWN(1, 0, 4); break;
      case (4 * 2 + 1) * 2: ROWN(1, 1, 4); break;
      case (3 * 2) * 2: ROWN(1, 0, 3); break;
      case (3 * 2 + 1) * 2: ROWN(1, 1, 3); break;
      case (5 * 2) * 2: ROWN(1, 0, 5); break;
      case (5 * 2 + 1) * 2: ROWN(1, 1, 5); break;
      case (2 * 2) * 2: ROWN(1, 0, 2); break;
      case (2 * 2 + 1) * 2: ROWN(1, 1, 2); break;
      case (6 * 2) * 2 + 1: ROWN(2, 0, 6); break;
      case (6 * 2 + 1) * 2 + 1: ROWN(2, 1, 6); break;
      case (4 * 2) * 2 + 1: ROWN(2, 0, 4); break;
      case (4 * 2 + 1) * 2 + 1: ROWN(2, 1, 4); break;
      case (5 * 2) * 2 + 1: ROWN(2, 0, 5); break;
      case (5 * 2 + 1) * 2 + 1: ROWN(2, 1, 5); break;
      case (2 * 2) * 2 + 1: ROWN(2, 0, 2); break;
      case (2 * 2 + 1) * 2 + 1: ROWN(2, 1, 2); break;
      default:
        if (nt == 4 && lo) ROWN(4, 1, 0);
        else if (nt == 4) ROWN(4, 0, 0);
        else if (nt == 3 && lo) ROWN(3, 1, 0);
        else if (nt == 3) ROWN(3, 0, 0);
        else if (nt == 1 && lo) ROWN(1, 1, 0);
        else if (nt == 1) ROWN(1, 0, 0);
        else if (lo) ROWN(2, 1, 0);
        else ROWN(2, 0, 0);
        break;
      }
#undef ROWN
    for (int t = 0; t < nt; t++) {
      float *o = y + (size_t)t * ldy + (r - r0);
      float sv = v[t] * m->step + es[t][(r - r0) % EPF] + hx[t];
      *o = acc ? *o + sv : sv;
    }
  }
  return useint;
}

/* Rows r0..r1 as f32 [r1 - r0, cols] (weights q * step + half, exact by one
 * FMA; escapes in place). */
TGT static void unpack_avx2(const moesz_cl *m, int64_t r0, int64_t r1, float *dst) {
  int64_t cols = m->cols, full = cols / G;
  __m256 st = _mm256_set1_ps(m->step), hv = _mm256_set1_ps(m->half);
  float tail[G] __attribute__((aligned(32)));
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *p = m->data + m->row_off[r];
    float *d = dst + (size_t)(r - r0) * (size_t)cols;
    for (int64_t g = 0; g < m->ngroups; g++) {
      int b = moesz_cl_width(m, r, g);
      float *o = g < full ? d + g * G : tail;
      if (!b) {
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(o + 8 * j, hv);
      } else {
        __m256i shuf = _mm256_load_si256((const __m256i *)CL_SHUF[b]);
        __m256i shl = _mm256_load_si256((const __m256i *)CL_SHL[b]);
        __m128i sra = _mm_cvtsi32_si128(32 - b);
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(o + 8 * j, _mm256_fmadd_ps(UNPACK8(p + j * b, shuf, shl, sra), st, hv));
      }
      if (g >= full) memcpy(d + g * G, tail, (size_t)(cols - g * G) * sizeof(float));
      p += 8 * b;
    }
    for (uint32_t e = m->esc_start[r]; e < m->esc_start[r + 1]; e++)
      d[m->esc_idx[e] - (size_t)r * (size_t)cols] = m->esc_val[e];
  }
}
#endif

void moesz_k_cl_unpack(const moesz_cl *m, int64_t r0, int64_t r1, float *dst, int simd) {
#if MOESZ_X86
  if (simd) { unpack_avx2(m, r0, r1, dst); return; }
#else
  (void)simd;
#endif
  moesz_cl_decode_rows(m, r0, r1, dst);
}

/* Rows r0..r1 (at most CL8_ROWS, every one MOESZ_CL_MOSTLY2) against nt
 * tokens whose x8, x8p and sum of x are in xq (stride xb a token): row_dot2n
 * four tokens at a time, then step, escapes and the half grid's share. */
TGT static void cl2n_rows(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                          size_t ldy, int acc, const uint8_t *xq, size_t xb) {
  int64_t ng = m->ngroups, full = m->cols / G;
  int nr = (int)(r1 - r0);
  for (int t0 = 0; t0 < nt; t0 += 4) {
    int T = nt - t0 < 4 ? nt - t0 : 4;
    const uint8_t *q[4];
    const float *xr[4], *xtp[4];
    float tail[4][G] __attribute__((aligned(32)));
    float part[4][CL8_ROWS];
    for (int t = 0; t < T; t++) {
      q[t] = xq + (size_t)(t0 + t) * xb;
      xr[t] = x + (size_t)(t0 + t) * ldx;
      xtp[t] = tail[t];
      if (ng > full) {
        memset(tail[t], 0, sizeof tail[t]);
        memcpy(tail[t], xr[t] + full * G, (size_t)(m->cols - full * G) * sizeof(float));
      }
    }
    for (int i = 0; i < nr; i++) {
      float v[4];
      switch (T) {   /* a copy per token count: accumulators in registers */
      case 1: row_dot2n(m, r0 + i, 1, q, xr, xtp, v); break;
      case 2: row_dot2n(m, r0 + i, 2, q, xr, xtp, v); break;
      case 3: row_dot2n(m, r0 + i, 3, q, xr, xtp, v); break;
      default: row_dot2n(m, r0 + i, 4, q, xr, xtp, v); break;
      }
      for (int t = 0; t < T; t++) part[t][i] = v[t];
    }
    for (int t = 0; t < T; t++)
      cl8_finish(m, r0, r1, part[t], xr[t], (const float *)(q[t] + ng * G), y + (size_t)(t0 + t) * ldy, acc);
  }
}

/* The 8-bit tile path's scratch: [tile 2 x ng x 512][fixes][x8 and x8p of each token]. */
static size_t cl8_tile_bytes(int64_t ng) {
  return ((size_t)ng * 1024 + CL8_FIX_MAX(ng) * sizeof(cl8_fix) + 63) / 64 * 64;
}

int moesz_k_cl8_rows(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                     size_t ldy, int acc, void *scratch, size_t scratch_bytes, int have_xq, int simd) {
#if MOESZ_X86
  int64_t ng = m->ngroups;
  /* a token's x8 block is followed by its x8p (the 2-bit rows' order) whichever path a task takes, so
   * that the thread's memoized x serves both */
  size_t tb = cl8_tile_bytes(ng), xb = XQ8_BYTES(ng) + XQ8P_BYTES(ng);
  if (r1 - r0 > CL8_ROWS || r1 <= r0 || nt < 1 || tb + xb > scratch_bytes || ((uintptr_t)scratch & 31)) return 0;
  uint8_t *tile = scratch, *xq = tile + tb;
  cl8_fix *fix = (cl8_fix *)(tile + (size_t)ng * 1024);
  size_t nfix = 0;
  int two = 1;   /* every row mostly of 2-bit groups: row_dot2n, no tile */
  for (int64_t r = r0; r < r1 && two; r++) two = (m->usual[r] & MOESZ_CL_MOSTLY2) != 0;
  if (!two && !cl8_tile(m, r0, r1, tile, fix, &nfix)) return 0;
  int per = (int)((scratch_bytes - tb) / xb), all = nt <= per;
  if (!(all && have_xq))   /* before any output is written */
    for (int t = 0; t < nt; t++)
      if (!x_finite(x + (size_t)t * ldx, m->cols)) return 0;
  for (int t0 = 0; t0 < nt; t0 += per) {
    int k = nt - t0 < per ? nt - t0 : per;
    if (!(all && have_xq))
      for (int t = 0; t < k; t++) {
        const float *xt = x + (size_t)(t0 + t) * ldx;
        uint8_t *q = xq + (size_t)t * xb;
        float *s8 = (float *)(q + ng * G);
        quant_x8(xt, m->cols, ng, (int8_t *)q, s8, s8 + ng, s8 + 2 * ng, (int8_t *)(q + XQ8_BYTES(ng)));
        s8[2 * ng + 1] = x_sum_avx2(xt, m->cols);   /* for the half grid's share, with the x it belongs to */
      }
    if (two) cl2n_rows(m, r0, r1, x + (size_t)t0 * ldx, ldx, k, y + (size_t)t0 * ldy, ldy, acc, xq, xb);
    else
      cl8_rows(m, r0, r1, x + (size_t)t0 * ldx, ldx, k, y + (size_t)t0 * ldy, ldy, acc, xq, xb, tile, fix, nfix,
               simd >= 2);
  }
  return all ? 2 : 1;
#else
  (void)m; (void)r0; (void)r1; (void)x; (void)ldx; (void)nt; (void)y; (void)ldy; (void)acc; (void)scratch;
  (void)scratch_bytes; (void)have_xq; (void)simd;
  return 0;
#endif
}

size_t moesz_k_cl_scratch_bytes(int64_t cols) {
  int64_t ng = (cols + G - 1) / G;
  return (XQ_BYTES(ng) + XQ8_BYTES(ng) + XQ8P_BYTES(ng)) * TBLK;
}

#if MOESZ_X86
/* simd >= 3 (AVX-512 VBMI + VNNI): the codes against x quantized to 24 bits
 * a block of 4 groups (digits 3), or to 16 (2: act 1), by moesz_kx_cl_rows
 * (kernels_x512.c), nt <= TBLK tokens, each token's quantized x in its
 * XQ_BYTES slot of scratch; 0 (nothing written) if some x is not finite. */
static int cl_vbmi(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                   size_t ldy, int acc, uint8_t *scratch, int have_xq, int digits) {
  int64_t ng = m->ngroups;
  const void *xq[TBLK];
  const float *xr[TBLK];
  for (int t = 0; t < nt; t++) {
    xr[t] = x + (size_t)t * ldx;
    xq[t] = scratch + (size_t)t * XQ_BYTES(ng);
    if (!have_xq && !moesz_kx_cl_quant_x(xr[t], m->cols, ng, digits, scratch + (size_t)t * XQ_BYTES(ng))) return 0;
  }
  enum { RB = 64 };
  float part[TBLK * RB], hx[TBLK];
  for (int t = 0; t < nt; t++) hx[t] = half_share_avx2(m, xr[t]);
  for (int64_t a = r0; a < r1; a += RB) {
    int64_t b = a + RB < r1 ? a + RB : r1;
    moesz_kx_cl_rows(m, a, b, xq, xr, nt, digits, part, RB);
    for (int t = 0; t < nt; t++) {
      float es[RB];
      esc_dots_rows(m, a, b, xr[t], es);
      for (int64_t r = a; r < b; r++) {
        float *o = y + (size_t)t * ldy + (r - r0);
        float sv = part[t * RB + (r - a)] * m->step + es[r - a] + hx[t];
        *o = acc ? *o + sv : sv;
      }
    }
  }
  return 1;
}
#endif

int moesz_k_cl_rows(const moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                    size_t ldy, int acc, int simd, int act, void *scratch, int have_xq) {
#if MOESZ_X86
  if (simd >= 3 && act <= 1 && nt == 1 && scratch && moesz_kx_cl_xq_bytes(m->ngroups) <= XQ_BYTES(m->ngroups) &&
      cl_vbmi(m, r0, r1, x, ldx, nt, y, ldy, acc, scratch, have_xq, act ? 2 : 3))
    return 1;
  if (simd) {
    int ok = 1;
    for (int t = 0; t < nt; t += TBLK) {
      int k = nt - t < TBLK ? nt - t : TBLK;
      ok &= cl_avx2(m, r0, r1, x + (size_t)t * ldx, ldx, k, y + (size_t)t * ldy, ldy, acc, scratch,
                    have_xq && nt <= TBLK, act);
    }
    return ok && scratch && nt <= TBLK;
  }
#else
  (void)simd; (void)scratch; (void)have_xq; (void)act;
#endif
  cl_scalar(m, r0, r1, x, ldx, nt, y, ldy, acc);
  return 0;
}
