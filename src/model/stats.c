/* model/stats.c - owns per-matrix statistics of model weights: mean, std,
 * min, max and the order-0 entropy of the quantization codes
 * q = round(x / (2 eb)) (the rate limit of an error-bounded quantizer with an
 * ideal entropy coder), and the conversion of a matrix view to dense f32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "moesz/model.h"
#include "moesz/tensor.h"

/* Stored runs of a view: `count` contiguous runs of `len` elements, run i at
 * data + i * ld (rows when not transposed, columns when transposed). */
static void runs_of(const moesz_matview *v, int64_t *count, int64_t *len) {
  *count = v->transposed ? v->cols : v->rows;
  *len = v->transposed ? v->rows : v->cols;
}

static int check_view(const moesz_matview *v, moesz_error *err) {
  if (!v || (!v->data && v->rows * v->cols > 0) || v->rows < 0 || v->cols < 0)
    return moesz_error_set(err, MOESZ_E_ARG, "matview: bad view");
  int64_t count, len;
  runs_of(v, &count, &len);
  if (count > 1 && v->ld < len) return moesz_error_set(err, MOESZ_E_ARG, "matview: ld < run length");
  if (moesz_dtype_size(v->dtype) == 0) return moesz_error_set(err, MOESZ_E_ARG, "matview: dtype");
  return MOESZ_OK;
}

void moesz_matview_gather(const moesz_matview *v, void *vdst) {
  size_t es = moesz_dtype_size(v->dtype);
  const uint8_t *src = v->data;
  uint8_t *dst = vdst;
  for (int64_t r = 0; r < v->rows; r++) {
    if (!v->transposed) {
      memcpy(dst + (size_t)r * (size_t)v->cols * es, src + (size_t)r * (size_t)v->ld * es, (size_t)v->cols * es);
    } else {
      for (int64_t c = 0; c < v->cols; c++)
        memcpy(dst + ((size_t)r * (size_t)v->cols + (size_t)c) * es, src + ((size_t)c * (size_t)v->ld + (size_t)r) * es, es);
    }
  }
}

int moesz_matview_to_f32(const moesz_matview *v, float *dst, moesz_error *err) {
  int rc = check_view(v, err);
  if (rc) return rc;
  int64_t count, len;
  runs_of(v, &count, &len);
  size_t es = moesz_dtype_size(v->dtype);
  if (!v->transposed) {
    for (int64_t i = 0; i < count; i++) {
      const char *src = (const char *)v->data + (size_t)i * (size_t)v->ld * es;
      if ((rc = moesz_to_f32(v->dtype, src, dst + (size_t)i * (size_t)len, (size_t)len)))
        return moesz_error_set(err, rc, "matview: cannot convert %s", moesz_dtype_name(v->dtype));
    }
    return MOESZ_OK;
  }
  float *run = malloc((size_t)(len > 0 ? len : 1) * sizeof *run);
  if (!run) return moesz_error_set(err, MOESZ_E_NOMEM, "matview");
  for (int64_t c = 0; c < count; c++) { /* column c of the logical matrix */
    const char *src = (const char *)v->data + (size_t)c * (size_t)v->ld * es;
    if ((rc = moesz_to_f32(v->dtype, src, run, (size_t)len))) {
      free(run);
      return moesz_error_set(err, rc, "matview: cannot convert %s", moesz_dtype_name(v->dtype));
    }
    for (int64_t r = 0; r < len; r++) dst[(size_t)r * (size_t)count + (size_t)c] = run[r];
  }
  free(run);
  return MOESZ_OK;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Codes are clamped to +-2^52 (beyond that doubles lose integers anyway). */
#define Q_LIMIT 4503599627370496.0
/* Histogram when the code range is below this many codes; else sort codes. */
#define HIST_MAX ((uint64_t)1 << 24)

/* round-half-even(x / (2 eb)) clamped to +-Q_LIMIT. Adding and subtracting
 * 1.5 * 2^52 rounds to the nearest integer, ties to even, in the default
 * rounding mode for |t| < 2^51 (this file is built with -ffp-contract=off
 * and without -ffast-math, so the compiler keeps both operations). */
static inline int64_t code_of(double x, double eb) {
  double t = x / (2.0 * eb);
  if (fabs(t) < 2251799813685248.0) {
    const double m = 6755399441055744.0; /* 1.5 * 2^52 */
    return (int64_t)((t + m) - m);
  }
  double c = nearbyint(t);
  if (c > Q_LIMIT) c = Q_LIMIT;
  if (c < -Q_LIMIT) c = -Q_LIMIT;
  return (int64_t)c;
}

/* Visits the view's runs converted to f32: fn(ctx, values, len) per run. */
typedef void (*run_fn)(void *ctx, const float *x, int64_t len);
static int for_runs(const moesz_matview *v, float *run, run_fn fn, void *ctx, moesz_error *err) {
  int64_t count, len;
  runs_of(v, &count, &len);
  size_t es = moesz_dtype_size(v->dtype);
  for (int64_t i = 0; i < count; i++) {
    const char *src = (const char *)v->data + (size_t)i * (size_t)v->ld * es;
    int rc = moesz_to_f32(v->dtype, src, run, (size_t)len);
    if (rc) return moesz_error_set(err, rc, "matview_stats: cannot convert %s", moesz_dtype_name(v->dtype));
    fn(ctx, run, len);
  }
  return MOESZ_OK;
}

typedef struct pass1 { double sum, mn, mx; int64_t nonfinite; } pass1;
static void p1(void *ctx, const float *x, int64_t len) {
  pass1 *a = ctx;
  double s[4] = {0, 0, 0, 0};
  float mn[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) { /* four independent lanes */
    if (!isfinite(x[j]) || !isfinite(x[j + 1]) || !isfinite(x[j + 2]) || !isfinite(x[j + 3])) break;
    for (int k = 0; k < 4; k++) {
      float y = x[j + k];
      s[k] += y;
      mn[k] = y < mn[k] ? y : mn[k];
      mx[k] = y > mx[k] ? y : mx[k];
    }
  }
  for (; j < len; j++) {
    float y = x[j];
    if (!isfinite(y)) { a->nonfinite++; continue; }
    s[0] += y;
    mn[0] = y < mn[0] ? y : mn[0];
    mx[0] = y > mx[0] ? y : mx[0];
  }
  a->sum += (s[0] + s[1]) + (s[2] + s[3]);
  for (int k = 0; k < 4; k++) {
    if (mn[k] < a->mn) a->mn = mn[k];
    if (mx[k] > a->mx) a->mx = mx[k];
  }
}

typedef struct pass2 {
  double mean, ss, eb, inv;  /* inv = 1 / (2 eb) */
  int64_t qmin;
  uint64_t *hist;   /* [nhist][range + 1] or NULL */
  size_t hstride;   /* range + 1 */
  int nhist;        /* 1 or 4 interleaved histograms (breaks store chains) */
  int64_t *codes;   /* [n finite] when hist is NULL and eb > 0 */
  size_t ncodes;
} pass2;

/* The code of x, equal to code_of(x, eb): multiply by the reciprocal and
 * redo with the division only when the product lies within 1e-6 of a
 * rounding boundary (the two differ by at most an ulp). */
static inline int64_t code_fast(double x, double eb, double inv) {
  double t = x * inv;
  if (fabs(t) < 1099511627776.0) { /* 2^40: ulp(t) <= 2^-12 */
    const double m = 6755399441055744.0;
    double q = (t + m) - m;
    if (fabs(t - q) < 0.5 - 1e-6) return (int64_t)q;
  }
  return code_of(x, eb);
}

static void p2(void *ctx, const float *x, int64_t len) {
  pass2 *a = ctx;
  double mean = a->mean, eb = a->eb, inv = a->inv, s0 = 0, s1 = 0;
  uint64_t *h = a->hist;
  int64_t qmin = a->qmin;
  if (h && a->nhist == 4) {
    size_t st = a->hstride;
    int64_t j = 0;
    for (; j + 4 <= len; j += 4) {
      double y0 = x[j], y1 = x[j + 1], y2 = x[j + 2], y3 = x[j + 3];
      if (!isfinite(y0) || !isfinite(y1) || !isfinite(y2) || !isfinite(y3)) break;
      s0 += (y0 - mean) * (y0 - mean) + (y1 - mean) * (y1 - mean);
      s1 += (y2 - mean) * (y2 - mean) + (y3 - mean) * (y3 - mean);
      h[code_fast(y0, eb, inv) - qmin]++;
      h[st + (size_t)(code_fast(y1, eb, inv) - qmin)]++;
      h[2 * st + (size_t)(code_fast(y2, eb, inv) - qmin)]++;
      h[3 * st + (size_t)(code_fast(y3, eb, inv) - qmin)]++;
    }
    for (; j < len; j++) {
      double y = x[j];
      if (!isfinite(y)) continue;
      s0 += (y - mean) * (y - mean);
      h[code_fast(y, eb, inv) - qmin]++;
    }
  } else {
    for (int64_t j = 0; j < len; j++) {
      double y = x[j];
      if (!isfinite(y)) continue;
      s0 += (y - mean) * (y - mean);
      if (h) h[code_fast(y, eb, inv) - qmin]++;
      else if (a->codes) a->codes[a->ncodes++] = code_fast(y, eb, inv);
    }
  }
  a->ss += s0 + s1;
}

static void add_entropy(moesz_matstats *out, uint64_t cnt, uint64_t n) {
  double p = (double)cnt / (double)n;
  out->entropy_bits -= p * log2(p);
  out->distinct_q++;
}

int moesz_matview_stats(const moesz_matview *v, double eb, moesz_matstats *out, moesz_error *err) {
  if (!out) return moesz_error_set(err, MOESZ_E_ARG, "matview_stats: NULL argument");
  memset(out, 0, sizeof *out);
  int rc = check_view(v, err);
  if (rc) return rc;
  if (!(eb >= 0) || !isfinite(eb))
    return moesz_error_set(err, MOESZ_E_ARG, "matview_stats: error bound %g", eb);
  out->eb = eb;
  int64_t count, len;
  runs_of(v, &count, &len);
  out->n = count * len;
  if (out->n == 0) return MOESZ_OK;
  float *run = malloc((size_t)len * sizeof *run);
  if (!run) return moesz_error_set(err, MOESZ_E_NOMEM, "matview_stats: row of %lld", (long long)len);
  /* pass 1: sum, min, max; the code range follows from min and max because
   * round(x / (2 eb)) is monotonic */
  pass1 a = {0, INFINITY, -INFINITY, 0};
  if ((rc = for_runs(v, run, p1, &a, err))) goto done;
  out->nonfinite = a.nonfinite;
  int64_t nf = out->n - a.nonfinite;
  if (nf == 0) goto done;
  out->mean = a.sum / (double)nf;
  out->min = a.mn;
  out->max = a.mx;
  /* pass 2: squared deviations and the code histogram */
  pass2 b = {out->mean, 0, eb, eb > 0 ? 1.0 / (2.0 * eb) : 0, 0, NULL, 0, 1, NULL, 0};
  if (eb > 0) {
    b.qmin = code_of(a.mn, eb);
    uint64_t range = (uint64_t)code_of(a.mx, eb) - (uint64_t)b.qmin;
    b.hstride = (size_t)range + 1;
    b.nhist = range < 65536 ? 4 : 1;
    if (range < HIST_MAX) b.hist = calloc(b.hstride * (size_t)b.nhist, sizeof *b.hist);
    else b.codes = malloc((size_t)nf * sizeof *b.codes);
    if (!b.hist && !b.codes) {
      rc = moesz_error_set(err, MOESZ_E_NOMEM, "matview_stats: code histogram");
      goto done;
    }
    if ((rc = for_runs(v, run, p2, &b, err))) goto done2;
    if (b.hist) {
      for (int r = 1; r < b.nhist; r++)
        for (size_t k = 0; k < b.hstride; k++) b.hist[k] += b.hist[(size_t)r * b.hstride + k];
      for (uint64_t k = 0; k <= range; k++)
        if (b.hist[k]) add_entropy(out, b.hist[k], (uint64_t)nf);
    } else {
      qsort(b.codes, b.ncodes, sizeof *b.codes, cmp_i64);
      for (size_t i = 0, j; i < b.ncodes; i = j) {
        for (j = i + 1; j < b.ncodes && b.codes[j] == b.codes[i];) j++;
        add_entropy(out, j - i, b.ncodes);
      }
    }
  } else if ((rc = for_runs(v, run, p2, &b, err))) {
    goto done;
  }
  out->std = sqrt(b.ss / (double)nf);
done2:
  free(b.hist);
  free(b.codes);
done:
  free(run);
  if (rc) {
    int64_t n = out->n;
    memset(out, 0, sizeof *out);
    out->n = n;
  }
  return rc;
}
