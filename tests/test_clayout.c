/* tests/test_clayout.c - the codec's compute layout: every weight within the
 * bound (F32, BF16, F16 inputs, abs/rel/std modes, odd shapes, outliers, NaN
 * and Inf kept exactly), the bound's rounding, rates on Gaussian weights, the
 * fused kernels (scalar and AVX2, 1..70 tokens, 1 and 3 threads) against a
 * double-precision product with the decoded weights, hostile layouts
 * (truncation, every header field, lying offsets and escapes), and whole
 * models: logits of the fused path against the same codes decoded to F32, on
 * every MoE family fixture, prompt batch and token by token. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <xxhash.h>
#include "harness.h"
#include "harness_engine.h"
#include "base/cpu.h"
#include "infer/kernels.h"
#include <unistd.h>
#include "moesz.h"

static uint64_t rs = 0x9e3779b97f4a7c15ull;
/* The grid the kernel tests encode on (each runs on both; see main). */
static int g_grid = MOESZ_CL_GRID_ZERO;
static int enc(const void *src, moesz_dtype dt, int64_t rows, int64_t cols, moesz_eb_mode mode, double eb, void **out,
               size_t *len, moesz_cl_info *info, moesz_error *err) {
  return moesz_cl_encode_ex(src, dt, rows, cols, mode, eb, g_grid, 1, out, len, info, err);
}
static double urand(void) {
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(void) {
  double u = urand(), v = urand();
  return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* rows x cols of N(0, sigma^2) with row scales varying over rscale decades, in dtype dt;
 * f gets the f32 values. */
static void *make(moesz_dtype dt, int rows, int cols, double sigma, double rscale, float *f) {
  size_t n = (size_t)rows * (size_t)cols;
  void *buf = malloc(n * moesz_dtype_size(dt));
  for (int r = 0; r < rows; r++) {
    double sc = sigma * pow(10.0, rscale * ((double)r / (rows > 1 ? rows - 1 : 1) - 0.5));
    for (int c = 0; c < cols; c++) {
      size_t i = (size_t)r * (size_t)cols + (size_t)c;
      float x = (float)(gauss() * sc);
      if (dt == MOESZ_DT_BF16) { uint16_t h = moesz_f32_to_bf16(x); ((uint16_t *)buf)[i] = h; x = moesz_bf16_to_f32(h); }
      else if (dt == MOESZ_DT_F16) { uint16_t h = moesz_f32_to_f16(x); ((uint16_t *)buf)[i] = h; x = moesz_f16_to_f32(h); }
      else ((float *)buf)[i] = x;
      f[i] = x;
    }
  }
  return buf;
}

/* Worst |w - x| / eb over finite values; -1 if a non-finite value was not kept exactly. */
static double worst_ratio(const float *x, const float *w, size_t n, double eb) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) {
      if (isnan(x[i]) ? !isnan(w[i]) : w[i] != x[i]) return -1;
      continue;
    }
    double e = fabs((double)w[i] - (double)x[i]) / eb;
    if (e > worst) worst = e;
  }
  return worst;
}

TEST(bound_holds_every_dtype_mode_shape) {
  static const moesz_dtype dts[] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  static const int shapes[][2] = {{1, 1}, {3, 64}, {5, 65}, {17, 200}, {64, 128}, {7, 1000}};
  static const double ebs[] = {1e-3, 5e-3, 2e-4, 3.3e-3};
  for (int d = 0; d < 3; d++)
    for (int s = 0; s < 6; s++)
      for (int e = 0; e < 4; e++)
        for (int mode = 0; mode < 3; mode++) {
          int rows = shapes[s][0], cols = shapes[s][1];
          size_t n = (size_t)rows * (size_t)cols;
          float *f = malloc(n * 4), *w = malloc(n * 4);
          void *src = make(dts[d], rows, cols, 0.02, e == 3 ? 3.0 : 0.0, f);
          double eb = mode == 0 ? ebs[e] : mode == 1 ? ebs[e] * 10 : ebs[e] * 20;
          void *buf = NULL;
          size_t len = 0;
          moesz_cl_info info;
          moesz_error err;
          int rc = enc(src, dts[d], rows, cols, (moesz_eb_mode)mode, eb, &buf, &len, &info, &err);
          CHECK_MSG(rc == 0, "%s", err.msg);
          moesz_cl m;
          if (!rc) {
            rc = moesz_cl_parse(buf, len, &m, &err);
            CHECK_MSG(rc == 0, "%s", err.msg);
          }
          if (!rc) {
            moesz_cl_decode(&m, w);
            double r = worst_ratio(f, w, n, m.eb);
            CHECK_MSG(r >= 0 && r <= 1.0, "dt %d %dx%d eb %g mode %d: worst %.6f eb'", d, rows, cols, eb, mode, r);
            CHECK(m.eb == info.eb && len == info.bytes);
            if (mode == 0) CHECK(m.eb <= eb && m.eb >= eb * (1 - 1.0 / 512));
            if (rows * cols == 1 && mode) CHECK(m.eb == 0 && w[0] == f[0]); /* constant: bound 0, exact */
            /* weights are exactly q * step (+ step / 2 on the half grid) for non-escaped values */
            CHECK(m.half == (info.half ? m.step / 2 : 0) && (g_grid == MOESZ_CL_GRID_HALF) == info.half + (m.eb == 0 && g_grid == MOESZ_CL_GRID_HALF));
            double k = (w[0] - m.half) / m.step;
            CHECK(fabs(k - nearbyint(k)) == 0 || w[0] == f[0]);
          }
          if (!rc) moesz_cl_free(&m);
          free(buf); free(src); free(f); free(w);
        }
}

TEST(threads_give_identical_bytes) {
  int rows = 301, cols = 200;
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4);
  void *src = make(MOESZ_DT_BF16, rows, cols, 0.02, 3.0, f);
  void *a, *b;
  size_t la, lb;
  moesz_error err;
  CHECK(moesz_cl_encode(src, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, 1e-3, 1, &a, &la, NULL, &err) == 0);
  CHECK(moesz_cl_encode(src, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, 1e-3, 3, &b, &lb, NULL, &err) == 0);
  CHECK(la == lb && !memcmp(a, b, la));
  free(a); free(b); free(src); free(f);
}

TEST(outliers_nan_inf_kept_exactly) {
  int rows = 9, cols = 150;
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4), *w = malloc(n * 4);
  free(make(MOESZ_DT_F32, rows, cols, 0.02, 0, f));
  f[3] = NAN; f[70] = INFINITY; f[71] = -INFINITY; f[200] = 1e4f; f[201] = -3.0f; f[n - 1] = 5.0f; f[n - 2] = -0.0f;
  void *buf;
  size_t len;
  moesz_cl_info info;
  moesz_error err;
  CHECK(moesz_cl_encode(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, &info, &err) == 0);
  moesz_cl m;
  CHECK(moesz_cl_parse(buf, len, &m, &err) == 0);
  moesz_cl_decode(&m, w);
  CHECK(worst_ratio(f, w, n, m.eb) >= 0 && worst_ratio(f, w, n, m.eb) <= 1);
  CHECK(isnan(w[3]) && w[70] == INFINITY && w[71] == -INFINITY && w[200] == 1e4f && w[n - 1] == 5.0f);
  CHECK(info.escapes >= 6 && info.escapes < 40);
  moesz_cl_free(&m);
  free(buf); free(f); free(w);
}

TEST(rate_near_entropy_on_gaussian) {
  /* N(0, 0.02^2) at eb 1e-3: H_q = log2(10) + 2.047 = 5.37 bits; a fixed-width
   * layout pays about +0.6 for the width; 6.4 bits is a generous ceiling */
  int rows = 256, cols = 1024;
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4);
  void *src = make(MOESZ_DT_BF16, rows, cols, 0.02, 0, f);
  void *buf;
  size_t len;
  moesz_cl_info info;
  moesz_error err;
  CHECK(moesz_cl_encode(src, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, &info, &err) == 0);
  CHECK_MSG(info.bits_per_value > 5.8 && info.bits_per_value < 6.4, "%.3f bits", info.bits_per_value);
  CHECK(info.groups_by_width[6] > info.groups_by_width[7]);
  free(buf); free(src); free(f);
}

TEST(errors_for_bad_arguments) {
  float x[4] = {0};
  void *buf;
  size_t len;
  moesz_error err;
  CHECK(moesz_cl_encode(x, MOESZ_DT_F32, 2, 2, MOESZ_EB_ABS, 0, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
  CHECK(moesz_cl_encode(x, MOESZ_DT_F32, 2, 2, MOESZ_EB_ABS, NAN, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
  CHECK(moesz_cl_encode(x, MOESZ_DT_F32, 2, 2, MOESZ_EB_ABS, 1e-42, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
  CHECK(moesz_cl_encode(x, MOESZ_DT_I32, 2, 2, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, NULL, &err) == MOESZ_E_UNSUPPORTED);
  CHECK(moesz_cl_encode(x, MOESZ_DT_F32, 0, 2, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
  CHECK(moesz_cl_encode(x, MOESZ_DT_F32, 1, 70000, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
  CHECK(moesz_cl_encode_ex(x, MOESZ_DT_F32, 2, 2, MOESZ_EB_ABS, 1e-3, 3, 1, &buf, &len, NULL, &err) == MOESZ_E_ARG);
}

/* m times nt Gaussian tokens x [nt, ldx] through moesz_k_linear into y [nt,
 * ldy], y filled with `fill` first (acc: added to it); x and y are allocated
 * here. 1 if the call failed. */
static int run_cl(moesz_kctx *kc, moesz_cl *m, int nt, int acc, size_t ldx, size_t ldy, float fill, float **x,
                  float **y) {
  *x = malloc(ldx * (size_t)nt * 4);
  *y = malloc(ldy * (size_t)nt * 4);
  for (size_t i = 0; i < ldx * (size_t)nt; i++) (*x)[i] = (float)gauss();
  for (size_t i = 0; i < ldy * (size_t)nt; i++) (*y)[i] = fill;
  moesz_matview v = {m, MOESZ_VIEW_CL, m->rows, m->cols, m->cols, 0};
  moesz_kjob j = {v, *x, ldx, *y, ldy, nt, acc};
  return moesz_k_linear(kc, &j, 1) != MOESZ_OK;
}

/* y = W x through moesz_k_linear against a double product with the decoded
 * weights: equal up to f32 rounding, plus, where x is rounded to 16 bits per
 * group of 64 (kc->cl_act16, SIMD integer path), that rounding's bound
 * sum |w_c| * max|x_g| / 32639 / 2 (32639 = 127 * 257, the VBMI kernel's full
 * scale for two 8-bit digits; the AVX2 kernel's 32767 gives a finer step). */
static int check_fused(moesz_kctx *kc, int rows, int cols, int nt, int acc, double rscale) {
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4), *w = malloc(n * 4);
  void *src = make(MOESZ_DT_BF16, rows, cols, 0.02, rscale, f);
  void *buf;
  size_t len;
  moesz_error err;
  moesz_cl m;
  int bad = enc(src, MOESZ_DT_BF16, rows, cols, MOESZ_EB_ABS, 1e-3, &buf, &len, NULL, &err) ||
            moesz_cl_parse(buf, len, &m, &err);
  if (bad) { free(f); free(w); free(src); return 0; }
  moesz_cl_decode(&m, w);
  size_t ldx = (size_t)cols + 3, ldy = (size_t)rows + 1;
  float *x, *y;
  bad = run_cl(kc, &m, nt, acc, ldx, ldy, 0.25f, &x, &y);
  for (int t = 0; t < nt && !bad; t++)
    for (int r = 0; r < rows && !bad; r++) {
      double s = acc ? 0.25 : 0, mag = 0, x16 = 0;
      for (int c = 0; c < cols; c++) {
        s += (double)w[(size_t)r * cols + c] * x[(size_t)t * ldx + c];
        mag += fabs((double)w[(size_t)r * cols + c] * x[(size_t)t * ldx + c]);
        if (c % 64 == 0) {
          double mx = 0;
          for (int i = c; i < c + 64 && i < cols; i++) mx = fmax(mx, fabs(x[(size_t)t * ldx + i]));
          x16 = mx / 32639 / 2;
          if (kc->cl_act == 2) {   /* 4-bit groups against 8-bit x, one scale per 128 columns */
            for (int i = c / 128 * 128; i < c / 128 * 128 + 128 && i < cols; i++) mx = fmax(mx, fabs(x[(size_t)t * ldx + i]));
            x16 = mx / 127 / 2;
          }
        }
        if (kc->simd && kc->cl_act) mag += fabs((double)w[(size_t)r * cols + c]) * x16 * 1e5;
      }
      if (fabs(y[(size_t)t * ldy + r] - s) > 1e-5 * (mag + 1e-3)) {
        fprintf(stderr, "  fused %dx%d nt=%d simd=%d thr=%d: y[%d,%d]=%.9g ref %.9g\n", rows, cols, nt, kc->simd,
                kc->nthreads, t, r, y[(size_t)t * ldy + r], s);
        bad = 1;
      }
    }
  for (int t = 0; t < nt && !bad; t++)
    if (y[(size_t)t * ldy + (size_t)rows] != 0.25f) bad = 1;
  moesz_cl_free(&m);
  free(buf); free(f); free(w); free(src); free(x); free(y);
  return !bad;
}

TEST(fused_kernels_match_decoded_weights) {
  static const int rows[] = {1, 5, 16, 37};
  static const int cols[] = {1, 63, 64, 65, 130, 256};
  static const int nts[] = {1, 2, 3, 4, 5, 9, 34, 70};
  moesz_pool *pool = moesz_pool_create(3);
  for (int thr = 0; thr < 4; thr++)
    for (int simd = 0; simd < 3; simd++) {   /* scalar, AVX2, the best the CPU has */
      moesz_kctx kc;
      CHECK(moesz_kctx_init(&kc, thr % 2 ? pool : NULL, simd == 2 ? -1 : simd, moesz_k_scratch_need(256, 16)) == 0);
      kc.cl_act = thr >= 2 ? thr - 1 : 0;   /* x split exactly, rounded to 16 bits, or also to 8 bits */
      int cases = 0, ok = 0;
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < 6; b++)
          for (int c = 0; c < 8; c++) {
            if ((a + b + c) % 2) continue;
            cases++;
            ok += check_fused(&kc, rows[a], cols[b], nts[c], (a + c) % 2, c % 3 == 0 ? 3.0 : 0.0);
          }
      CHECK_EQ_INT(ok, cases);
      moesz_kctx_free(&kc);
    }
  moesz_pool_destroy(pool);
}

/* kctx.cl_act 2 with several tokens (the 8-bit tile): groups of 1..4 bits
 * against x rounded to 8 bits per 128 columns, every other group and the
 * escapes against x in f32. Mostly 4-bit matrices (eb 4e-3 on sigma 0.02) and
 * mostly 2-bit ones (eb 1.6e-2) with a few wider groups and escapes (a row of
 * 10x sigma, outliers), column counts with a partial last group or an odd
 * group count, 5..70 tokens, accumulate on and off, serial and on a pool: the
 * sums against a double emulation of those numerics, tightly (so the 8-bit
 * path is the one taken), and away from the exact-x product (the rounding of
 * x shows). A matrix of mostly 6-bit groups (eb 1e-3) leaves the 8-bit tile
 * for the f32 tile: exact-x product there. */
TEST(fused_8bit_tile_matches_emulation) {
  if (!moesz_k_cpu_simd()) { SKIP("no AVX2"); return; }
  static const int colsv[] = {64 * 4, 130, 64 * 33 + 5, 64};
  static const int ntv[] = {5, 6, 7, 9, 13, 70};   /* up to 4 tokens: the fused 16-bit path (check_fused) */
  moesz_pool *pool = moesz_pool_create(2);
  int cases = 0, ok = 0, shown = 0;
  long n_two = 0, n_rows = 0;   /* rows checked in tasks that skip the tile, all rows checked */
  for (int pi = 0; pi < 2; pi++) {
    moesz_kctx kc;
    CHECK(moesz_kctx_init(&kc, pi ? pool : NULL, 1, moesz_k_scratch_need(64 * 33 + 5, 16)) == 0);
    kc.cl_act = 2;
    for (int ci = 0; ci < 4; ci++)
      for (int ni = 0; ni < 6; ni++)
        for (int kind = 0; kind < 3; kind++) {
          int wide = kind == 1;   /* 0: mostly 4-bit groups, 1: mostly 6-bit, 2: mostly 2-bit */
          int rows = ci == 3 ? 5 : 37, cols = colsv[ci], nt = ntv[ni], acc = (ci + ni) % 2;
          size_t n = (size_t)rows * (size_t)cols;
          float *f = malloc(n * 4), *w = malloc(n * 4);
          void *src = make(MOESZ_DT_F32, rows, cols, 0.02, 0.0, f);
          for (int c = 0; c < cols; c++) ((float *)src)[(size_t)(rows / 2) * cols + c] *= 10.0f;   /* wider groups */
          if (kind == 2)   /* in every 5th row the last group 4 bits wide: 4-bit groups among 2-bit ones */
            for (int r = 1; r < rows; r += 5)
              for (int c = ((cols + 63) / 64 - 1) * 64; c < cols; c++) ((float *)src)[(size_t)r * cols + c] *= 4.0f;
          ((float *)src)[3] = 5.0f;                                                                  /* escapes */
          ((float *)src)[n - 1] = -4.0f;
          void *buf;
          size_t len;
          moesz_error err;
          moesz_cl m;
          if (enc(src, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, wide ? 1e-3 : kind ? 1.6e-2 : 4e-3, &buf, &len, NULL, &err) ||
              moesz_cl_parse(buf, len, &m, &err)) { CHECK(0); free(f); free(w); free(src); continue; }
          moesz_cl_decode(&m, w);
          size_t ldx = (size_t)cols + 5, ldy = (size_t)rows + 2;
          float *x, *y;
          int bad = run_cl(&kc, &m, nt, acc, ldx, ldy, 0.5f, &x, &y);
          double far = 0;   /* largest |y - exact-x product| / its magnitude */
          for (int t = 0; t < nt && !bad; t++) {
            const float *xt = x + (size_t)t * ldx;
            for (int r = 0; r < rows && !bad; r++) {
              double e8 = acc ? 0.5 : 0, ex = e8, mag = 1e-3;
              /* a task of 16 rows (r0 a multiple of 16) all mostly of 2-bit groups skips the tile: its 2- and
               * 4-bit groups meet 8-bit x, groups of 1 and 3 bits f32 x; the tile takes 1 to 4 bits */
              int two = 1;
              for (int i = r / 16 * 16; i < r / 16 * 16 + 16 && i < rows; i++) two &= (m.usual[i] & MOESZ_CL_MOSTLY2) != 0;
              n_two += two;
              n_rows++;
              for (int g = 0; g < (int)m.ngroups; g++) {
                int b = moesz_cl_width(&m, r, g), c0 = g * 64, p0 = g / 2 * 128;
                float mx = 0;
                for (int c = p0; c < p0 + 128 && c < cols; c++) mx = fmaxf(mx, fabsf(xt[c]));
                float sc = mx > 0 ? mx / 127.0f : 1.0f, inv = mx > 0 ? 127.0f / mx : 0.0f;
                for (int c = c0; c < c0 + 64 && c < cols; c++) {
                  double wv = w[(size_t)r * cols + c], xv = xt[c];
                  int is_esc = 0;
                  for (uint32_t k = m.esc_start[r]; k < m.esc_start[r + 1]; k++) is_esc |= m.esc_idx[k] == (uint32_t)((size_t)r * cols + c);
                  int b8 = two ? b == 2 || b == 4 : b >= 1 && b <= 4;
                  double x8 = (!wide && b8 && !is_esc) ? (double)sc * (double)nearbyintf(xt[c] * inv) : xv;
                  /* the half grid's share of a weight meets x in f32 (the row's sum of x) */
                  e8 += is_esc ? wv * xv : (wv - m.half) * x8 + (double)m.half * xv;
                  ex += wv * xv;
                  mag += fabs(wv * xv);
                }
              }
              double got = y[(size_t)t * ldy + r];
              if (fabs(got - e8) > (wide ? 1e-4 : 2e-6) * mag) {
                if (shown++ < 5)
                  fprintf(stderr, "  8-bit tile %dx%d nt=%d wide=%d pool=%d: y[%d,%d]=%.9g emulated %.9g (exact x %.9g)\n",
                          rows, cols, nt, wide, pi, t, r, got, e8, ex);
                bad = 1;
              }
              if (fabs(got - ex) / mag > far) far = fabs(got - ex) / mag;
            }
          }
          for (int t = 0; t < nt && !bad; t++)
            if (y[(size_t)t * ldy + (size_t)rows] != 0.5f) bad = 1;   /* nothing past the rows */
          if (!wide && !bad && far < 1e-4) { if (shown++ < 5) fprintf(stderr, "  8-bit tile not taken: %g\n", far); bad = 1; }
          cases++;
          ok += !bad;
          moesz_cl_free(&m);
          free(buf); free(f); free(w); free(src); free(x); free(y);
        }
    moesz_kctx_free(&kc);
  }
  CHECK_EQ_INT(ok, cases);
  CHECK_MSG(n_two > 0 && n_two < n_rows, "%ld of %ld rows in tasks of 2-bit rows", n_two, n_rows);
  moesz_pool_destroy(pool);
}

/* Every group width 0..15 in one layout (group g of row r filled with codes
 * spanning width (r + g) % 16, plus escapes), column counts giving odd and even
 * group counts and a partial last group, and rows mostly of one width with a
 * few groups of any other: the one-token fused kernels (scalar,
 * AVX2, the best the CPU has; x split exactly and rounded to 16 bits) against
 * a double product with the decoded weights, and the SIMD sums against the
 * scalar twin's. */
TEST(fused_one_and_two_tokens_every_width) {
  static const int colsv[] = {64 * 5, 64 * 6 + 17, 64 * 3 + 1, 63, 64 * 40 + 3, 64 * 40};
  for (int ci = 0; ci < 6; ci++) {
    int rows = 19, cols = colsv[ci];
    size_t n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * 4), *w = malloc(n * 4), *xx = malloc((size_t)cols * 16), y[3][4 * 19];
    void *buf;
    size_t len;
    moesz_error err;
    moesz_cl m;
    moesz_cl_info info;
    /* the step the encoder uses at this bound, so that the codes are the ones drawn */
    float step = 0, one = 0.01f;
    CHECK(enc(&one, MOESZ_DT_F32, 1, 1, MOESZ_EB_ABS, 1e-3, &buf, &len, NULL, &err) == 0);
    CHECK(moesz_cl_parse(buf, len, &m, &err) == 0);
    step = m.step;
    moesz_cl_free(&m);
    free(buf);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        /* the last two shapes: rows mostly of one width 2..6, two rows of each in
         * turn (the kernels' copies for a row's usual width; the 8-bit path's rows
         * of 2-bit groups), every 19th group of another width, at a column that
         * moves with the row */
        int b = (r + c / 64) % 16, q = 0;
        if (ci >= 4 && (c / 64 + r) % 19 != 7) b = 2 + r / 2 % 5;
        if (g_grid == MOESZ_CL_GRID_HALF && b == 15) b = 14;   /* |2q + 1| < 2^14 there */
        if (b) q = (int)(urand() * (double)(1 << b)) - (1 << (b - 1));
        if (b && c % 64 < 2) q = c % 64 ? (1 << (b - 1)) - 1 : -(1 << (b - 1));   /* both ends of the range */
        f[(size_t)r * cols + c] = ((float)q + (g_grid == MOESZ_CL_GRID_HALF ? 0.5f : 0.0f)) * step;
        if (c % 97 == 13) f[(size_t)r * cols + c] = (float)(0.3 + urand());   /* escapes */
      }
    CHECK(enc(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, &buf, &len, &info, &err) == 0);
    CHECK(moesz_cl_parse(buf, len, &m, &err) == 0);
    if (ci == 0)
      for (int b = 0; b <= MOESZ_CL_MAXW - (g_grid == MOESZ_CL_GRID_HALF); b++) CHECK_MSG(info.groups_by_width[b] > 0, "no group of width %d (%llu %llu %llu)", b, (unsigned long long)info.groups_by_width[b - 1], (unsigned long long)info.groups_by_width[b + 1], (unsigned long long)info.escapes);
    CHECK(info.escapes > 0);
    moesz_cl_decode(&m, w);
    for (int c = 0; c < 4 * cols; c++) xx[c] = (float)gauss();
    void *scr = aligned_alloc(64, (moesz_k_cl_scratch_bytes(cols) + 63) / 64 * 64);
    moesz_kctx best;
    CHECK(moesz_kctx_init(&best, NULL, -1, 16) == 0);
    int simds[3] = {0, moesz_k_cpu_simd(), best.simd};
    moesz_kctx_free(&best);
    unsigned char *esc = calloc(n, 1);
    for (uint64_t e = 0; e < m.n_esc; e++) esc[m.esc_idx[e]] = 1;
    for (int nt = 1; nt <= 4; nt++)   /* one token (decode), 2..4 (streams): each group unpacked once */
    for (int a16 = 0; a16 < 3; a16++) {   /* x split exactly, rounded to 16 bits, 4-bit groups at 8 bits (one token) */
      for (int s = 0; s < 3; s++)
        moesz_k_cl_rows(&m, 0, rows, xx, (size_t)cols, nt, y[s], (size_t)rows, 0, simds[s], a16, s ? scr : NULL, 0);
      int bad = 0, a8 = a16 == 2;
      for (int t = 0; t < nt; t++)
      for (int r = 0; r < rows; r++) {
        const float *x = xx + (size_t)t * cols;
        double ref = 0, ref8 = 0, mag = 0, x16 = 0;
        float inv8 = 0, s8 = 1;
        /* the kernels' rule for the 8-bit path: the row's first width byte is two 4-bit groups
         * and at least 7 in 8 of its full width bytes are (or its one group is 4 bits wide), or
         * else at least half of its full width bytes are two 2-bit groups (or its one group is 2
         * bits wide); such a row's 4-bit groups (a 2-bit row's 2- and 4-bit groups) meet 8-bit x;
         * with 2..4 tokens only the 2-bit rows do (their other groups f32 x) */
        int nb = (int)(m.ngroups / 2), same4 = 0, same2 = 0;
        for (int k = 0; k < nb; k++) {
          same4 += m.widths[(size_t)r * m.wstride + k] == 0x44;
          same2 += m.widths[(size_t)r * m.wstride + k] == 0x22;
        }
        int usual4 = nb > 0 ? m.widths[(size_t)r * m.wstride] == 0x44 && same4 * 8 >= nb * 7
                            : (m.widths[(size_t)r * m.wstride] & 15) == 4;
        int usual2 = !usual4 && (nb > 0 ? same2 * 2 >= nb : (m.widths[(size_t)r * m.wstride] & 15) == 2);
        if (ci >= 4 && r / 2 % 5 == 0) CHECK(usual2);   /* the shapes make such rows, two in a row */
        for (int c = 0; c < cols; c++) {
          double wc = w[(size_t)r * cols + c];
          if (c % 64 == 0) {
            double mx = 0, mp = 0;   /* its block's largest |x| (4 groups: 16-bit x's scale), its pair's (128 columns) */
            for (int i = c / 256 * 256; i < c / 256 * 256 + 256 && i < cols; i++) mx = fmax(mx, fabs(x[i]));
            for (int i = c / 128 * 128; i < c / 128 * 128 + 128 && i < cols; i++) mp = fmax(mp, fabs(x[i]));
            x16 = mx / 32639 / 2;   /* the coarser of the AVX2 (32767) and VBMI (127 * 257) steps */
            s8 = mp > 0 ? (float)mp / 127.0f : 1.0f;
            inv8 = mp > 0 ? 127.0f / (float)mp : 0.0f;
          }
          ref += wc * x[c];
          /* SIMD kernels in 8-bit mode: a 4-bit group's codes meet x rounded as the kernel rounds
           * it (modelled exactly, so a wrong code or column pairing shows); escapes keep f32 x */
          int bw = moesz_cl_width(&m, r, c / 64);
          if (((usual4 && nt == 1) || usual2) && (bw == 4 || (usual2 && bw == 2)) && !esc[(size_t)r * cols + c])
            ref8 += (wc - m.half) * (double)s8 * (double)nearbyintf(x[c] * inv8) + (double)m.half * x[c];
          else ref8 += wc * x[c];
          mag += fabs(wc * x[c]);
          if (a16) mag += fabs(wc) * x16 * 1e5;
        }
        for (int s = 0; s < 3; s++)
          if (fabs(y[s][t * rows + r] - (a8 && simds[s] ? ref8 : ref)) > 1e-5 * (mag + 1e-3)) {
            fprintf(stderr, "  cols %d token %d of %d row %d kernel %d act %d: %.9g vs %.9g\n", cols, t, nt, r, s, a16,
                    y[s][t * rows + r], a8 && simds[s] ? ref8 : ref);
            bad = 1;
          }
        /* exact split: SIMD and scalar sums agree to f32 rounding of the magnitudes */
        if (!a16 && fabs(y[1][t * rows + r] - y[0][t * rows + r]) > 1e-5 * (mag + 1e-3)) bad = 1;
      }
      CHECK_MSG(!bad, "cols %d tokens %d act %d", cols, nt, a16);
    }
    moesz_cl_free(&m);
    free(esc); free(scr); free(buf); free(f); free(w); free(xx);
  }
}

/* Rewrites a layout's checksum (header bytes 56..63) after an edit, so the
 * structural checks behind it are reached. */
static void reseal(uint8_t *b, size_t len) {
  uint64_t h = XXH3_64bits_withSeed(b + 64, len - 64, XXH3_64bits(b, 56));
  memcpy(b + 56, &h, 8);
}

TEST(hostile_layouts_rejected) {
  int rows = 6, cols = 130;
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4);
  free(make(MOESZ_DT_F32, rows, cols, 0.02, 2.0, f));
  /* row 0: codes -1..1, four 5s (0.01 / 0.002) that make the group 4 bits wide, and
   * at column 5 the first escape, which can be moved over a non-zero code */
  for (int c = 0; c < cols; c++) f[c] = 0.002f * (float)(c % 3 - 1);
  f[1] = f[2] = f[3] = f[4] = 0.01f;
  f[5] = 3.0f;
  f[140] = NAN;
  void *buf;
  size_t len;
  moesz_error err;
  moesz_cl m;
  CHECK(enc(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, &buf, &len, NULL, &err) == 0);
  CHECK(moesz_cl_parse(buf, len, &m, &err) == 0);
  CHECK(m.n_esc >= 2);
  moesz_cl_free(&m);
  uint8_t *cp = aligned_alloc(64, (len + 64) / 64 * 64 + 64);
  /* every truncation */
  int trunc_ok = 1;
  for (size_t k = 0; k < len; k++) {
    memcpy(cp, buf, k);
    if (moesz_cl_parse(cp, k, &m, &err) == 0) trunc_ok = 0;
  }
  CHECK(trunc_ok);
  /* any changed byte fails the checksum */
  int sum_ok = 1;
  for (size_t k = 0; k < len; k++) {
    memcpy(cp, buf, len);
    cp[k] ^= 0x10;
    if (moesz_cl_parse(cp, len, &m, &err) == 0) { sum_ok = 0; moesz_cl_free(&m); }
  }
  CHECK(sum_ok);
  /* each header field changed and resealed: rejected by the structure (a
   * changed size within the padding of the widths or of the last group, or one
   * escape fewer, is indistinguishable, so those flips reach beyond it) */
  static const size_t fields[] = {0, 8, 12, 16, 24, 32, 36, 40, 48, 52};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    memcpy(cp, buf, len);
    cp[fields[i]] ^= fields[i] == 24 || fields[i] == 16 || fields[i] == 48 ? 0x80 : fields[i] == 36 ? 0x02 : 0x01;
    reseal(cp, len);
    CHECK_MSG(moesz_cl_parse(cp, len, &m, &err) != 0, "header byte %zu", fields[i]);
  }
  /* random byte flips anywhere: parse fails, or the result decodes and multiplies safely */
  float *x = malloc(65536 * 4), y[6];
  for (int i = 0; i < 65536; i++) x[i] = 1;
  int accepted = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(cp, buf, len);
    size_t pos = (size_t)(urand() * (double)len);
    cp[pos] ^= (uint8_t)(1u << (int)(urand() * 8));
    if (pos < 56 || pos >= 64) reseal(cp, len);
    if (moesz_cl_parse(cp, len, &m, &err) == 0) {
      accepted++;
      /* (a flip may still yield another valid layout, e.g. one more all-zero row in the widths' padding) */
      float *w = malloc((size_t)m.rows * (size_t)m.cols * 4);
      moesz_cl_decode(&m, w);
      int64_t nr = m.rows < rows ? m.rows : rows;
      moesz_k_cl_rows(&m, 0, nr, x, 130, 1, y, 1, 0, 0, 0, NULL, 0);
      moesz_k_cl_rows(&m, 0, nr, x, 130, 1, y, 1, 0, moesz_k_cpu_simd(), 0, NULL, 0);
      moesz_cl_free(&m);
      free(w);
    }
  }
  CHECK(accepted < 3000);
  /* an escape over a non-zero code is rejected */
  memcpy(cp, buf, len);
  CHECK(moesz_cl_parse(cp, len, &m, &err) == 0);
  uint32_t *ei = (uint32_t *)m.esc_idx;
  moesz_cl_free(&m);
  CHECK(ei[0] == 5);
  ei[0] = 1;
  reseal(cp, len);
  CHECK(moesz_cl_parse(cp, len, &m, &err) != 0);
  free(cp); free(buf); free(f); free(x);
}

/* Largest |a - b| over N rows of V logits; *argmax_same: every row's argmax agrees. */
static double logit_diff(const float *a, const float *b, int N, int V, int *argmax_same) {
  double worst = 0;
  *argmax_same = 1;
  for (int t = 0; t < N; t++) {
    const float *x = a + (size_t)t * (size_t)V, *y = b + (size_t)t * (size_t)V;
    for (int i = 0; i < V; i++) worst = fmax(worst, fabs((double)x[i] - (double)y[i]));
    *argmax_same &= moesz_argmax(x, V) == moesz_argmax(y, V);
  }
  return worst;
}

static void fused_family(const char *fam) {
  char dir[128], msz[128];
  snprintf(dir, sizeof dir, "tests/fixtures/%s", fam);
  snprintf(msz, sizeof msz, "/tmp/moesz_test_cl_%d.msz", (int)getpid());
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  if (!m) return;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_COMPUTE;
  o.eb_mode = MOESZ_EB_STD;
  o.eb = 0.05;
  moesz_msz_summary sum;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, &sum, &e), MOESZ_OK);
  CHECK(sum.max_err_over_bound <= 1.0);
  /* the fixtures' small matrices take either grid at this bound: both run through the fused paths below */
  CHECK_MSG(sum.compute_half_grid > 0 && sum.compute_half_grid < sum.compute_matrices, "%s: %llu of %llu on the half grid",
            fam, (unsigned long long)sum.compute_half_grid, (unsigned long long)sum.compute_matrices);
  moesz_model_close(m);
  /* 0: decoded to f32; 1: fused, layouts copied into the cache (pread);
   * 2: fused, layouts used in place from the mapping, under a small budget;
   * 3: fused with x rounded to 16 bits a group (fast_dot) */
  float *lg[4] = {NULL, NULL, NULL, NULL};
  int V = 0, N = 40;
  int32_t tok[40];
  for (int k = 0; k < 4; k++) {
    moesz_engine_opts eo = {.threads = 2, .max_ctx = 64, .fast_dot = k == 3, .exact_bf16 = 1};
    moesz_cache_opts co = {.policy = MOESZ_CACHE_LRU, .dtype = k ? MOESZ_VIEW_CL : MOESZ_DT_F32};
    if (k == 2) {
      co.store.mode = MOESZ_STORE_MMAP;
      co.budget_bytes = 96u << 10;
    }
    moesz_engine *en;
    int rc = moesz_engine_open_msz(msz, &co, &eo, &en, NULL, &e);
    CHECK_MSG(rc == 0, "%s: %s", fam, e.msg);
    if (rc) break;
    V = moesz_engine_vocab(en);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    lg[k] = harness_logits(en, tok, N);
    CHECK(lg[k] != NULL);
    moesz_engine_close(en);
  }
  int argmax_same = 0;
  double worst = lg[0] && lg[1] ? logit_diff(lg[0], lg[1], N, V, &argmax_same) : 0;
  CHECK_MSG(worst <= 1e-4 && argmax_same, "%s: max |fused - f32| = %.3g, argmax same %d", fam, worst, argmax_same);
  if (lg[1] && lg[2])
    CHECK_MSG(!memcmp(lg[1], lg[2], (size_t)N * (size_t)V * sizeof(float)), "%s: in-place layouts change the logits", fam);
  /* 16-bit x: not the f32 product up to summation order, but far inside the
   * weights' own bound (measured 1.0-2.6e-4 on these logits) */
  worst = lg[0] && lg[3] ? logit_diff(lg[0], lg[3], N, V, &argmax_same) : 0;
  CHECK_MSG(worst <= 1e-3 && argmax_same, "%s: fast_dot: max |fused - f32| = %.3g, argmax same %d", fam, worst,
            argmax_same);
  for (int k = 0; k < 4; k++) free(lg[k]);
  /* a coarse bound (std 0.2: mostly 4-bit groups): decoded to f32, x rounded
   * to 16 bits, and 4-bit groups against 8-bit x (fast_dot 2), with
   * the original model's logits for the scale of the bound's own effect */
  m = NULL;
  CHECK_EQ_INT(moesz_model_open(dir, &m, &e), MOESZ_OK);
  if (!m) { unlink(msz); return; }
  o.eb = 0.2;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, &sum, &e), MOESZ_OK);
  moesz_model_close(m);
  float *l3[3] = {NULL, NULL, NULL};
  for (int k = 0; k < 3; k++) {
    moesz_engine_opts eo = {.threads = 2, .max_ctx = 64, .fast_dot = k, .exact_bf16 = 1};
    moesz_cache_opts co = {.policy = MOESZ_CACHE_LRU, .dtype = k ? MOESZ_VIEW_CL : MOESZ_DT_F32};
    moesz_engine *en;
    int rc = moesz_engine_open_msz(msz, &co, &eo, &en, NULL, &e);
    CHECK_MSG(rc == 0, "%s: %s", fam, e.msg);
    if (rc) break;
    l3[k] = harness_logits(en, tok, N);
    moesz_engine_close(en);
  }
  /* the original model, exact and with fast_dot (BF16 weights against x
   * rounded to BF16 where the CPU has AVX512_BF16; elsewhere unchanged) */
  float *lo = NULL, *lf = NULL;
  for (int k = 0; k < 2; k++) {
    moesz_engine_opts eo = {.threads = 2, .max_ctx = 64, .fast_dot = k};
    moesz_engine *en;
    if (moesz_engine_open(dir, &eo, &en, &e) == 0) {
      *(k ? &lf : &lo) = harness_logits(en, tok, N);
      moesz_engine_close(en);
    }
  }
  if (lo && lf && !moesz_cpu_avx512_bf16())
    CHECK_MSG(!memcmp(lo, lf, (size_t)N * (size_t)V * sizeof(float)), "%s: fast_dot changed a model without compute layouts", fam);
  if (l3[0] && l3[1] && l3[2] && lo) {
    int a16, a8, ab;
    double w16 = logit_diff(l3[0], l3[1], N, V, &a16), w8 = logit_diff(l3[0], l3[2], N, V, &a8);
    double wb = logit_diff(lo, l3[0], N, V, &ab);
    /* 8-bit x (the prompt's 8-bit tile and decode's 4-bit rows) moves these logits by 0.025-0.245,
     * 3-11% of what the bound itself does (decoded against the original: 0.5-2.3; it also flips
     * argmaxes of near-ties, as 8-bit x does of one here) */
    CHECK_MSG(w8 <= 0.2 * wb, "%s: 8-bit x: max |fused - f32| = %.3g against the bound's %.3g", fam, w8, wb);
    /* decode took the 8-bit path: its logits are not those of 16-bit x */
    CHECK_MSG(w8 > 4 * w16, "%s: 8-bit x not further from f32 than 16-bit x (%.3g, %.3g)", fam, w8, w16);
    /* BF16 x against BF16 weights (measured 0.026-0.030 on the BF16 fixtures) */
    int af;
    double wf = lf ? logit_diff(lo, lf, N, V, &af) : 0;
    if (wf > 0) printf("  %s: fast_dot on BF16 weights moves logits by %.3g\n", fam, wf);
    CHECK_MSG(wf <= 0.1 * wb, "%s: fast_dot on BF16 weights: max |diff| = %.3g against the bound's %.3g", fam, wf, wb);
    (void)a16; (void)a8; (void)ab;
  }
  for (int k = 0; k < 3; k++) free(l3[k]);
  free(lo);
  free(lf);
  unlink(msz);
}

TEST(fused_logits_match_f32_every_family) {
  static const char *fams[] = {"mixtral", "mixtral_stacked", "qwen2_moe", "qwen3_moe", "qwen3_moe_bf16",
                               "olmoe", "olmoe_bf16", "deepseek"};
  for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) fused_family(fams[i]);
}

TEST(compute_blobs_refuse_16bit_delivery) {
  char msz[128];
  snprintf(msz, sizeof msz, "/tmp/moesz_test_cl16_%d.msz", (int)getpid());
  moesz_model *m;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/olmoe_bf16", &m, &e), MOESZ_OK);
  if (!m) return;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_COMPUTE;
  o.eb = 1e-3;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_OK);
  moesz_model_close(m);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 16};
  moesz_cache_opts co = {.dtype = MOESZ_DT_BF16};
  moesz_engine *en;
  CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, NULL, &e), MOESZ_OK);
  if (!en) { unlink(msz); return; }
  int32_t t = 1;
  float *lg = malloc((size_t)moesz_engine_vocab(en) * sizeof *lg);
  CHECK_EQ_INT(moesz_engine_forward(en, &t, 1, 0, lg, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "F32 only") != NULL);
  moesz_engine_close(en);
  /* a codec-stream container asked for the compute layout says how to get one */
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/olmoe_bf16", &m, &e), MOESZ_OK);
  o.method = MOESZ_MSZ_CODEC;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &o, NULL, &e), MOESZ_OK);
  moesz_model_close(m);
  co.dtype = MOESZ_VIEW_CL;
  CHECK_EQ_INT(moesz_engine_open_msz(msz, &co, &eo, &en, NULL, &e), MOESZ_OK);
  if (!en) { free(lg); unlink(msz); return; }
  CHECK_EQ_INT(moesz_engine_forward(en, &t, 1, 0, lg, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "--codec compute") != NULL);
  moesz_engine_close(en);
  free(lg);
  unlink(msz);
}

/* The grids: on Gaussian weights at a coarse bound (sigma = 1.25 eb) the half
 * grid covers +-3.2 sigma with 2-bit groups where the zero grid's -2..1 leaves
 * the upper tail from 2.4 sigma to escapes and 3-bit groups; the automatic
 * choice takes it, and its weights are odd multiples of eb'. On a matrix of
 * exact zeros with a few values (width-0 groups on both grids) the sizes tie,
 * and at eb 1e-3 on the Gaussian (6.09 bits either way) they nearly do: the
 * zero grid, which keeps zeros exact, is chosen. Either way every weight keeps
 * the bound. */
TEST(grid_choice_half_or_zero) {
  int rows = 64, cols = 2048;
  size_t n = (size_t)rows * (size_t)cols;
  float *f = malloc(n * 4), *w = malloc(n * 4);
  void *src = make(MOESZ_DT_F32, rows, cols, 0.02, 0, f);
  moesz_cl_info in[3];
  moesz_error err;
  for (int gr = 0; gr < 3; gr++) {
    void *buf;
    size_t len;
    moesz_cl m;
    CHECK(moesz_cl_encode_ex(src, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1.6e-2, gr, 1, &buf, &len, &in[gr], &err) == 0);
    CHECK(moesz_cl_parse(buf, len, &m, &err) == 0);
    moesz_cl_decode(&m, w);
    CHECK(worst_ratio(f, w, n, m.eb) <= 1.0);
    int odd = 1;
    for (size_t i = 0; i < n && m.half; i++) {
      double k = (double)w[i] / m.eb;   /* escapes aside: an odd integer */
      int esc = 0;
      for (uint64_t e = 0; e < m.n_esc && !esc; e++) esc = m.esc_idx[e] == i;
      if (!esc && (k != nearbyint(k) || fmod(fabs(k), 2.0) != 1.0)) odd = 0;
    }
    CHECK(odd);
    CHECK(in[gr].half == (gr != MOESZ_CL_GRID_ZERO) && (m.half != 0) == in[gr].half);
    moesz_cl_free(&m);
    free(buf);
  }
  CHECK_MSG(in[2].bits_per_value < in[1].bits_per_value - 0.2, "half %.3f zero %.3f bits", in[2].bits_per_value,
            in[1].bits_per_value);
  CHECK(in[0].bytes == in[2].bytes);
  CHECK(in[2].groups_by_width[2] * 100 >= 97 * (uint64_t)(rows * cols / 64));
  CHECK(in[2].escapes * 2 < in[1].escapes);
  /* mostly exact zeros */
  for (size_t i = 0; i < n; i++) f[i] = i % 509 == 0 ? 0.05f : 0.0f;
  void *buf;
  size_t len;
  CHECK(moesz_cl_encode_ex(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, MOESZ_CL_GRID_AUTO, 1, &buf, &len, &in[0], &err) == 0);
  free(buf);
  CHECK(moesz_cl_encode_ex(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, MOESZ_CL_GRID_HALF, 1, &buf, &len, &in[1], &err) == 0);
  free(buf);
  CHECK(in[0].half == 0 && in[0].bytes <= in[1].bytes && in[0].groups_by_width[0] > 0);
  CHECK(moesz_cl_encode_ex(src, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, MOESZ_CL_GRID_AUTO, 1, &buf, &len, &in[0], &err) == 0);
  free(buf);
  CHECK(moesz_cl_encode_ex(src, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, MOESZ_CL_GRID_HALF, 1, &buf, &len, &in[1], &err) == 0);
  free(buf);
  CHECK(in[0].half == 0 && in[0].bytes * 0.995 < in[1].bytes);
  free(src); free(f); free(w);
}

/* The kernel and bound tests again on the half grid. */
TEST(half_grid_bound_holds) { g_grid = MOESZ_CL_GRID_HALF; bound_holds_every_dtype_mode_shape(); g_grid = MOESZ_CL_GRID_ZERO; }
TEST(half_grid_fused_kernels) { g_grid = MOESZ_CL_GRID_HALF; fused_kernels_match_decoded_weights(); g_grid = MOESZ_CL_GRID_ZERO; }
TEST(half_grid_8bit_tile) { g_grid = MOESZ_CL_GRID_HALF; fused_8bit_tile_matches_emulation(); g_grid = MOESZ_CL_GRID_ZERO; }
TEST(half_grid_every_width) { g_grid = MOESZ_CL_GRID_HALF; fused_one_and_two_tokens_every_width(); g_grid = MOESZ_CL_GRID_ZERO; }
TEST(half_grid_hostile_layouts) { g_grid = MOESZ_CL_GRID_HALF; hostile_layouts_rejected(); g_grid = MOESZ_CL_GRID_ZERO; }

int main(void) {
  RUN(bound_holds_every_dtype_mode_shape);
  RUN(threads_give_identical_bytes);
  RUN(outliers_nan_inf_kept_exactly);
  RUN(rate_near_entropy_on_gaussian);
  RUN(errors_for_bad_arguments);
  RUN(fused_kernels_match_decoded_weights);
  RUN(fused_8bit_tile_matches_emulation);
  RUN(fused_one_and_two_tokens_every_width);
  RUN(hostile_layouts_rejected);
  RUN(grid_choice_half_or_zero);
  RUN(half_grid_bound_holds);
  RUN(half_grid_fused_kernels);
  RUN(half_grid_8bit_tile);
  RUN(half_grid_every_width);
  RUN(half_grid_hostile_layouts);
  RUN(fused_logits_match_f32_every_family);
  RUN(compute_blobs_refuse_16bit_delivery);
  return DONE();
}
