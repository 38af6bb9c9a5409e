/* tests/test_split.c - compression split across machines: part containers
 * (compress --layers) are recognised as parts, refused where a whole
 * container is needed, validated over their own layers; merging parts gives
 * a container byte-identical to a single run (fixtures with dense layers
 * between MoE layers and stacked experts, and the bundled model through the
 * CLI); overlapping, incomplete and mismatched parts are refused. */
#include "harness.h"
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];

static const char *bin(void) {
  const char *b = getenv("MOESZ_BIN");
  return b && *b ? b : "build/moesz";
}

/* Writes fixture dir as a container (a part if first >= 0) at TMP/name. */
static int write_part(const char *dir, int first, int last, double eb, const char *name, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s", TMP, name);
  moesz_model *m;
  if (moesz_model_open(dir, &m, NULL)) return -1;
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  o.method = MOESZ_MSZ_CODEC;
  o.eb = eb;
  o.threads = 2;
  o.part = first >= 0;
  o.part_first = first;
  o.part_last = last;
  moesz_msz_codec_options("entropy", "abs", &o);
  moesz_error e = {0};
  int rc = moesz_msz_write(m, path, &o, NULL, &e);
  if (rc) fprintf(stderr, "  write %s: %s\n", name, e.msg);
  moesz_model_close(m);
  return rc;
}

/* 1 if the two files hold the same bytes. */
static int same_bytes(const char *a, const char *b) {
  char *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  int ok = !moesz_file_read_all(a, 1 << 26, &x, &nx, NULL) && !moesz_file_read_all(b, 1 << 26, &y, &ny, NULL) &&
           nx == ny && !memcmp(x, y, nx);
  free(x);
  free(y);
  return ok;
}

/* Parts of fixture dir over ranges r[0..2n) merge into the single run's bytes. */
static void merge_matches(const char *dir, const int *r, int n) {
  char full[256], out[256], paths[4][256];
  const char *pp[4];
  CHECK_EQ_INT(write_part(dir, -1, -1, 1e-3, "full.msz", full, sizeof full), MOESZ_OK);
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "p%d.msz", i);
    CHECK_EQ_INT(write_part(dir, r[2 * i], r[2 * i + 1], 1e-3, name, paths[i], sizeof paths[i]), MOESZ_OK);
    pp[n - 1 - i] = paths[i];   /* given in reverse order: merge sorts them */
  }
  snprintf(out, sizeof out, "%s/merged.msz", TMP);
  moesz_error e = {0};
  int rc = moesz_msz_merge(pp, n, out, &e);
  CHECK_MSG(rc == MOESZ_OK, "%s: %s", dir, e.msg);
  CHECK_MSG(same_bytes(out, full), "%s: merged container differs from the single run", dir);
  for (int i = 0; i < n; i++) unlink(paths[i]);
  unlink(out);
  unlink(full);
}

TEST(merged_parts_equal_single_run) {
  merge_matches("tests/fixtures/mixtral", (const int[]){0, 0, 1, 1}, 2);
  merge_matches("tests/fixtures/mixtral_stacked", (const int[]){0, 0, 1, 1}, 2);
  /* qwen2_moe: layer 1 is a dense MLP; deepseek: layer 0 dense, shared experts */
  merge_matches("tests/fixtures/qwen2_moe", (const int[]){0, 1, 2, 2}, 2);
  merge_matches("tests/fixtures/qwen2_moe", (const int[]){0, 0, 2, 2}, 2);
  merge_matches("tests/fixtures/deepseek", (const int[]){1, 1, 2, 2}, 2);
  merge_matches("tests/fixtures/deepseek", (const int[]){0, 2}, 1);
}

TEST(parts_are_recognised_and_checked) {
  char p0[256];
  CHECK_EQ_INT(write_part("tests/fixtures/qwen2_moe", 0, 0, 1e-3, "q0.msz", p0, sizeof p0), MOESZ_OK);
  moesz_msz *c = NULL;
  moesz_error e = {0};
  /* a part cannot be served: the whole-container open refuses it, naming it */
  CHECK_EQ_INT(moesz_msz_open(p0, &c, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "part container") && strstr(e.msg, "0-0"));
  CHECK(c == NULL);
  CHECK_EQ_INT(moesz_msz_open_part(p0, &c, &e), MOESZ_OK);
  int a = -1, b = -1;
  if (c) {
    CHECK_EQ_INT(moesz_msz_part(c, &a, &b), 1);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 0);
    CHECK(moesz_msz_expert(c, 0, 0, 0, MOESZ_MAT_GATE) != NULL);
    CHECK(moesz_msz_expert(c, 2, 0, 0, MOESZ_MAT_GATE) == NULL);
    moesz_msz_close(c);
  }
  /* a part range without a MoE layer is refused at write time */
  char px[256];
  CHECK(write_part("tests/fixtures/qwen2_moe", 1, 1, 1e-3, "qx.msz", px, sizeof px) == MOESZ_E_ARG);
  CHECK(access(px, F_OK) != 0);
  unlink(p0);
}

TEST(bad_part_sets_are_refused) {
  char a[256], b[256], c[256], d[256], full[256], out[256];
  const char *dir = "tests/fixtures/qwen2_moe";
  CHECK_EQ_INT(write_part(dir, 0, 1, 1e-3, "a.msz", a, sizeof a), MOESZ_OK);
  CHECK_EQ_INT(write_part(dir, 1, 2, 1e-3, "b.msz", b, sizeof b), MOESZ_OK);
  CHECK_EQ_INT(write_part(dir, 0, 0, 1e-3, "c.msz", c, sizeof c), MOESZ_OK);
  CHECK_EQ_INT(write_part("tests/fixtures/deepseek", 2, 2, 1e-3, "d.msz", d, sizeof d), MOESZ_OK);
  CHECK_EQ_INT(write_part(dir, -1, -1, 1e-3, "full.msz", full, sizeof full), MOESZ_OK);
  snprintf(out, sizeof out, "%s/out.msz", TMP);
  moesz_error e = {0};
  /* overlapping ranges: layer 1 in both */
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){a, b}, 2, out, &e), MOESZ_E_ARG);
  CHECK_MSG(strstr(e.msg, "overlap") != NULL, "%s", e.msg);
  /* a MoE layer no part holds */
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){c}, 1, out, &e), MOESZ_E_ARG);
  CHECK_MSG(strstr(e.msg, "layer 2") != NULL, "%s", e.msg);
  /* parts of different models */
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){c, d}, 2, out, &e), MOESZ_E_ARG);
  CHECK_MSG(strstr(e.msg, "differ") != NULL, "%s", e.msg);
  /* a whole container is not a part */
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){c, full}, 2, out, &e), MOESZ_E_ARG);
  CHECK_MSG(strstr(e.msg, "not a part") != NULL, "%s", e.msg);
  /* the output may not be one of the parts */
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){c, b}, 2, c, &e), MOESZ_E_ARG);
  CHECK(access(out, F_OK) != 0);
  /* and a part that merges: the result opens as a whole container */
  unlink(b);
  CHECK_EQ_INT(write_part(dir, 2, 2, 2e-3, "b2.msz", b, sizeof b), MOESZ_OK);
  CHECK_EQ_INT(moesz_msz_merge((const char *[]){b, c}, 2, out, &e), MOESZ_OK);
  moesz_msz *m = NULL;
  CHECK_EQ_INT(moesz_msz_open(out, &m, &e), MOESZ_OK);
  if (m) {
    CHECK_EQ_INT(moesz_msz_part(m, NULL, NULL), 0);
    const moesz_msz_rec *r0 = moesz_msz_expert(m, 0, 0, 0, MOESZ_MAT_DOWN), *r2 = moesz_msz_expert(m, 2, 0, 0, MOESZ_MAT_DOWN);
    CHECK(r0 && r2 && r0->eb == 1e-3 && r2->eb == 2e-3);   /* each part keeps its own bound */
    moesz_msz_close(m);
  }
  unlink(a); unlink(b); unlink(c); unlink(d); unlink(full); unlink(out);
}

/* The bundled model through the CLI: compress in two parts, merge, cmp. */
TEST(cli_split_bundled_model_is_identical) {
  if (access("models/moesz-mix-tiny/config.json", F_OK)) SKIP("models/moesz-mix-tiny absent");
  char cmd[2048], out[4096];
  snprintf(cmd, sizeof cmd,
           "M=models/moesz-mix-tiny; T=%s; %s compress $M -o $T/f.msz -q >/dev/null && "
           "%s compress $M --layers 5- -o $T/p2.msz -q >/dev/null && "
           "%s compress $M --layers 0-4 -o $T/p1.msz -q >/dev/null && "
           "%s merge $T/p2.msz $T/p1.msz -o $T/m.msz >/dev/null && cmp $T/f.msz $T/m.msz && echo SAME; "
           "%s merge $T/p1.msz -o $T/x.msz 2>&1; %s run $T/p1.msz --prompt-ids 1 --max-tokens 1 2>&1; "
           "rm -f $T/f.msz $T/p1.msz $T/p2.msz $T/m.msz", TMP, bin(), bin(), bin(), bin(), bin(), bin());
  harness_run_cmd(cmd, out, sizeof out);
  CHECK_MSG(strstr(out, "SAME") != NULL, "%s", out);
  CHECK_MSG(strstr(out, "no part holds MoE layer 5") != NULL, "%s", out);
  CHECK_MSG(strstr(out, "join the parts with `moesz merge`") != NULL, "%s", out);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_split_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(merged_parts_equal_single_run);
  RUN(parts_are_recognised_and_checked);
  RUN(bad_part_sets_are_refused);
  RUN(cli_split_bundled_model_is_identical);
  rmdir(TMP);
  return DONE();
}
