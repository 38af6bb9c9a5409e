/* tests/test_sweep.c - the layer-sensitivity sweep: group specs (auto
 * skips groups without a MoE layer, bad specs refused), a sweep on a
 * fixture (results.csv schema and row count, metrics in range, more noise
 * gives more KL, codec bytes only for codec cells, the reports written), a
 * codec cell equal to serving the real container, seeded noise
 * reproducible, resume (cells in the CSV skipped, a dropped row re-run, a
 * foreign CSV refused), and the CLI's --help and usage errors. */
#include "harness.h"
#include <unistd.h>
#include <sys/stat.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];
static const char *FIX = "tests/fixtures/mixtral";
#define NTOK 48
static int32_t IDS[NTOK];

static const char *bin(void) {
  const char *b = getenv("MOESZ_BIN");
  return b && *b ? b : "build/moesz";
}

static void load_ids(void) {
  FILE *f = fopen("tests/fixtures/mixtral/tokens.txt", "r");
  for (int i = 0; i < NTOK; i++) IDS[i] = (int32_t)(i * 37 % 250);
  if (!f) return;
  for (int i = 0; i < NTOK && fscanf(f, "%d", &IDS[i]) == 1; i++) {}
  fclose(f);
}

static moesz_sweep_opts opts(const moesz_sweep_group *g, int ng, const double *eb, int ne,
                             const moesz_sweep_err *er, int nr, int seeds) {
  moesz_sweep_opts o;
  memset(&o, 0, sizeof o);
  o.groups = g; o.n_groups = ng; o.ebs = eb; o.n_ebs = ne; o.errs = er; o.n_errs = nr; o.seeds = seeds;
  o.eb_mode = MOESZ_EB_ABS;
  o.ctx = 16;
  o.stride = 16;
  o.threads = 1;
  return o;
}

static char *slurp(const char *dir, const char *name) {
  char p[512], *t = NULL;
  size_t n;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  if (moesz_file_read_all(p, 1 << 24, &t, &n, NULL)) return NULL;
  return t;
}

static void rm_dir(const char *dir) {
  const char *f[] = {"results.csv", "results.json", "results.md", "kl.svg", "top1.svg", "ppl.svg", "kl_per_layer.svg"};
  char p[512];
  for (int i = 0; i < 7; i++) { snprintf(p, sizeof p, "%s/%s", dir, f[i]); unlink(p); }
  rmdir(dir);
}

TEST(group_specs) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open("tests/fixtures/qwen2_moe", &m, NULL), MOESZ_OK);   /* 3 layers, layer 1 dense */
  if (!m) return;
  moesz_sweep_group *g = NULL;
  int n = 0;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_sweep_groups(&m->cfg, "auto", 0, &g, &n, &e), MOESZ_OK);
  /* shallow 0-0, middle 1-1 (dense only: skipped), deep 2-2, all 0-2 */
  CHECK_EQ_INT(n, 3);
  if (n == 3) {
    CHECK(!strcmp(g[0].name, "shallow") && g[0].first == 0 && g[0].last == 0);
    CHECK(!strcmp(g[1].name, "deep") && g[1].first == 2 && g[1].last == 2);
    CHECK(!strcmp(g[2].name, "all") && g[2].first == 0 && g[2].last == 2);
  }
  free(g);
  CHECK_EQ_INT(moesz_sweep_groups(&m->cfg, "early=0,2-", 1, &g, &n, &e), MOESZ_OK);
  CHECK_EQ_INT(n, 4);   /* early, "2-2", L0, L2 */
  if (n == 4) {
    CHECK(!strcmp(g[0].name, "early") && g[0].last == 0);
    CHECK(!strcmp(g[1].name, "2-") && g[1].first == 2 && g[1].last == 2);
    CHECK(!strcmp(g[2].name, "L0") && !strcmp(g[3].name, "L2"));
  }
  free(g);
  const char *bad[] = {"1", "0-3", "x=", "a b=0", "2-1", "a=0,a=2", "0,,2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    g = NULL;
    CHECK_MSG(moesz_sweep_groups(&m->cfg, bad[i], 0, &g, &n, &e) == MOESZ_E_ARG, "spec '%s' accepted", bad[i]);
    CHECK(g == NULL);
  }
  moesz_model_close(m);
}

TEST(sweep_on_fixture_and_resume) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(FIX, &m, NULL), MOESZ_OK);
  if (!m) return;
  char dir[256];
  snprintf(dir, sizeof dir, "%s/s1", TMP);
  moesz_sweep_group g[2] = {{"first", 0, 0}, {"all", 0, 1}};
  double eb[2] = {1e-3, 1e-1};
  moesz_sweep_err er[2] = {MOESZ_SWEEP_CODEC, MOESZ_SWEEP_GAUSSIAN};
  moesz_sweep_opts o = opts(g, 2, eb, 2, er, 2, 2);
  moesz_sweep_summary s;
  moesz_error e = {0};
  int rc = moesz_sweep_run(m, IDS, NTOK, &o, dir, &s, &e);
  CHECK_MSG(rc == MOESZ_OK, "%s", e.msg);
  /* 2 groups x (codec: 2 bounds + gaussian: 2 bounds x 2 seeds) */
  CHECK_EQ_INT(s.cells, 12);
  CHECK_EQ_INT(s.ran, 12);
  char *csv = slurp(dir, "results.csv");
  CHECK(csv != NULL);
  if (csv) {
    const char *hdr = "group,first,last,error,eb_mode,eb,seed,tokens,kl,top1,ppl,ref_ppl,raw_bytes,stored_bytes,"
                      "ratio,seconds\n";
    CHECK(!strncmp(csv, hdr, strlen(hdr)));
    int lines = 0;
    double kl_small = -1, kl_big = -1, ref = -1;
    char *rest = strchr(csv, '\n') + 1;
    for (char *l; (l = strsep(&rest, "\n"));) {
      if (!*l) continue;
      lines++;
      char grp[48], err[16], mode[8];
      int a, b, seed;
      size_t tok;
      double ebv, kl, top1, ppl, rp, ratio, sec;
      unsigned long long raw, st;
      int k = sscanf(l, "%47[^,],%d,%d,%15[^,],%7[^,],%lf,%d,%zu,%lf,%lf,%lf,%lf,%llu,%llu,%lf,%lf", grp, &a, &b, err,
                     mode, &ebv, &seed, &tok, &kl, &top1, &ppl, &rp, &raw, &st, &ratio, &sec);
      CHECK_EQ_INT(k, 16);
      CHECK_EQ_INT(tok, 45);            /* 3 windows of 16: 15 scored each */
      CHECK(kl >= 0 && top1 >= 0 && top1 <= 1 && ppl > 1 && raw > 0);
      if (ref < 0) ref = rp;
      CHECK_NEAR(rp, ref, 1e-9);        /* the reference does not move */
      if (!strcmp(err, "codec")) CHECK(st > 0 && st < raw && seed == 0);
      else CHECK(st == 0);
      if (!strcmp(grp, "all") && !strcmp(err, "gaussian") && seed == 0) {
        if (ebv < 1e-2) kl_small = kl; else kl_big = kl;
      }
    }
    CHECK_EQ_INT(lines, 12);
    CHECK_MSG(kl_big > 10 * kl_small && kl_small > 0, "KL %g at 1e-1 vs %g at 1e-3", kl_big, kl_small);
    free(csv);
  }
  const char *files[] = {"results.json", "results.md", "kl.svg", "top1.svg", "ppl.svg"};
  for (int i = 0; i < 5; i++) {
    char *t = slurp(dir, files[i]);
    CHECK_MSG(t && strlen(t) > 100, "%s", files[i]);
    if (t && i >= 2) CHECK(strstr(t, "<svg") && strstr(t, "<polyline") && strstr(t, "</svg>"));
    if (t && i == 1) CHECK(strstr(t, "| all | 0-1 | gaussian | 0.1 (abs) | 2 |") != NULL);
    free(t);
  }
  char *pl = slurp(dir, "kl_per_layer.svg");
  CHECK(pl == NULL);   /* no one-layer groups: no per-layer plot */
  free(pl);
  /* resume: nothing left to run */
  rc = moesz_sweep_run(m, IDS, NTOK, &o, dir, &s, &e);
  CHECK_EQ_INT(rc, MOESZ_OK);
  CHECK_EQ_INT(s.ran, 0);
  CHECK_EQ_INT(s.skipped, 12);
  /* a dropped row (the last) is run again, the others kept */
  csv = slurp(dir, "results.csv");
  if (csv) {
    size_t len = strlen(csv);
    csv[len - 1] = 0;
    *(strrchr(csv, '\n') + 1) = 0;
    char p[512];
    snprintf(p, sizeof p, "%s/results.csv", dir);
    FILE *f = fopen(p, "w");
    fputs(csv, f);
    fclose(f);
    free(csv);
  }
  rc = moesz_sweep_run(m, IDS, NTOK, &o, dir, &s, &e);
  CHECK_EQ_INT(rc, MOESZ_OK);
  CHECK_EQ_INT(s.ran, 1);
  CHECK_EQ_INT(s.skipped, 11);
  /* a wider sweep in the same folder runs only its new cells */
  double eb3[3] = {1e-3, 1e-1, 1e-2};
  o.ebs = eb3;
  o.n_ebs = 3;
  rc = moesz_sweep_run(m, IDS, NTOK, &o, dir, &s, &e);
  CHECK_EQ_INT(s.ran, 6);
  CHECK_EQ_INT(s.skipped, 12);
  /* a file that is not ours is refused, not overwritten */
  char p[512];
  snprintf(p, sizeof p, "%s/results.csv", dir);
  FILE *f = fopen(p, "w");
  fputs("a,b,c\n1,2,3\n", f);
  fclose(f);
  CHECK_EQ_INT(moesz_sweep_run(m, IDS, NTOK, &o, dir, &s, &e), MOESZ_E_FORMAT);
  CHECK(strstr(e.msg, "not a sweep results file") != NULL);
  char *t = slurp(dir, "results.csv");
  CHECK(t && !strcmp(t, "a,b,c\n1,2,3\n"));
  free(t);
  rm_dir(dir);
  moesz_model_close(m);
}

/* The codec cell perturbs exactly as serving the compressed container does. */
TEST(codec_cell_equals_container) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(FIX, &m, NULL), MOESZ_OK);
  if (!m) return;
  char dir[256], msz[256];
  snprintf(dir, sizeof dir, "%s/s2", TMP);
  snprintf(msz, sizeof msz, "%s/c.msz", TMP);
  moesz_sweep_group g[1] = {{"all", 0, 1}};
  double eb[1] = {2e-2};
  moesz_sweep_err er[2] = {MOESZ_SWEEP_CODEC, MOESZ_SWEEP_UNIFORM};
  moesz_sweep_opts o = opts(g, 1, eb, 1, er, 2, 1);
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_sweep_run(m, IDS, NTOK, &o, dir, NULL, &e), MOESZ_OK);
  moesz_msz_opts co;
  memset(&co, 0, sizeof co);
  co.method = MOESZ_MSZ_CODEC;
  co.eb = 2e-2;
  co.threads = 1;
  moesz_msz_codec_options("entropy", "abs", &co);
  moesz_msz_summary sum;
  CHECK_EQ_INT(moesz_msz_write(m, msz, &co, &sum, &e), MOESZ_OK);
  moesz_engine_opts eo = {.threads = 1, .max_ctx = 16};
  moesz_engine *ce = NULL, *ref = NULL;
  CHECK_EQ_INT(moesz_engine_open_msz(msz, NULL, &eo, &ce, NULL, &e), MOESZ_OK);
  CHECK_EQ_INT(moesz_engine_open_model(m, 0, NULL, 0, &eo, &ref, &e), MOESZ_OK);
  moesz_ppl_result r;
  memset(&r, 0, sizeof r);
  if (ce && ref) CHECK_EQ_INT(moesz_eval_ppl(ce, ref, IDS, NTOK, 16, 16, 0, &r, &e), MOESZ_OK);
  char *csv = slurp(dir, "results.csv");
  double kl = -1, kl_u = -1;
  unsigned long long raw = 0, st = 0;
  for (char *l = csv ? strchr(csv, '\n') : NULL; l && l[1]; l = strchr(l + 1, '\n')) {
    double k;
    unsigned long long a, b;
    char err[16];
    if (sscanf(l + 1, "%*[^,],%*d,%*d,%15[^,],%*[^,],%*f,%*d,%*u,%lf,%*f,%*f,%*f,%llu,%llu", err, &k, &a, &b) == 4) {
      if (!strcmp(err, "codec")) { kl = k; raw = a; st = b; }
      else kl_u = k;
    }
  }
  CHECK_MSG(fabs(kl - r.kl) <= 1e-9 * (1 + r.kl) && r.kl > 0, "sweep KL %.12g, container KL %.12g", kl, r.kl);
  CHECK_EQ_INT(raw, sum.expert_raw_bytes);
  CHECK_EQ_INT(st, sum.expert_stored_bytes);
  CHECK(kl_u > 0);
  free(csv);
  moesz_engine_close(ce);
  moesz_engine_close(ref);
  unlink(msz);
  rm_dir(dir);
  /* seeded noise is reproducible: the same cell in another folder gives the same KL */
  char d2[256];
  snprintf(d2, sizeof d2, "%s/s3", TMP);
  moesz_sweep_err ge[1] = {MOESZ_SWEEP_GAUSSIAN};
  o = opts(g, 1, eb, 1, ge, 1, 1);
  CHECK_EQ_INT(moesz_sweep_run(m, IDS, NTOK, &o, dir, NULL, &e), MOESZ_OK);
  CHECK_EQ_INT(moesz_sweep_run(m, IDS, NTOK, &o, d2, NULL, &e), MOESZ_OK);
  char *a = slurp(dir, "results.csv"), *b = slurp(d2, "results.csv");
  if (a && b) {   /* equal up to the seconds column */
    char *ka = strrchr(a, ','), *kb = strrchr(b, ',');
    *ka = *kb = 0;
    CHECK(!strcmp(a, b));
  } else CHECK(0);
  free(a);
  free(b);
  rm_dir(dir);
  rm_dir(d2);
  moesz_model_close(m);
}

TEST(per_layer_plot_and_error_bars) {
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(FIX, &m, NULL), MOESZ_OK);
  if (!m) return;
  moesz_sweep_group *g = NULL;
  int ng = 0;
  CHECK_EQ_INT(moesz_sweep_groups(&m->cfg, NULL, 1, &g, &ng, NULL), MOESZ_OK);
  CHECK_EQ_INT(ng, 2);   /* L0, L1 */
  char dir[256];
  snprintf(dir, sizeof dir, "%s/s4", TMP);
  double eb[2] = {1e-2, 5e-2};
  moesz_sweep_err er[1] = {MOESZ_SWEEP_UNIFORM};
  moesz_sweep_opts o = opts(g, ng, eb, 2, er, 1, 2);
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_sweep_run(m, IDS, NTOK, &o, dir, NULL, &e), MOESZ_OK);
  char *pl = slurp(dir, "kl_per_layer.svg"), *kl = slurp(dir, "kl.svg");
  CHECK(pl && kl);
  if (pl && kl) {
    /* one line per bound, one point per layer */
    int lines = 0;
    for (char *q = pl; (q = strstr(q, "<polyline")); q++) {
      lines++;
      char *pts = strstr(q, "points=\""), *end = strchr(pts + 8, '"');
      int commas = 0;
      for (char *c = pts; c < end; c++) commas += *c == ',';
      CHECK_EQ_INT(commas, 2);
    }
    CHECK_EQ_INT(lines, 2);
    /* two seeds: an error bar per point (4 points) besides grid and legend lines */
    int bars;
    int n_all = 0, n_grid = 0;
    for (char *q = kl; (q = strstr(q, "<line ")); q++) {
      char *close = strstr(q, "/>");
      int grid = 0, wide = 0;
      for (char *c = q; c < close; c++) {
        if (!strncmp(c, "#ddd", 4)) grid = 1;
        if (!strncmp(c, "stroke-width", 12)) wide = 1;
      }
      n_all++;
      n_grid += grid || wide;
    }
    bars = n_all - n_grid;
    CHECK_EQ_INT(bars, 4);
  }
  free(pl);
  free(kl);
  free(g);
  rm_dir(dir);
  moesz_model_close(m);
}

TEST(csv_reader_rejects_bad_input) {
  const char *H = "group,first,last,error,eb_mode,eb,seed,tokens,kl,top1,ppl,ref_ppl,raw_bytes,stored_bytes,ratio,seconds\n";
  const char *good = "all,0,7,codec,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n";
  char buf[1024];
  moesz_sweep_row *r = NULL;
  size_t n = 0;
  moesz_error e = {0};
  snprintf(buf, sizeof buf, "%s%s%s", H, good, good);
  CHECK_EQ_INT(moesz_sweep_csv_parse(buf, strlen(buf), &r, &n, &e), MOESZ_OK);
  CHECK_EQ_INT(n, 2);
  if (r && n) CHECK(!strcmp(r[1].group, "all") && r[1].last == 7 && r[1].eb == 0.005 && r[1].stored_bytes == 30);
  free(r);
  const char *bad[] = {
    "all,0,7,codec,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3\n",          /* 15 fields */
    "all,0,7,codec,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5,9\n",    /* 17 */
    "all,0,7,laplace,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",    /* unknown error kind */
    "all,0,7,codec,max,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",      /* unknown eb mode */
    "all,7,0,codec,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",      /* first > last */
    "all,0,7,codec,abs,-1,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",         /* eb <= 0 */
    "all,0,7,codec,abs,0.005,0,25x,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",      /* not a number */
    "a b,0,7,codec,abs,0.005,0,254,0.001,0.98,71.8,71.9,100,30,3.3,0.5\n",      /* bad group name */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(buf, sizeof buf, "%s%s%s", H, good, bad[i]);
    CHECK_MSG(moesz_sweep_csv_parse(buf, strlen(buf), &r, &n, &e) == MOESZ_E_FORMAT, "row %zu accepted", i);
    CHECK(strstr(e.msg, "line 3") != NULL);
  }
  CHECK_EQ_INT(moesz_sweep_csv_parse("group,x\n", 8, &r, &n, &e), MOESZ_E_FORMAT);
  snprintf(buf, sizeof buf, "%s%s", H, good);
  buf[strlen(H) + 3] = 0;   /* a NUL inside */
  CHECK_EQ_INT(moesz_sweep_csv_parse(buf, strlen(H) + strlen(good), &r, &n, &e), MOESZ_E_FORMAT);
}

TEST(cli_help_and_usage_errors) {
  char cmd[1024], out[8192];
  snprintf(cmd, sizeof cmd, "%s sweep --help", bin());
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK(strstr(out, "--eb LIST") && strstr(out, "--per-layer") && strstr(out, "--seeds"));
  const char *bad[] = {"--text x -o d", "--text x --eb 0 -o d", "--text x --eb 1e-3 --error laplace -o d",
                       "--text x --eb 1e-3 --eb-mode max -o d", "--text x --eb 1e-3 --seeds 0 -o d"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(cmd, sizeof cmd, "%s sweep %s %s 2>&1", bin(), FIX, bad[i]);
    CHECK_MSG(harness_run_cmd(cmd, out, sizeof out) == 2, "%s", bad[i]);
  }
  snprintf(cmd, sizeof cmd, "%s sweep %s --text x --eb 1e-3 --groups 0-5 -o %s/d 2>&1", bin(), FIX, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 2);
  CHECK(strstr(out, "bad layer range") != NULL);
  /* end to end on the bundled model (it has a tokenizer): tiny --limit-tokens, then a resumed rerun */
  if (access("models/moesz-mix-tiny/tokenizer.json", F_OK)) return;
  snprintf(cmd, sizeof cmd, "printf 'Once upon a time there was a little dog who liked to run in the park. "
           "One day the dog saw a big red ball and ran after it. The ball rolled into the pond.' > %s/t.txt && "
           "for i in 1 2; do %s sweep models/moesz-mix-tiny --text %s/t.txt --eb 1e-2 --groups early=0-1 "
           "--error codec,uniform --limit-tokens 40 --ctx 16 -q -o %s/cli; done; grep -c '' %s/cli/results.csv",
           TMP, bin(), TMP, TMP, TMP);
  CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  CHECK_MSG(strstr(out, "2 cells: 2 run, 0 already") && strstr(out, "2 cells: 0 run, 2 already") &&
            strstr(out, "\n3\n"), "%s", out);
  char p[512];
  snprintf(p, sizeof p, "%s/t.txt", TMP);
  unlink(p);
  snprintf(p, sizeof p, "%s/cli", TMP);
  rm_dir(p);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_sweep_%ld", (long)getpid());
  mkdir(TMP, 0700);
  load_ids();
  RUN(group_specs);
  RUN(sweep_on_fixture_and_resume);
  RUN(codec_cell_equals_container);
  RUN(per_layer_plot_and_error_bars);
  RUN(csv_reader_rejects_bad_input);
  RUN(cli_help_and_usage_errors);
  rmdir(TMP);
  return DONE();
}
