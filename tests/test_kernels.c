/* tests/test_kernels.c - infer kernels against naive double-precision
 * references: linear (F32/BF16/F16, row-major and transposed views, odd
 * sizes, 1..70 tokens, accumulate, scalar and AVX2, 1 and 3 threads; the
 * small-batch path against the reference and bit-for-bit against one-token
 * calls; small work on the calling thread against the pool, bit for bit),
 * rmsnorm, rope, softmax, silu, attention with GQA. */
#include <math.h>
#include <stdint.h>
#include "harness.h"
#include "infer/kernels.h"
#include "moesz/tensor.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* Builds a view of rows x cols in dtype dt (transposed: stored [cols, ld]);
 * ref gets the f32 values the view holds. */
static void *make_view(moesz_dtype dt, int rows, int cols, int transposed, int pad,
                       moesz_matview *v, float *ref) {
  int64_t ld = (transposed ? rows : cols) + pad;
  int64_t outer = transposed ? cols : rows;
  size_t es = moesz_dtype_size(dt);
  char *buf = calloc((size_t)(outer * ld), es);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      float f = frand();
      size_t idx = transposed ? (size_t)c * ld + r : (size_t)r * ld + c;
      if (dt == MOESZ_DT_F32) ((float *)buf)[idx] = f;
      else if (dt == MOESZ_DT_BF16) { uint16_t h = moesz_f32_to_bf16(f); ((uint16_t *)buf)[idx] = h; f = moesz_bf16_to_f32(h); }
      else { uint16_t h = moesz_f32_to_f16(f); ((uint16_t *)buf)[idx] = h; f = moesz_f16_to_f32(h); }
      ref[(size_t)r * cols + c] = f;
    }
  v->data = buf; v->dtype = dt; v->rows = rows; v->cols = cols; v->ld = ld; v->transposed = transposed;
  return buf;
}

static int check_linear(moesz_kctx *kc, moesz_dtype dt, int rows, int cols, int n, int tr, int acc) {
  moesz_matview v;
  float *ref = malloc(sizeof(float) * (size_t)rows * cols);
  void *buf = make_view(dt, rows, cols, tr, 3, &v, ref);
  size_t ldx = (size_t)cols + 1, ldy = (size_t)rows + 2;
  float *x = malloc(sizeof(float) * ldx * n), *y = malloc(sizeof(float) * ldy * n);
  for (size_t i = 0; i < ldx * n; i++) x[i] = frand();
  for (size_t i = 0; i < ldy * n; i++) y[i] = 0.5f;
  moesz_kjob j = {v, x, ldx, y, ldy, n, acc};
  int bad = moesz_k_linear(kc, &j, 1) != MOESZ_OK;
  for (int t = 0; t < n && !bad; t++)
    for (int r = 0; r < rows; r++) {
      double s = acc ? 0.5 : 0, mag = 0;
      for (int c = 0; c < cols; c++) {
        s += (double)ref[(size_t)r * cols + c] * x[(size_t)t * ldx + c];
        mag += fabs((double)ref[(size_t)r * cols + c] * x[(size_t)t * ldx + c]);
      }
      if (fabs(y[(size_t)t * ldy + r] - s) > 1e-5 * (mag + 1)) {
        fprintf(stderr, "  linear dt=%d %dx%d n=%d tr=%d acc=%d simd=%d thr=%d: y[%d,%d]=%g ref %g\n",
                dt, rows, cols, n, tr, acc, kc->simd, kc->nthreads, t, r, y[(size_t)t * ldy + r], s);
        bad = 1;
        break;
      }
    }
  /* the padding between rows of y is untouched */
  for (int t = 0; t < n && !bad; t++)
    for (size_t r = (size_t)rows; r < ldy; r++)
      if (y[(size_t)t * ldy + r] != 0.5f) { bad = 1; fprintf(stderr, "  padding written\n"); }
  free(buf); free(ref); free(x); free(y);
  return !bad;
}

TEST(linear_all_paths) {
  static const int rows[] = {1, 3, 4, 5, 17, 37, 64};
  static const int cols[] = {1, 7, 8, 9, 16, 33, 70};
  static const int ns[] = {1, 2, 3, 4, 7, 34, 70};
  static const moesz_dtype dts[] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  moesz_pool *pool = moesz_pool_create(3);
  for (int thr = 0; thr < 2; thr++)
    for (int simd = 0; simd < 3; simd++) {   /* scalar, AVX2, the best the CPU has (AVX-512) */
      moesz_kctx kc;
      CHECK(moesz_kctx_init(&kc, thr ? pool : NULL, simd == 2 ? -1 : simd, moesz_k_scratch_need(128, 128)) == 0);
      kc.serial_macs = 0;   /* small products through the pool too */
      int cases = 0, ok = 0;
      for (int d = 0; d < 3; d++)
        for (int a = 0; a < 7; a++)
          for (int b = 0; b < 7; b++)
            for (int c = 0; c < 7; c++) {
              if ((a + b + c + d) % 3) continue; /* a spread of combinations */
              int tr = (a + c) % 4 == 0, acc = (b + d) % 2;
              cases++;
              ok += check_linear(&kc, dts[d], rows[a], cols[b], ns[c], tr, acc);
            }
      CHECK_EQ_INT(ok, cases);
      moesz_kctx_free(&kc);
    }
  moesz_pool_destroy(pool);
}

TEST(linear_multi_job_and_bad_dtype) {
  moesz_pool *pool = moesz_pool_create(2);
  moesz_kctx kc;
  CHECK(moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need(64, 16)) == 0);
  moesz_matview v[3];
  float *ref[3];
  void *buf[3];
  float x[2 * 40], y[3][2 * 50];
  for (int i = 0; i < 80; i++) x[i] = frand();
  moesz_kjob jobs[3];
  int rows[3] = {50, 1, 23};
  for (int j = 0; j < 3; j++) {
    ref[j] = malloc(sizeof(float) * 50 * 40);
    buf[j] = make_view(j == 1 ? MOESZ_DT_BF16 : MOESZ_DT_F32, rows[j], 40, 0, 0, &v[j], ref[j]);
    jobs[j] = (moesz_kjob){v[j], x, 40, y[j], 50, 2, 0};
  }
  CHECK(moesz_k_linear(&kc, jobs, 3) == 0);
  for (int j = 0; j < 3; j++)
    for (int t = 0; t < 2; t++)
      for (int r = 0; r < rows[j]; r++) {
        double s = 0;
        for (int c = 0; c < 40; c++) s += (double)ref[j][r * 40 + c] * x[t * 40 + c];
        CHECK_NEAR(y[j][t * 50 + r], s, 1e-4);
      }
  moesz_kjob bad = jobs[0];
  bad.w.dtype = MOESZ_DT_I32;
  CHECK(moesz_k_linear(&kc, &bad, 1) == MOESZ_E_UNSUPPORTED);
  for (int j = 0; j < 3; j++) { free(buf[j]); free(ref[j]); }
  moesz_kctx_free(&kc);
  moesz_pool_destroy(pool);
}

TEST(rmsnorm_rope_softmax_silu) {
  float x[2 * 13], w[13], o[2 * 13];
  for (int i = 0; i < 26; i++) x[i] = frand() * 3;
  for (int i = 0; i < 13; i++) w[i] = frand();
  moesz_k_rmsnorm(o, 13, x, 13, w, 2, 13, 1e-5f);
  for (int t = 0; t < 2; t++) {
    double ss = 0;
    for (int i = 0; i < 13; i++) ss += x[t * 13 + i] * x[t * 13 + i];
    double inv = 1 / sqrt(ss / 13 + 1e-5);
    for (int i = 0; i < 13; i++) CHECK_NEAR(o[t * 13 + i], w[i] * x[t * 13 + i] * inv, 1e-5);
  }
  /* rope: rotate-half on 2 heads of width 8 at position 5 */
  float q[16], q0[16], inv_freq[4];
  for (int i = 0; i < 4; i++) inv_freq[i] = (float)(1.0 / pow(10000.0, 2.0 * i / 8));
  for (int i = 0; i < 16; i++) q0[i] = q[i] = frand();
  moesz_k_rope(q, 2, 8, 5, inv_freq);
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 8; i++) {
      int j = i % 4;
      double ang = 5.0 * inv_freq[j];
      double rot = i < 4 ? -q0[h * 8 + i + 4] : q0[h * 8 + i - 4];
      CHECK_NEAR(q[h * 8 + i], q0[h * 8 + i] * cos(ang) + rot * sin(ang), 1e-5);
    }
  float s[5] = {1, 2, 3, 1000, -1000};
  moesz_k_softmax(s, 5);
  double e = exp(-997.0) + exp(-998.0) + exp(-999.0) + 1;
  CHECK_NEAR(s[3], 1 / e, 1e-6);
  CHECK_NEAR(s[4], 0, 1e-30);
  CHECK(!isnan(s[0]));
  float g[3] = {-2, 0, 3}, u[3] = {1, 5, 2};
  moesz_k_silu_mul(g, u, 3);
  CHECK_NEAR(g[0], -2 / (1 + exp(2.0)), 1e-6);
  CHECK_NEAR(g[1], 0, 0);
  CHECK_NEAR(g[2], 2 * 3 / (1 + exp(-3.0)), 1e-5);
}

TEST(attention_gqa_causal) {
  enum { NH = 4, NKV = 2, HD = 12, POS0 = 3, N = 5, P = POS0 + N };
  float q[N * NH * HD], kc[P * NKV * HD], vc[P * NKV * HD], out[N * NH * HD];
  for (int i = 0; i < N * NH * HD; i++) q[i] = frand();
  for (int i = 0; i < P * NKV * HD; i++) { kc[i] = frand(); vc[i] = frand(); }
  moesz_pool *pool = moesz_pool_create(2);
  for (int simd = 0; simd < 2; simd++) {
    moesz_kctx kctx;
    CHECK(moesz_kctx_init(&kctx, pool, simd, moesz_k_scratch_need(8, 64)) == 0);
    moesz_k_attention(&kctx, q, NH * HD, kc, vc, POS0, N, NH, NKV, HD, 0.3f, out, NH * HD);
    for (int t = 0; t < N; t++)
      for (int h = 0; h < NH; h++) {
        int g = h / 2, p = POS0 + t;
        double sc[P], m = -1e30, sum = 0;
        for (int j = 0; j <= p; j++) {
          double d = 0;
          for (int i = 0; i < HD; i++) d += (double)q[(t * NH + h) * HD + i] * kc[(j * NKV + g) * HD + i];
          sc[j] = d * 0.3;
          if (sc[j] > m) m = sc[j];
        }
        for (int j = 0; j <= p; j++) { sc[j] = exp(sc[j] - m); sum += sc[j]; }
        for (int i = 0; i < HD; i++) {
          double o = 0;
          for (int j = 0; j <= p; j++) o += sc[j] / sum * vc[(j * NKV + g) * HD + i];
          CHECK_NEAR(out[(t * NH + h) * HD + i], o, 1e-5);
        }
      }
    moesz_kctx_free(&kctx);
  }
  moesz_pool_destroy(pool);
}

/* BF16 one-token jobs reuse a per-thread split of x: jobs with different x in
 * one call, and the same x buffer with new contents in the next call. */
TEST(linear_bf16_split_x_reuse) {
  moesz_pool *pool = moesz_pool_create(2);
  moesz_kctx kc;
  CHECK(moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need(96, 16)) == 0);
  enum { R = 40, C = 96 };
  float ref[2][R * C], xa[C], xb[C], y[4][R];
  moesz_matview v[2];
  void *buf[2];
  for (int k = 0; k < 2; k++) buf[k] = make_view(MOESZ_DT_BF16, R, C, 0, 0, &v[k], ref[k]);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < C; i++) { xa[i] = frand(); xb[i] = frand(); }
    moesz_kjob j[4] = {{v[0], xa, C, y[0], R, 1, 0}, {v[1], xb, C, y[1], R, 1, 0},
                       {v[1], xa, C, y[2], R, 1, 0}, {v[0], xb, C, y[3], R, 1, 0}};
    CHECK(moesz_k_linear(&kc, j, 4) == 0);
    for (int q = 0; q < 4; q++) {
      const float *w = ref[q == 0 || q == 3 ? 0 : 1], *x = q == 0 || q == 2 ? xa : xb;
      for (int r = 0; r < R; r++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)w[r * C + c] * x[c];
        CHECK_NEAR(y[q][r], s, 1e-4);
      }
    }
  }
  /* the same x buffer, new contents, one job per call */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < C; i++) xa[i] = frand();
    moesz_kjob j = {v[0], xa, C, y[0], R, 1, 0};
    CHECK(moesz_k_linear(&kc, &j, 1) == 0);
    for (int r = 0; r < R; r++) {
      double s = 0;
      for (int c = 0; c < C; c++) s += (double)ref[0][r * C + c] * xa[c];
      CHECK_NEAR(y[0][r], s, 1e-4);
    }
  }
  for (int k = 0; k < 2; k++) free(buf[k]);
  moesz_kctx_free(&kc);
  moesz_pool_destroy(pool);
}

/* The small-batch path (2..sb_max tokens over row-major F32/BF16/F16 rows):
 * against the double reference for 1..9 tokens (9 > sb_max: the packed
 * path), odd shapes, accumulate on and off, every simd level, 1 and 3
 * threads; and for BF16/F16 per token bit-for-bit the result of a one-token
 * call, so a token's output does not depend on the batch it shares a product
 * with (F32 rows keep the packed path: checked against the reference). */
TEST(linear_small_batch) {
  static const int rows[] = {1, 3, 5, 17, 38, 67};
  static const int cols[] = {1, 7, 9, 16, 33, 70, 130};
  static const moesz_dtype dts[] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  moesz_pool *pool = moesz_pool_create(3);
  for (int thr = 0; thr < 2; thr++)
    for (int simd = 0; simd < 3; simd++) {
      moesz_kctx kc;
      CHECK(moesz_kctx_init(&kc, thr ? pool : NULL, simd == 2 ? -1 : simd, moesz_k_scratch_need(160, 16)) == 0);
      kc.serial_macs = 0;
      CHECK(kc.sb_max >= 4 && kc.sb_max <= 16);
      int cases = 0, ok = 0, same = 0, want_same = 0;
      for (int d = 0; d < 3; d++)
        for (int a = 0; a < 6; a++)
          for (int b = 0; b < 7; b++)
            for (int n = 1; n <= 9; n++) {
              if ((a + b + n + d) % 2) continue;
              int acc = (a + n) % 2;
              cases++;
              ok += check_linear(&kc, dts[d], rows[a], cols[b], n, 0, acc);
              /* n tokens at once against n one-token calls (x stride cols + 3, y stride rows + 1) */
              moesz_matview v;
              float *ref = malloc(sizeof(float) * (size_t)rows[a] * cols[b]);
              void *buf = make_view(dts[d], rows[a], cols[b], 0, 2, &v, ref);
              size_t ldx = (size_t)cols[b] + 3, ldy = (size_t)rows[a] + 1;
              float *x = malloc(sizeof(float) * ldx * n), *y = malloc(sizeof(float) * ldy * n);
              float *y1 = malloc(sizeof(float) * ldy * n);
              for (size_t i = 0; i < ldx * n; i++) x[i] = frand();
              for (size_t i = 0; i < ldy * n; i++) y[i] = y1[i] = frand();
              moesz_kjob jn = {v, x, ldx, y, ldy, n, acc};
              CHECK(moesz_k_linear(&kc, &jn, 1) == 0);
              for (int t = 0; t < n; t++) {
                moesz_kjob j1 = {v, x + (size_t)t * ldx, ldx, y1 + (size_t)t * ldy, ldy, 1, acc};
                CHECK(moesz_k_linear(&kc, &j1, 1) == 0);
              }
              if (n <= kc.sb_max && dts[d] != MOESZ_DT_F32) {
                want_same++;
                same += !memcmp(y, y1, sizeof(float) * ldy * n);
              }
              free(buf); free(ref); free(x); free(y); free(y1);
            }
      CHECK_EQ_INT(ok, cases);
      CHECK_EQ_INT(same, want_same);
      /* the packed path (sb_max 0) agrees with the reference too */
      kc.sb_max = 0;
      CHECK(check_linear(&kc, MOESZ_DT_BF16, 37, 70, 3, 0, 1));
      CHECK(check_linear(&kc, MOESZ_DT_F32, 5, 33, 2, 0, 0));
      moesz_kctx_free(&kc);
    }
  moesz_pool_destroy(pool);
}

/* Products and attention below kctx.serial_macs run on the calling thread:
 * the same results, bit for bit, as through the pool. */
TEST(serial_small_work_same_results) {
  moesz_pool *pool = moesz_pool_create(3);
  moesz_kctx kc;
  CHECK(moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need(96, 64)) == 0);
  CHECK(kc.serial_macs > 0);
  static const moesz_dtype dts[] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  static const int ns[] = {1, 3, 20};
  for (int d = 0; d < 3; d++)
    for (int i = 0; i < 3; i++) {
      moesz_matview v;
      float ref[45 * 96], x[20 * 96], ys[20 * 45], yp[20 * 45];
      void *buf = make_view(dts[d], 45, 96, 0, 0, &v, ref);
      for (int k = 0; k < 20 * 96; k++) x[k] = frand();
      moesz_kjob js = {v, x, 96, ys, 45, ns[i], 0}, jp = {v, x, 96, yp, 45, ns[i], 0};
      kc.serial_macs = 1 << 30;
      CHECK(moesz_k_linear(&kc, &js, 1) == 0);
      kc.serial_macs = 0;
      CHECK(moesz_k_linear(&kc, &jp, 1) == 0);
      CHECK(!memcmp(ys, yp, sizeof(float) * 45 * (size_t)ns[i]));
      free(buf);
    }
  enum { NH = 4, NKV = 2, HD = 16, P = 40, N = 3 };
  static float q[N * NH * HD], kc_[P * NKV * HD], vc[P * NKV * HD], os[N * NH * HD], op[N * NH * HD];
  for (int k = 0; k < N * NH * HD; k++) q[k] = frand();
  for (int k = 0; k < P * NKV * HD; k++) { kc_[k] = frand(); vc[k] = frand(); }
  kc.serial_macs = 1 << 30;
  moesz_k_attention(&kc, q, NH * HD, kc_, vc, P - N, N, NH, NKV, HD, 0.25f, os, NH * HD);
  kc.serial_macs = 0;
  moesz_k_attention(&kc, q, NH * HD, kc_, vc, P - N, N, NH, NKV, HD, 0.25f, op, NH * HD);
  CHECK(!memcmp(os, op, sizeof os));
  moesz_kctx_free(&kc);
  moesz_pool_destroy(pool);
}

/* moesz_k_linear_on runs moesz_k_linear's tasks on one thread (inside a
 * region of the pool, as the engine's per-expert tasks do): the same results,
 * bit for bit, for one token, a small batch and the packed path, several jobs
 * (gate and up reading one x: the split-x memo), from each thread of a region. */
typedef struct { moesz_kctx *kc; const moesz_kjob *jobs; int nj; int rc[8]; } on_ctx;
static void on_task(void *vctx, size_t i, int tid) {
  on_ctx *o = vctx;
  o->rc[i] = moesz_k_linear_on(o->kc, o->jobs + 2 * i, 2, tid);
}

TEST(linear_on_thread_same_results) {
  moesz_pool *pool = moesz_pool_create(2);
  moesz_kctx kc;
  CHECK(moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need(96, 64)) == 0);
  static const moesz_dtype dts[] = {MOESZ_DT_F32, MOESZ_DT_BF16, MOESZ_DT_F16};
  static const int ns[] = {1, 4, 20};
  for (int d = 0; d < 3; d++)
    for (int i = 0; i < 3; i++) {
      enum { R = 70, C = 96, T = 4 };   /* T tasks of two jobs each */
      moesz_matview v[2];
      static float ref[2][R * C], x[20 * C], ys[2 * T][20 * R], yo[2 * T][20 * R];
      void *buf[2];
      for (int j = 0; j < 2; j++) buf[j] = make_view(dts[d], R, C, 0, 0, &v[j], ref[j]);
      for (int k = 0; k < 20 * C; k++) x[k] = frand();
      moesz_kjob js[2 * T], jo[2 * T];
      for (int j = 0; j < 2 * T; j++) {
        const float *xj = x + (size_t)(j / 2 % 2) * C;   /* tasks 0, 2 and 1, 3 read different rows */
        js[j] = (moesz_kjob){v[j % 2], xj, C, ys[j], R, ns[i] - (j / 2 % 2 && ns[i] > 1), 0};
        jo[j] = js[j];
        jo[j].y = yo[j];
      }
      memset(ys, 0, sizeof ys);
      memset(yo, 0, sizeof yo);
      kc.serial_macs = 0;
      for (int t = 0; t < T; t++) CHECK(moesz_k_linear(&kc, js + 2 * t, 2) == 0);
      on_ctx o = {&kc, jo, 2 * T, {0}};
      moesz_pool_run(pool, T, on_task, &o);
      for (int t = 0; t < T; t++) CHECK_EQ_INT(o.rc[t], 0);
      CHECK(!memcmp(ys, yo, sizeof ys));
      /* a normal call after the region: its memo is not fooled by the region's */
      kc.serial_macs = 1 << 30;
      memset(yo[0], 0, sizeof yo[0]);
      CHECK(moesz_k_linear(&kc, &jo[0], 1) == 0);
      CHECK(!memcmp(ys[0], yo[0], sizeof yo[0]));
      for (int j = 0; j < 2; j++) free(buf[j]);
    }
  CHECK_EQ_INT(moesz_k_linear_on(&kc, NULL, 0, 2), MOESZ_E_INTERNAL);
  CHECK_EQ_INT(moesz_k_linear_on(&kc, NULL, 0, -1), MOESZ_E_INTERNAL);
  moesz_kctx_free(&kc);
  moesz_pool_destroy(pool);
}

int main(void) {
  printf("# simd available: %d\n", moesz_k_cpu_simd());
  RUN(linear_all_paths);
  RUN(linear_multi_job_and_bad_dtype);
  RUN(linear_bf16_split_x_reuse);
  RUN(linear_small_batch);
  RUN(serial_small_work_same_results);
  RUN(linear_on_thread_same_results);
  RUN(rmsnorm_rope_softmax_silu);
  RUN(attention_gqa_causal);
  return DONE();
}
