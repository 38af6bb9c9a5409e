/* tests/test_kernels_x512.c - the AVX-512 packed micro-kernels and the
 * AVX512_BF16 dot products of src/infer/kernels_x512.c, against sums computed
 * here in double. The file is built twice: natively in the library (run only
 * where the CPU has the instructions) and here against SIMDe's portable
 * AVX-512 (libsimde-dev), so the same source's tiling and column tails are
 * checked on any CPU. Also: kctx.bf16x through moesz_k_linear, which must stay
 * exact where the CPU lacks AVX512_BF16. */
#include "harness.h"
#include <stdint.h>
#include "base/cpu.h"
#include "base/pool.h"
#include "infer/kernels.h"
#include "moesz/codec.h"
#include "moesz/tensor.h"

#if defined(__has_include)
#if __has_include(<simde/x86/avx512.h>)
#define HAVE_SIMDE 1
#endif
#endif
#ifdef HAVE_SIMDE
#pragma GCC diagnostic ignored "-Wpsabi"
#define MOESZ_KX_EMULATE 1
#define KX(name) name##_emu
#include "../src/infer/kernels_x512.c"
#undef KX
#endif
/* the library's own (native) build of the same functions */
void moesz_kx_mm_f32(const float *p, int nr, const float *x, size_t ldx, int nt, size_t c, float *y,
                     size_t ldy, int acc);
size_t moesz_kx_bf16_ld(size_t cols);
void moesz_kx_x_to_bf16(const float *x, size_t ldx, int n, size_t cols, uint16_t *xb, size_t ldb);
void moesz_kx_bf16_rows(const uint16_t *w, size_t ld, size_t cols, int nr, const uint16_t *xb, size_t ldb,
                        int nt, float *y, size_t ldy, int acc);

void moesz_kx_cl8_mm(const uint8_t *tile, int64_t ng, const int8_t *const *x8, const float *const *s8, int nt,
                     float *out);
size_t moesz_kx_cl_xq_bytes(int64_t ng);
int moesz_kx_cl_quant_x(const float *x, int64_t cols, int64_t ng, int digits, void *xq);
void moesz_kx_cl_rows(const struct moesz_cl *m, int64_t r0, int64_t r1, const void *const *xq, const float *const *x,
                      int nt, int digits, float *out, size_t ldo);
typedef int clq_fn(const float *, int64_t, int64_t, int, void *);
typedef void clr_fn(const struct moesz_cl *, int64_t, int64_t, const void *const *, const float *const *, int, int,
                    float *, size_t);

typedef void cl8_fn(const uint8_t *, int64_t, const int8_t *const *, const float *const *, int, float *);
typedef void mm_fn(const float *, int, const float *, size_t, int, size_t, float *, size_t, int);
typedef void bf_fn(const uint16_t *, size_t, size_t, int, const uint16_t *, size_t, int, float *, size_t, int);

static uint64_t rng_ = 88172645463325252ull;
static double urand(void) {
  rng_ ^= rng_ << 13; rng_ ^= rng_ >> 7; rng_ ^= rng_ << 17;
  return (double)(rng_ >> 11) / 9007199254740992.0;
}

/* BF16 nearest-even rounding written out here (not the library's) */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static const size_t COLS[] = {1, 15, 16, 17, 31, 32, 33, 64, 100, 150};

/* packed f32 rows x tokens: every shape of 1..9 rows x 1..13 tokens, with and
 * without accumulate; the sums within 1e-5 of the sum of |terms| */
static int check_mm(mm_fn *mm) {
  int bad = 0;
  for (size_t ci = 0; ci < sizeof COLS / sizeof *COLS; ci++) {
    size_t c = COLS[ci], ldx = c + 3;
    for (int nr = 1; nr <= 9; nr++)
      for (int nt = 1; nt <= 13; nt++) {
        float *p = malloc(sizeof(float) * (size_t)nr * c), *x = malloc(sizeof(float) * (size_t)nt * ldx);
        size_t ldy = (size_t)nr + 2;
        float *y = malloc(sizeof(float) * (size_t)nt * ldy);
        for (size_t i = 0; i < (size_t)nr * c; i++) p[i] = (float)(urand() * 2 - 1);
        for (size_t i = 0; i < (size_t)nt * ldx; i++) x[i] = i % ldx < c ? (float)(urand() * 2 - 1) : NAN;
        for (int acc = 0; acc <= 1; acc++) {
          for (size_t i = 0; i < (size_t)nt * ldy; i++) y[i] = 0.5f;
          mm(p, nr, x, ldx, nt, c, y, ldy, acc);
          for (int t = 0; t < nt; t++)
            for (int r = 0; r < nr; r++) {
              double s = acc ? 0.5 : 0, mag = 1;
              for (size_t k = 0; k < c; k++) {
                s += (double)p[(size_t)r * c + k] * x[(size_t)t * ldx + k];
                mag += fabs((double)p[(size_t)r * c + k] * x[(size_t)t * ldx + k]);
              }
              if (!(fabs(y[(size_t)t * ldy + r] - s) <= 1e-5 * mag)) bad++;
            }
          for (int t = 0; t < nt; t++)   /* nothing written between rows' blocks */
            for (size_t r = (size_t)nr; r < ldy; r++) if (y[(size_t)t * ldy + r] != 0.5f) bad++;
        }
        free(p); free(x); free(y);
      }
  }
  return bad;
}

/* BF16 rows (row stride ld > cols, NaN beyond each row's end) x tokens
 * rounded to BF16: each product exact, so the f32 sums are within 1e-5 of
 * the sum of |terms| of the double sum */
static int check_bf16(bf_fn *rows, size_t (*ldfn)(size_t),
                      void (*tob)(const float *, size_t, int, size_t, uint16_t *, size_t)) {
  int bad = 0;
  for (size_t ci = 0; ci < sizeof COLS / sizeof *COLS; ci++) {
    size_t c = COLS[ci], ld = c + 7, ldx = c + 1, ldb = ldfn(c);
    if (ldb % 32 || ldb < c) bad++;
    for (int nr = 1; nr <= 9; nr++)
      for (int nt = 1; nt <= 13; nt++) {
        uint16_t *w = malloc(2 * (size_t)nr * ld), *xb = malloc(2 * (size_t)nt * ldb);
        float *x = malloc(sizeof(float) * (size_t)nt * ldx), *y = malloc(sizeof(float) * (size_t)nt * (size_t)nr);
        for (size_t i = 0; i < (size_t)nr * ld; i++)
          w[i] = i % ld < c ? to_bf16((float)((urand() * 2 - 1) * 3)) : 0x7fc0;   /* NaN past the row */
        for (size_t i = 0; i < (size_t)nt * ldx; i++) x[i] = (float)(urand() * 2 - 1);
        tob(x, ldx, nt, c, xb, ldb);
        for (int t = 0; t < nt; t++)
          for (size_t k = 0; k < ldb; k++)
            if (xb[(size_t)t * ldb + k] != (k < c ? to_bf16(x[(size_t)t * ldx + k]) : 0)) bad++;
        for (int acc = 0; acc <= 1; acc++) {
          for (size_t i = 0; i < (size_t)nt * (size_t)nr; i++) y[i] = -1.0f;
          rows(w, ld, c, nr, xb, ldb, nt, y, (size_t)nr, acc);
          for (int t = 0; t < nt; t++)
            for (int r = 0; r < nr; r++) {
              double s = acc ? -1.0 : 0, mag = 1;
              for (size_t k = 0; k < c; k++) {
                double pr = (double)from_bf16(w[(size_t)r * ld + k]) * from_bf16(to_bf16(x[(size_t)t * ldx + k]));
                s += pr;
                mag += fabs(pr);
              }
              if (!(fabs(y[(size_t)t * nr + r] - s) <= 1e-5 * mag)) bad++;
            }
        }
        free(w); free(xb); free(x); free(y);
      }
  }
  return bad;
}

/* The 8-bit tile's VNNI kernel: random offset codes 0..15 and 8-bit x over
 * 1, 2 and 5 groups, 1..6 tokens, against int32 sums per 32 columns and one
 * fmaf a half here: equal bit for bit natively (exact = 1); SIMDe's portable
 * FMA rounds twice, so its build within 2^-20 of the magnitudes. */
static int check_cl8(cl8_fn *fn, int exact) {
  int bad = 0;
  static const int NG[] = {1, 2, 5};
  for (int gi = 0; gi < 3; gi++) {
    int ng = NG[gi];
    size_t tb = (size_t)ng * 1024;
    uint8_t *tile = malloc(tb);
    int8_t *xb = malloc((size_t)6 * ng * 64);
    float *sb = malloc((size_t)6 * ng * sizeof(float)), out[6 * 16];
    for (size_t i = 0; i < tb; i++) tile[i] = (uint8_t)(urand() * 16);
    for (int i = 0; i < 6 * ng * 64; i++) xb[i] = (int8_t)(urand() * 255 - 127);
    for (int i = 0; i < 6 * ng; i++) sb[i] = (float)(urand() * 0.01 + 1e-4);
    const int8_t *x8[6];
    const float *s8[6];
    for (int t = 0; t < 6; t++) { x8[t] = xb + (size_t)t * ng * 64; s8[t] = sb + (size_t)t * ng; }
    for (int nt = 1; nt <= 6; nt++) {
      fn(tile, ng, x8, s8, nt, out);
      for (int t = 0; t < nt; t++)
        for (int r = 0; r < 16; r++) {
          float f = 0;
          double mag = 0;
          for (int h = 0; h < 2 * ng; h++) {
            int32_t s = 0;
            for (int k = 0; k < 8; k++)
              for (int j = 0; j < 4; j++)
                s += (int32_t)tile[(size_t)h * 512 + 64 * k + 4 * r + j] * x8[t][h * 32 + 4 * k + j];
            f = fmaf((float)s, s8[t][h / 2], f);
            mag += fabs((double)s * s8[t][h / 2]);
          }
          if (exact ? memcmp(&f, &out[16 * t + r], 4) != 0 : !(fabs((double)out[16 * t + r] - f) <= 0x1p-20 * mag)) {
            if (bad < 3) fprintf(stderr, "  cl8 ng %d nt %d: [%d][%d] %.9g vs %.9g\n", ng, nt, t, r, out[16 * t + r], f);
            bad++;
          }
        }
    }
    free(tile); free(xb); free(sb);
  }
  return bad;
}

/* x [cols] as the 16-bit quantizer rounds it (digits 2): per block of 256
 * columns s h, h = x (32639 / m) to nearest (f32), s = m / 32639, m the
 * block's largest |x|. */
static void round_x16(const float *x, int cols, double *xr) {
  for (int c0 = 0; c0 < cols; c0 += 256) {
    int c1 = c0 + 256 < cols ? c0 + 256 : cols;
    float m = 0;
    for (int c = c0; c < c1; c++) m = fabsf(x[c]) > m ? fabsf(x[c]) : m;
    float inv = m > 0 ? 32639.0f / m : 0.0f, s = m > 0 ? m / 32639.0f : 1.0f;
    for (int c = c0; c < c1; c++) xr[c] = (double)s * (double)nearbyintf(x[c] * inv);
  }
}

/* The compute-layout kernel (AVX-512 VBMI + VNNI) against sums of its codes
 * times x in double: layouts of every width 0..15 (rows of one usual width
 * 2..8 with every 5th group of another, and rows of mixed widths), escapes,
 * a partial last group and an odd group count; 1..4 tokens; x with values
 * across 2^-20..1 of a group's largest, split exactly (digits 3) or rounded
 * to 16 bits (2: against x rounded as round_x16 does). Returns the number of
 * bad sums. */
static int check_cl5(clq_fn *quant, clr_fn *rows_fn) {
  int bad = 0;
  static const int colss[] = {64, 100, 660, 2048};
  for (int ci = 0; ci < 8; ci++) {
    int rows = 14, cols = colss[ci % 4], digits = ci < 4 ? 3 : 2;
    double step = 2e-3;
    float *f = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * 4 * (size_t)cols);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        int b = r < 7 ? 2 + r : (r + c / 64) % 16, q = 0;
        if (r < 7 && (c / 64) % 5 == 2) b = (c / 64) % 16;
        if (b) q = (int)(urand() * (double)(1 << b)) - (1 << (b - 1));
        if (b && c % 64 < 2) q = c % 64 ? (1 << (b - 1)) - 1 : -(1 << (b - 1));
        f[(size_t)r * cols + c] = (float)(q * step);
        if (c % 97 == 13) f[(size_t)r * cols + c] = (float)(0.3 + urand());   /* escapes */
      }
    for (int i = 0; i < 4 * cols; i++) x[i] = (float)((urand() * 2 - 1) * pow(2.0, -20.0 * urand()));
    void *buf;
    size_t len;
    moesz_cl m;
    if (moesz_cl_encode(f, MOESZ_DT_F32, rows, cols, MOESZ_EB_ABS, 1e-3, 1, &buf, &len, NULL, NULL) ||
        moesz_cl_parse(buf, len, &m, NULL)) { free(f); free(x); return 1000; }
    size_t xb = moesz_kx_cl_xq_bytes(m.ngroups);
    uint8_t *xq = aligned_alloc(64, (4 * xb + 63) / 64 * 64);
    const void *xqp[4];
    const float *xr[4];
    double *x16 = malloc(sizeof(double) * 4 * (size_t)cols);
    for (int t = 0; t < 4; t++) {
      xqp[t] = xq + (size_t)t * xb;
      xr[t] = x + (size_t)t * cols;
      if (!quant(xr[t], cols, m.ngroups, digits, xq + (size_t)t * xb)) bad++;
      round_x16(xr[t], cols, x16 + (size_t)t * cols);
    }
    float out[4 * 14];
    for (int nt = 1; nt <= 4; nt++) {
      rows_fn(&m, 0, rows, xqp, xr, nt, digits, out, 14);
      for (int t = 0; t < nt; t++)
        for (int r = 0; r < rows; r++) {
          double ref = 0, mag = 0;
          const uint8_t *p = m.data + m.row_off[r];
          for (int64_t g = 0; g < m.ngroups; g++) {
            int b = moesz_cl_width(&m, r, g);
            for (int k = 0; k < 64 && g * 64 + k < cols; k++) {   /* wider groups: f32 x */
              double xv = digits == 2 && b <= 8 ? x16[(size_t)t * cols + g * 64 + k] : xr[t][g * 64 + k];
              double v = (double)moesz_cl_code(p, b, k) * xv;
              ref += v;
              mag += fabs(v);
            }
            p += 8 * b;
          }
          if (!(fabs((double)out[t * 14 + r] - ref) <= 1e-6 * mag + 1e-30)) {
            if (bad < 3)
              fprintf(stderr, "  cl5 cols %d digits %d nt %d: [%d][%d] %.9g vs %.9g\n", cols, digits, nt, t, r,
                      out[t * 14 + r], ref);
            bad++;
          }
        }
    }
    x[5] = __builtin_nanf("");   /* a non-finite x is refused */
    if (quant(x, cols, m.ngroups, digits, xq)) bad++;
    moesz_cl_free(&m);
    free(buf); free(f); free(x); free(xq); free(x16);
  }
  return bad;
}

TEST(cl_vbmi_emulated) {
#ifdef HAVE_SIMDE
  CHECK_EQ_INT(check_cl5(moesz_kx_cl_quant_x_emu, moesz_kx_cl_rows_emu), 0);
#else
  SKIP("no SIMDe headers (libsimde-dev)");
#endif
}

TEST(cl_vbmi_native) {
  if (!moesz_cpu_avx512_vbmi()) SKIP("this CPU has no AVX-512 VBMI/VNNI");
  CHECK_EQ_INT(check_cl5(moesz_kx_cl_quant_x, moesz_kx_cl_rows), 0);
#ifdef HAVE_SIMDE
  /* the 16-values-a-step quantizer writes the scalar one's bytes */
  enum { C = 700 };
  float x[C];
  for (int i = 0; i < C; i++) x[i] = (float)((urand() * 2 - 1) * pow(2.0, -30.0 * urand()));
  x[3] = 0;
  for (int i = 128; i < 192; i++) x[i] = 0;   /* an all-zero group */
  size_t xb = moesz_kx_cl_xq_bytes((C + 63) / 64);
  uint8_t *a = calloc(1, xb), *b = calloc(1, xb);
  for (int digits = 2; digits <= 3; digits++) {
    CHECK(moesz_kx_cl_quant_x(x, C, (C + 63) / 64, digits, a) && moesz_kx_cl_quant_x_emu(x, C, (C + 63) / 64, digits, b));
    CHECK(memcmp(a, b, xb) == 0);
  }
  free(a); free(b);
#endif
}

TEST(cl8_vnni_emulated) {
#ifdef HAVE_SIMDE
  CHECK_EQ_INT(check_cl8(moesz_kx_cl8_mm_emu, 0), 0);
#else
  SKIP("no SIMDe headers (libsimde-dev)");
#endif
}

TEST(cl8_vnni_native) {
  if (!moesz_cpu_avx512_vnni()) SKIP("this CPU has no AVX-512 F/BW/VNNI");
  CHECK_EQ_INT(check_cl8(moesz_kx_cl8_mm, 1), 0);
}

TEST(packed_f32_emulated) {
#ifdef HAVE_SIMDE
  CHECK_EQ_INT(check_mm(moesz_kx_mm_f32_emu), 0);
#else
  SKIP("no SIMDe headers (libsimde-dev)");
#endif
}

TEST(bf16_dot_emulated) {
#ifdef HAVE_SIMDE
  CHECK_EQ_INT(check_bf16(moesz_kx_bf16_rows_emu, moesz_kx_bf16_ld_emu, moesz_kx_x_to_bf16_emu), 0);
#else
  SKIP("no SIMDe headers (libsimde-dev)");
#endif
}

TEST(packed_f32_native) {
  if (!moesz_cpu_avx512_vnni()) SKIP("this CPU has no AVX-512 F/BW/VNNI");
  CHECK_EQ_INT(check_mm(moesz_kx_mm_f32), 0);
}

/* x rounded to BF16 for the AVX512_BF16 kernel: bit for bit moesz_f32_to_bf16
 * (nearest even, ties both ways, subnormals kept, NaN quiet, infinities) at
 * every length's tail and the padding zeroed. */
TEST(x_to_bf16_bits) {
  if (!moesz_cpu_avx512_bf16()) SKIP("this CPU has no AVX512_BF16");
  enum { N = 300 };
  float x[2 * N];   /* two tokens of up to N columns */
  uint16_t xb[2 * 320];
  static const uint32_t special[] = {0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7f800001u, 0xffc00000u, 0x00000001u,
                                     0x807fffffu, 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7fffffu, 0x00000000u,
                                     0x80000000u, 0x3f80c000u, 0x00008000u, 0x00018000u};
  for (int i = 0; i < 2 * N; i++) {
    uint32_t u = i < 16 ? special[i] : (uint32_t)(urand() * 4294967295.0);
    memcpy(&x[i], &u, 4);
  }
  for (int cols = 1; cols <= N; cols += cols < 40 ? 1 : 37) {
    size_t ldb = moesz_kx_bf16_ld((size_t)cols);
    memset(xb, 0xab, sizeof xb);
    moesz_kx_x_to_bf16(x, (size_t)cols, 2, (size_t)cols, xb, ldb);
    int bad = 0;
    for (int t = 0; t < 2; t++)
      for (size_t k = 0; k < ldb; k++) {
        uint16_t want = (int)k < cols ? moesz_f32_to_bf16(x[t * cols + (int)k]) : 0;
        bad += xb[(size_t)t * ldb + k] != want;
      }
    CHECK_MSG(bad == 0, "cols %d: %d values differ", cols, bad);
  }
}

TEST(bf16_dot_native) {
  if (!moesz_cpu_avx512_bf16()) SKIP("this CPU has no AVX512_BF16");
  CHECK_EQ_INT(check_bf16(moesz_kx_bf16_rows, moesz_kx_bf16_ld, moesz_kx_x_to_bf16), 0);
}

/* moesz_k_linear on BF16 rows for 1, 3 (small batch) and 40 tokens (packed;
 * two token blocks) with kctx.bf16x on and off: off, the exact sums of the
 * weights and x; on, where the context has AVX512_BF16 (kctx.dpbf16) the sums
 * with x rounded to BF16 from 2 tokens on, elsewhere (and for one token) the
 * same results as off, bit for bit.
 * emulate = 1: the context is told it has AVX512_BF16 and given the portable
 * build of the kernel, so the path's task plan, per-thread BF16 x and
 * scratch checks run on any CPU. */
static void linear_bf16x_case(int emulate, int threads, int accumulate) {
  enum { ROWS = 70, COLS_ = 200 };
  moesz_pool *pool = threads > 1 ? moesz_pool_create(threads) : NULL;
  moesz_kctx kc;
  CHECK(moesz_kctx_init(&kc, pool, -1, moesz_k_scratch_need(COLS_, 16)) == 0);
#ifdef HAVE_SIMDE
  if (emulate) {
    kc.dpbf16 = 1;
    kc.bf16_rows = moesz_kx_bf16_rows_emu;
    kc.x_to_bf16 = moesz_kx_x_to_bf16_emu;
  }
#endif
  kc.serial_macs = 0;
  uint16_t *w = malloc(2 * ROWS * COLS_);
  float *x = malloc(sizeof(float) * 40 * COLS_), *y0 = malloc(sizeof(float) * 40 * ROWS),
        *y1 = malloc(sizeof(float) * 40 * ROWS);
  for (int i = 0; i < ROWS * COLS_; i++) w[i] = to_bf16((float)(urand() * 2 - 1));
  for (int i = 0; i < 40 * COLS_; i++) x[i] = (float)(urand() * 2 - 1);
  moesz_matview v = {w, MOESZ_DT_BF16, ROWS, COLS_, COLS_, 0};
  static const int NS[] = {1, 3, 40};
  for (int ni = 0; ni < 3; ni++) {
    int n = NS[ni];
    moesz_kjob j0 = {v, x, COLS_, y0, ROWS, n, accumulate}, j1 = {v, x, COLS_, y1, ROWS, n, accumulate};
    for (int i = 0; i < 40 * ROWS; i++) y0[i] = y1[i] = 0.25f;
    kc.bf16x = 0;
    CHECK(moesz_k_linear(&kc, &j0, 1) == 0);
    kc.bf16x = 1;
    CHECK(moesz_k_linear(&kc, &j1, 1) == 0);
    int bad0 = 0, bad1 = 0, same = 1;
    for (int t = 0; t < n; t++)
      for (int r = 0; r < ROWS; r++) {
        double s = accumulate ? 0.25 : 0, sb = s, mag = 1;
        for (int k = 0; k < COLS_; k++) {
          double wv = from_bf16(w[r * COLS_ + k]);
          s += wv * x[t * COLS_ + k];
          sb += wv * from_bf16(to_bf16(x[t * COLS_ + k]));
          mag += fabs(wv * x[t * COLS_ + k]);
        }
        if (!(fabs(y0[t * ROWS + r] - s) <= 1e-5 * mag)) bad0++;
        /* one token keeps the exact matvec (BF16X_MIN in kernels.c) */
        if (!(fabs(y1[t * ROWS + r] - (kc.dpbf16 && n > 1 ? sb : s)) <= 1e-5 * mag)) bad1++;
        if (y1[t * ROWS + r] != y0[t * ROWS + r]) same = 0;
      }
    CHECK_EQ_INT(bad0, 0);
    CHECK_EQ_INT(bad1, 0);
    if (!kc.dpbf16 || n == 1) CHECK(same);
  }
  if (!emulate && threads == 2 && !accumulate)
    printf("  (AVX512_BF16 path %s on this CPU)\n", kc.dpbf16 ? "used" : "not available: exact path checked");
  free(w); free(x); free(y0); free(y1);
  moesz_kctx_free(&kc);
  moesz_pool_destroy(pool);
}

TEST(linear_bf16x) {
  for (int th = 1; th <= 2; th++)
    for (int acc = 0; acc <= 1; acc++) linear_bf16x_case(0, th, acc);
}

TEST(linear_bf16x_emulated) {
#ifdef HAVE_SIMDE
  for (int th = 1; th <= 2; th++)
    for (int acc = 0; acc <= 1; acc++) linear_bf16x_case(1, th, acc);
#else
  SKIP("no SIMDe headers (libsimde-dev)");
#endif
}

int main(void) {
  RUN(cl_vbmi_emulated);
  RUN(cl_vbmi_native);
  RUN(cl8_vnni_emulated);
  RUN(cl8_vnni_native);
  RUN(packed_f32_emulated);
  RUN(bf16_dot_emulated);
  RUN(packed_f32_native);
  RUN(bf16_dot_native);
  RUN(x_to_bf16_bits);
  RUN(linear_bf16x);
  RUN(linear_bf16x_emulated);
  return DONE();
}
