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
  size_t total = (size_t)count * (size_t)len;
  out->n = (int64_t)total;
  if (total == 0) return MOESZ_OK;
  float *run = malloc((size_t)len * sizeof *run);
  int64_t *q = eb > 0 ? malloc(total * sizeof *q) : NULL;
  if (!run || (eb > 0 && !q)) {
    free(run);
    free(q);
    return moesz_error_set(err, MOESZ_E_NOMEM, "matview_stats: %zu values", total);
  }
  size_t es = moesz_dtype_size(v->dtype), nq = 0;
  double sum = 0, mn = INFINITY, mx = -INFINITY;
  for (int64_t i = 0; i < count; i++) {
    const char *src = (const char *)v->data + (size_t)i * (size_t)v->ld * es;
    if ((rc = moesz_to_f32(v->dtype, src, run, (size_t)len))) {
      free(run);
      free(q);
      return moesz_error_set(err, rc, "matview_stats: cannot convert %s",
                             moesz_dtype_name(v->dtype));
    }
    for (int64_t j = 0; j < len; j++) {
      double x = run[j];
      if (!isfinite(x)) { out->nonfinite++; continue; }
      sum += x;
      if (x < mn) mn = x;
      if (x > mx) mx = x;
      if (q) {
        double c = nearbyint(x / (2.0 * eb));
        if (c > Q_LIMIT) c = Q_LIMIT;
        if (c < -Q_LIMIT) c = -Q_LIMIT;
        q[nq++] = (int64_t)c;
      }
    }
  }
  int64_t nf = out->n - out->nonfinite;
  if (nf > 0) {
    double mean = sum / (double)nf, ss = 0;
    /* second pass for a numerically sound variance */
    for (int64_t i = 0; i < count; i++) {
      const char *src = (const char *)v->data + (size_t)i * (size_t)v->ld * es;
      moesz_to_f32(v->dtype, src, run, (size_t)len);
      for (int64_t j = 0; j < len; j++)
        if (isfinite(run[j])) ss += ((double)run[j] - mean) * ((double)run[j] - mean);
    }
    out->mean = mean;
    out->std = sqrt(ss / (double)nf);
    out->min = mn;
    out->max = mx;
  }
  free(run);
  if (q && nq > 0) {
    int64_t qmin = q[0], qmax = q[0];
    for (size_t i = 1; i < nq; i++) {
      if (q[i] < qmin) qmin = q[i];
      if (q[i] > qmax) qmax = q[i];
    }
    /* A histogram when the code range is small (the usual case), else sort. */
    uint64_t range = (uint64_t)qmax - (uint64_t)qmin;
    uint32_t *hist = range < (1u << 24) && nq < 0xffffffffu ? calloc((size_t)range + 1, sizeof *hist) : NULL;
    if (hist) {
      for (size_t i = 0; i < nq; i++) hist[q[i] - qmin]++;
      double h = 0;
      for (uint64_t k = 0; k <= range; k++) {
        if (!hist[k]) continue;
        double p = (double)hist[k] / (double)nq;
        h -= p * log2(p);
        out->distinct_q++;
      }
      out->entropy_bits = h;
      free(hist);
      free(q);
      return MOESZ_OK;
    }
    qsort(q, nq, sizeof *q, cmp_i64);
    double h = 0;
    size_t i = 0;
    while (i < nq) {
      size_t j = i + 1;
      while (j < nq && q[j] == q[i]) j++;
      double p = (double)(j - i) / (double)nq;
      h -= p * log2(p);
      out->distinct_q++;
      i = j;
    }
    out->entropy_bits = h;
  }
  free(q);
  return MOESZ_OK;
}
