/* tests/test_resmoe_stored.c - ResMoE as a stored representation: the
 * documented bound of a restored weight (pruned: the residual bound at kept
 * positions, the recorded threshold elsewhere; SVD: the factor bounds around
 * the uncoded rank-r residual) on a fixture layer; the container stores
 * exactly what the encoder produced, decodes and exports it; the restored
 * (permuted) model computes what the unpermuted one does; the expert cache
 * pins barycenters and serves the same logits as the exported folder; bad
 * keep, rank 0, corrupt, truncated and lying blobs and manifests rejected. */
#include "harness.h"
#include <lapacke.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>
#include "moesz.h"
#include "base/util.h"

#define FIXTURE "tests/fixtures/mixtral"
static char TMP[128];

/* Layer L's experts as n x 3d rows [gate | up | down^T] (f32). */
static float **gather(const moesz_model *m, int L, int *n_out, int *d_out) {
  moesz_matview v;
  if (moesz_model_expert(m, L, 0, 0, MOESZ_MAT_GATE, &v, NULL)) return NULL;
  int n = (int)v.rows, d = (int)v.cols, D = 3 * d, E = m->cfg.n_experts;
  float **X = calloc((size_t)E, sizeof *X), *tmp = malloc(sizeof *tmp * (size_t)n * (size_t)d);
  for (int e = 0; e < E; e++) {
    X[e] = malloc(sizeof **X * (size_t)n * (size_t)D);
    for (int k = 0; k < 3; k++) {
      moesz_model_expert(m, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v, NULL);
      moesz_matview_to_f32(&v, tmp, NULL);
      for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
          X[e][i * D + k * d + j] = k == 2 ? tmp[j * n + i] : tmp[i * d + j];
    }
  }
  free(tmp);
  *n_out = n;
  *d_out = d;
  return X;
}
static void free_experts(float **X, int E) {
  for (int e = 0; X && e < E; e++) free(X[e]);
  free(X);
}

static const moesz_codec_params CP = {.mode = MOESZ_EB_ABS, .eb = 1e-3, .pipeline = MOESZ_PIPE_ENTROPY,
                                      .out_dtype = MOESZ_DT_F32, .threads = 1};
#define U32 (1.0 / 16777216.0)   /* f32 unit roundoff */

/* Decodes a codec section of a residual blob (for the SVD bound). */
static float *section(const uint8_t *p, size_t len, size_t n) {
  float *v = malloc(n * sizeof *v + 4);
  if (moesz_codec_decompress(p, len, MOESZ_DT_F32, v, n, 1, NULL)) { free(v); return NULL; }
  return v;
}

TEST(restored_weights_meet_the_documented_bound) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(FIXTURE, &m, NULL), MOESZ_OK);
  if (!m) return;
  int n, d, E = m->cfg.n_experts;
  float **X = gather(m, 1, &n, &d);
  CHECK(X != NULL);
  if (!X) { moesz_model_close(m); return; }
  int D = 3 * d;
  size_t sz = (size_t)n * (size_t)D;
  float *Bd = malloc(sz * 4), *W = malloc(sz * 4), *Xp = malloc(sz * 4);
  for (int kind = 0; kind < 2; kind++) {
    moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .residual = (moesz_residual_kind)kind, .keep = 0.25};
    moesz_resmoe_stored st;
    moesz_error e = {0};
    CHECK_EQ_INT(moesz_resmoe_encode(X, E, n, D, &o, &CP, &st, &e), MOESZ_OK);
    if (!st.bary) continue;
    CHECK(st.rep.iters > 0);
    CHECK_EQ_INT(moesz_codec_decompress(st.bary, st.bary_len, MOESZ_DT_F32, Bd, sz, 1, NULL), MOESZ_OK);
    int bad = 0, kept_tight = 0, moved = 0;
    for (int k = 0; k < E; k++) {
      /* the alignment is a permutation */
      int seen[64] = {0}, ok = 1;
      for (int j = 0; j < n; j++) ok &= st.perm[k * n + j] >= 0 && st.perm[k * n + j] < n && !seen[st.perm[k * n + j]]++;
      CHECK(ok);
      for (int j = 0; j < n; j++) { memcpy(Xp + j * D, X[k] + st.perm[k * n + j] * D, sizeof *Xp * (size_t)D); moved += st.perm[k * n + j] != j; }
      memcpy(W, Bd, sz * 4);
      CHECK_EQ_INT(moesz_resmoe_residual_add(st.res[k], st.res_len[k], n, D, W, &e), MOESZ_OK);
      double worst = 0;
      for (size_t i = 0; i < sz; i++) worst = fmax(worst, fabs((double)W[i] - Xp[i]));
      CHECK_NEAR(worst, st.max_err[k], 0);   /* the recorded figure is the measured one */
      double eb = st.res_eb[k];
      CHECK_NEAR(eb, 1e-3, 1e-12);
      if (kind == MOESZ_RESIDUAL_PRUNE) {
        /* kept: within eb (+ f32 rounding of x - b' and of b' + r'); dropped: w' = b', |x - b'| <= thr */
        for (size_t i = 0; i < sz; i++) {
          double err = fabs((double)W[i] - Xp[i]), slack = U32 * (fabs((double)Xp[i] - Bd[i]) + fabs((double)W[i]));
          int within = err <= eb + slack;
          int dropped = W[i] == Bd[i] && fabs((double)Xp[i] - Bd[i]) <= st.thr[k] * (1 + U32);
          bad += !within && !dropped;
          kept_tight += within && !dropped;
        }
        CHECK(st.max_err[k] <= fmax(eb * (1 + 1e-6), st.thr[k] * (1 + U32)));
        CHECK(st.kept[k] == (uint64_t)floor(0.25 * (double)sz));
      } else {
        /* SVD: |w' - (b' + A_r)| <= eb_U |V'_{:,j}|_1 + eb_V (|U'_{i,:}|_1 + r eb_U), A_r the uncoded rank-r residual */
        int r = st.rank, mn = n < D ? n : D;
        CHECK_EQ_INT(r, (int)floor(0.25 * n * D / (n + D)));
        float *R = malloc(sz * 4), *s = malloc(sizeof *s * (size_t)mn), *Uu = malloc(sizeof *Uu * (size_t)n * (size_t)mn);
        float *VT = malloc(sizeof *VT * (size_t)mn * (size_t)D);
        for (size_t i = 0; i < sz; i++) R[i] = Xp[i] - Bd[i];
        CHECK_EQ_INT(LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', n, D, R, D, s, Uu, mn, VT, D), 0);
        moesz_residual_info ri;
        CHECK_EQ_INT(moesz_resmoe_residual_info(st.res[k], st.res_len[k], &ri, NULL), MOESZ_OK);
        const uint8_t *a = (const uint8_t *)st.res[k] + MOESZ_RESIDUAL_HEADER;
        float *Uc = section(a, ri.a_len, (size_t)n * (size_t)r), *Vc = section(a + ri.a_len, ri.b_len, (size_t)r * (size_t)D);
        CHECK(Uc && Vc);
        for (int i = 0; Uc && Vc && i < n; i++)
          for (int j = 0; j < D; j++) {
            double ar = 0, u1 = 0, v1 = 0, mag = 0;
            for (int q = 0; q < r; q++) {
              ar += (double)Uu[i * mn + q] * s[q] * VT[q * D + j];
              mag += fabs((double)Uu[i * mn + q] * s[q] * VT[q * D + j]);
              u1 += fabs((double)Uc[i * r + q]);
              v1 += fabs((double)Vc[q * D + j]);
            }
            double bound = eb * v1 + eb * (u1 + r * eb) + 1e-5 * mag + 1e-6 * fabs((double)Bd[i * D + j]);   /* + f32 rounding */
            bad += fabs((double)W[i * D + j] - Bd[i * D + j] - ar) > bound;
          }
        free(R); free(s); free(Uu); free(VT); free(Uc); free(Vc);
      }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(moved > 0);   /* the alignment did permute rows */
    if (kind == MOESZ_RESIDUAL_PRUNE) CHECK(kept_tight > 0);
    moesz_resmoe_stored_free(&st);
  }
  free(Bd); free(W); free(Xp);
  free_experts(X, E);
  moesz_model_close(m);
}

/* Writes FIXTURE as a container with layer 1 in ResMoE form. */
static int write_container(const char *path, moesz_residual_kind kind, moesz_msz_summary *s, moesz_error *e) {
  moesz_model *m;
  int rc = moesz_model_open(FIXTURE, &m, e);
  if (rc) return rc;
  moesz_resmoe_opts ro = {.method = MOESZ_RESMOE, .residual = kind, .keep = 0.25};
  uint8_t layers[MOESZ_MAX_LAYERS] = {0};
  layers[1] = 1;
  moesz_msz_opts o = {.method = MOESZ_MSZ_CODEC, .eb = 1e-3, .eb_mode = MOESZ_EB_ABS, .pipeline = MOESZ_PIPE_ENTROPY,
                      .threads = 1, .resmoe = &ro, .resmoe_layers = layers};
  rc = moesz_msz_write(m, path, &o, s, e);
  moesz_model_close(m);
  return rc;
}

/* Copies the model folder `from` to `to` with layer L's experts un-permuted by perm ([E][n]). */
static int write_unpermuted(const char *from, const char *to, int L, const int *perm) {
  moesz_model *a;
  if (moesz_model_open(from, &a, NULL)) return -1;
  size_t nt = moesz_st_count(a->st);
  float **buf = calloc(nt, sizeof *buf);
  for (size_t i = 0; i < nt; i++) {
    const moesz_tensor *t = moesz_st_at(a->st, i);
    buf[i] = malloc(t->nbytes);
    memcpy(buf[i], t->data, t->nbytes);
  }
  int E = a->cfg.n_experts, rc = 0;
  for (int e = 0; e < E; e++)
    for (int k = 0; k < 3; k++) {
      moesz_matview v;
      moesz_model_expert(a, L, e, 0, (moesz_mat)(MOESZ_MAT_GATE + k), &v, NULL);
      size_t ti = 0;
      while (ti < nt && !((const char *)v.data >= (const char *)moesz_st_at(a->st, ti)->data &&
                          (const char *)v.data < (const char *)moesz_st_at(a->st, ti)->data + moesz_st_at(a->st, ti)->nbytes)) ti++;
      if (ti == nt || v.dtype != MOESZ_DT_F32) { rc = -1; continue; }
      const float *src = v.data;
      float *dst = buf[ti] + (src - (const float *)moesz_st_at(a->st, ti)->data);
      for (int64_t r = 0; r < v.rows; r++)
        for (int64_t c = 0; c < v.cols; c++) {
          /* row j of gate / up, column j of down, goes back to unit perm[j] */
          int64_t r2 = k < 2 ? perm[e * (k < 2 ? v.rows : v.cols) + r] : r, c2 = k == 2 ? perm[e * v.cols + c] : c;
          size_t from_i = (size_t)(v.transposed ? c * v.ld + r : r * v.ld + c);
          size_t to_i = (size_t)(v.transposed ? c2 * v.ld + r2 : r2 * v.ld + c2);
          dst[to_i] = src[from_i];
        }
    }
  char p[300];
  snprintf(p, sizeof p, "%s/model.safetensors", to);
  mkdir(to, 0755);
  moesz_stw *w;
  if (!rc) rc = moesz_stw_create(p, &w, NULL);
  for (size_t i = 0; !rc && i < nt; i++) {
    const moesz_tensor *t = moesz_st_at(a->st, i);
    rc = moesz_stw_add(w, t->name, t->dtype, t->ndim, t->shape, buf[i], NULL);
  }
  if (!rc) rc = moesz_stw_commit(w, NULL);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", from, to);
  if (!rc) rc = system(cmd);
  for (size_t i = 0; i < nt; i++) free(buf[i]);
  free(buf);
  moesz_model_close(a);
  return rc;
}

static float *logits(const char *path, int from_msz, uint64_t budget, moesz_cache_stats *st) {
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 32};
  moesz_engine *en = NULL;
  moesz_cache *k = NULL;
  moesz_cache_opts co = {.budget_bytes = budget, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT};
  moesz_error e = {0};
  int rc = from_msz ? moesz_engine_open_msz(path, &co, &eo, &en, &k, &e) : moesz_engine_open(path, &eo, &en, &e);
  if (rc) { fprintf(stderr, "  %s: %s\n", path, e.msg); return NULL; }
  int V = moesz_engine_vocab(en);
  float *lg = malloc(sizeof *lg * 20 * (size_t)V);
  int32_t tok[20];
  for (int i = 0; i < 20; i++) tok[i] = (i * 17 + 3) % V;
  if (moesz_engine_forward(en, tok, 20, 1, lg, &e)) { fprintf(stderr, "  %s\n", e.msg); free(lg); lg = NULL; }
  if (st && k) moesz_cache_stats_get(k, st);
  moesz_engine_close(en);
  return lg;
}

TEST(container_stores_decodes_exports_and_serves) {
  for (int kind = 0; kind < 2; kind++) {
    char msz[256], dirA[256], dirB[256];
    snprintf(msz, sizeof msz, "%s/rm%d.msz", TMP, kind);
    snprintf(dirA, sizeof dirA, "%s/rm%d.A", TMP, kind);
    snprintf(dirB, sizeof dirB, "%s/rm%d.B", TMP, kind);
    moesz_msz_summary s;
    moesz_error e = {0};
    CHECK_EQ_INT(write_container(msz, (moesz_residual_kind)kind, &s, &e), MOESZ_OK);
    CHECK_EQ_INT(s.resmoe_layers, 1);
    moesz_msz *c;
    CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
    if (!c) { fprintf(stderr, "  %s\n", e.msg); continue; }
    FILE *f = fopen(msz, "rb");
    uint8_t hdr[12] = {0};
    CHECK(f && fread(hdr, 1, 12, f) == 12);
    if (f) fclose(f);
    CHECK_EQ_INT(hdr[8], MOESZ_MSZ_VERSION_RESMOE);
    CHECK(moesz_msz_resmoe(c, 0) == NULL);
    const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, 1);
    CHECK(l != NULL);
    CHECK(moesz_msz_expert(c, 0, 0, 0, MOESZ_MAT_GATE)->method == MOESZ_MSZ_CODEC);
    moesz_model *m;
    CHECK_EQ_INT(moesz_model_open(FIXTURE, &m, NULL), MOESZ_OK);
    int n, d, E = m->cfg.n_experts;
    float **X = gather(m, 1, &n, &d);
    moesz_resmoe_opts ro = {.method = MOESZ_RESMOE, .residual = (moesz_residual_kind)kind, .keep = 0.25};
    moesz_resmoe_stored st;
    CHECK_EQ_INT(moesz_resmoe_encode(X, E, n, 3 * d, &ro, &CP, &st, NULL), MOESZ_OK);
    if (l && st.bary) {
      CHECK_EQ_INT(l->n, n);
      CHECK_EQ_INT(l->D, 3 * d);
      CHECK_EQ_INT(l->E, E);
      CHECK_EQ_INT(s.resmoe_bary_bytes, st.bary_len);
      /* the container holds exactly the encoder's blobs */
      const void *blob;
      CHECK_EQ_INT(moesz_msz_blob(c, &l->bary, &blob, NULL), MOESZ_OK);
      CHECK(l->bary.len == st.bary_len && !memcmp(blob, st.bary, st.bary_len));
      size_t sz = (size_t)n * (size_t)(3 * d);
      float *W = malloc(sz * 4), *Wc = malloc(sz * 4), *mat = malloc(sz * 4), *want = malloc(sz * 4);
      int same = 0, bad_mat = 0;
      for (int k = 0; k < E; k++) {
        CHECK_EQ_INT(moesz_msz_blob(c, &l->res[k], &blob, NULL), MOESZ_OK);
        same += l->res[k].len == st.res_len[k] && !memcmp(blob, st.res[k], st.res_len[k]);
        CHECK_NEAR(l->max_err[k], st.max_err[k], 1e-14 * st.max_err[k]);   /* through JSON */
        CHECK_NEAR(l->thr[k], st.thr[k], 1e-14 * st.thr[k]);
        CHECK_EQ_INT(moesz_codec_decompress(st.bary, st.bary_len, MOESZ_DT_F32, W, sz, 1, NULL), MOESZ_OK);
        CHECK_EQ_INT(moesz_resmoe_residual_add(st.res[k], st.res_len[k], n, 3 * d, W, NULL), MOESZ_OK);
        CHECK_EQ_INT(moesz_msz_resmoe_expert(c, 1, k, Wc, NULL), MOESZ_OK);
        CHECK(!memcmp(W, Wc, sz * 4));
        /* each matrix record decodes to its block of the restored expert */
        for (int q = 0; q < 3; q++) {
          const moesz_msz_rec *r = moesz_msz_expert(c, 1, k, 0, (moesz_mat)(MOESZ_MAT_GATE + q));
          CHECK(r && r->method == MOESZ_MSZ_RESMOE);
          if (!r) continue;
          CHECK_EQ_INT(moesz_msz_read(c, r, MOESZ_DT_F32, mat, NULL), MOESZ_OK);
          for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) {
              float w = W[i * 3 * d + q * d + j];
              bad_mat += (q == 2 ? mat[j * n + i] : mat[i * d + j]) != w;
            }
        }
      }
      CHECK_EQ_INT(same, E);
      CHECK_EQ_INT(bad_mat, 0);
      /* export: layer 1's experts restored (permuted), layer 0 within the codec bound */
      CHECK_EQ_INT(moesz_msz_export(c, dirA, 0, 0, &e), MOESZ_OK);
      moesz_model *a;
      CHECK_EQ_INT(moesz_model_open(dirA, &a, NULL), MOESZ_OK);
      if (a) {
        int diff = 0;
        double worst0 = 0;
        for (int k = 0; k < E; k++) {
          CHECK_EQ_INT(moesz_msz_resmoe_expert(c, 1, k, W, NULL), MOESZ_OK);
          for (int q = 0; q < 3; q++) {
            moesz_matview v, v0;
            moesz_model_expert(a, 1, k, 0, (moesz_mat)(MOESZ_MAT_GATE + q), &v, NULL);
            moesz_matview_to_f32(&v, mat, NULL);
            CHECK_EQ_INT(moesz_msz_resmoe_split(W, n, d, (moesz_mat)(MOESZ_MAT_GATE + q), MOESZ_DT_F32, want, NULL), MOESZ_OK);
            diff += memcmp(mat, want, (size_t)n * (size_t)d * 4) != 0;
            moesz_model_expert(a, 0, k, 0, (moesz_mat)(MOESZ_MAT_GATE + q), &v, NULL);
            moesz_model_expert(m, 0, k, 0, (moesz_mat)(MOESZ_MAT_GATE + q), &v0, NULL);
            moesz_matview_to_f32(&v, mat, NULL);
            moesz_matview_to_f32(&v0, want, NULL);
            for (int i = 0; i < n * d; i++) worst0 = fmax(worst0, fabs((double)mat[i] - want[i]));
          }
        }
        CHECK_EQ_INT(diff, 0);
        CHECK(worst0 <= 1e-3 && worst0 > 0);
        moesz_model_close(a);
      }
      free(W); free(Wc); free(mat); free(want);
      /* the restored model computes what the unpermuted restored model does */
      CHECK_EQ_INT(write_unpermuted(dirA, dirB, 1, st.perm), 0);
      float *la = logits(dirA, 0, 0, NULL), *lb = logits(dirB, 0, 0, NULL);
      CHECK(la && lb);
      moesz_model *b;
      CHECK_EQ_INT(moesz_model_open(dirB, &b, NULL), MOESZ_OK);
      if (b) {
        moesz_matview va, vb;
        moesz_model *a2;
        moesz_model_open(dirA, &a2, NULL);
        int differ = 0;
        for (int k = 0; k < E; k++) {
          moesz_model_expert(a2, 1, k, 0, MOESZ_MAT_GATE, &va, NULL);
          moesz_model_expert(b, 1, k, 0, MOESZ_MAT_GATE, &vb, NULL);
          differ += memcmp(va.data, vb.data, (size_t)n * (size_t)d * 4) != 0;
        }
        CHECK(differ > 0);   /* the weights do differ */
        moesz_model_close(a2);
        moesz_model_close(b);
      }
      if (la && lb) {
        int V = 0;
        moesz_engine_opts eo = {.threads = 1, .max_ctx = 32};
        moesz_engine *en;
        if (!moesz_engine_open(dirA, &eo, &en, NULL)) { V = moesz_engine_vocab(en); moesz_engine_close(en); }
        double worst = 0;
        for (int i = 0; i < 20 * V; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
        CHECK(V > 0);
        CHECK_MSG(worst < 1e-4, "logits of the permuted and unpermuted restored models differ by %g", worst);
        /* served from the container through the cache: the same logits as the exported folder */
        uint64_t one = (uint64_t)n * (uint64_t)d * 3 * 4, pinned = (uint64_t)n * 3 * (uint64_t)d * 4;
        uint64_t budgets[] = {0, pinned + 2 * one};
        for (int bi = 0; bi < 2; bi++) {
          moesz_cache_stats cs;
          memset(&cs, 0, sizeof cs);
          float *lc = logits(msz, 1, budgets[bi], &cs);
          CHECK(lc != NULL);
          int ndiff = 0;
          for (int i = 0; lc && i < 20 * V; i++) ndiff += lc[i] != la[i];
          CHECK_MSG(ndiff == 0, "budget %d: %d logits differ from the exported folder", bi, ndiff);
          CHECK_EQ_INT(cs.pinned_bytes, pinned);
          CHECK(cs.resident_bytes >= pinned && cs.peak_bytes >= pinned);
          CHECK(cs.gets > 0 && cs.gets == cs.hits + cs.misses + cs.prefetch_waits);
          if (bi == 1) CHECK(cs.evictions > 0);
          free(lc);
        }
      }
      free(la); free(lb);
    }
    moesz_resmoe_stored_free(&st);
    free_experts(X, E);
    moesz_model_close(m);
    moesz_msz_close(c);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dirA, dirB);
    CHECK_EQ_INT(system(cmd), 0);
  }
}

/* A residual blob from parts (header as docs/CONTAINER.md). */
static uint8_t *blob_of(int kind, int pos, uint32_t n, uint32_t D, uint64_t count, const void *a, size_t alen, const void *b,
                        size_t blen, size_t *len) {
  uint8_t *p = calloc(1, 40 + alen + blen);
  memcpy(p, "MZR1", 4);
  p[4] = (uint8_t)kind;
  p[5] = (uint8_t)pos;
  uint64_t f[5] = {n, D, count, alen, blen};
  for (int i = 0; i < 4; i++) p[8 + i] = (uint8_t)(f[0] >> (8 * i)), p[12 + i] = (uint8_t)(f[1] >> (8 * i));
  for (int i = 0; i < 8; i++) p[16 + i] = (uint8_t)(f[2] >> (8 * i)), p[24 + i] = (uint8_t)(f[3] >> (8 * i)), p[32 + i] = (uint8_t)(f[4] >> (8 * i));
  memcpy(p + 40, a, alen);
  memcpy(p + 40 + alen, b, blen);
  *len = 40 + alen + blen;
  return p;
}

/* Rewrites a container's manifest: first occurrence of from -> to; header fixed up. */
static int edit_manifest(const char *in, const char *out, const char *from, const char *to) {
  char *buf;
  size_t len;
  if (moesz_file_read_all(in, 1 << 26, &buf, &len, NULL)) return -1;
  uint64_t moff = 0;
  for (int i = 7; i >= 0; i--) moff = moff << 8 | (uint8_t)buf[16 + i];
  char *man = buf + moff, *hit = strstr(man, from);
  if (!hit) { free(buf); return -1; }
  size_t mlen = len - moff, nlen = mlen - strlen(from) + strlen(to);
  char *nm = malloc(nlen + 1);
  size_t pre = (size_t)(hit - man);
  memcpy(nm, man, pre);
  memcpy(nm + pre, to, strlen(to));
  memcpy(nm + pre + strlen(to), hit + strlen(from), mlen - pre - strlen(from));
  uint64_t f[3] = {nlen, XXH3_64bits(nm, nlen), moff + nlen};
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < 8; i++) buf[24 + 8 * k + i] = (char)(f[k] >> (8 * i));
  FILE *fo = fopen(out, "wb");
  int rc = !fo || fwrite(buf, 1, moff, fo) != moff || fwrite(nm, 1, nlen, fo) != nlen;
  if (fo) fclose(fo);
  free(buf);
  free(nm);
  return rc ? -1 : 0;
}

TEST(bad_input_is_rejected) {
  moesz_error e = {0};
  /* keep outside (0, 1], SVD rank 0 */
  int E = 3, n = 8, D = 12;
  float *X[3];
  for (int k = 0; k < E; k++) {
    X[k] = malloc(sizeof **X * (size_t)n * (size_t)D);
    for (int i = 0; i < n * D; i++) X[k][i] = (float)sin(i * 0.37 + k);
  }
  moesz_resmoe_stored st;
  double bad_keep[] = {0, -0.5, 1.5, NAN};
  for (int i = 0; i < 4; i++) {
    moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .keep = bad_keep[i]};
    CHECK_EQ_INT(moesz_resmoe_encode(X, E, n, D, &o, &CP, &st, &e), MOESZ_E_ARG);
    CHECK(strstr(e.msg, "keep") != NULL);
  }
  moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .residual = MOESZ_RESIDUAL_SVD, .keep = 0.1};   /* 0.1 * 96 / 20 < 1 */
  CHECK_EQ_INT(moesz_resmoe_encode(X, E, n, D, &o, &CP, &st, &e), MOESZ_E_ARG);
  CHECK(strstr(e.msg, "rank 0") != NULL);
  /* a good pruned blob, then its corruptions */
  o.residual = MOESZ_RESIDUAL_PRUNE;
  o.keep = 0.25;
  CHECK_EQ_INT(moesz_resmoe_encode(X, E, n, D, &o, &CP, &st, &e), MOESZ_OK);
  float *W = calloc((size_t)n * (size_t)D, sizeof *W);
  if (st.res) {
    const uint8_t *g = st.res[0];
    size_t gl = st.res_len[0];
    CHECK_EQ_INT(moesz_resmoe_residual_add(g, gl, n, D, W, &e), MOESZ_OK);
    for (size_t cut = 0; cut < gl; cut += 1 + gl / 40) CHECK(moesz_resmoe_residual_add(g, cut, n, D, W, NULL) != MOESZ_OK);
    CHECK_EQ_INT(moesz_resmoe_residual_add(g, gl, n + 1, D, W, &e), MOESZ_E_FORMAT);   /* another layer's shape */
    uint8_t *c = malloc(gl);
    int caught = 0, tries = 0;
    for (size_t i = 0; i < gl; i += 3) {
      memcpy(c, g, gl);
      c[i] ^= 0x5a;
      tries++;
      caught += moesz_resmoe_residual_add(c, gl, n, D, W, NULL) != MOESZ_OK;
    }
    /* header and codec sections are checked; a flipped byte in a zstd frame may decode to other positions */
    CHECK_MSG(caught * 10 >= tries * 8, "%d of %d corruptions caught", caught, tries);
    free(c);
  }
  /* positions beyond the matrix: a gap past the end, a bitmap bit past n*D */
  float one = 0.5f;
  void *vs;
  size_t vl;
  moesz_codec_info ci;
  CHECK_EQ_INT(moesz_codec_compress(&one, MOESZ_DT_F32, 1, &CP, &vs, &vl, &ci, NULL), MOESZ_OK);
  uint8_t var[2] = {0x80 | (uint8_t)((n * D) & 0x7f), (uint8_t)((n * D) >> 7)}, z[64];
  size_t zl = ZSTD_compress(z, sizeof z, var, 2, 3), bl;
  uint8_t *b = blob_of(1, 0, (uint32_t)n, (uint32_t)D, 1, z, zl, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, n, D, W, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "beyond the matrix") != NULL);
  free(b);
  uint8_t bm[13] = {0};   /* 8 x 12 = 96 bits = 12 bytes; a 7 x 13 matrix has 91 bits in 12 bytes */
  bm[11] = 0x80;          /* bit 95 */
  b = blob_of(1, 1, 7, 13, 1, bm, 12, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, 7, 13, W, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "beyond the matrix") != NULL);
  free(b);
  /* more values claimed than the matrix holds; SVD rank 0 and rank beyond min(n, D) */
  b = blob_of(1, 1, (uint32_t)n, (uint32_t)D, (uint64_t)n * D + 1, bm, 12, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, n, D, W, &e), MOESZ_E_FORMAT);
  free(b);
  b = blob_of(2, 0, (uint32_t)n, (uint32_t)D, 0, vs, vl, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, n, D, W, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "rank 0") != NULL);
  free(b);
  b = blob_of(2, 0, (uint32_t)n, (uint32_t)D, 9, vs, vl, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, n, D, W, &e), MOESZ_E_FORMAT);
  free(b);
  /* an SVD factor of the wrong size */
  b = blob_of(2, 0, (uint32_t)n, (uint32_t)D, 1, vs, vl, vs, vl, &bl);
  CHECK_EQ_INT(moesz_resmoe_residual_add(b, bl, n, D, W, &e), MOESZ_E_FORMAT);
  free(b);
  free(vs);
  free(W);
  moesz_resmoe_stored_free(&st);
  for (int k = 0; k < E; k++) free(X[k]);

  /* containers: a corrupt barycenter or residual is caught by its checksum; lying manifests are rejected */
  char msz[256], bad[256];
  snprintf(msz, sizeof msz, "%s/bad.msz", TMP);
  snprintf(bad, sizeof bad, "%s/bad2.msz", TMP);
  CHECK_EQ_INT(write_container(msz, MOESZ_RESIDUAL_PRUNE, NULL, &e), MOESZ_OK);
  moesz_msz *c;
  CHECK_EQ_INT(moesz_msz_open(msz, &c, &e), MOESZ_OK);
  if (c) {
    const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, 1);
    uint64_t offs[2] = {l->bary.off + l->bary.len / 2, l->res[2].off + l->res[2].len / 2};
    moesz_msz_close(c);
    for (int t = 0; t < 2; t++) {
      char *buf;
      size_t len;
      CHECK_EQ_INT(moesz_file_read_all(msz, 1 << 26, &buf, &len, NULL), MOESZ_OK);
      buf[offs[t]] ^= 1;
      CHECK_EQ_INT(moesz_msz_open_mem(buf, len, &c, &e), MOESZ_OK);
      if (c) {
        float *Wx = malloc(sizeof *Wx * 24 * 96);
        CHECK_EQ_INT(moesz_msz_resmoe_expert(c, 1, 2, Wx, &e), MOESZ_E_CHECKSUM);
        moesz_cache *k;
        moesz_cache_opts co = {.dtype = MOESZ_DT_COUNT};
        if (t == 0) CHECK_EQ_INT(moesz_cache_create(c, &co, &k, &e), MOESZ_E_CHECKSUM);   /* barycenter pinned at open */
        else {
          moesz_matview v[3];
          CHECK_EQ_INT(moesz_cache_create(c, &co, &k, &e), MOESZ_OK);
          if (k) { CHECK_EQ_INT(moesz_cache_get(k, 1, 2, v, &e), MOESZ_E_CHECKSUM); moesz_cache_destroy(k); }
        }
        free(Wx);
        moesz_msz_close(c);
      }
      /* truncated: the header's size catches it */
      CHECK_EQ_INT(moesz_msz_open_mem(buf, len - 100, &c, &e), MOESZ_E_FORMAT);
      free(buf);
    }
    const char *edits[][2] = {{"\"residual\":\"prune\"", "\"residual\":\"bogus\""},
                              {"\"method\":\"resmoe\"", "\"method\":\"codec\""},
                              {"\"keep\":0.25", "\"keep\":0"},
                              {"\"resmoe\":{\"version\":1", "\"resmoe_\":{\"version\":1"},
                              {"\"resmoe\":{\"version\":1", "\"resmoe\":{\"version\":7"},
                              {"\"max_err\":", "\"max_err_\":"}};
    for (int i = 0; i < 6; i++) {
      CHECK_EQ_INT(edit_manifest(msz, bad, edits[i][0], edits[i][1]), 0);
      int rc = moesz_msz_open(bad, &c, &e);
      CHECK_MSG(rc == (i == 4 ? MOESZ_E_UNSUPPORTED : MOESZ_E_FORMAT), "edit %d: %d", i, rc);
      if (c) moesz_msz_close(c);
      c = NULL;
    }
    unlink(bad);
  }
  unlink(msz);
}

TEST(cli_compress_resmoe) {
  const char *bin = getenv("MOESZ_BIN");
  if (!bin || !*bin) bin = "build/moesz";
  struct stat sb;
  if (stat(bin, &sb) != 0) SKIP("%s not built", bin);
  char cmd[1024], out[8192];
  snprintf(cmd, sizeof cmd, "%s compress " FIXTURE " -o %s/cli.msz --method resmoe --residual svd --keep 0.5 --json 2>&1", bin, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "\"resmoe_layers\":2") != NULL);   /* default skips the first nmoe / 4 = 0 of 2 MoE layers */
  snprintf(cmd, sizeof cmd, "%s inspect %s/cli.msz 2>&1", bin, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "svd keep 0.5:") != NULL);
  snprintf(cmd, sizeof cmd, "%s decompress %s/cli.msz -o %s/cli.out -q 2>&1", bin, TMP, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  snprintf(cmd, sizeof cmd, "%s/cli.out/model.safetensors", TMP);
  CHECK(stat(cmd, &sb) == 0);
  const char *bad[][2] = {{"--keep 0", "--keep"}, {"--keep 1.5", "--keep"}, {"--keep x", "--keep"},
                          {"--residual foo", "--residual"}, {"--resmoe-layers 9", "--resmoe-layers"}, {"--base x", "--base"}};
  for (int i = 0; i < 6; i++) {
    snprintf(cmd, sizeof cmd, "%s compress " FIXTURE " -o %s/x.msz --method resmoe %s 2>&1", bin, TMP, bad[i][0]);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);
    CHECK_MSG(strstr(out, bad[i][1]) != NULL, "%s: %s", bad[i][0], out);
  }
  snprintf(cmd, sizeof cmd, "%s compress " FIXTURE " -o %s/x.msz --keep 0.5 2>&1", bin, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);   /* resmoe options without --method resmoe */
  snprintf(cmd, sizeof cmd, "%s compress " FIXTURE " -o %s/x.msz --method resmoe --residual svd --keep 0.01 2>&1", bin, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 1);
  CHECK(strstr(out, "rank 0") != NULL);
  snprintf(cmd, sizeof cmd, "rm -rf %s/cli.msz %s/cli.out %s/x.msz", TMP, TMP, TMP);
  CHECK_EQ_INT(system(cmd), 0);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_rmst_%ld", (long)getpid());
  mkdir(TMP, 0755);
  RUN(restored_weights_meet_the_documented_bound);
  RUN(container_stores_decodes_exports_and_serves);
  RUN(bad_input_is_rejected);
  RUN(cli_compress_resmoe);
  char cmd[300];   /* the folder and whatever a failed check left in it */
  snprintf(cmd, sizeof cmd, "rm -rf %s", TMP);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", TMP);
  return DONE();
}
