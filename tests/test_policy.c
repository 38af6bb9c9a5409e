/* tests/test_policy.c - the bound policy: the greedy plan (within the
 * budget, sums as predicted, the cheapest layer moved first, measurement
 * noise cannot buy a bound, a budget below the smallest bounds refused, a
 * larger budget never costs bytes), the --layer-eb spec it prints (runs
 * merged, bounds read back exactly), and `moesz compress --target-kl` on the
 * bundled model with a short calibration text: the verified KL is within the
 * target, `moesz ppl --ref` measures the same KL, the printed spec
 * reproduces the container byte for byte, a later run reuses the sweep, and
 * the usage errors; the perplexity target on the same cells. */
#include "harness.h"
#include <sys/stat.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];
#define MODEL "models/moesz-mix-tiny"

static const char *bin(void) {
  const char *b = getenv("MOESZ_BIN");
  return b && *b ? b : "build/moesz";
}

TEST(plan_greedy) {
  /* 3 layers x 4 bounds; layer 0 is sensitive, layer 2 nearly free */
  double ebs[4] = {1e-3, 2e-3, 5e-3, 1e-2};
  double cost[12] = {0.001, 0.005, 0.02, 0.08,
                     0.0005, 0.001, 0.004, 0.012,
                     0.0001, 0.0002, 0.0005, 0.001};
  uint64_t bytes[12] = {1000, 800, 600, 450,
                        1000, 800, 600, 450,
                        1000, 800, 600, 450};
  moesz_policy_table t = {.n_layers = 3, .n_ebs = 4, .ebs = ebs, .cost = cost, .bytes = bytes};
  int ch[3];
  double pc;
  uint64_t pb;
  moesz_error e = {0};
  /* budget 0.0066: layer 2 to 1e-2 in steps (+0.0009), layer 1 to 2e-3 (+0.0005, 400 bytes per 0.001),
   * then to 5e-3 (+0.003, 67 per 0.001) rather than layer 0 to 2e-3 (+0.004, 50 per 0.001), which no
   * longer fits: total 0.001 + 0.004 + 0.001 = 0.006 */
  CHECK_EQ_INT(moesz_policy_plan(&t, 0.0066, ch, &pc, &pb, &e), MOESZ_OK);
  CHECK(ch[2] == 3 && ch[1] == 2 && ch[0] == 0);
  CHECK_NEAR(pc, 0.006, 1e-12);
  CHECK_EQ_INT(pb, 1000 + 600 + 450);
  /* within the budget whatever it is; more budget never costs bytes */
  uint64_t last = UINT64_MAX;
  for (double b = 0.0016; b < 0.2; b *= 1.3) {
    CHECK_EQ_INT(moesz_policy_plan(&t, b, ch, &pc, &pb, &e), MOESZ_OK);
    double sum = 0;
    uint64_t sb = 0;
    for (int i = 0; i < 3; i++) { sum += cost[i * 4 + ch[i]]; sb += bytes[i * 4 + ch[i]]; }
    CHECK(pc <= b + 1e-15);
    CHECK_NEAR(pc, sum, 1e-12);
    CHECK_EQ_INT(pb, sb);
    CHECK_MSG(pb <= last, "budget %g: %llu bytes after %llu", b, (unsigned long long)pb, (unsigned long long)last);
    last = pb;
  }
  CHECK_EQ_INT(last, 3 * 450);
  /* below the smallest bounds' sum (0.0016) */
  CHECK_EQ_INT(moesz_policy_plan(&t, 0.0015, ch, &pc, &pb, &e), MOESZ_E_RANGE);
  CHECK(strstr(e.msg, "smallest bound") != NULL);
  /* a measured dip (noise) at a larger bound is not taken as free: the running maximum */
  double dip[4] = {0.001, 0.004, 0.0001, 0.08};
  moesz_policy_table t1 = {.n_layers = 1, .n_ebs = 4, .ebs = ebs, .cost = dip, .bytes = bytes};
  CHECK_EQ_INT(moesz_policy_plan(&t1, 0.002, ch, &pc, &pb, &e), MOESZ_OK);
  CHECK_EQ_INT(ch[0], 0);
  CHECK_EQ_INT(moesz_policy_plan(&t1, 0.0045, ch, &pc, &pb, &e), MOESZ_OK);
  CHECK_EQ_INT(ch[0], 2);   /* at 0.004 (the max so far), 5e-3 saves more than 2e-3 */
  CHECK_NEAR(pc, 0.004, 1e-12);
  /* bad tables */
  double desc[4] = {1e-2, 5e-3, 2e-3, 1e-3};
  moesz_policy_table t2 = t;
  t2.ebs = desc;
  CHECK_EQ_INT(moesz_policy_plan(&t2, 1, ch, &pc, &pb, &e), MOESZ_E_ARG);
  double nan_cost[12];
  memcpy(nan_cost, cost, sizeof cost);
  nan_cost[5] = NAN;
  moesz_policy_table t3 = t;
  t3.cost = nan_cost;
  CHECK_EQ_INT(moesz_policy_plan(&t3, 1, ch, &pc, &pb, &e), MOESZ_E_ARG);
}

TEST(spec_format) {
  double eb[8] = {0.002, 0.002, 0, 0.1 + 0.2, 0.01, 0.01, 0.01, 0.005};
  char s[256];
  CHECK_EQ_INT(moesz_policy_spec(eb, 8, s, sizeof s), 0);
  CHECK_MSG(!strcmp(s, "0-1:0.002,3:0.30000000000000004,4-6:0.01,7:0.005"), "%s", s);
  CHECK(strtod("0.30000000000000004", NULL) == 0.1 + 0.2);
  CHECK_EQ_INT(moesz_policy_spec(eb, 8, s, 10), -1);
  double none[2] = {0, 0};
  CHECK_EQ_INT(moesz_policy_spec(none, 2, s, sizeof s), 0);
  CHECK(!strcmp(s, ""));
}

/* Pulls "key":value (a number or a "string") out of a one-line JSON object. */
static int jget(const char *js, const char *key, char *out, size_t cap) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(js, k);
  if (!p) return -1;
  p += strlen(k);
  int q = *p == '"';
  p += q;
  size_t n = 0;
  while (p[n] && (q ? p[n] != '"' : p[n] != ',' && p[n] != '}')) n++;
  if (n >= cap) return -1;
  memcpy(out, p, n);
  out[n] = 0;
  return 0;
}

TEST(compress_target_kl_on_bundled_model) {
  if (access(MODEL "/model.safetensors", R_OK)) SKIP("bundled model absent");
  char data[512], calib[256], cmd[4096], out[8192], v[1024];
  snprintf(data, sizeof data, "%s/text/wikitext-2-raw-test.txt", harness_data_dir());
  if (access(data, R_OK)) SKIP("%s absent", data);
  /* the calibration text: the first 6,000 bytes of the WikiText-2 test split */
  snprintf(calib, sizeof calib, "%s/calib.txt", TMP);
  snprintf(cmd, sizeof cmd, "head -c 6000 '%s' > '%s'", data, calib);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  const double target = 0.004;
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/p.msz --target-kl %g --calib %s --calib-tokens 384 "
           "--calib-ctx 128 --policy-eb 5e-3,2e-2 --threads 2 --json -q 2>%s/err.txt", bin(), TMP, target, calib, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  double kl = 1, stored = 0;
  char spec[512] = "";
  CHECK(!jget(out, "kl", v, sizeof v));
  kl = atof(v);
  CHECK(!jget(out, "expert_stored_bytes", v, sizeof v));
  stored = atof(v);
  CHECK(!jget(out, "layer_eb", spec, sizeof spec));
  CHECK_MSG(kl > 0 && kl <= target, "verified KL %g, target %g", kl, target);
  /* the plan mixes the two bounds (all at 2e-2 measures about 0.01 here, all at 5e-3 about 0.001) */
  CHECK_MSG(strstr(spec, ":0.005") && strstr(spec, ":0.02"), "spec '%s'", spec);
  /* progress and the tries on stderr */
  snprintf(cmd, sizeof cmd, "grep -c '^policy: try' %s/err.txt", TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, v, sizeof v), 0);
  CHECK(atoi(v) >= 1);
  /* an independent measurement: moesz ppl --ref on the same windows */
  snprintf(cmd, sizeof cmd, "%s ppl %s/p.msz %s --ref " MODEL " --ctx 128 --stride 128 --limit-tokens 384 --json "
           "--threads 2 2>/dev/null", bin(), TMP, calib);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "kl", v, sizeof v));
  CHECK_NEAR(atof(v), kl, 1e-6 + 1e-4 * kl);
  /* the printed spec reproduces the container */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/q.msz --layer-eb '%s' --threads 2 -q >/dev/null && "
           "cmp %s/p.msz %s/q.msz", bin(), TMP, spec, TMP, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  /* and it is smaller than every layer at the smallest candidate */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/u.msz --eb 5e-3 --threads 2 --json -q", bin(), TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "expert_stored_bytes", v, sizeof v));
  CHECK_MSG(stored < atof(v), "policy %g bytes vs uniform 5e-3 %s", stored, v);
  /* a second run with a looser target reuses the sweep (no new cell) */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/r.msz --target-kl 0.02 --calib %s --calib-tokens 384 "
           "--calib-ctx 128 --policy-eb 5e-3,2e-2 --policy-dir %s/p.msz.policy --threads 2 --json -q 2>%s/err2.txt",
           bin(), TMP, calib, TMP, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "layer_eb", spec, sizeof spec));
  CHECK_MSG(!strcmp(spec, "0-7:0.02"), "loose target: '%s'", spec);
  snprintf(cmd, sizeof cmd, "wc -l < %s/p.msz.policy/results.csv", TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, v, sizeof v), 0);
  CHECK_EQ_INT(atoi(v), 1 + 8 * 2);
  /* the perplexity target on the same cells: the measured rise is within it */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/r.msz --target-ppl-rise 0.005 --calib %s --calib-tokens 384 "
           "--calib-ctx 128 --policy-eb 5e-3,2e-2 --policy-dir %s/p.msz.policy --threads 2 --json -q 2>/dev/null",
           bin(), TMP, calib, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "metric", v, sizeof v) && !strcmp(v, "ppl-rise"));
  double ppl = 0, ref = 1;
  CHECK(!jget(out, "ppl", v, sizeof v));
  ppl = atof(v);
  CHECK(!jget(out, "ref_ppl", v, sizeof v));
  ref = atof(v);
  CHECK_MSG(ppl > 0 && ppl / ref - 1 <= 0.005, "ppl %g against %g", ppl, ref);
  /* the compute layout: the same cells (no new one), its own container verified within the target, and the
   * printed spec reproduces it with --codec compute */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/c.msz --codec compute --target-kl %g --calib %s "
           "--calib-tokens 384 --calib-ctx 128 --policy-eb 5e-3,2e-2 --policy-dir %s/p.msz.policy --threads 2 --json "
           "-q 2>/dev/null", bin(), TMP, target, calib, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "kl", v, sizeof v));
  double ckl = atof(v);
  CHECK_MSG(ckl > 0 && ckl <= target, "compute layout: verified KL %g, target %g", ckl, target);
  CHECK(!jget(out, "layer_eb", spec, sizeof spec));
  CHECK_MSG(strstr(spec, ":0.005") && strstr(spec, ":0.02"), "compute layout spec '%s'", spec);
  snprintf(cmd, sizeof cmd, "wc -l < %s/p.msz.policy/results.csv", TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, v, sizeof v), 0);
  CHECK_EQ_INT(atoi(v), 1 + 8 * 2);
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/d.msz --codec compute --layer-eb '%s' --threads 2 -q "
           ">/dev/null && cmp %s/c.msz %s/d.msz && ! cmp -s %s/c.msz %s/p.msz", bin(), TMP, spec, TMP, TMP, TMP, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  snprintf(cmd, sizeof cmd, "%s ppl %s/c.msz %s --ref " MODEL " --ctx 128 --stride 128 --limit-tokens 384 --json "
           "--threads 2 2>/dev/null", bin(), TMP, calib);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(!jget(out, "kl", v, sizeof v));
  CHECK_NEAR(atof(v), ckl, 1e-6 + 1e-4 * ckl);
  /* a target below what the smallest bound gives: an error, no output left */
  snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/s.msz --target-kl 1e-5 --calib %s --calib-tokens 384 "
           "--calib-ctx 128 --policy-eb 5e-3,2e-2 --policy-dir %s/p.msz.policy --threads 2 -q 2>&1", bin(), TMP,
           calib, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 1);
  CHECK_MSG(strstr(out, "smallest bound") != NULL, "%s", out);
  snprintf(v, sizeof v, "%s/s.msz", TMP);
  CHECK(access(v, F_OK) != 0);
  const char *f[] = {"p.msz", "q.msz", "r.msz", "u.msz", "c.msz", "d.msz", "calib.txt", "err.txt", "err2.txt"};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) { snprintf(v, sizeof v, "%s/%s", TMP, f[i]); unlink(v); }
  snprintf(cmd, sizeof cmd, "rm -r %s/p.msz.policy", TMP);
  harness_run_cmd(cmd, out, sizeof out);
}

TEST(cli_usage_errors) {
  char cmd[1024], out[8192];
  const char *bad[] = {
    "--target-kl 0.01",                                         /* no --calib */
    "--calib x.txt",                                            /* no target */
    "--target-kl 0.01 --target-ppl-rise 0.01 --calib x.txt",    /* two targets */
    "--target-kl 0 --calib x.txt",                              /* not > 0 */
    "--target-kl 0.01 --calib x.txt --layer-eb 0-:1e-3",        /* the policy chooses them */
    "--target-kl 0.01 --calib x.txt --method zstd",
    "--target-kl 0.01 --calib x.txt --policy-eb 2e-3,1e-3",     /* not ascending */
    "--target-kl 0.01 --calib x.txt --eb-mode rel",             /* the default list is absolute */
    "--policy-eb 1e-3",                                         /* without a target */
    "--target-kl 0.01 --calib x.txt --tries 0",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(cmd, sizeof cmd, "%s compress " MODEL " -o %s/x.msz %s 2>&1", bin(), TMP, bad[i]);
    CHECK_MSG(harness_run_cmd(cmd, out, sizeof out) == 2, "'%s' not refused as usage: %s", bad[i], out);
  }
  snprintf(cmd, sizeof cmd, "%s compress --help", bin());
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "--target-kl") && strstr(out, "--calib") && strstr(out, "--target-ppl-rise"));
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_policy_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(plan_greedy);
  RUN(spec_format);
  RUN(compress_target_kl_on_bundled_model);
  RUN(cli_usage_errors);
  rmdir(TMP);
  return DONE();
}
