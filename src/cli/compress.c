/* cli/compress.c - `moesz compress`: model folder -> .msz container. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz compress MODEL_DIR -o OUT.msz [options]\n\n"
    "Writes the compressed container: dense tensors and embedded files as they are,\n"
    "each routed expert matrix as one blob (see docs/CONTAINER.md). The model is first checked\n"
    "as `moesz run` opens it (missing or misshapen tensors: an error, nothing written); an output\n"
    "that is one of the model's files is refused.\n\n"
    "  -o, --output FILE      output container (written to a temporary file, then renamed)\n"
    "  --method M             sz (error-bounded codec, default) | zstd (lossless) | raw | resmoe\n"
    "  --codec P              entropy (default) | fast | compute   codec for --method sz: entropy and\n"
    "                         fast are streams decoded before use; compute is the compute layout that\n"
    "                         kernels multiply from directly (bound held in F32; decompress writes F32)\n"
    "  --eb X                 error bound (default 1e-3; 0 = lossless)\n"
    "  --eb-mode M            abs (default) | rel (x value range) | std (x tensor std)\n"
    "  --layer-eb SPEC        per-layer bounds, e.g. '0-1:2e-3,2-5:5e-4,6-:lossless' (comma-separated\n"
    "                         RANGE:BOUND items, none empty; 'N-' runs to the last layer)\n"
    "  --tensor-eb RULES      per-tensor bounds, e.g. 'down_proj|w2=5e-4,experts\\.3\\.=lossless':\n"
    "                         comma-separated REGEX=BOUND items (PCRE2, searched in each expert\n"
    "                         matrix's name '<tensor>#<expert>.<gate|up|down>'; first match wins;\n"
    "                         overrides --layer-eb; a rule that matches nothing is an error)\n"
    "  --layers A-B           write a part: only the experts of MoE layers A-B (also 'A', 'A-');\n"
    "                         join the parts with `moesz merge` (docs/CONTAINER.md \"Parts\")\n"
    "  --threads N            codec threads (default: all cores)\n"
    "  gpt-oss MXFP4 experts (docs/CONTAINER.md \"MXFP4 experts\"): zstd and raw keep their blocks and\n"
    "                         scales byte for byte; sz re-encodes their exact BF16 values under the bound\n"
    "                         (the container is then an unquantized checkpoint); resmoe and --layers refused\n"
    "  Bound policy (per-layer bounds chosen under a quality target; docs/EVAL.md \"Bound policy\"):\n"
    "  --target-kl X          mean KL(original || compressed) per token, nats, on the calibration text\n"
    "  --target-ppl-rise P    or: relative perplexity rise on it (0.01 = 1%%)\n"
    "  --calib FILE           calibration text (needed with a target)\n"
    "  --calib-tokens N       its first N tokens (default 4096; 0 = all)   --calib-ctx N  window (default 512)\n"
    "  --policy-eb LIST       candidate bounds, ascending (default 5e-4,1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,\n"
    "                         1.5e-2,2e-2,3e-2; in --eb-mode units)\n"
    "  --policy-dir DIR       the per-layer sweep's folder (default OUT.policy; reused by later runs)\n"
    "  --tries N              compress + verify rounds before giving up (default 4)\n"
    "  ResMoE (--method resmoe; chosen layers as barycenter + residuals, others as sz; docs/RESMOE.md):\n"
    "  --residual R           prune (default) | svd\n"
    "  --keep F               fraction of each expert's parameters kept in its residual, in (0, 1] (default 0.25)\n"
    "  --resmoe-layers SPEC   MoE layers stored as ResMoE: ranges such as 2-5,7 or 4-, or all\n"
    "                         (default: the last 3/4 of the MoE layers)\n"
    "  --base B               barycenter (default) | mean (unaligned) | none (plain pruning / SVD, a baseline)\n"
    "  --json                 print the summary as one JSON object\n"
    "  --progress / -q, --quiet  force the progress bar on / off (default: on when stderr is a tty)\n");
}

/* Parses "REGEX=X,REGEX=lossless,..." into rules pointing into *buf (freed by the caller). */
static int parse_tensor_eb(const char *spec, moesz_msz_tensor_eb **rules, int *n, char **buf, char *why, size_t whylen) {
  *rules = NULL;
  *n = 0;
  if (!(*buf = strdup(spec))) return -1;
  int cap = 1;
  for (const char *p = spec; *p; p++) cap += *p == ',';
  if (!(*rules = calloc((size_t)cap, sizeof **rules))) return -1;
  char *rest = *buf;
  for (char *tok; (tok = strsep(&rest, ","));) {
    char *eq = strrchr(tok, '='), *end;
    if (!eq || eq == tok) { snprintf(why, whylen, "'%s' is not REGEX=BOUND", tok); return -1; }
    *eq = 0;
    double v = -1;
    if (strcmp(eq + 1, "lossless")) {
      v = strtod(eq + 1, &end);
      if (end == eq + 1 || *end || !(v > 0) || !isfinite(v)) { snprintf(why, whylen, "bad bound '%s'", eq + 1); return -1; }
    }
    (*rules)[*n].regex = tok;
    (*rules)[(*n)++].eb = v;
  }
  return 0;
}

/* Parses "A-B:X,C-:lossless,..." into eb[L] (> 0 bound, < 0 lossless, 0 default). */
static int parse_layer_eb(const char *spec, double *eb, int n_layers, char *why, size_t whylen) {
  if (!*spec) { snprintf(why, whylen, "empty"); return -1; }
  char *dup = strdup(spec), *rest;
  if (!dup) return -1;
  rest = dup;
  for (char *tok; (tok = strsep(&rest, ","));) {
    if (!*tok) { snprintf(why, whylen, "empty item in '%s' (stray comma)", spec); free(dup); return -1; }
    char *colon = strchr(tok, ':');
    if (!colon) { snprintf(why, whylen, "'%s' has no ':'", tok); free(dup); return -1; }
    *colon = 0;
    char *dash = strchr(tok, '-'), *end;
    long a = strtol(tok, &end, 10), b;
    if (end == tok || (dash ? end != dash : *end)) { snprintf(why, whylen, "bad layer range '%s'", tok); free(dup); return -1; }
    if (dash) {
      b = dash[1] ? strtol(dash + 1, &end, 10) : n_layers - 1;
      if (dash[1] && (*end || end == dash + 1)) { snprintf(why, whylen, "bad layer range '%s'", tok); free(dup); return -1; }
    } else b = a;
    if (a < 0 || b >= n_layers || a > b) { snprintf(why, whylen, "layers %ld-%ld outside 0-%d", a, b, n_layers - 1); free(dup); return -1; }
    double v;
    if (!strcmp(colon + 1, "lossless")) v = -1;
    else {
      v = strtod(colon + 1, &end);
      if (end == colon + 1 || *end || !(v > 0) || !isfinite(v)) { snprintf(why, whylen, "bad bound '%s'", colon + 1); free(dup); return -1; }
    }
    for (long L = a; L <= b; L++) eb[L] = v;
  }
  free(dup);
  return 0;
}

int moesz_cli_compress(int argc, char **argv) {
  static const struct option opts[] = {
    {"output", required_argument, 0, 'o'}, {"method", required_argument, 0, 'm'},
    {"codec", required_argument, 0, 'c'}, {"eb", required_argument, 0, 'e'},
    {"eb-mode", required_argument, 0, 'M'}, {"layer-eb", required_argument, 0, 'L'},
    {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
    {"progress", no_argument, 0, 'p'}, {"quiet", no_argument, 0, 'q'}, {"layers", required_argument, 0, 'y'},
    {"tensor-eb", required_argument, 0, 'T'},
    {"residual", required_argument, 0, 'R'}, {"keep", required_argument, 0, 'K'},
    {"resmoe-layers", required_argument, 0, 'Y'}, {"base", required_argument, 0, 'B'},
    {"target-kl", required_argument, 0, 'X'}, {"target-ppl-rise", required_argument, 0, 'P'},
    {"calib", required_argument, 0, 'C'}, {"calib-tokens", required_argument, 0, 'N'},
    {"calib-ctx", required_argument, 0, 'W'}, {"policy-eb", required_argument, 0, 'E'},
    {"policy-dir", required_argument, 0, 'D'}, {"tries", required_argument, 0, 'r'},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  moesz_cli_policy pol = {.limit = 4096, .ctx = 512, .tries = 4};
  int targets = 0;
  const char *rm_residual = "prune", *rm_keep = NULL, *rm_layers = NULL, *rm_base = "barycenter";
  const char *out = NULL, *method = "sz", *codec = "entropy", *mode = "abs", *layer_spec = NULL, *layers = NULL, *tensor_spec = NULL;
  double eb = 1e-3;
  int threads = 0, json = 0, progress = isatty(2);
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1;) {
    char *end;
    switch (ch) {
      case 'o': out = optarg; break;
      case 'm': method = optarg; break;
      case 'c': codec = optarg; break;
      case 'e':
        eb = strtod(optarg, &end);
        if (end == optarg || *end || !(eb >= 0) || !isfinite(eb)) {
          fprintf(stderr, "moesz compress: bad --eb '%s' (a number >= 0; 0 is lossless)\n", optarg);
          return 2;
        }
        break;
      case 'M': mode = optarg; break;
      case 'L': layer_spec = optarg; break;
      case 'y': layers = optarg; break;
      case 'T': tensor_spec = optarg; break;
      case 't': {
        long t = strtol(optarg, &end, 10);
        if (end == optarg || *end || t < 0 || t > 1024) { fprintf(stderr, "moesz compress: bad --threads '%s'\n", optarg); return 2; }
        threads = (int)t;
        break;
      }
      case 'j': json = 1; break;
      case 'p': progress = 1; break;
      case 'q': progress = 0; break;
      case 'R': rm_residual = optarg; break;
      case 'K': rm_keep = optarg; break;
      case 'Y': rm_layers = optarg; break;
      case 'B': rm_base = optarg; break;
      case 'X': case 'P':
        pol.target = strtod(optarg, &end);
        if (end == optarg || *end || !(pol.target > 0) || !isfinite(pol.target)) {
          fprintf(stderr, "moesz compress: bad --%s '%s' (a number > 0)\n", ch == 'X' ? "target-kl" : "target-ppl-rise", optarg);
          return 2;
        }
        pol.ppl = ch == 'P';
        targets++;
        break;
      case 'C': pol.calib = optarg; break;
      case 'E': pol.ebs = optarg; break;
      case 'D': pol.dir = optarg; break;
      case 'N': case 'W': case 'r': {
        long long v = strtoll(optarg, &end, 10);
        long long lo = ch == 'N' ? 0 : ch == 'W' ? 2 : 1, hi = ch == 'N' ? (1LL << 40) : ch == 'W' ? (1 << 20) : 100;
        if (end == optarg || *end || v < lo || v > hi) {
          fprintf(stderr, "moesz compress: bad --%s '%s' (an integer in %lld-%lld)\n",
                  ch == 'N' ? "calib-tokens" : ch == 'W' ? "calib-ctx" : "tries", optarg, lo, hi);
          return 2;
        }
        if (ch == 'N') pol.limit = (size_t)v;
        else if (ch == 'W') pol.ctx = (size_t)v;
        else pol.tries = (int)v;
        break;
      }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1 || !out) { usage(stderr); return 2; }
  if (targets > 1) { fprintf(stderr, "moesz compress: give one of --target-kl and --target-ppl-rise\n"); return 2; }
  if (targets != !!pol.calib) {
    fprintf(stderr, "moesz compress: %s\n", targets ? "a target needs --calib FILE" : "--calib needs --target-kl or --target-ppl-rise");
    return 2;
  }
  if (targets && (strcmp(method, "sz") || layer_spec || tensor_spec || layers)) {
    fprintf(stderr, "moesz compress: a target chooses the layer bounds itself: it works with --method sz (any --codec) "
            "and without --layer-eb, --tensor-eb or --layers\n");
    return 2;
  }
  if (!targets && (pol.ebs || pol.dir)) { fprintf(stderr, "moesz compress: --policy-eb and --policy-dir need a target\n"); return 2; }
  moesz_msz_opts o;
  memset(&o, 0, sizeof o);
  if (!strcmp(method, "sz")) o.method = MOESZ_MSZ_CODEC;
  else if (!strcmp(method, "zstd")) o.method = MOESZ_MSZ_ZSTD;
  else if (!strcmp(method, "raw")) o.method = MOESZ_MSZ_RAW;
  else if (!strcmp(method, "resmoe")) o.method = MOESZ_MSZ_CODEC;
  else { fprintf(stderr, "moesz compress: unknown --method '%s' (sz, zstd, raw, resmoe)\n", method); return 2; }
  int resmoe = !strcmp(method, "resmoe");
  if (!resmoe && (rm_keep || rm_layers || strcmp(rm_residual, "prune") || strcmp(rm_base, "barycenter"))) {
    fprintf(stderr, "moesz compress: --residual, --keep, --resmoe-layers and --base need --method resmoe\n");
    return 2;
  }
  if (!strcmp(codec, "compute")) {
    /* the compute layout: kernels multiply from it (docs/CODEC.md) */
    if (o.method != MOESZ_MSZ_CODEC) {
      fprintf(stderr, "moesz compress: --codec compute needs --method sz\n");
      return 2;
    }
    o.method = MOESZ_MSZ_COMPUTE;
    codec = "entropy";   /* pipeline unused */
  }
  if (moesz_msz_codec_options(codec, mode, &o) != 0) {
    fprintf(stderr, "moesz compress: unknown --codec '%s' (entropy, fast, compute) or --eb-mode '%s' (abs, rel, std)\n", codec, mode);
    return 2;
  }
  if (o.method == MOESZ_MSZ_COMPUTE && !(eb > 0)) {
    fprintf(stderr, "moesz compress: --codec compute needs a bound > 0 (use --method zstd for lossless)\n");
    return 2;
  }
  o.eb = eb;
  o.threads = threads;
  o.progress = progress;
  moesz_error e = {0};
  moesz_model *m;
  if (moesz_model_open(argv[optind], &m, &e)) return moesz_cli_fail("compress", &e);
  /* Check the model as `run` opens it (every dense tensor present with the
   * shape the config implies: embedding, norms, attention, routers, lm_head)
   * before writing anything, so a broken checkpoint fails here and not when
   * the container is served. Families or config features the forward pass
   * does not implement are still compressed, with a note. */
  if (m->cfg.arch != MOESZ_ARCH_SWITCH) {
    moesz_engine_opts eo = {.threads = 1, .max_ctx = 1};
    moesz_engine *en = NULL;
    int vr = moesz_engine_open_model(m, 0, NULL, 0, &eo, &en, &e);
    moesz_engine_close(en);
    if (vr == MOESZ_E_UNSUPPORTED) {
      fprintf(stderr, "moesz compress: note: `moesz run` cannot serve this model (%s); compressing anyway\n", e.msg);
    } else if (vr) {
      moesz_error_wrap(&e, vr, "not a usable model, nothing written");
      moesz_model_close(m);
      return moesz_cli_fail("compress", &e);
    }
  }
  if (layers) {
    /* the same range syntax as --layer-eb: A-B, A or A- */
    double *mark = calloc((size_t)m->cfg.n_layers, sizeof *mark);
    char spec[300], why[200] = "";
    snprintf(spec, sizeof spec, "%s:1", layers);
    if (!mark || strchr(layers, ',') || strchr(layers, ':') || parse_layer_eb(spec, mark, m->cfg.n_layers, why, sizeof why)) {
      fprintf(stderr, "moesz compress: bad --layers '%s': %s\n", layers, *why ? why : "one range A-B, A or A-");
      free(mark);
      moesz_model_close(m);
      return 2;
    }
    o.part = 1;
    o.part_first = -1;
    for (int L = 0; L < m->cfg.n_layers; L++)
      if (mark[L] > 0) {
        if (o.part_first < 0) o.part_first = L;
        o.part_last = L;
      }
    free(mark);
  }
  if (targets) {
    moesz_cli_output(out);
    int st = moesz_cli_compress_policy(m, out, &o, &pol, json);
    moesz_model_close(m);
    return st;
  }
  double *leb = NULL;
  if (layer_spec) {
    char why[200] = "";
    leb = calloc((size_t)m->cfg.n_layers, sizeof *leb);
    if (!leb || parse_layer_eb(layer_spec, leb, m->cfg.n_layers, why, sizeof why)) {
      fprintf(stderr, "moesz compress: bad --layer-eb: %s\n", why);
      free(leb);
      moesz_model_close(m);
      return 2;
    }
    o.layer_eb = leb;
  }
  moesz_msz_tensor_eb *teb = NULL;
  char *teb_buf = NULL;
  if (tensor_spec) {
    char why[300] = "";
    if (parse_tensor_eb(tensor_spec, &teb, &o.n_tensor_eb, &teb_buf, why, sizeof why)) {
      fprintf(stderr, "moesz compress: bad --tensor-eb: %s\n", *why ? why : "out of memory");
      free(teb);
      free(teb_buf);
      free(leb);
      moesz_model_close(m);
      return 2;
    }
    o.tensor_eb = teb;
  }
  moesz_resmoe_opts ro;
  uint8_t rlayers[MOESZ_MAX_LAYERS];
  if (resmoe) {
    if (moesz_cli_compress_resmoe(&m->cfg, rm_residual, rm_keep, rm_base, rm_layers, &ro, rlayers)) {
      free(leb);
      free(teb);
      free(teb_buf);
      moesz_model_close(m);
      return 2;
    }
    o.resmoe = &ro;
    o.resmoe_layers = rlayers;
  }
  moesz_msz_summary s;
  moesz_cli_output(out);
  int rc = moesz_msz_write(m, out, &o, &s, &e);
  moesz_model_close(m);
  free(leb);
  free(teb);
  free(teb_buf);
  if (rc) return moesz_cli_fail("compress", &e);
  double ratio = s.expert_stored_bytes ? (double)s.expert_raw_bytes / (double)s.expert_stored_bytes : 0;
  if (json) {
    printf("{\"output\":\"%s\",\"method\":\"%s\",\"eb\":%g,\"eb_mode\":\"%s\",\"expert_raw_bytes\":%llu,"
           "\"expert_stored_bytes\":%llu,\"expert_ratio\":%.4f,\"dense_bytes\":%llu,\"file_bytes\":%llu,"
           "\"total_bytes\":%llu,\"verbatim_values\":%llu,\"max_err_over_bound\":%.6f,\"resmoe_layers\":%d,"
           "\"resmoe_bary_bytes\":%llu,\"resmoe_residual_bytes\":%llu,\"resmoe_max_err\":%g,\"compute_matrices\":%llu,"
           "\"compute_half_grid\":%llu,\"seconds\":%.3f}\n",
           out, method, eb, mode, (unsigned long long)s.expert_raw_bytes, (unsigned long long)s.expert_stored_bytes,
           ratio, (unsigned long long)s.dense_bytes, (unsigned long long)s.file_bytes,
           (unsigned long long)s.total_bytes, (unsigned long long)s.verbatim_values, s.max_err_over_bound, s.resmoe_layers,
           (unsigned long long)s.resmoe_bary_bytes, (unsigned long long)s.resmoe_residual_bytes, s.resmoe_max_err,
           (unsigned long long)s.compute_matrices, (unsigned long long)s.compute_half_grid, s.seconds);
  } else {
    printf("wrote %s: %.2f MB (experts %.2f MB -> %.2f MB, %.3fx; dense %.2f MB) in %.2f s\n", out,
           (double)s.total_bytes / 1e6, (double)s.expert_raw_bytes / 1e6, (double)s.expert_stored_bytes / 1e6,
           ratio, (double)s.dense_bytes / 1e6, s.seconds);
    if (o.method == MOESZ_MSZ_CODEC || o.method == MOESZ_MSZ_COMPUTE)
      printf("error bound %g (%s): max |error| / bound = %.4f, %llu values %s\n", eb, mode, s.max_err_over_bound,
             (unsigned long long)s.verbatim_values, o.method == MOESZ_MSZ_CODEC ? "stored verbatim" : "escaped");
    if (s.compute_matrices)
      printf("compute layout: %llu of %llu matrices on the half grid (levels at odd multiples of the bound)\n",
             (unsigned long long)s.compute_half_grid, (unsigned long long)s.compute_matrices);
    if (s.resmoe_layers)
      printf("resmoe: %d layers, barycenters %.3f MB + residuals %.3f MB; max |w' - x| = %g (aligned rows, F32)\n",
             s.resmoe_layers, (double)s.resmoe_bary_bytes / 1e6, (double)s.resmoe_residual_bytes / 1e6, s.resmoe_max_err);
  }
  return 0;
}
