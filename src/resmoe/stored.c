/* resmoe/stored.c - owns ResMoE's stored form: encoding a layer as the codec
 * stream of its barycenter B' plus one residual blob per expert taken against
 * the decoded B' (pruned residuals as positions - gap varints + zstd, a
 * bitmap, or a zstd'd bitmap, whichever is smallest - and codec-coded values;
 * SVD residuals as two codec-coded factors), the residual blob's parser and
 * the restoration W' = B' + R' (sparse add, or X += U' V' by one SGEMM).
 * Blob format: docs/CONTAINER.md; bounds: docs/RESMOE.md. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "base/util.h"
#include "moesz/resmoe.h"

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* ------------------------------------------------------------ decoding */

int moesz_resmoe_residual_info(const void *blob, size_t len, moesz_residual_info *info, moesz_error *err) {
  const uint8_t *p = blob;
  memset(info, 0, sizeof *info);
  if (len < MOESZ_RESIDUAL_HEADER) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: %zu bytes is too short for a residual blob", len);
  if (memcmp(p, MOESZ_RESIDUAL_MAGIC, 4)) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: bad magic");
  int kind = p[4], pos = p[5];
  if (kind != 1 && kind != 2) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: unknown kind %d", kind);
  if ((kind == 1 && pos > MOESZ_POS_BITMAP_ZSTD) || (kind == 2 && pos != 0) || get_le(p + 6, 2))
    return moesz_error_set(err, MOESZ_E_FORMAT, "residual: bad position coding or reserved bytes");
  info->kind = kind == 1 ? MOESZ_RESIDUAL_PRUNE : MOESZ_RESIDUAL_SVD;
  info->pos = (moesz_pos_coding)pos;
  info->rows = (uint32_t)get_le(p + 8, 4);
  info->cols = (uint32_t)get_le(p + 12, 4);
  info->count = get_le(p + 16, 8);
  info->a_len = get_le(p + 24, 8);
  info->b_len = get_le(p + 32, 8);
  if (!info->rows || !info->cols) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: empty shape");
  uint64_t body = len - MOESZ_RESIDUAL_HEADER;
  if (info->a_len > body || info->b_len != body - info->a_len)
    return moesz_error_set(err, MOESZ_E_FORMAT, "residual: sections (%llu + %llu bytes) disagree with the blob (%llu bytes; truncated?)",
                           (unsigned long long)info->a_len, (unsigned long long)info->b_len, (unsigned long long)body);
  uint64_t m = (uint64_t)info->rows * info->cols, mn = info->rows < info->cols ? info->rows : info->cols;
  if (info->kind == MOESZ_RESIDUAL_PRUNE) {
    if (info->count > m) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: %llu values for a %u x %u matrix",
                                                (unsigned long long)info->count, info->rows, info->cols);
    if (!info->count && (info->a_len || info->b_len)) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: sections without values");
    if (info->count && (!info->a_len || !info->b_len)) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: a section is missing");
  } else {
    if (info->count == 0) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: SVD rank 0");
    if (info->count > mn) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: SVD rank %llu exceeds min(%u, %u)",
                                                 (unsigned long long)info->count, info->rows, info->cols);
    if (!info->a_len || !info->b_len) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: a factor is missing");
  }
  return MOESZ_OK;
}

/* Decodes a codec section of exactly n F32 values into a malloc'd array. */
static int section_f32(const uint8_t *s, size_t len, size_t n, const char *what, float **out, moesz_error *err) {
  *out = NULL;
  moesz_codec_info ci;
  int rc = moesz_codec_info_read(s, len, &ci, err);
  if (rc) return moesz_error_wrap(err, rc, "residual %s", what);
  if (ci.count != n || ci.in_dtype != MOESZ_DT_F32 || ci.stream_bytes != len)
    return moesz_error_set(err, MOESZ_E_FORMAT, "residual %s: stream holds %zu values, %zu expected", what, ci.count, n);
  float *v = malloc(n * sizeof *v);
  if (!v) return moesz_error_set(err, MOESZ_E_NOMEM, "residual: out of memory");
  if ((rc = moesz_codec_decompress(s, len, MOESZ_DT_F32, v, n, 1, err))) {
    free(v);
    return moesz_error_wrap(err, rc, "residual %s", what);
  }
  *out = v;
  return MOESZ_OK;
}

/* Adds vals at the positions set in a bitmap of m bits (exactly count set). */
static int add_bitmap(const uint8_t *bm, uint64_t m, const float *vals, uint64_t count, float *X, moesz_error *err) {
  uint64_t j = 0;
  for (uint64_t byte = 0; byte < (m + 7) / 8; byte++) {
    unsigned b = bm[byte];
    while (b) {
      uint64_t pos = byte * 8 + (uint64_t)__builtin_ctz(b);
      b &= b - 1;
      if (pos >= m) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: a position lies beyond the matrix (%llu >= %llu)",
                                           (unsigned long long)pos, (unsigned long long)m);
      if (j == count) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: more positions than values (%llu)", (unsigned long long)count);
      X[pos] += vals[j++];
    }
  }
  if (j != count) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: %llu positions for %llu values",
                                         (unsigned long long)j, (unsigned long long)count);
  return MOESZ_OK;
}

/* Adds vals at positions coded as gap varints (first: position; then gap - 1). */
static int add_delta(const uint8_t *p, size_t len, uint64_t m, const float *vals, uint64_t count, float *X, moesz_error *err) {
  size_t at = 0;
  uint64_t pos = 0;
  for (uint64_t j = 0; j < count; j++) {
    uint64_t g = 0;
    int shift = 0;
    for (;;) {
      if (at == len) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: positions end after %llu of %llu", (unsigned long long)j,
                                            (unsigned long long)count);
      uint8_t b = p[at++];
      if (shift == 63 && b > 1) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: position varint overflows");
      g |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7;
      if (shift > 63) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: position varint too long");
    }
    uint64_t next = g < m ? (j ? pos + 1 + g : g) : m;
    if (next >= m)
      return moesz_error_set(err, MOESZ_E_FORMAT, "residual: position %llu lies beyond the matrix (%llu values)",
                             (unsigned long long)j, (unsigned long long)m);
    pos = next;
    X[pos] += vals[j];
  }
  if (at != len) return moesz_error_set(err, MOESZ_E_FORMAT, "residual: %zu bytes after the last position", len - at);
  return MOESZ_OK;
}

static int add_pruned(const moesz_residual_info *ri, const uint8_t *a, const uint8_t *b, float *X, moesz_error *err) {
  if (!ri->count) return MOESZ_OK;
  uint64_t m = (uint64_t)ri->rows * ri->cols, bm_len = (m + 7) / 8;
  float *vals;
  int rc = section_f32(b, ri->b_len, ri->count, "values", &vals, err);
  if (rc) return rc;
  uint8_t *tmp = NULL;
  const uint8_t *pos = a;
  size_t pos_len = ri->a_len;
  if (ri->pos != MOESZ_POS_BITMAP) {
    unsigned long long fs = ZSTD_getFrameContentSize(a, ri->a_len);
    uint64_t cap = ri->pos == MOESZ_POS_BITMAP_ZSTD ? bm_len : ri->count * 10;
    if (fs == ZSTD_CONTENTSIZE_UNKNOWN || fs == ZSTD_CONTENTSIZE_ERROR || fs > cap ||
        (ri->pos == MOESZ_POS_BITMAP_ZSTD ? fs != bm_len : fs < ri->count)) {
      free(vals);
      return moesz_error_set(err, MOESZ_E_FORMAT, "residual: positions frame is corrupt or of the wrong size");
    }
    if (!(tmp = malloc(fs ? fs : 1))) { free(vals); return moesz_error_set(err, MOESZ_E_NOMEM, "residual: out of memory"); }
    size_t got = ZSTD_decompress(tmp, fs, a, ri->a_len);
    if (ZSTD_isError(got) || got != fs) {
      free(vals);
      free(tmp);
      return moesz_error_set(err, MOESZ_E_FORMAT, "residual: positions: %s", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
    }
    pos = tmp;
    pos_len = fs;
  } else if (pos_len != bm_len) {
    free(vals);
    return moesz_error_set(err, MOESZ_E_FORMAT, "residual: bitmap of %zu bytes for %llu positions", pos_len, (unsigned long long)m);
  }
  if (ri->pos == MOESZ_POS_DELTA_ZSTD) rc = add_delta(pos, pos_len, m, vals, ri->count, X, err);
  else rc = add_bitmap(pos, m, vals, ri->count, X, err);
  free(tmp);
  free(vals);
  return rc;
}

int moesz_resmoe_residual_add(const void *blob, size_t len, int n, int D, float *X, moesz_error *err) {
  moesz_residual_info ri;
  int rc = moesz_resmoe_residual_info(blob, len, &ri, err);
  if (rc) return rc;
  if (n < 1 || D < 1 || ri.rows != (uint32_t)n || ri.cols != (uint32_t)D)
    return moesz_error_set(err, MOESZ_E_FORMAT, "residual: shape %u x %u, the layer is %d x %d", ri.rows, ri.cols, n, D);
  const uint8_t *a = (const uint8_t *)blob + MOESZ_RESIDUAL_HEADER, *b = a + ri.a_len;
  if (ri.kind == MOESZ_RESIDUAL_PRUNE) return add_pruned(&ri, a, b, X, err);
  int r = (int)ri.count;
  float *U, *V;
  if ((rc = section_f32(a, ri.a_len, (size_t)n * (size_t)r, "U", &U, err))) return rc;
  if ((rc = section_f32(b, ri.b_len, (size_t)r * (size_t)D, "V", &V, err))) { free(U); return rc; }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, r, 1.0f, U, r, V, D, 1.0f, X, D);
  free(U);
  free(V);
  return MOESZ_OK;
}

/* ------------------------------------------------------------ encoding */

static int codec_f32(const float *v, size_t n, const moesz_codec_params *cp, void **out, size_t *len, double *eb,
                     moesz_error *err) {
  moesz_codec_params p = *cp;
  p.out_dtype = MOESZ_DT_F32;
  moesz_codec_info ci;
  int rc = moesz_codec_compress(v, MOESZ_DT_F32, n, &p, out, len, &ci, err);
  if (!rc) *eb = ci.eb;
  return rc;
}

/* Codes the positions where P != 0 (m values) as the smallest of three forms. */
static int code_positions(const float *P, uint64_t m, uint64_t count, uint8_t **out, size_t *len, int *how, moesz_error *err) {
  uint64_t bm_len = (m + 7) / 8;
  uint8_t *bm = calloc(bm_len ? bm_len : 1, 1), *vi = malloc(count * 10 + 1);
  size_t zcap = ZSTD_compressBound(count * 10 > bm_len ? count * 10 : bm_len);
  uint8_t *z1 = malloc(zcap), *z2 = malloc(zcap);
  if (!bm || !vi || !z1 || !z2) { free(bm); free(vi); free(z1); free(z2); return moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); }
  size_t vlen = 0;
  uint64_t prev = 0, j = 0;
  for (uint64_t i = 0; i < m; i++) {
    if (P[i] == 0) continue;
    bm[i / 8] |= (uint8_t)(1u << (i % 8));
    uint64_t g = j ? i - prev - 1 : i;
    do { uint8_t b = g & 0x7f; g >>= 7; vi[vlen++] = (uint8_t)(b | (g ? 0x80 : 0)); } while (g);
    prev = i;
    j++;
  }
  size_t l1 = ZSTD_compress(z1, zcap, vi, vlen, 19), l2 = ZSTD_compress(z2, zcap, bm, bm_len, 19);
  if (ZSTD_isError(l1) || ZSTD_isError(l2)) {
    free(bm); free(vi); free(z1); free(z2);
    return moesz_error_set(err, MOESZ_E_INTERNAL, "resmoe: zstd failed on positions");
  }
  if (l1 <= l2 && l1 <= bm_len) { *out = z1; *len = l1; *how = MOESZ_POS_DELTA_ZSTD; free(z2); free(bm); }
  else if (l2 <= bm_len) { *out = z2; *len = l2; *how = MOESZ_POS_BITMAP_ZSTD; free(z1); free(bm); }
  else { *out = bm; *len = bm_len; *how = MOESZ_POS_BITMAP; free(z1); free(z2); }
  free(vi);
  return MOESZ_OK;
}

/* Header + section A + section B into one malloc'd blob. */
static int assemble(int kind, int pos, int n, int D, uint64_t count, const void *a, size_t alen, const void *b, size_t blen,
                    void **out, size_t *len, moesz_error *err) {
  size_t tot = MOESZ_RESIDUAL_HEADER + alen + blen;
  uint8_t *p = malloc(tot);
  if (!p) return moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory");
  memset(p, 0, MOESZ_RESIDUAL_HEADER);
  memcpy(p, MOESZ_RESIDUAL_MAGIC, 4);
  p[4] = (uint8_t)kind;
  p[5] = (uint8_t)pos;
  put_le(p + 8, (uint64_t)n, 4);
  put_le(p + 12, (uint64_t)D, 4);
  put_le(p + 16, count, 8);
  put_le(p + 24, alen, 8);
  put_le(p + 32, blen, 8);
  if (alen) memcpy(p + MOESZ_RESIDUAL_HEADER, a, alen);
  if (blen) memcpy(p + MOESZ_RESIDUAL_HEADER + alen, b, blen);
  *out = p;
  *len = tot;
  return MOESZ_OK;
}

/* Residual blob of R [n, D] (overwritten): pruned to keep, or rank r. */
static int encode_residual(float *R, int n, int D, moesz_residual_kind kind, double keep, int r, const moesz_codec_params *cp,
                           void **blob, size_t *len, double *eb, double *thr, uint64_t *kept, moesz_error *err) {
  size_t m = (size_t)n * (size_t)D;
  int rc = MOESZ_OK;
  *thr = 0;
  *eb = 0;
  if (kind == MOESZ_RESIDUAL_PRUNE) {
    float *P = malloc(m * sizeof *P), *vals = malloc((m + 1) * sizeof *vals);
    uint8_t *pos = NULL;
    void *vs = NULL;
    size_t plen = 0, vlen = 0;
    int how = 0;
    if (!P || !vals) { free(P); free(vals); return moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); }
    memcpy(P, R, m * sizeof *P);
    if (moesz_resmoe_prune(P, m, keep)) { free(P); free(vals); return moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); }
    uint64_t k = 0;
    for (size_t i = 0; i < m; i++) {
      if (P[i] != 0) vals[k++] = P[i];
      else if (fabs((double)R[i]) > *thr) *thr = fabs((double)R[i]);
    }
    *kept = k;
    if (k) {
      rc = code_positions(P, m, k, &pos, &plen, &how, err);
      if (!rc) rc = codec_f32(vals, k, cp, &vs, &vlen, eb, err);
    }
    if (!rc) rc = assemble(1, how, n, D, k, pos, plen, vs, vlen, blob, len, err);
    free(P); free(vals); free(pos); free(vs);
    return rc;
  }
  int mn = n < D ? n : D;
  float *s = malloc((size_t)mn * sizeof *s), *U = malloc((size_t)n * (size_t)mn * sizeof *U);
  float *VT = malloc((size_t)mn * (size_t)D * sizeof *VT), *Uf = malloc((size_t)n * (size_t)r * sizeof *Uf);
  void *ua = NULL, *vb = NULL;
  size_t ul = 0, vl = 0;
  double e1 = 0, e2 = 0;
  if (!s || !U || !VT || !Uf) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory"); goto svd_done; }
  if (LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', n, D, R, D, s, U, mn, VT, D) != 0) {
    rc = moesz_error_set(err, MOESZ_E_INTERNAL, "resmoe: SVD of a residual failed");
    goto svd_done;
  }
  /* balanced factors: U' = U_r sqrt(S_r) [n, r], V' = sqrt(S_r) V_r^T [r, D] */
  for (int j = 0; j < r; j++) {
    float q = sqrtf(s[j]);
    for (int i = 0; i < n; i++) Uf[(size_t)i * (size_t)r + (size_t)j] = U[(size_t)i * (size_t)mn + (size_t)j] * q;
    for (int c = 0; c < D; c++) VT[(size_t)j * (size_t)D + (size_t)c] *= q;
  }
  if ((rc = codec_f32(Uf, (size_t)n * (size_t)r, cp, &ua, &ul, &e1, err))) goto svd_done;
  if ((rc = codec_f32(VT, (size_t)r * (size_t)D, cp, &vb, &vl, &e2, err))) goto svd_done;
  *eb = e1 > e2 ? e1 : e2;
  *kept = (uint64_t)r * (uint64_t)(n + D);
  rc = assemble(2, 0, n, D, (uint64_t)r, ua, ul, vb, vl, blob, len, err);
svd_done:
  free(s); free(U); free(VT); free(Uf); free(ua); free(vb);
  return rc;
}

void moesz_resmoe_stored_free(moesz_resmoe_stored *s) {
  if (!s) return;
  for (int k = 0; s->res && k < s->E; k++) free(s->res[k]);
  free(s->res); free(s->res_len); free(s->res_eb); free(s->thr); free(s->max_err); free(s->kept); free(s->perm);
  free(s->bary);
  memset(s, 0, sizeof *s);
}

int moesz_resmoe_encode(float *const *X, int E, int n, int D, const moesz_resmoe_opts *o, const moesz_codec_params *cp,
                        moesz_resmoe_stored *out, moesz_error *err) {
  memset(out, 0, sizeof *out);
  if (E < 1 || n < 1 || D < 1) return moesz_error_set(err, MOESZ_E_ARG, "resmoe: empty layer");
  if (!(o->keep > 0 && o->keep <= 1)) return moesz_error_set(err, MOESZ_E_ARG, "resmoe: keep %g outside (0, 1]", o->keep);
  double t0 = moesz_time_now();
  moesz_residual_kind kind = o->method == MOESZ_RESMOE_SVD ? MOESZ_RESIDUAL_SVD
                           : o->method == MOESZ_RESMOE_PRUNE ? MOESZ_RESIDUAL_PRUNE : o->residual;
  int mn = n < D ? n : D, r = 0;
  if (kind == MOESZ_RESIDUAL_SVD) {
    r = (int)floor(o->keep * (double)n * (double)D / (double)(n + D));
    if (r < 1)
      return moesz_error_set(err, MOESZ_E_ARG, "resmoe: keep %g gives SVD rank 0 for %d x %d experts (rank 1 needs keep >= %.4g)",
                             o->keep, n, D, (double)(n + D) / ((double)n * (double)D));
    if (r > mn) r = mn;
  }
  size_t m = (size_t)n * (size_t)D;
  out->E = E; out->n = n; out->D = D; out->kind = kind; out->rank = r;
  out->res = calloc((size_t)E, sizeof *out->res);
  out->res_len = calloc((size_t)E, sizeof *out->res_len);
  out->res_eb = calloc((size_t)E, sizeof *out->res_eb);
  out->thr = calloc((size_t)E, sizeof *out->thr);
  out->max_err = calloc((size_t)E, sizeof *out->max_err);
  out->kept = calloc((size_t)E, sizeof *out->kept);
  out->perm = malloc((size_t)E * (size_t)n * sizeof *out->perm);
  int **pp = malloc((size_t)E * sizeof *pp);
  float *B = malloc(m * sizeof *B), *Bd = malloc(m * sizeof *Bd), *Xp = malloc(m * sizeof *Xp);
  float *R = malloc(m * sizeof *R), *W = malloc(m * sizeof *W);
  int rc = MOESZ_OK;
  if (!out->res || !out->res_len || !out->res_eb || !out->thr || !out->max_err || !out->kept || !out->perm || !pp || !B ||
      !Bd || !Xp || !R || !W) {
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "resmoe: out of memory for a %d x %d layer", n, D);
    goto done;
  }
  for (int k = 0; k < E; k++) pp[k] = out->perm + (size_t)k * (size_t)n;
  if ((rc = moesz_resmoe_barycenter(X, E, n, D, o, B, pp, &out->rep, err))) goto done;
  /* B' = what a reader decodes; residuals are taken against it */
  if ((rc = codec_f32(B, m, cp, &out->bary, &out->bary_len, &out->bary_eb, err))) goto done;
  if ((rc = moesz_codec_decompress(out->bary, out->bary_len, MOESZ_DT_F32, Bd, m, cp->threads, err))) goto done;
  for (int k = 0; k < E && !rc; k++) {
    for (int j = 0; j < n; j++) memcpy(Xp + (size_t)j * (size_t)D, X[k] + (size_t)pp[k][j] * (size_t)D, (size_t)D * sizeof *Xp);
    for (size_t i = 0; i < m; i++) R[i] = Xp[i] - Bd[i];
    if ((rc = encode_residual(R, n, D, kind, o->keep, r, cp, &out->res[k], &out->res_len[k], &out->res_eb[k], &out->thr[k],
                              &out->kept[k], err)))
      break;
    /* restore as a reader will and record the worst error */
    memcpy(W, Bd, m * sizeof *W);
    if ((rc = moesz_resmoe_residual_add(out->res[k], out->res_len[k], n, D, W, err))) {
      moesz_error_wrap(err, rc, "resmoe: restoring expert %d", k);
      break;
    }
    double worst = 0;
    for (size_t i = 0; i < m; i++) {
      double e = fabs((double)W[i] - (double)Xp[i]);
      if (e > worst || e != e) worst = e;
    }
    out->max_err[k] = worst;
  }
done:
  free(pp); free(B); free(Bd); free(Xp); free(R); free(W);
  out->rep.seconds = moesz_time_now() - t0;
  if (rc) moesz_resmoe_stored_free(out);
  return rc;
}
