/* tests/test_codec.c - the error-bounded codec: the bound in the delivered
 * dtype (F32, F16, BF16) for both pipelines and all modes, bit-exact
 * NaN/Inf/-0 and eb = 0, adversarial values, tiny and constant arrays,
 * chunk random access, thread independence, the rate against the order-0
 * entropy, hostile streams, and the container's sz method end to end.
 * MOESZ_BIG_TESTS=1 adds a 2^31 + 1000 value stream. */
#include "harness.h"
#include <sys/mman.h>
#include <unistd.h>
#include "moesz.h"
#include "codec/codec_internal.h"

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return ((double)(rng_state >> 11) + 0.5) * 0x1p-53;
}
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(2 * M_PI * urand()); }

static void fill(moesz_dtype dt, void *dst, const float *f, size_t n) {
  if (dt == MOESZ_DT_F32) memcpy(dst, f, n * 4);
  else moesz_from_f32(dt, f, dst, n);
}

/* max |decoded - original| over finite originals; counts non-finite mismatches in *bits_bad */
static double max_err(moesz_dtype in, const void *orig, moesz_dtype out, const void *dec, size_t n, size_t *bits_bad) {
  float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
  moesz_to_f32(in, orig, a, n);
  moesz_to_f32(out, dec, b, n);
  double w = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || (a[i] == 0 && signbit(a[i]))) {
      uint32_t x, y;
      memcpy(&x, &a[i], 4);
      memcpy(&y, &b[i], 4);
      if (bits_bad) *bits_bad += !(x == y || (isnan(a[i]) && isnan(b[i])));
      continue;
    }
    double e = fabs((double)a[i] - (double)b[i]);
    if (e > w || e != e) w = e;
  }
  free(a); free(b);
  return w;
}

static int round_trip(const void *src, moesz_dtype in, size_t n, double eb, moesz_pipeline pipe, moesz_dtype out,
                      moesz_eb_mode mode, int threads, double *err_out, moesz_codec_info *info_out) {
  moesz_codec_params p = {.mode = mode, .eb = eb, .pipeline = pipe, .out_dtype = out, .threads = threads};
  void *s; size_t len;
  moesz_codec_info info;
  moesz_error e = {0};
  if (moesz_codec_compress(src, in, n, &p, &s, &len, &info, &e)) { fprintf(stderr, "  compress: %s\n", e.msg); return -1; }
  moesz_dtype dd = out == MOESZ_DT_COUNT ? in : out;
  void *dec = malloc(n * 4 + 4);
  int rc = moesz_codec_decompress(s, len, dd, dec, n, threads, &e);
  size_t bits_bad = 0;
  if (!rc) *err_out = max_err(in, src, dd, dec, n, &bits_bad);
  /* F32 delivery is guaranteed too */
  if (!rc && dd != MOESZ_DT_F32) {
    rc = moesz_codec_decompress(s, len, MOESZ_DT_F32, dec, n, 1, &e);
    double e2 = max_err(in, src, MOESZ_DT_F32, dec, n, &bits_bad);
    if (e2 > *err_out || e2 != e2) *err_out = e2;
  }
  if (info_out) *info_out = info;
  free(dec);
  free(s);
  if (rc) fprintf(stderr, "  decompress: %s\n", e.msg);
  return rc ? -1 : (int)bits_bad;
}

TEST(bound_holds_every_dtype_pipeline_mode) {
  size_t n = 70000;
  float *f = malloc(n * 4);
  for (size_t i = 0; i < n; i++) f[i] = (float)(0.02 * gauss());
  f[5] = 0.9f; f[6] = -3.5f; f[7] = 1e-9f;                    /* outliers and a tiny value */
  void *src = malloc(n * 4);
  moesz_dtype dts[3] = {MOESZ_DT_F32, MOESZ_DT_F16, MOESZ_DT_BF16};
  double ebs[4] = {2e-4, 1e-3, 5e-3, 0.1};
  for (int d = 0; d < 3; d++) {
    fill(dts[d], src, f, n);
    for (int pipe = 0; pipe < 2; pipe++)
      for (int k = 0; k < 4; k++)
        for (int mode = 0; mode < 3; mode++) {
          double err = -1;
          moesz_codec_info info;
          int bad = round_trip(src, dts[d], n, ebs[k], (moesz_pipeline)pipe, MOESZ_DT_COUNT, (moesz_eb_mode)mode, 1, &err, &info);
          CHECK_MSG(bad == 0 && err >= 0 && err <= info.eb, "dtype %s pipe %d eb %g mode %d: err %g > %g",
                    moesz_dtype_name(dts[d]), pipe, ebs[k], mode, err, info.eb);
        }
  }
  /* the abs bound recorded for rel and std modes */
  fill(MOESZ_DT_F32, src, f, n);
  double err;
  moesz_codec_info info;
  round_trip(src, MOESZ_DT_F32, n, 1e-3, MOESZ_PIPE_ENTROPY, MOESZ_DT_COUNT, MOESZ_EB_REL, 1, &err, &info);
  CHECK_NEAR(info.eb, 1e-3 * (0.9 + 3.5), 1e-9);
  free(f); free(src);
}

TEST(f32_input_bf16_delivery_keeps_bound) {
  size_t n = 50000;
  float *f = malloc(n * 4);
  for (size_t i = 0; i < n; i++) f[i] = (float)(0.03 * gauss());
  for (int pipe = 0; pipe < 2; pipe++) {
    double err;
    moesz_codec_info info;
    int bad = round_trip(f, MOESZ_DT_F32, n, 2e-3, (moesz_pipeline)pipe, MOESZ_DT_BF16, MOESZ_EB_ABS, 1, &err, &info);
    CHECK(bad == 0 && err <= 2e-3);
  }
  free(f);
}

/* A bound the delivered dtype cannot meet is refused, not silently missed:
 * f32 values with no bf16 value within eb 1e-6, f32 values beyond f16's range.
 * Values the out dtype holds exactly are accepted at any bound, even 0. */
TEST(bound_out_of_reach_of_out_dtype_is_refused) {
  size_t n = 3000;
  float *f = malloc(n * 4);
  for (size_t i = 0; i < n; i++) f[i] = (float)(0.02 * gauss());
  for (int pipe = 0; pipe < 2; pipe++) {
    moesz_codec_params p = {.eb = 1e-6, .pipeline = (moesz_pipeline)pipe, .out_dtype = MOESZ_DT_BF16, .threads = 1};
    void *s = NULL;
    size_t len = 0;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_codec_compress(f, MOESZ_DT_F32, n, &p, &s, &len, NULL, &e), MOESZ_E_RANGE);
    CHECK_MSG(strstr(e.msg, "no BF16 value within") != NULL, "%s", e.msg);
    CHECK(s == NULL);
    /* f16 cannot hold 1e5 within any bound below its distance to 65504 */
    float big[4] = {0.5f, 1e5f, -0.25f, 0.125f};
    p.out_dtype = MOESZ_DT_F16;
    p.eb = 1e-2;
    CHECK_EQ_INT(moesz_codec_compress(big, MOESZ_DT_F32, 4, &p, &s, &len, NULL, &e), MOESZ_E_RANGE);
    CHECK_MSG(strstr(e.msg, "no F16 value") && strstr(e.msg, "index 1"), "%s", e.msg);
    /* bf16-exact values in f32 storage: any bound, lossless included, is met */
    for (size_t i = 0; i < n; i++) f[i] = moesz_bf16_to_f32(moesz_f32_to_bf16(f[i]));
    double ebs[2] = {1e-6, 0};
    for (int k = 0; k < 2; k++) {
      double err = -1;
      int bad = round_trip(f, MOESZ_DT_F32, n, ebs[k], (moesz_pipeline)pipe, MOESZ_DT_BF16, MOESZ_EB_ABS, 1, &err, NULL);
      CHECK_MSG(bad == 0 && err >= 0 && err <= ebs[k], "eb %g: err %g", ebs[k], err);
    }
    for (size_t i = 0; i < n; i++) f[i] = (float)(0.02 * gauss());
  }
  free(f);
}

static double entropy_bits(const uint16_t *h, size_t n, double eb) {
  /* order-0 entropy of round(x / 2eb) */
  int *cnt = calloc(1 << 16, sizeof *cnt);
  for (size_t i = 0; i < n; i++) {
    long q = lround(moesz_bf16_to_f32(h[i]) / (2 * eb));
    cnt[(q + 32768) & 0xffff]++;
  }
  double H = 0;
  for (int i = 0; i < 1 << 16; i++)
    if (cnt[i]) { double p = (double)cnt[i] / (double)n; H -= p * log2(p); }
  free(cnt);
  return H;
}

/* Where bf16's spacing approaches 2 eb (|x| ~ 0.03-0.06 at eb = 2e-4), nearest
 * rounding of x' misses the bound for many values: both pipelines nudge them
 * to the other rounding instead of storing them verbatim. */
TEST(nudged_codes_replace_verbatims_in_bf16) {
  size_t n = 200000;
  float *f = malloc(n * 4);
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) f[i] = (float)(0.02 * gauss());
  moesz_f32_to_bf16_n(f, h, n);
  double H = entropy_bits(h, n, 2e-4);
  for (int pipe = 0; pipe < 2; pipe++) {
    double err;
    moesz_codec_info info;
    CHECK_EQ_INT(round_trip(h, MOESZ_DT_BF16, n, 2e-4, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, &info), 0);
    CHECK_MSG(err <= 2e-4, "pipeline %d err %g", pipe, err);
    CHECK_MSG(info.verbatim == 0, "pipeline %d: %llu verbatim", pipe, (unsigned long long)info.verbatim);
    double bits = 8.0 * (double)info.stream_bytes / (double)n;
    /* entropy: a nudge costs a symbol; fast: a 16-bit position (7% of values here) */
    CHECK_MSG(bits <= H + (pipe ? 2.7 : 0.4), "pipeline %d %.4f bits vs H %.4f at eb 2e-4", pipe, bits, H);
  }
  /* the nudged values come back within the bound in every chunk-alone decode too */
  moesz_codec_params p = {.eb = 2e-4, .pipeline = MOESZ_PIPE_FAST, .out_dtype = MOESZ_DT_COUNT, .threads = 1, .chunk = 4096};
  void *s; size_t len;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s, &len, NULL, NULL), MOESZ_OK);
  uint16_t one[4096];
  double worst = 0;
  for (size_t c = 0; c * 4096 < n; c++) {
    size_t got = 0;
    CHECK_EQ_INT(moesz_codec_decompress_chunk(s, len, c, MOESZ_DT_BF16, one, 4096, &got, NULL), MOESZ_OK);
    for (size_t i = 0; i < got; i++) {
      double e = fabs((double)moesz_bf16_to_f32(one[i]) - (double)moesz_bf16_to_f32(h[c * 4096 + i]));
      if (e > worst) worst = e;
    }
  }
  CHECK_MSG(worst <= 2e-4, "chunk decode err %g", worst);
  free(s);
  /* chunks over 65536 values store nudge positions as u32 */
  p.chunk = 131072;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s, &len, NULL, NULL), MOESZ_OK);
  uint16_t *all = malloc(n * 2);
  CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_BF16, all, n, 2, NULL), MOESZ_OK);
  worst = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)moesz_bf16_to_f32(all[i]) - (double)moesz_bf16_to_f32(h[i]));
    if (e > worst) worst = e;
  }
  CHECK_MSG(worst <= 2e-4, "u32-position decode err %g", worst);
  free(all); free(s);
  free(f); free(h);
}

/* x = 0.125 at eb = 1e-3 sits exactly between two codes (62.5 steps), and
 * both F32 values x' miss x by a float ulp more than eb, while their BF16
 * roundings are within the bound. A BF16-checked stream delivers F32 as the
 * BF16 value widened, so no such value needs to be stored verbatim. */
TEST(bf16_stream_ties_need_no_verbatim) {
  float f[64];
  for (int i = 0; i < 64; i++) f[i] = (i % 2 ? -1.0f : 1.0f) * ldexpf(1.0f, -(i % 8) - 1) * (1 + (i / 8) / 128.0f);
  uint16_t h[64];
  moesz_f32_to_bf16_n(f, h, 64);
  for (int pipe = 0; pipe < 2; pipe++) {
    double err;
    moesz_codec_info info;
    CHECK_EQ_INT(round_trip(h, MOESZ_DT_BF16, 64, 1e-3, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, &info), 0);
    CHECK_MSG(err <= 1e-3, "pipeline %d err %g", pipe, err);
    CHECK_MSG(info.verbatim == 0, "pipeline %d: %llu verbatim", pipe, (unsigned long long)info.verbatim);
  }
}

/* 512 wide-range values: the code table would outweigh what coding saves,
 * so the stream falls back to raw chunks and no table (64-byte header, one
 * 24-byte index entry, one 16-byte chunk header), and decodes bit-exactly. */
TEST(tiny_array_stream_falls_back_to_raw) {
  uint16_t h[512];
  float f[512];
  for (int i = 0; i < 512; i++) f[i] = (float)(0.3 * gauss());
  moesz_f32_to_bf16_n(f, h, 512);
  moesz_codec_params p = {.eb = 1e-4, .pipeline = MOESZ_PIPE_ENTROPY, .out_dtype = MOESZ_DT_COUNT, .threads = 1};
  void *s; size_t len;
  moesz_codec_info info;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, 512, &p, &s, &len, &info, NULL), MOESZ_OK);
  CHECK_MSG(len == 64 + 24 + 16 + 1024, "stream of %zu bytes", len);
  uint16_t d[512];
  CHECK_EQ_INT(moesz_codec_decompress(s, len, MOESZ_DT_BF16, d, 512, 1, NULL), MOESZ_OK);
  CHECK(!memcmp(d, h, sizeof h));
  free(s);
}

TEST(nonfinite_and_negative_zero_bit_exact) {
  float f[12] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1.0f, -1.0f, 3e38f, -NAN, 1e-40f, -1e-42f, 0.5f};
  uint16_t h[12];
  for (int pipe = 0; pipe < 2; pipe++) {
    double err;
    CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, 12, 1e-2, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
    CHECK(err <= 1e-2);
    moesz_f32_to_bf16_n(f, h, 12);
    CHECK_EQ_INT(round_trip(h, MOESZ_DT_BF16, 12, 1e-2, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
    moesz_f32_to_f16_n(f, h, 12);
    CHECK_EQ_INT(round_trip(h, MOESZ_DT_F16, 12, 1e-2, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
  }
}

TEST(adversarial_values) {
  size_t n = 4096;
  float *f = malloc(n * 4);
  double eb = 1e-3, step = 2 * eb;
  /* k * 2eb +- half an ulp, ties at (k + 1/2) * 2eb, huge magnitudes, subnormals */
  for (size_t i = 0; i < n; i++) {
    double k = (double)((int)i - 2048);
    switch (i % 6) {
      case 0: f[i] = nextafterf((float)(k * step), INFINITY); break;
      case 1: f[i] = nextafterf((float)(k * step), -INFINITY); break;
      case 2: f[i] = (float)((k + 0.5) * step); break;
      case 3: f[i] = (float)(k * 1000.0 + 0.3); break;           /* bf16/f16 spacing >> 2 eb */
      case 4: f[i] = (float)(k * 1e-41); break;                  /* subnormal */
      default: f[i] = (float)(k * 0.37 * step); break;
    }
  }
  double ebs[4] = {1e-3, 0.1, 1.0 / 3.0, 7.77e-5};              /* not exactly representable */
  uint16_t *h = malloc(n * 2);
  for (int pipe = 0; pipe < 2; pipe++)
    for (int k = 0; k < 4; k++) {
      double err;
      CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, n, ebs[k], (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK_MSG(err <= ebs[k], "f32 eb %g err %g", ebs[k], err);
      moesz_f32_to_bf16_n(f, h, n);
      CHECK_EQ_INT(round_trip(h, MOESZ_DT_BF16, n, ebs[k], (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK_MSG(err <= ebs[k], "bf16 eb %g err %g", ebs[k], err);
      moesz_f32_to_f16_n(f, h, n);
      CHECK_EQ_INT(round_trip(h, MOESZ_DT_F16, n, ebs[k], (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK_MSG(err <= ebs[k], "f16 eb %g err %g", ebs[k], err);
    }
  free(f); free(h);
}

TEST(lossless_tiny_constant_and_huge_bound) {
  float f[100];
  for (int i = 0; i < 100; i++) f[i] = (float)(0.02 * gauss());
  for (int pipe = 0; pipe < 2; pipe++)
    for (size_t n = 1; n <= 100; n += 11) {
      double err;
      CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, n, 0, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK(err == 0);                                             /* eb = 0: lossless */
      CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, n, 1e-3, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK(err <= 1e-3);
      CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, n, 1e3, (moesz_pipeline)pipe, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL), 0);
      CHECK(err <= 1e3);                                           /* eb beyond the range: all codes 0 */
    }
  size_t n = 100000;
  float *c = malloc(n * 4);
  for (size_t i = 0; i < n; i++) c[i] = 0.0123f;
  moesz_codec_params p = {.eb = 1e-3, .pipeline = MOESZ_PIPE_ENTROPY, .out_dtype = MOESZ_DT_COUNT};
  void *s; size_t len;
  CHECK_EQ_INT(moesz_codec_compress(c, MOESZ_DT_F32, n, &p, &s, &len, NULL, NULL), MOESZ_OK);
  CHECK(len < n / 4);                                                /* a constant costs ~1 bit a value */
  free(s);
  double err;
  CHECK_EQ_INT(round_trip(c, MOESZ_DT_F32, n, 1e-3, MOESZ_PIPE_FAST, MOESZ_DT_COUNT, MOESZ_EB_STD, 1, &err, NULL), 0);
  CHECK(err == 0);                                                   /* std 0 -> lossless */
  free(c);
  CHECK_EQ_INT(round_trip(f, MOESZ_DT_F32, 0, 1e-3, MOESZ_PIPE_FAST, MOESZ_DT_COUNT, MOESZ_EB_ABS, 1, &err, NULL) < 0, 0);
}


TEST(rate_near_entropy_and_threads_and_chunks) {
  size_t n = 1 << 20;
  float *f = malloc(n * 4);
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) f[i] = (float)(0.02 * gauss());
  moesz_f32_to_bf16_n(f, h, n);
  double ebs[2] = {1e-3, 5e-3};
  for (int k = 0; k < 2; k++) {
    double H = entropy_bits(h, n, ebs[k]);
    moesz_codec_params p = {.eb = ebs[k], .pipeline = MOESZ_PIPE_ENTROPY, .out_dtype = MOESZ_DT_COUNT, .threads = 1};
    void *s1, *s2; size_t l1, l2;
    CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s1, &l1, NULL, NULL), MOESZ_OK);
    double bits = 8.0 * (double)l1 / (double)n;
    /* bf16 input: values whose nearest bf16 misses the bound are nudged (see docs/CODEC.md) */
    CHECK_MSG(bits <= H + 0.15, "entropy pipeline %.4f bits vs H %.4f at eb %g", bits, H, ebs[k]);
    {
      void *sf; size_t lf;
      CHECK_EQ_INT(moesz_codec_compress(f, MOESZ_DT_F32, n, &p, &sf, &lf, NULL, NULL), MOESZ_OK);
      double Hf = 0, bf = 8.0 * (double)lf / (double)n;
      int *cnt = calloc(1 << 16, sizeof *cnt);
      for (size_t i = 0; i < n; i++) cnt[(lround(f[i] / (2 * ebs[k])) + 32768) & 0xffff]++;
      for (int i = 0; i < 1 << 16; i++) if (cnt[i]) { double q = (double)cnt[i] / (double)n; Hf -= q * log2(q); }
      free(cnt);
      CHECK_MSG(bf <= Hf + 0.1, "f32 entropy pipeline %.4f bits vs H %.4f at eb %g", bf, Hf, ebs[k]);
      free(sf);
    }
    p.pipeline = MOESZ_PIPE_FAST;
    CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s2, &l2, NULL, NULL), MOESZ_OK);
    bits = 8.0 * (double)l2 / (double)n;
    CHECK_MSG(bits <= H + 1.3, "fast pipeline %.4f bits vs H %.4f at eb %g", bits, H, ebs[k]);
    free(s2);
    /* two threads: same bytes */
    p.pipeline = MOESZ_PIPE_ENTROPY;
    p.threads = 2;
    CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s2, &l2, NULL, NULL), MOESZ_OK);
    CHECK(l1 == l2 && !memcmp(s1, s2, l1));
    /* every chunk alone equals the matching slice of a full decode */
    uint16_t *all = malloc(n * 2), *one = malloc(65536 * 2);
    CHECK_EQ_INT(moesz_codec_decompress(s1, l1, MOESZ_DT_BF16, all, n, 2, NULL), MOESZ_OK);
    moesz_codec_info info;
    CHECK_EQ_INT(moesz_codec_info_read(s1, l1, &info, NULL), MOESZ_OK);
    int bad = 0;
    for (size_t c = 0; c < info.nchunks; c++) {
      size_t got = 0;
      bad += moesz_codec_decompress_chunk(s1, l1, c, MOESZ_DT_BF16, one, 65536, &got, NULL) != MOESZ_OK;
      bad += memcmp(one, all + c * info.chunk, got * 2) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(moesz_codec_decompress_chunk(s1, l1, info.nchunks, MOESZ_DT_BF16, one, 65536, NULL, NULL), MOESZ_E_RANGE);
    free(all); free(one); free(s1); free(s2);
  }
  free(f); free(h);
}

TEST(hostile_streams_rejected) {
  size_t n = 5000;
  uint16_t *h = malloc(n * 2), *out = malloc(n * 4);
  for (size_t i = 0; i < n; i++) h[i] = moesz_f32_to_bf16((float)(0.02 * gauss()));
  for (int pipe = 0; pipe < 2; pipe++) {
    moesz_codec_params p = {.eb = 1e-3, .pipeline = (moesz_pipeline)pipe, .out_dtype = MOESZ_DT_COUNT, .chunk = 1024};
    void *s; size_t len;
    CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s, &len, NULL, NULL), MOESZ_OK);
    uint8_t *b = s;
    moesz_error e = {0};
    int ok = 0;
    for (size_t cut = 0; cut < len; cut += 7) ok += moesz_codec_decompress(b, cut, MOESZ_DT_BF16, out, n, 1, &e) == MOESZ_OK;
    CHECK_EQ_INT(ok, 0);                                              /* every truncation rejected */
    ok = 0;
    for (size_t i = 0; i < len; i += 3) {                            /* every flipped byte caught */
      b[i] ^= 0x5a;
      ok += moesz_codec_decompress(b, len, MOESZ_DT_BF16, out, n, 1, &e) == MOESZ_OK;
      b[i] ^= 0x5a;
    }
    CHECK_EQ_INT(ok, 0);
    CHECK_EQ_INT(moesz_codec_decompress(b, len, MOESZ_DT_BF16, out, n - 1, 1, &e), MOESZ_E_ARG);
    CHECK_EQ_INT(moesz_codec_decompress(b, len, MOESZ_DT_I8, out, n, 1, &e), MOESZ_E_ARG);
    b[0] = 'X';
    CHECK_EQ_INT(moesz_codec_decompress(b, len, MOESZ_DT_BF16, out, n, 1, &e), MOESZ_E_FORMAT);
    free(s);
  }
  moesz_codec_params p = {.eb = -1, .out_dtype = MOESZ_DT_COUNT};
  void *s; size_t len;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s, &len, NULL, NULL), MOESZ_E_ARG);
  p.eb = 1e-3;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_I32, n, &p, &s, &len, NULL, NULL), MOESZ_E_UNSUPPORTED);
  p.chunk = 1000;
  CHECK_EQ_INT(moesz_codec_compress(h, MOESZ_DT_BF16, n, &p, &s, &len, NULL, NULL), MOESZ_E_ARG);
  free(h); free(out);
}

TEST(container_sz_round_trip_within_bound) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/qwen3_moe_bf16", &m, NULL), MOESZ_OK);
  if (!m) return;
  char path[128];
  snprintf(path, sizeof path, "/tmp/moesz_codec_%ld.msz", (long)getpid());
  for (int pipe = 0; pipe < 2; pipe++) {
    moesz_msz_opts o = {.method = MOESZ_MSZ_CODEC, .eb = 1e-3, .pipeline = pipe, .threads = 1};
    moesz_msz_summary sum;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_msz_write(m, path, &o, &sum, &e), MOESZ_OK);
    CHECK(sum.max_err_over_bound <= 1.0);
    moesz_msz *c;
    CHECK_EQ_INT(moesz_msz_open(path, &c, &e), MOESZ_OK);
    if (!c) continue;
    double worst = 0;
    for (size_t i = 0; i < moesz_msz_count(c); i++) {
      const moesz_msz_rec *r = moesz_msz_at(c, i);
      moesz_matview v;
      CHECK_EQ_INT(moesz_model_expert(m, r->layer, r->expert, 0, r->mat, &v, NULL), MOESZ_OK);
      size_t n = (size_t)(v.rows * v.cols);
      float *a = malloc(n * 4), *b = malloc(n * 4);
      moesz_matview_to_f32(&v, a, NULL);
      CHECK_EQ_INT(moesz_msz_read(c, r, MOESZ_DT_F32, b, &e), MOESZ_OK);
      for (size_t k = 0; k < n; k++) if (fabs((double)a[k] - b[k]) > worst) worst = fabs((double)a[k] - b[k]);
      free(a); free(b);
    }
    CHECK_MSG(worst <= 1e-3, "worst %g", worst);
    moesz_msz_close(c);
  }
  unlink(path);
  moesz_model_close(m);
}

TEST(big_stream_over_2_31_values) {
  if (!getenv("MOESZ_BIG_TESTS")) SKIP("set MOESZ_BIG_TESTS=1 (needs ~5 GB and a minute)");
  size_t n = (1ull << 31) + 1000;
  /* zero pages cost no memory: a constant array except a few values */
  uint16_t *src = mmap(NULL, n * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(src != MAP_FAILED);
  if (src == MAP_FAILED) return;
  src[n - 1] = moesz_f32_to_bf16(0.5f);
  src[n - 1000] = moesz_f32_to_bf16(-0.25f);
  moesz_codec_params p = {.eb = 1e-3, .pipeline = MOESZ_PIPE_FAST, .out_dtype = MOESZ_DT_COUNT, .threads = 2};
  void *s; size_t len;
  moesz_codec_info info;
  CHECK_EQ_INT(moesz_codec_compress(src, MOESZ_DT_BF16, n, &p, &s, &len, &info, NULL), MOESZ_OK);
  CHECK(info.count == n && info.nchunks == (n + 65535) / 65536);
  uint16_t one[65536];
  size_t got = 0;
  CHECK_EQ_INT(moesz_codec_decompress_chunk(s, len, info.nchunks - 1, MOESZ_DT_BF16, one, 65536, &got, NULL), MOESZ_OK);
  CHECK(got == n - (info.nchunks - 1) * 65536);
  CHECK(fabsf(moesz_bf16_to_f32(one[got - 1]) - 0.5f) <= 1e-3 && fabsf(moesz_bf16_to_f32(one[got - 1000]) + 0.25f) <= 1e-3);
  free(s);
  munmap(src, n * 2);
}

/* A context reused across arrays of different sizes and pipelines gives the
 * same streams as the one-shot calls, and decodes them identically. */
TEST(context_reuse_matches_one_shot_calls) {
  static const size_t sizes[] = {300000, 1000, 300000, 70000, 256};
  moesz_codec_ctx *x;
  moesz_error e;
  CHECK_EQ_INT(moesz_codec_ctx_create(2, &x, &e), MOESZ_OK);
  if (!x) return;
  for (int pipe = 0; pipe < 2; pipe++)
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
      size_t n = sizes[k];
      float *f = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4);
      for (size_t i = 0; i < n; i++) f[i] = (float)(gauss() * 0.02);
      moesz_codec_params p = {.eb = 1e-3, .pipeline = (moesz_pipeline)pipe, .out_dtype = MOESZ_DT_COUNT,
                              .threads = 2, .chunk = 0};
      void *s1 = NULL, *s2 = NULL;
      size_t l1 = 0, l2 = 0;
      CHECK_EQ_INT(moesz_codec_compress(f, MOESZ_DT_F32, n, &p, &s1, &l1, NULL, &e), MOESZ_OK);
      CHECK_EQ_INT(moesz_codec_compress_ctx(x, f, MOESZ_DT_F32, n, &p, &s2, &l2, NULL, &e), MOESZ_OK);
      CHECK(s1 && s2 && l1 == l2 && !memcmp(s1, s2, l1));
      CHECK_EQ_INT(moesz_codec_decompress(s1, l1, MOESZ_DT_F32, a, n, 1, &e), MOESZ_OK);
      CHECK_EQ_INT(moesz_codec_decompress_ctx(x, s1, l1, MOESZ_DT_F32, b, n, &e), MOESZ_OK);
      CHECK(!memcmp(a, b, n * 4));
      free(s1); free(s2); free(f); free(a); free(b);
    }
  moesz_codec_ctx_free(x);
}

/* The decoder's table (built from the listed symbols only) against the
 * encoder's canonical codes, entry by entry: e[r] names the one symbol whose
 * code is the low bits of r, or is 0 where no code fits (incomplete codes). */
TEST(huffman_decode_table_matches_encoder_codes) {
  uint64_t *hist = calloc(HUF_NSYM, sizeof *hist);
  uint8_t len[HUF_NSYM];
  huf_enc *he = malloc(sizeof *he);
  huf_dec *hd = malloc(sizeof *hd);
  for (int t = 0; t < 40; t++) {
    size_t nsym = t == 0 ? 3 : t == 1 ? HUF_NSYM : 2 + (size_t)(urand() * 900);
    memset(hist, 0, HUF_NSYM * sizeof *hist);
    for (size_t s = 0; s < nsym; s++)   /* Gaussian-like counts, some symbols absent */
      hist[s] = urand() < 0.2 ? 0 : (uint64_t)(1 + 1e6 * exp(-(double)s * s / (2.0 * (double)nsym * 30)) * urand());
    if (t == 2) { memset(hist, 0, HUF_NSYM * sizeof *hist); hist[nsym - 1] = 7; }   /* one symbol: incomplete */
    hist[nsym - 1] += 1;
    CHECK_EQ_INT(huf_lengths(hist, len), 0);
    huf_enc_init(he, len);
    memset(hd->e, 0xab, sizeof hd->e);  /* stale entries of another stream must not survive */
    CHECK_EQ_INT(huf_dec_init(hd, len, nsym), 0);
    int bad = 0;
    for (unsigned r = 0; r < (1u << HUF_MAXLEN); r++) {
      unsigned want = 0;
      for (size_t s = 0; s < nsym; s++)
        if (len[s] && (r & ((1u << len[s]) - 1)) == he->code[s]) want = (unsigned)(s << 4 | len[s]);
      bad += hd->e[r] != want;
    }
    CHECK_MSG(!bad, "table %d (%zu symbols): %d entries differ", t, nsym, bad);
  }
  /* a length beyond the limit, and lengths that are no prefix code, are refused */
  memset(len, 0, sizeof len);
  len[5] = HUF_MAXLEN + 1;
  CHECK_EQ_INT(huf_dec_init(hd, len, 6), -1);
  len[5] = 1; len[6] = 1; len[7] = 1;
  CHECK_EQ_INT(huf_dec_init(hd, len, 8), -1);
  CHECK_EQ_INT(huf_dec_init(hd, len, HUF_NSYM + 1), -1);
  free(hist); free(he); free(hd);
}

int main(void) {
  RUN(huffman_decode_table_matches_encoder_codes);
  RUN(bound_holds_every_dtype_pipeline_mode);
  RUN(context_reuse_matches_one_shot_calls);
  RUN(f32_input_bf16_delivery_keeps_bound);
  RUN(bound_out_of_reach_of_out_dtype_is_refused);
  RUN(nudged_codes_replace_verbatims_in_bf16);
  RUN(bf16_stream_ties_need_no_verbatim);
  RUN(tiny_array_stream_falls_back_to_raw);
  RUN(nonfinite_and_negative_zero_bit_exact);
  RUN(adversarial_values);
  RUN(lossless_tiny_constant_and_huge_bound);
  RUN(rate_near_entropy_and_threads_and_chunks);
  RUN(hostile_streams_rejected);
  RUN(container_sz_round_trip_within_bound);
  RUN(big_stream_over_2_31_values);
  return DONE();
}
