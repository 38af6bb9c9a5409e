/* tests/test_sweep_tasks.c - task accuracy in sweep cells (--task): on the
 * bundled model with a small multiple-choice file, a sweep widened with a
 * task runs only the task (results.csv untouched), the cell's accuracy is
 * what moesz_eval_task gives on the container compressed at the cell's
 * bound and the baseline what it gives on the original, a rerun runs
 * nothing, and tasks.csv readers refuse foreign or malformed files. */
#include "harness.h"
#include <sys/stat.h>
#include <unistd.h>
#include "moesz.h"
#include "base/util.h"

static char TMP[128];
#define MODEL "models/moesz-mix-tiny"

static char *slurp(const char *path) {
  char *t = NULL;
  size_t n;
  if (moesz_file_read_all(path, 1 << 24, &t, &n, NULL)) return NULL;
  return t;
}

TEST(task_in_sweep_cells_and_resume) {
  if (access(MODEL "/model.safetensors", R_OK)) SKIP("bundled model absent");
  char task[256], dir[256], p[512];
  snprintf(task, sizeof task, "%s/tiny.jsonl", TMP);
  snprintf(dir, sizeof dir, "%s/sw", TMP);
  FILE *f = fopen(task, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs("{\"query\": \"Question: Where does a fish live?\\nAnswer:\", \"choices\": [\"in the water\", \"in a tree\"], \"gold\": 0}\n"
        "{\"query\": \"Question: What do you use to cut paper?\\nAnswer:\", \"choices\": [\"a spoon\", \"scissors\"], \"gold\": 1}\n"
        "{\"query\": \"Once upon a time there was a little\", \"choices\": [\"girl\", \"seven\", \"the\"], \"gold\": 0}\n"
        "{\"query\": \"The cat sat on the\", \"choices\": [\"mat\", \"ran\"], \"gold\": 0}\n", f);
  fclose(f);
  moesz_model *m;
  CHECK_EQ_INT(moesz_model_open(MODEL, &m, NULL), MOESZ_OK);
  moesz_tok *t;
  CHECK_EQ_INT(moesz_tok_load(MODEL, &t, NULL), MOESZ_OK);
  if (!m || !t) return;
  int32_t ids[96];
  for (int i = 0; i < 96; i++) ids[i] = (int32_t)(3 + (i * 53) % 4000);
  moesz_sweep_group g = {"all", 0, 7};
  double eb = 3e-2;
  moesz_sweep_err er = MOESZ_SWEEP_CODEC;
  const char *tasks[1] = {task};
  moesz_sweep_opts o = {.groups = &g, .n_groups = 1, .ebs = &eb, .n_ebs = 1, .eb_mode = MOESZ_EB_ABS, .errs = &er,
                        .n_errs = 1, .seeds = 1, .ctx = 48, .stride = 48, .threads = 1};
  moesz_sweep_summary s;
  moesz_error e = {0};
  CHECK_EQ_INT(moesz_sweep_run(m, ids, 96, &o, dir, &s, &e), MOESZ_OK);
  CHECK_EQ_INT(s.ran, 1);
  snprintf(p, sizeof p, "%s/results.csv", dir);
  char *before = slurp(p);
  /* widened with a task: the cell runs again for the task only */
  o.tasks = tasks;
  o.n_tasks = 1;
  o.tok = t;
  int rc = moesz_sweep_run(m, ids, 96, &o, dir, &s, &e);
  CHECK_MSG(rc == MOESZ_OK, "%s", e.msg);
  CHECK_EQ_INT(s.ran, 1);
  CHECK_EQ_INT(s.skipped, 0);
  char *after = slurp(p);
  CHECK(before && after && !strcmp(before, after));
  free(before);
  free(after);
  snprintf(p, sizeof p, "%s/tasks.csv", dir);
  char *tc = slurp(p);
  CHECK(tc != NULL);
  moesz_sweep_task_row *rows = NULL;
  size_t n = 0;
  if (tc) CHECK_EQ_INT(moesz_sweep_tasks_csv_parse(tc, strlen(tc), &rows, &n, &e), MOESZ_OK);
  CHECK_EQ_INT(n, 1);
  if (n == 1) {
    CHECK(!strcmp(rows[0].task, "tiny") && rows[0].items == 4 && !strcmp(rows[0].group, "all"));
    /* the baseline: the original model; the cell: the container at the cell's bound */
    moesz_engine_opts eo = {.threads = 1, .max_ctx = 128};
    moesz_engine *orig = NULL, *c = NULL;
    moesz_task_result a, b;
    CHECK_EQ_INT(moesz_engine_open(MODEL, &eo, &orig, NULL), MOESZ_OK);
    CHECK_EQ_INT(moesz_eval_task(orig, t, task, 0, MOESZ_BOS_AUTO, 0, &a, NULL), MOESZ_OK);
    char msz[256];
    snprintf(msz, sizeof msz, "%s/c.msz", TMP);
    moesz_msz_opts mo = {.method = MOESZ_MSZ_CODEC, .eb = eb, .threads = 1};
    CHECK_EQ_INT(moesz_msz_write(m, msz, &mo, NULL, NULL), MOESZ_OK);
    CHECK_EQ_INT(moesz_engine_open(msz, &eo, &c, NULL), MOESZ_OK);
    CHECK_EQ_INT(moesz_eval_task(c, t, task, 0, MOESZ_BOS_AUTO, 0, &b, NULL), MOESZ_OK);
    CHECK_NEAR(rows[0].ref_acc, a.acc, 1e-9);
    CHECK_NEAR(rows[0].ref_acc_norm, a.acc_norm, 1e-9);
    CHECK_NEAR(rows[0].acc, b.acc, 1e-9);
    CHECK_NEAR(rows[0].acc_norm, b.acc_norm, 1e-9);
    moesz_engine_close(orig);
    moesz_engine_close(c);
    unlink(msz);
  }
  free(rows);
  /* nothing left to run */
  CHECK_EQ_INT(moesz_sweep_run(m, ids, 96, &o, dir, &s, &e), MOESZ_OK);
  CHECK_EQ_INT(s.ran, 0);
  CHECK_EQ_INT(s.skipped, 1);
  /* a task with a limit is another key (fewer items): it runs */
  o.task_limit = 2;
  CHECK_EQ_INT(moesz_sweep_run(m, ids, 96, &o, dir, &s, &e), MOESZ_OK);
  CHECK_EQ_INT(s.ran, 1);
  /* a broken tasks.csv is refused, not overwritten */
  if (tc) {
    f = fopen(p, "w");
    fputs("group,first\nall,0\n", f);
    fclose(f);
    CHECK_EQ_INT(moesz_sweep_run(m, ids, 96, &o, dir, &s, &e), MOESZ_E_FORMAT);
    CHECK(strstr(e.msg, "tasks.csv") != NULL);
  }
  free(tc);
  /* a file name that is not a plain name */
  const char *badt[1] = {"/tmp/x y.jsonl"};
  o.tasks = badt;
  CHECK_EQ_INT(moesz_sweep_run(m, ids, 96, &o, dir, &s, &e), MOESZ_E_ARG);
  const char *names[] = {"results.csv", "results.json", "results.md", "kl.svg", "top1.svg", "ppl.svg", "tasks.csv",
                         "tasks.md"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
  unlink(task);
  moesz_tok_free(t);
  moesz_model_close(m);
}

TEST(tasks_csv_reader_rejects_bad_input) {
  const char *hdr = "group,first,last,error,eb_mode,eb,seed,tokens,task,items,acc,acc_norm,ref_acc,ref_acc_norm\n";
  const char *ok = "all,0,7,codec,abs,0.02,0,254,piqa,20,0.6,0.45,0.5,0.4\n";
  const char *bad[] = {
    "all,0,7,codec,abs,0.02,0,254,piqa,20,1.5,0.45,0.5,0.4\n",      /* accuracy above 1 */
    "all,0,7,codec,abs,0.02,0,254,piqa,0,0.6,0.45,0.5,0.4\n",       /* no items */
    "all,0,7,codec,abs,0.02,0,254,pi qa,20,0.6,0.45,0.5,0.4\n",     /* not a name */
    "all,0,7,codec,abs,0.02,0,254,piqa,20,0.6,0.45,0.5\n",          /* a field short */
    "all,0,7,codec,abs,0.02,0,254,piqa,20,0.6,0.45,0.5,0.4,9\n",    /* a field long */
    "all,7,0,codec,abs,0.02,0,254,piqa,20,0.6,0.45,0.5,0.4\n",      /* layers backwards */
    "all,0,7,noise,abs,0.02,0,254,piqa,20,0.6,0.45,0.5,0.4\n",      /* unknown error kind */
  };
  char buf[512];
  moesz_sweep_task_row *r = NULL;
  size_t n = 0;
  moesz_error e = {0};
  snprintf(buf, sizeof buf, "%s%s", hdr, ok);
  CHECK_EQ_INT(moesz_sweep_tasks_csv_parse(buf, strlen(buf), &r, &n, &e), MOESZ_OK);
  CHECK(n == 1 && r && r[0].items == 20 && fabs(r[0].acc - 0.6) < 1e-12);
  free(r);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(buf, sizeof buf, "%s%s%s", hdr, ok, bad[i]);
    r = NULL;
    CHECK_MSG(moesz_sweep_tasks_csv_parse(buf, strlen(buf), &r, &n, &e) == MOESZ_E_FORMAT, "row %zu accepted", i);
    CHECK(r == NULL);
    CHECK(strstr(e.msg, "line 3") != NULL);
  }
  CHECK_EQ_INT(moesz_sweep_tasks_csv_parse(ok, strlen(ok), &r, &n, &e), MOESZ_E_FORMAT);   /* no header */
  CHECK_EQ_INT(moesz_sweep_tasks_csv_parse("a\0b", 3, &r, &n, &e), MOESZ_E_FORMAT);
}

int main(void) {
  snprintf(TMP, sizeof TMP, "/tmp/moesz_sweep_tasks_%ld", (long)getpid());
  mkdir(TMP, 0700);
  RUN(task_in_sweep_cells_and_resume);
  RUN(tasks_csv_reader_rejects_bad_input);
  rmdir(TMP);
  return DONE();
}
