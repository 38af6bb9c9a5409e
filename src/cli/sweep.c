/* cli/sweep.c - `moesz sweep`: layer sensitivity study (src/eval/sweep.c). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz sweep MODEL_DIR --text FILE --eb LIST -o DIR [options]\n\n"
    "Layer sensitivity: for each cell (layer group, error kind, bound, seed) perturbs only that\n"
    "group's routed expert weights and scores the model against the unperturbed one on the same\n"
    "tokens: KL(original || perturbed) per token, top-1 agreement, perplexity, and with the codec\n"
    "the group's expert bytes. Writes DIR/results.csv (rewritten after each cell; cells already in\n"
    "it are skipped, so a rerun resumes), results.json, results.md and kl.svg, top1.svg, ppl.svg\n"
    "(metric vs bound per group, error bars over seeds; with one-layer groups also kl_per_layer.svg).\n"
    "See docs/EVAL.md \"Sweep\".\n\n"
    "  --text FILE          held-out text (tokenized with MODEL's tokenizer.json)\n"
    "  --eb LIST            bounds, comma-separated, e.g. 2e-3,5e-3,1e-2\n"
    "  --eb-mode M          abs (default) | rel (x the matrix's value range) | std (x its std);\n"
    "                       applies to the noise as to the codec, per matrix\n"
    "  --groups G           auto (default: shallow / middle / deep thirds and all) or items\n"
    "                       RANGE or NAME=RANGE, e.g. 'early=0-2,late=5-' (RANGE: A-B, A, A-)\n"
    "  --per-layer          add one group per MoE layer (L0, L1, ...)\n"
    "  --error LIST         codec (default: the real codec round trip, entropy pipeline) |\n"
    "                       gaussian (w + N(0, eb^2)) | uniform (w + U(-eb, eb)); comma-separated\n"
    "  --seeds N            noise kinds: N seeds per cell for error bars (default 1)\n"
    "  --limit-tokens N     score only the first N tokens of the text (default 4096; 0 = all)\n"
    "  --ctx N              perplexity window (default 512); --stride N (default: ctx)\n"
    "  --task FILE.jsonl    also score this task on every cell (repeatable, at most 16; formats as\n"
    "                       `moesz eval`): DIR/tasks.csv and tasks.md, the original's accuracy beside\n"
    "  --task-limit N       items per task (default 200; 0 = all)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  -o, --output DIR     results folder (created if absent)\n"
    "  --progress / -q, --quiet  progress with ETA on stderr on / off (default: on when stderr is a tty)\n");
}

/* Comma-separated list of numbers > 0. */
static int parse_ebs(const char *s, double **out, int *n) {
  int cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  double *v = calloc((size_t)cap, sizeof *v);
  char *dup = strdup(s), *rest = dup;
  int k = 0;
  if (!v || !dup) { free(v); free(dup); return -1; }
  for (char *t; (t = strsep(&rest, ","));) {
    char *end;
    v[k] = strtod(t, &end);
    if (end == t || *end || !(v[k] > 0) || !isfinite(v[k])) { free(v); free(dup); return -1; }
    k++;
  }
  free(dup);
  *out = v;
  *n = k;
  return 0;
}

int moesz_cli_sweep(int argc, char **argv) {
  static const struct option opts[] = {
    {"text", required_argument, 0, 'T'}, {"eb", required_argument, 0, 'e'}, {"eb-mode", required_argument, 0, 'M'},
    {"groups", required_argument, 0, 'g'}, {"per-layer", no_argument, 0, 'P'}, {"error", required_argument, 0, 'E'},
    {"seeds", required_argument, 0, 's'}, {"limit-tokens", required_argument, 0, 'l'},
    {"ctx", required_argument, 0, 'c'}, {"stride", required_argument, 0, 'S'}, {"threads", required_argument, 0, 't'},
    {"output", required_argument, 0, 'o'}, {"progress", no_argument, 0, 'p'}, {"quiet", no_argument, 0, 'q'},
    {"task", required_argument, 0, 'k'}, {"task-limit", required_argument, 0, 'K'},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *tasks[16];
  int n_tasks = 0;
  long task_limit = 200;
  const char *text = NULL, *ebs_s = NULL, *mode = "abs", *groups_s = "auto", *errs_s = "codec", *out = NULL;
  long seeds = 1, limit = 4096, ctx = 512, stride = 0, threads = 0;
  int per_layer = 0, progress = isatty(2);
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1;) {
    char *end = NULL;
    long *num = NULL, lo = 0, hi = 0;
    switch (ch) {
      case 'T': text = optarg; break;
      case 'e': ebs_s = optarg; break;
      case 'M': mode = optarg; break;
      case 'g': groups_s = optarg; break;
      case 'P': per_layer = 1; break;
      case 'E': errs_s = optarg; break;
      case 's': num = &seeds; lo = 1; hi = 1000; break;
      case 'l': num = &limit; lo = 0; hi = 1L << 40; break;
      case 'K': num = &task_limit; lo = 0; hi = 1L << 30; break;
      case 'k':
        if (n_tasks == 16) { fprintf(stderr, "moesz sweep: at most 16 --task files\n"); return 2; }
        tasks[n_tasks++] = optarg;
        break;
      case 'c': num = &ctx; lo = 2; hi = 1 << 20; break;
      case 'S': num = &stride; lo = 1; hi = 1 << 20; break;
      case 't': num = &threads; lo = 0; hi = 1024; break;
      case 'o': out = optarg; break;
      case 'p': progress = 1; break;
      case 'q': progress = 0; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (num) {
      *num = strtol(optarg, &end, 10);
      if (end == optarg || *end || *num < lo || *num > hi) {
        const char *nm = "?";
        for (int i = 0; opts[i].name; i++)
          if (opts[i].val == ch) nm = opts[i].name;
        fprintf(stderr, "moesz sweep: bad --%s '%s' (an integer in %ld-%ld)\n", nm, optarg, lo, hi);
        return 2;
      }
    }
  }
  if (optind != argc - 1 || !text || !ebs_s || !out) { usage(stderr); return 2; }
  if (!stride) stride = ctx;
  if (stride > ctx) { fprintf(stderr, "moesz sweep: --stride must be <= --ctx\n"); return 2; }
  moesz_sweep_opts o;
  memset(&o, 0, sizeof o);
  double *ebs = NULL;
  if (parse_ebs(ebs_s, &ebs, &o.n_ebs)) { fprintf(stderr, "moesz sweep: bad --eb '%s' (numbers > 0, comma-separated)\n", ebs_s); return 2; }
  o.ebs = ebs;
  o.eb_mode = !strcmp(mode, "abs") ? MOESZ_EB_ABS : !strcmp(mode, "rel") ? MOESZ_EB_REL : !strcmp(mode, "std") ? MOESZ_EB_STD : -1;
  if (o.eb_mode < 0) { fprintf(stderr, "moesz sweep: unknown --eb-mode '%s' (abs, rel, std)\n", mode); free(ebs); return 2; }
  moesz_sweep_err errs[3];
  {
    char *dup = strdup(errs_s), *rest = dup;
    for (char *t; dup && (t = strsep(&rest, ","));) {
      moesz_sweep_err k;
      int dupl = 0;
      if (moesz_sweep_err_parse(t, &k)) { o.n_errs = -1; break; }
      for (int i = 0; i < o.n_errs; i++) dupl |= errs[i] == k;
      if (!dupl) errs[o.n_errs++] = k;
    }
    free(dup);
    if (o.n_errs <= 0) { fprintf(stderr, "moesz sweep: bad --error '%s' (codec, gaussian, uniform)\n", errs_s); free(ebs); return 2; }
  }
  o.errs = errs;
  o.seeds = (int)seeds;
  o.ctx = (size_t)ctx;
  o.stride = (size_t)stride;
  o.threads = (int)threads;
  o.progress = progress;
  o.tasks = n_tasks ? tasks : NULL;
  o.n_tasks = n_tasks;
  o.task_limit = (size_t)task_limit;

  moesz_error e = {0};
  moesz_model *m = NULL;
  moesz_tok *t = NULL;
  moesz_sweep_group *groups = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  char *txt = NULL;
  size_t len;
  int status = 1;
  if (moesz_model_open(argv[optind], &m, &e)) goto fail;
  if (moesz_sweep_groups(&m->cfg, groups_s, per_layer, &groups, &o.n_groups, &e)) { status = 2; goto fail; }
  o.groups = groups;
  if (moesz_cli_tok_load(argv[optind], &t, &e)) goto fail;
  o.tok = t;
  if (moesz_file_read_all(text, 1u << 30, &txt, &len, &e)) goto fail;
  if (moesz_tok_encode(t, txt, len, 0, &ids, &n, &e)) goto fail;
  if (limit && (size_t)limit < n) n = (size_t)limit;
  if (n < 2) { moesz_error_set(&e, MOESZ_E_ARG, "%s: fewer than 2 tokens", text); goto fail; }
  /* an interrupt removes the temporaries of the files being rewritten */
  static const char *OUTS[] = {"results.csv", "results.json", "results.md", "kl.svg", "top1.svg", "ppl.svg",
                               "kl_per_layer.svg", "tasks.csv", "tasks.md"};
  for (size_t i = 0; i < sizeof OUTS / sizeof *OUTS; i++) {
    char p[4096];
    if (!moesz_path_join(p, sizeof p, out, OUTS[i])) moesz_cli_output(p);
  }
  moesz_sweep_summary s;
  if (moesz_sweep_run(m, ids, n, &o, out, &s, &e)) goto fail;
  printf("%d cells: %d run, %d already in %s/results.csv; wrote results.csv, results.json, results.md, kl.svg, "
         "top1.svg, ppl.svg%s%s\n", s.cells, s.ran, s.skipped, out, per_layer ? ", kl_per_layer.svg" : "",
         n_tasks ? ", tasks.csv, tasks.md" : "");
  status = 0;
fail:
  if (status == 1 || status == 2) moesz_cli_fail("sweep", &e);
  free(txt);
  free(ids);
  free(groups);
  free(ebs);
  moesz_tok_free(t);
  moesz_model_close(m);
  return status;
}
