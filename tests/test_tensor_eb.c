/* tests/test_tensor_eb.c - per-tensor bounds (compress --tensor-eb): PCRE2
 * rules over expert record names set each matrix's bound or make it
 * lossless, the first match wins over later rules and over --layer-eb,
 * stacked tensors are addressed by "#<expert>.<mat>", and a bad pattern or a
 * rule that matches nothing is refused with nothing written. */
#include "harness.h"
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"

static char TMP[128];

static int write_rules(const char *dir, const moesz_msz_tensor_eb *r, int n, const double *layer_eb, const char *path,
                       moesz_error *e) {
  moesz_model *m;
  if (moesz_model_open(dir, &m, e)) return -1;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_CODEC;
  o.eb = 1e-3;
  o.threads = 1;
  o.tensor_eb = r;
  o.n_tensor_eb = n;
  o.layer_eb = layer_eb;
  moesz_msz_codec_options("entropy", "abs", &o);
  int rc = moesz_msz_write(m, path, &o, NULL, e);
  moesz_model_close(m);
  return rc;
}

TEST(rules_set_bounds_per_matrix) {
  char path[256];
  snprintf(path, sizeof path, "%s/a.msz", TMP);
  /* per-expert names: ...experts.E.w1/w2/w3.weight#E.gate|down|up */
  moesz_msz_tensor_eb r[3] = {{"w2", 5e-4}, {"experts\\.1\\.", -1}, {"w1", 2e-3}};
  double leb[2] = {4e-3, 0};   /* layer 0 looser; the rules still win */
  moesz_error e = {0};
  CHECK_EQ_INT(write_rules("tests/fixtures/mixtral", r, 3, leb, path, &e), MOESZ_OK);
  moesz_msz *c = NULL;
  CHECK_EQ_INT(moesz_msz_open(path, &c, &e), MOESZ_OK);
  if (!c) return;
  const moesz_config *cfg = moesz_msz_config(c);
  for (int L = 0; L < cfg->n_layers; L++)
    for (int x = 0; x < cfg->n_experts; x++) {
      const moesz_msz_rec *g = moesz_msz_expert(c, L, x, 0, MOESZ_MAT_GATE);
      const moesz_msz_rec *u = moesz_msz_expert(c, L, x, 0, MOESZ_MAT_UP);
      const moesz_msz_rec *d = moesz_msz_expert(c, L, x, 0, MOESZ_MAT_DOWN);
      if (!g || !u || !d) { CHECK(0); continue; }
      CHECK(d->method == MOESZ_MSZ_CODEC && d->eb == 5e-4);   /* w2 first, even in expert 1 */
      if (x == 1) {
        CHECK(g->method != MOESZ_MSZ_CODEC && g->eb == 0);     /* lossless: zstd (or raw if smaller) */
        CHECK(u->method != MOESZ_MSZ_CODEC && u->eb == 0);
      } else {
        CHECK(g->method == MOESZ_MSZ_CODEC && g->eb == 2e-3);
        CHECK(u->method == MOESZ_MSZ_CODEC && u->eb == (L == 0 ? 4e-3 : 1e-3));   /* no rule: layer bound */
      }
    }
  moesz_msz_close(c);
  unlink(path);
}

TEST(stacked_tensors_by_expert_and_matrix) {
  char path[256];
  snprintf(path, sizeof path, "%s/b.msz", TMP);
  moesz_msz_tensor_eb r[1] = {{"layers\\.1\\..*#2\\.down$", 3e-3}};
  moesz_error e = {0};
  CHECK_EQ_INT(write_rules("tests/fixtures/mixtral_stacked", r, 1, NULL, path, &e), MOESZ_OK);
  moesz_msz *c = NULL;
  CHECK_EQ_INT(moesz_msz_open(path, &c, &e), MOESZ_OK);
  if (!c) return;
  int hits = 0;
  for (size_t i = 0; i < moesz_msz_count(c); i++) {
    const moesz_msz_rec *x = moesz_msz_at(c, i);
    int want = x->layer == 1 && x->expert == 2 && x->mat == MOESZ_MAT_DOWN;
    CHECK(x->eb == (want ? 3e-3 : 1e-3));
    hits += want;
  }
  CHECK_EQ_INT(hits, 1);
  moesz_msz_close(c);
  unlink(path);
}

TEST(bad_rules_are_refused) {
  char path[256];
  snprintf(path, sizeof path, "%s/c.msz", TMP);
  moesz_error e = {0};
  moesz_msz_tensor_eb bad[1] = {{"w2(", 1e-3}};
  CHECK_EQ_INT(write_rules("tests/fixtures/mixtral", bad, 1, NULL, path, &e), MOESZ_E_ARG);
  CHECK(strstr(e.msg, "w2(") != NULL);
  /* the second rule is shadowed by the first: it matches nothing */
  moesz_msz_tensor_eb none[2] = {{"w2", 1e-3}, {"experts\\.0\\.w2", 2e-3}};
  CHECK_EQ_INT(write_rules("tests/fixtures/mixtral", none, 2, NULL, path, &e), MOESZ_E_ARG);
  CHECK(strstr(e.msg, "matches no expert matrix") != NULL);
  moesz_msz_tensor_eb zero[1] = {{"w2", 0}};
  CHECK_EQ_INT(write_rules("tests/fixtures/mixtral", zero, 1, NULL, path, &e), MOESZ_E_ARG);
  CHECK(access(path, F_OK) != 0);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_tensor_eb_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(rules_set_bounds_per_matrix);
  RUN(stacked_tensors_by_expert_and_matrix);
  RUN(bad_rules_are_refused);
  rmdir(TMP);
  return DONE();
}
