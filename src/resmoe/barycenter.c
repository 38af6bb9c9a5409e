/* resmoe/barycenter.c - owns one layer's ResMoE and baselines: alternating
 * assignment barycenter (cost -B X_k^T by one SGEMM per expert, exact LAP,
 * B = mean of the aligned experts), residual compression (one magnitude
 * threshold per expert, or rank-r SVD of the whole n x D residual so the
 * three blocks share the left factor), restoration and accounting. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/resmoe.h"

static double frob2(const float *a, size_t n) { double s = 0; for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i]; return s; }

/* The k-th smallest of a[0..m) (0-based), reordering a: iterative quickselect. */
static float kth_smallest(float *a, size_t m, size_t k) {
  size_t lo = 0, hi = m - 1;
  while (lo < hi) {
    float pivot = a[lo + (hi - lo) / 2];
    size_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { float t = a[i]; a[i] = a[j]; a[j] = t; i++; if (j == 0) break; j--; }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/* Keeps the `keep` largest |values| of r[0..m) (one threshold), zeroes the rest. */
int moesz_resmoe_prune(float *r, size_t m, double keep) {
  size_t k = (size_t)floor(keep * (double)m);
  if (k >= m) return 0;
  float *a = malloc(m * sizeof *a);
  if (!a) return -1;
  for (size_t i = 0; i < m; i++) a[i] = fabsf(r[i]);
  float thr = k ? kth_smallest(a, m, m - k) : INFINITY;
  size_t kept = 0;
  for (size_t i = 0; i < m; i++) {
    if (fabsf(r[i]) > thr && kept < k) kept++;
    else if (fabsf(r[i]) != thr) r[i] = 0;
  }
  /* ties at the threshold fill the remaining slots in order */
  for (size_t i = 0; i < m; i++)
    if (fabsf(r[i]) == thr && thr != 0) { if (kept < k) kept++; else r[i] = 0; }
  free(a);
  return 0;
}

/* Replaces r (n x D) by its best rank-k approximation. */
static int lowrank(float *r, int n, int D, int k) {
  int mn = n < D ? n : D;
  if (k >= mn) return 0;
  float *s = malloc((size_t)mn * sizeof *s), *U = malloc((size_t)n * (size_t)mn * sizeof *U), *VT = malloc((size_t)mn * (size_t)D * sizeof *VT);
  float *a = malloc((size_t)n * (size_t)D * sizeof *a);
  if (!s || !U || !VT || !a) { free(s); free(U); free(VT); free(a); return -1; }
  memcpy(a, r, (size_t)n * (size_t)D * sizeof *a);
  int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', n, D, a, D, s, U, mn, VT, D);
  if (info == 0) {
    for (int i = 0; i < n; i++)
      for (int j = 0; j < k; j++) U[(size_t)i * (size_t)mn + (size_t)j] *= s[j];
    /* r = U[:, :k] * VT[:k, :] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, k, 1.0f, U, mn, VT, D, 0.0f, r, D);
  }
  free(s); free(U); free(VT); free(a);
  return info == 0 ? 0 : -1;
}

static int compress_residual(float *r, int n, int D, moesz_residual_kind kind, double keep, uint64_t *params, uint64_t *bytes,
                             size_t es) {
  size_t m = (size_t)n * (size_t)D;
  if (kind == MOESZ_RESIDUAL_SVD) {
    int k = (int)floor(keep * (double)n * (double)D / (double)(n + D));
    if (k < 1) k = 1;
    *params = (uint64_t)k * (uint64_t)(n + D);
    *bytes = *params * es;
    return lowrank(r, n, D, k);
  }
  size_t k = (size_t)floor(keep * (double)m);
  *params = k;
  *bytes = k * (es + 4);               /* value + u32 position */
  return moesz_resmoe_prune(r, m, keep);
}

/* The shared expert B [n, D] and each expert's alignment perm[k] (row j of
 * the aligned expert is row perm[k][j] of X[k]): MOESZ_RESMOE alternates exact
 * assignment and averaging; MEAN_RESIDUAL is the unaligned mean; PRUNE and
 * SVD (no shared expert) give B = 0. Fills rep->iters, objective, lap_seconds. */
int moesz_resmoe_barycenter(float *const *X, int E, int n, int D, const moesz_resmoe_opts *o, float *B, int **perm,
                            moesz_resmoe_report *rep, moesz_error *err) {
  if (E < 1 || n < 1 || D < 1) return moesz_error_set(err, MOESZ_E_ARG, "resmoe: empty layer");
  size_t m = (size_t)n * (size_t)D;
  for (int k = 0; k < E; k++)
    for (int i = 0; i < n; i++) perm[k][i] = i;
  memset(B, 0, m * sizeof *B);
  if (o->method == MOESZ_RESMOE_PRUNE || o->method == MOESZ_RESMOE_SVD) return MOESZ_OK;
  if (o->method == MOESZ_RESMOE && !o->init_mean) memcpy(B, X[0], m * sizeof *B);
  else {
    for (int k = 0; k < E; k++) for (size_t i = 0; i < m; i++) B[i] += X[k][i];
    for (size_t i = 0; i < m; i++) B[i] /= (float)E;
  }
  if (o->method != MOESZ_RESMOE) return MOESZ_OK;
  float *Bn = calloc(m, sizeof *Bn), *C = malloc((size_t)n * (size_t)n * sizeof *C);
  double *cost = malloc((size_t)n * (size_t)n * sizeof *cost);
  int *asg = malloc((size_t)n * sizeof *asg);
  int rc = MOESZ_OK;
  if (!Bn || !C || !cost || !asg) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory for the %d x %d cost", n, n); goto done; }
  int max_iter = o->max_iter > 0 ? (o->max_iter > 100 ? 100 : o->max_iter) : 100;
  double tol = o->tol > 0 ? o->tol : 1e-7;
  for (int it = 0; it < max_iter && !rc; it++) {
    memset(Bn, 0, m * sizeof *Bn);
    double obj = 0;
    for (int k = 0; k < E; k++) {
      /* C = B X_k^T: similarity of barycenter row j and expert row i */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, 1.0f, B, D, X[k], D, 0.0f, C, n);
      for (size_t i = 0; i < (size_t)n * (size_t)n; i++) cost[i] = -(double)C[i];
      double tl = moesz_time_now();
      if ((rc = moesz_lap_solve(cost, n, asg, NULL, NULL, err))) break;
      rep->lap_seconds += moesz_time_now() - tl;
      memcpy(perm[k], asg, (size_t)n * sizeof *asg);
      for (int j = 0; j < n; j++) {
        const float *src = X[k] + (size_t)asg[j] * (size_t)D;
        float *dst = Bn + (size_t)j * (size_t)D;
        for (int d = 0; d < D; d++) dst[d] += src[d];
      }
    }
    if (rc) break;
    double delta = 0;
    for (size_t i = 0; i < m; i++) {
      Bn[i] /= (float)E;
      delta += ((double)Bn[i] - B[i]) * ((double)Bn[i] - B[i]);
    }
    memcpy(B, Bn, m * sizeof *B);
    for (int k = 0; k < E; k++)
      for (int j = 0; j < n; j++) {
        const float *src = X[k] + (size_t)perm[k][j] * (size_t)D, *b = B + (size_t)j * (size_t)D;
        for (int d = 0; d < D; d++) obj += ((double)src[d] - b[d]) * ((double)src[d] - b[d]);
      }
    rep->objective[rep->iters++] = obj;
    if (delta <= tol) break;
  }
done:
  free(Bn); free(C); free(cost); free(asg);
  return rc;
}

int moesz_resmoe_layer(float **X, int E, int n, int D, size_t es, const moesz_resmoe_opts *o, moesz_resmoe_report *rep,
                       moesz_error *err) {
  memset(rep, 0, sizeof *rep);
  if (E < 1 || n < 1 || D < 1) return moesz_error_set(err, MOESZ_E_ARG, "resmoe: empty layer");
  if (!(o->keep > 0 && o->keep <= 1)) return moesz_error_set(err, MOESZ_E_ARG, "resmoe: keep must be in (0, 1]");
  double t0 = moesz_time_now();
  size_t m = (size_t)n * (size_t)D;
  rep->rel_err = calloc((size_t)E, sizeof *rep->rel_err);
  double *norm = calloc((size_t)E, sizeof *norm);
  float *B = calloc(m, sizeof *B), *tmp = malloc(m * sizeof *tmp);
  int **perm = calloc((size_t)E, sizeof *perm);
  int rc = MOESZ_OK;
  if (!rep->rel_err || !norm || !B || !tmp || !perm) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); goto done; }
  for (int k = 0; k < E; k++) norm[k] = sqrt(frob2(X[k], m));
  rep->original_params = (uint64_t)E * m;
  rep->original_bytes = rep->original_params * es;
  if (o->method == MOESZ_RESMOE_PRUNE || o->method == MOESZ_RESMOE_SVD) {
    /* baselines on the raw experts */
    for (int k = 0; k < E && !rc; k++) {
      memcpy(tmp, X[k], m * sizeof *tmp);
      uint64_t p, b;
      if (compress_residual(X[k], n, D, o->method == MOESZ_RESMOE_SVD ? MOESZ_RESIDUAL_SVD : MOESZ_RESIDUAL_PRUNE, o->keep, &p, &b, es))
        rc = moesz_error_set(err, MOESZ_E_INTERNAL, "resmoe: residual compression failed");
      rep->stored_params += p;
      rep->stored_bytes += b;
      double d = 0;
      for (size_t i = 0; i < m; i++) d += ((double)X[k][i] - tmp[i]) * ((double)X[k][i] - tmp[i]);
      rep->rel_err[k] = norm[k] > 0 ? sqrt(d) / norm[k] : 0;
    }
    goto done;
  }
  for (int k = 0; k < E; k++)
    if (!(perm[k] = malloc((size_t)n * sizeof **perm))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); goto done; }
  if ((rc = moesz_resmoe_barycenter(X, E, n, D, o, B, perm, rep, err))) goto done;
  /* final alignment, residual, restoration */
  uint64_t bary = m;
  rep->stored_params = bary;
  rep->stored_bytes = bary * es;
  for (int k = 0; k < E && !rc; k++) {
    for (int j = 0; j < n; j++) memcpy(tmp + (size_t)j * (size_t)D, X[k] + (size_t)perm[k][j] * (size_t)D, (size_t)D * sizeof *tmp);
    float *R = X[k];
    for (size_t i = 0; i < m; i++) R[i] = tmp[i] - B[i];
    uint64_t p, b;
    moesz_residual_kind kind = o->method == MOESZ_RESMOE ? o->residual : MOESZ_RESIDUAL_PRUNE;
    if (compress_residual(R, n, D, kind, o->keep, &p, &b, es)) { rc = moesz_error_set(err, MOESZ_E_INTERNAL, "resmoe: SVD failed"); break; }
    rep->stored_params += p;
    rep->stored_bytes += b;
    double d = 0;
    for (size_t i = 0; i < m; i++) {
      R[i] += B[i];                       /* W' = B + R' */
      d += ((double)R[i] - tmp[i]) * ((double)R[i] - tmp[i]);
    }
    rep->rel_err[k] = norm[k] > 0 ? sqrt(d) / norm[k] : 0;
  }
done:
  for (int k = 0; perm && k < E; k++) free(perm[k]);
  free(perm);
  free(norm); free(B); free(tmp);
  rep->seconds = moesz_time_now() - t0;
  if (rc) { free(rep->rel_err); rep->rel_err = NULL; }
  return rc;
}
