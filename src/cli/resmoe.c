/* cli/resmoe.c - `moesz resmoe MODEL -o OUT_DIR`: ResMoE and its baselines
 * as a model-to-model transform. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

static const char *USAGE =
  "usage: moesz resmoe MODEL -o OUT_DIR [options]\n\n"
  "Compresses each chosen MoE layer's experts to `keep` of their parameters and writes the restored\n"
  "dense model (original tensor names, shapes, dtypes; everything else copied bit for bit).\n\n"
  "  --method M        resmoe (default: Wasserstein barycenter + compressed residual) | prune (magnitude\n"
  "                    pruning of each expert) | svd (low rank of each expert) | mean-residual (unaligned\n"
  "                    mean + pruned residual)\n"
  "  --residual R      prune (default) | svd      residual compression for --method resmoe\n"
  "  --keep F          fraction of each expert's parameters kept (default 0.25)\n"
  "  --layers SPEC     'all', or ranges such as '2-7,9' (default: the last 3/4 of the MoE layers)\n"
  "  --init I          first (default) | mean     barycenter initialisation\n"
  "  --max-iter N      barycenter iterations (default 100); --tol X (default 1e-7)\n"
  "  --report FILE     per-layer report (JSON): iterations, objective, relative errors, bytes\n"
  "  --threads N       BLAS threads (default: OpenBLAS's)\n"
  "  --force           replace an existing model folder OUT_DIR (refused otherwise when not empty)\n\n"
  "OUT_DIR is written beside itself (OUT_DIR.tmp.<pid>) and renamed into place at the end; an output\n"
  "that is or holds an input file of MODEL is refused.\n";

int moesz_cli_resmoe(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *out = NULL, *spec = NULL, *report = NULL;
  moesz_resmoe_opts o = {.method = MOESZ_RESMOE, .residual = MOESZ_RESIDUAL_PRUNE, .keep = 0.25, .max_iter = 100, .tol = 1e-7};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int hv = i + 1 < argc;
    if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && hv) out = argv[++i];
    else if (!strcmp(a, "--method") && hv) {
      const char *m = argv[++i];
      if (!strcmp(m, "resmoe")) o.method = MOESZ_RESMOE;
      else if (!strcmp(m, "prune")) o.method = MOESZ_RESMOE_PRUNE;
      else if (!strcmp(m, "svd")) o.method = MOESZ_RESMOE_SVD;
      else if (!strcmp(m, "mean-residual")) o.method = MOESZ_RESMOE_MEAN_RESIDUAL;
      else { fprintf(stderr, "moesz resmoe: unknown --method '%s'\n", m); return 2; }
    } else if (!strcmp(a, "--residual") && hv) {
      const char *r = argv[++i];
      if (!strcmp(r, "prune")) o.residual = MOESZ_RESIDUAL_PRUNE;
      else if (!strcmp(r, "svd")) o.residual = MOESZ_RESIDUAL_SVD;
      else { fprintf(stderr, "moesz resmoe: unknown --residual '%s'\n", r); return 2; }
    } else if (!strcmp(a, "--keep") && hv) o.keep = atof(argv[++i]);
    else if (!strcmp(a, "--layers") && hv) spec = argv[++i];
    else if (!strcmp(a, "--init") && hv) {
      const char *v = argv[++i];
      if (!strcmp(v, "mean")) o.init_mean = 1;
      else if (strcmp(v, "first")) { fprintf(stderr, "moesz resmoe: --init is first or mean\n"); return 2; }
    } else if (!strcmp(a, "--max-iter") && hv) o.max_iter = atoi(argv[++i]);
    else if (!strcmp(a, "--tol") && hv) o.tol = atof(argv[++i]);
    else if (!strcmp(a, "--report") && hv) report = argv[++i];
    else if (!strcmp(a, "--threads") && hv) o.threads = atoi(argv[++i]);
    else if (!strcmp(a, "--force")) o.force = 1;
    else if (a[0] == '-' && a[1]) { fprintf(stderr, "moesz resmoe: bad option '%s'\n\n%s", a, USAGE); return 2; }
    else if (!model) model = a;
    else { fprintf(stderr, "moesz resmoe: unexpected argument '%s'\n", a); return 2; }
  }
  if (!model || !out) { fputs(USAGE, stderr); return 2; }
  if (!(o.keep > 0 && o.keep <= 1)) { fprintf(stderr, "moesz resmoe: --keep must be in (0, 1]\n"); return 2; }
  moesz_error e = {0};
  moesz_model *m;
  if (moesz_model_open(model, &m, &e)) return moesz_cli_fail("resmoe", &e);
  const moesz_config *c = &m->cfg;
  uint8_t layers[MOESZ_MAX_LAYERS] = {0};
  if (!spec) {
    int nmoe = 0, seen = 0;
    for (int L = 0; L < c->n_layers; L++) nmoe += c->is_moe[L];
    for (int L = 0; L < c->n_layers; L++)
      if (c->is_moe[L]) { layers[L] = seen >= nmoe / 4; seen++; }
  } else if (!strcmp(spec, "all")) {
    for (int L = 0; L < c->n_layers; L++) layers[L] = 1;
  } else {
    for (const char *p = spec; *p;) {
      char *end;
      long a = strtol(p, &end, 10), b = a;
      if (end == p) goto bad;
      if (*end == '-') { p = end + 1; b = strtol(p, &end, 10); if (end == p) goto bad; }
      if (a < 0 || b >= c->n_layers || a > b) goto bad;
      for (long L = a; L <= b; L++) layers[L] = 1;
      p = end;
      if (*p == ',') p++;
      else if (*p) goto bad;
    }
  }
  if (o.threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", o.threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
  }
  moesz_cli_output(out);
  if (report) moesz_cli_output(report);
  int rc = moesz_resmoe_model(m, out, &o, layers, report, isatty(2), &e);
  moesz_model_close(m);
  if (rc) return moesz_cli_fail("resmoe", &e);
  printf("wrote %s%s%s\n", out, report ? "; report " : "", report ? report : "");
  return 0;
bad:
  fprintf(stderr, "moesz resmoe: bad --layers '%s' (ranges within 0-%d, or 'all')\n", spec, c->n_layers - 1);
  moesz_model_close(m);
  return 2;
}
