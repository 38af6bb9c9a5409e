/* cli/compress_resmoe.c - the ResMoE options of `moesz compress --method
 * resmoe`: residual kind, keep fraction, base (aligned barycenter, unaligned
 * mean, or none = plain pruning / SVD), and the layer selection (default the
 * last 3/4 of the MoE layers). Parsing and messages only. */
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

/* "all", or ranges "A-B,C,D-" within 0..n_layers-1; -1 on error. */
static int parse_layers(const char *spec, const moesz_config *c, uint8_t *layers) {
  if (!strcmp(spec, "all")) {
    for (int L = 0; L < c->n_layers; L++) layers[L] = 1;
    return 0;
  }
  for (const char *p = spec; *p;) {
    char *end;
    long a = strtol(p, &end, 10), b = a;
    if (end == p) return -1;
    if (*end == '-') {
      p = end + 1;
      if (*p == ',' || !*p) { b = c->n_layers - 1; end = (char *)p; }
      else if ((b = strtol(p, &end, 10)), end == p) return -1;
    }
    if (a < 0 || b >= c->n_layers || a > b) return -1;
    for (long L = a; L <= b; L++) layers[L] = 1;
    p = end;
    if (*p == ',') p++;
    else if (*p) return -1;
  }
  return 0;
}

int moesz_cli_compress_resmoe(const moesz_config *c, const char *residual, const char *keep, const char *base,
                              const char *spec, moesz_resmoe_opts *o, uint8_t *layers) {
  memset(o, 0, sizeof *o);
  o->method = MOESZ_RESMOE;
  o->keep = 0.25;
  if (!strcmp(residual, "prune")) o->residual = MOESZ_RESIDUAL_PRUNE;
  else if (!strcmp(residual, "svd")) o->residual = MOESZ_RESIDUAL_SVD;
  else { fprintf(stderr, "moesz compress: unknown --residual '%s' (prune, svd)\n", residual); return 2; }
  if (keep) {
    char *end;
    o->keep = strtod(keep, &end);
    if (end == keep || *end || !(o->keep > 0 && o->keep <= 1)) {
      fprintf(stderr, "moesz compress: --keep '%s' must be a number in (0, 1]\n", keep);
      return 2;
    }
  }
  if (!strcmp(base, "barycenter")) o->method = MOESZ_RESMOE;
  else if (!strcmp(base, "mean")) o->method = MOESZ_RESMOE_MEAN_RESIDUAL;
  else if (!strcmp(base, "none")) o->method = o->residual == MOESZ_RESIDUAL_SVD ? MOESZ_RESMOE_SVD : MOESZ_RESMOE_PRUNE;
  else { fprintf(stderr, "moesz compress: unknown --base '%s' (barycenter, mean, none)\n", base); return 2; }
  if (c->n_experts < 2) { fprintf(stderr, "moesz compress: --method resmoe needs routed experts (%s has none)\n", c->arch_name); return 2; }
  memset(layers, 0, MOESZ_MAX_LAYERS);
  if (!spec) {
    /* the last 3/4 of the MoE layers, as the paper */
    int nmoe = 0, seen = 0;
    for (int L = 0; L < c->n_layers; L++) nmoe += c->is_moe[L];
    for (int L = 0; L < c->n_layers; L++)
      if (c->is_moe[L]) { layers[L] = seen >= nmoe / 4; seen++; }
  } else if (parse_layers(spec, c, layers)) {
    fprintf(stderr, "moesz compress: bad --resmoe-layers '%s' (ranges within 0-%d such as 2-5,7 or 4-, or 'all')\n", spec, c->n_layers - 1);
    return 2;
  }
  int any = 0;
  for (int L = 0; L < c->n_layers; L++) {
    layers[L] = layers[L] && c->is_moe[L];
    any |= layers[L];
  }
  if (!any) { fprintf(stderr, "moesz compress: --layers '%s' selects no MoE layer\n", spec ? spec : ""); return 2; }
  return 0;
}
