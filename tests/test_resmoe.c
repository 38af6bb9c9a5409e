/* tests/test_resmoe.c - the assignment solver (brute-force optimum on small
 * costs; dual feasibility and complementary slackness on larger ones), the
 * barycenter against POT (tests/fixtures/resmoe, tools/resmoe_reference.py),
 * a layer of permuted copies (zero residual), exact restoration at keep = 1,
 * unchanged logits of a whole model at keep = 1 (permutations do not change
 * the function), baselines, and rejected inputs. */
#include "harness.h"
#include <cjson/cJSON.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"

static uint64_t rs = 0x123456789ull;
static double urand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (double)(rs >> 11) * 0x1p-53; }

static double brute(const double *c, int n, int *perm, int k, int used, double acc, double best) {
  if (k == n) return acc < best ? acc : best;
  for (int j = 0; j < n; j++)
    if (!(used >> j & 1)) { perm[k] = j; best = brute(c, n, perm, k + 1, used | 1 << j, acc + c[k * n + j], best); }
  return best;
}

TEST(lap_is_optimal) {
  for (int n = 1; n <= 7; n++)
    for (int rep = 0; rep < 20; rep++) {
      double c[49];
      for (int i = 0; i < n * n; i++) c[i] = rep % 3 ? urand() : (double)(int)(urand() * 4);   /* ties too */
      int a[7], perm[7];
      CHECK_EQ_INT(moesz_lap_solve(c, n, a, NULL, NULL, NULL), MOESZ_OK);
      double got = 0;
      int seen = 0;
      for (int i = 0; i < n; i++) { got += c[i * n + a[i]]; seen |= 1 << a[i]; }
      CHECK_EQ_INT(seen, (1 << n) - 1);
      CHECK_NEAR(got, brute(c, n, perm, 0, 0, 0, 1e300), 1e-9);
    }
  int n = 150;
  double *c = malloc(sizeof *c * (size_t)n * (size_t)n), u[150], v[150];
  int a[150];
  for (int i = 0; i < n * n; i++) c[i] = -urand() * 10;
  CHECK_EQ_INT(moesz_lap_solve(c, n, a, u, v, NULL), MOESZ_OK);
  int infeasible = 0, slack = 0;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) infeasible += u[i] + v[j] > c[i * n + j] + 1e-9;
    slack += fabs(u[i] + v[a[i]] - c[i * n + a[i]]) > 1e-9;
  }
  CHECK_EQ_INT(infeasible, 0);
  CHECK_EQ_INT(slack, 0);
  CHECK_EQ_INT(moesz_lap_solve(c, 0, a, NULL, NULL, NULL), MOESZ_E_ARG);
  free(c);
}

static float **load_case(const char *name, int E, int n, int D) {
  char p[256];
  snprintf(p, sizeof p, "tests/fixtures/resmoe/%s.f32", name);
  char *buf;
  size_t len;
  if (moesz_file_read_all(p, 1 << 24, &buf, &len, NULL) || len != (size_t)E * (size_t)n * (size_t)D * 4) return NULL;
  float **X = malloc(sizeof *X * (size_t)E);
  for (int k = 0; k < E; k++) {
    X[k] = malloc((size_t)n * (size_t)D * 4);
    memcpy(X[k], buf + (size_t)k * (size_t)n * (size_t)D * 4, (size_t)n * (size_t)D * 4);
  }
  free(buf);
  return X;
}

TEST(barycenter_objective_matches_pot) {
  char *txt;
  size_t len;
  CHECK_EQ_INT(moesz_file_read_all("tests/fixtures/resmoe/cases.json", 1 << 20, &txt, &len, NULL), MOESZ_OK);
  cJSON *j = cJSON_Parse(txt);
  free(txt);
  int cases = 0;
  for (const cJSON *c = j ? j->child : NULL; c; c = c->next, cases++) {
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    int E = cJSON_GetObjectItemCaseSensitive(c, "E")->valueint, n = cJSON_GetObjectItemCaseSensitive(c, "n")->valueint;
    int D = cJSON_GetObjectItemCaseSensitive(c, "D")->valueint;
    double pot = cJSON_GetObjectItemCaseSensitive(c, "pot_emd_objective")->valuedouble;
    float **X = load_case(name, E, n, D);
    CHECK(X != NULL);
    if (!X) continue;
    moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .keep = 0.25};
    moesz_resmoe_report r;
    CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 4, &o, &r, NULL), MOESZ_OK);
    double mine = r.objective[r.iters - 1];
    CHECK_MSG(mine <= pot * (1 + 1e-6) + 1e-12, "%s: objective %.9g > POT %.9g", name, mine, pot);
    for (int i = 1; i < r.iters; i++) CHECK(r.objective[i] <= r.objective[i - 1] * (1 + 1e-9));   /* monotone */
    free(r.rel_err);
    for (int k = 0; k < E; k++) free(X[k]);
    free(X);
  }
  CHECK(cases >= 3);
  cJSON_Delete(j);
}

TEST(permuted_copies_have_zero_residual_and_keep1_is_exact) {
  int E = 5, n = 12, D = 9;
  float *base = malloc(sizeof *base * (size_t)n * (size_t)D), *X[5], *orig[5];
  for (int i = 0; i < n * D; i++) base[i] = (float)(urand() - 0.5);
  for (int k = 0; k < E; k++) {
    int perm[12];
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) { int r = (int)(urand() * (i + 1)); int t = perm[i]; perm[i] = perm[r]; perm[r] = t; }
    X[k] = malloc(sizeof **X * (size_t)n * (size_t)D);
    for (int i = 0; i < n; i++) memcpy(X[k] + i * D, base + perm[i] * D, sizeof **X * (size_t)D);
  }
  moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .keep = 0.25};
  moesz_resmoe_report r;
  CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 2, &o, &r, NULL), MOESZ_OK);
  CHECK(r.objective[r.iters - 1] < 1e-10);
  for (int k = 0; k < E; k++) CHECK(r.rel_err[k] < 1e-6);
  CHECK(r.stored_params < r.original_params);
  free(r.rel_err);
  /* random experts, keep = 1: restored = aligned original up to float rounding */
  for (int k = 0; k < E; k++) {
    for (int i = 0; i < n * D; i++) X[k][i] = (float)(urand() - 0.5);
    orig[k] = malloc(sizeof **X * (size_t)n * (size_t)D);
    memcpy(orig[k], X[k], sizeof **X * (size_t)n * (size_t)D);
  }
  o.keep = 1.0;
  for (int k = 0; k < E; k++) memcpy(X[k], orig[k], sizeof **X * (size_t)n * (size_t)D);
  CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 2, &o, &r, NULL), MOESZ_OK);
  for (int k = 0; k < E; k++) CHECK_MSG(r.rel_err[k] < 1e-5, "expert %d: %g", k, r.rel_err[k]);
  free(r.rel_err);
  /* SVD residual: rank floor(keep n D / (n + D)); error falls as keep grows */
  double prev = 2;
  o.residual = MOESZ_RESIDUAL_SVD;
  for (double keep = 0.2; keep <= 1.0; keep += 0.4) {
    for (int k = 0; k < E; k++) memcpy(X[k], orig[k], sizeof **X * (size_t)n * (size_t)D);
    o.keep = keep;
    CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 2, &o, &r, NULL), MOESZ_OK);
    double m = 0;
    for (int k = 0; k < E; k++) m += r.rel_err[k] / E;
    CHECK_MSG(m < prev, "svd keep %.1f: %g not below %g", keep, m, prev);
    prev = m;
    free(r.rel_err);
  }
  /* the baselines at keep 0.25 lose information; resmoe's aligned residual loses no more than plain pruning here */
  o.keep = 0.25;
  double err[4];
  for (int meth = 0; meth < 4; meth++) {
    for (int k = 0; k < E; k++) memcpy(X[k], orig[k], sizeof **X * (size_t)n * (size_t)D);
    o.method = (moesz_resmoe_method)meth;
    o.residual = MOESZ_RESIDUAL_PRUNE;
    CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 2, &o, &r, NULL), MOESZ_OK);
    err[meth] = 0;
    for (int k = 0; k < E; k++) err[meth] += r.rel_err[k] / E;
    CHECK(err[meth] > 0 && err[meth] < 1);
    free(r.rel_err);
  }
  o.keep = 0;
  CHECK_EQ_INT(moesz_resmoe_layer(X, E, n, D, 2, &o, &r, NULL), MOESZ_E_ARG);
  for (int k = 0; k < E; k++) { free(X[k]); free(orig[k]); }
  free(base);
}

TEST(model_transform_keeps_the_function_at_keep_1) {
  char out[128];
  snprintf(out, sizeof out, "/tmp/moesz_resmoe_%ld", (long)getpid());
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/mixtral", &m, NULL), MOESZ_OK);
  if (!m) return;
  uint8_t layers[MOESZ_MAX_LAYERS];
  memset(layers, 1, sizeof layers);
  moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .keep = 1.0};
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_resmoe_model(m, out, &o, layers, NULL, 0, &e), MOESZ_OK);
  moesz_model *r;
  CHECK_EQ_INT(moesz_model_open(out, &r, &e), MOESZ_OK);
  if (r) {
    /* every non-expert tensor bit-identical; expert tensors permuted, not equal */
    int diff_other = 0, diff_expert = 0;
    for (size_t i = 0; i < moesz_st_count(m->st); i++) {
      const moesz_tensor *a = moesz_st_at(m->st, i), *b = moesz_st_find(r->st, a->name);
      int d = !b || b->nbytes != a->nbytes || memcmp(a->data, b->data, a->nbytes);
      if (m->roles[i].role == MOESZ_ROLE_EXPERT) diff_expert += d; else diff_other += d;
    }
    CHECK_EQ_INT(diff_other, 0);
    CHECK(diff_expert > 0);
    moesz_model_close(r);
  }
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 32};
  moesz_engine *a, *b;
  CHECK_EQ_INT(moesz_engine_open("tests/fixtures/mixtral", &eo, &a, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_engine_open(out, &eo, &b, NULL), MOESZ_OK);
  int V = moesz_engine_vocab(a);
  float *la = malloc(sizeof *la * 20 * (size_t)V), *lb = malloc(sizeof *lb * 20 * (size_t)V);
  int32_t tok[20];
  for (int i = 0; i < 20; i++) tok[i] = (i * 17 + 3) % V;
  CHECK_EQ_INT(moesz_engine_forward(a, tok, 20, 1, la, NULL), MOESZ_OK);
  CHECK_EQ_INT(moesz_engine_forward(b, tok, 20, 1, lb, NULL), MOESZ_OK);
  double worst = 0;
  for (int i = 0; i < 20 * V; i++) if (fabs((double)la[i] - lb[i]) > worst) worst = fabs((double)la[i] - lb[i]);
  CHECK_MSG(worst < 1e-4, "logits moved by %g", worst);
  free(la); free(lb);
  moesz_engine_close(a);
  moesz_engine_close(b);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", out);
  CHECK_EQ_INT(system(cmd), 0);
  moesz_model_close(m);
  /* a dense model is rejected by name */
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/llama", &m, NULL), MOESZ_OK);
  if (m) {
    CHECK_EQ_INT(moesz_resmoe_model(m, out, &o, layers, NULL, 0, &e), MOESZ_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "not a MoE model") != NULL);
    moesz_model_close(m);
  }
}

int main(void) {
  RUN(lap_is_optimal);
  RUN(barycenter_objective_matches_pot);
  RUN(permuted_copies_have_zero_residual_and_keep1_is_exact);
  RUN(model_transform_keeps_the_function_at_keep_1);
  return DONE();
}
