/* container/msz_rules.c - owns the per-tensor bound rules of moesz compress
 * --tensor-eb: PCRE2 patterns compiled once per write, matched (unanchored
 * search) against expert record names, first match wins, hits counted so a
 * rule that matches nothing is reported. docs/CONTAINER.md "Per-tensor bounds". */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include "container/msz_internal.h"

struct msz_rules {
  int n;
  pcre2_code **re;            /* [n] */
  pcre2_match_data *md;
  const moesz_msz_tensor_eb *src;   /* [n] the caller's rules */
  uint64_t *hits;             /* [n] */
};

void msz_rules_free(msz_rules *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) pcre2_code_free(r->re[i]);
  pcre2_match_data_free(r->md);
  free(r->re);
  free(r->hits);
  free(r);
}

int msz_rules_compile(const moesz_msz_opts *o, msz_rules **out, moesz_error *err) {
  *out = NULL;
  if (!o->n_tensor_eb) return MOESZ_OK;
  if (o->n_tensor_eb < 0 || o->n_tensor_eb > 256 || !o->tensor_eb)
    return moesz_error_set(err, MOESZ_E_ARG, "tensor bounds: 1-256 rules");
  msz_rules *r = calloc(1, sizeof *r);
  if (!r) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  r->src = o->tensor_eb;
  r->re = calloc((size_t)o->n_tensor_eb, sizeof *r->re);
  r->hits = calloc((size_t)o->n_tensor_eb, sizeof *r->hits);
  r->md = pcre2_match_data_create(1, NULL);
  if (!r->re || !r->hits || !r->md) { msz_rules_free(r); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  for (int i = 0; i < o->n_tensor_eb; i++) {
    const moesz_msz_tensor_eb *t = &o->tensor_eb[i];
    if (!t->regex || !(t->eb != 0) || !isfinite(t->eb)) {
      msz_rules_free(r);
      return moesz_error_set(err, MOESZ_E_ARG, "tensor bound %d: needs a pattern and a bound > 0 (or < 0: lossless)", i);
    }
    int ec;
    PCRE2_SIZE off;
    r->re[i] = pcre2_compile((PCRE2_SPTR)t->regex, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    if (!r->re[i]) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(ec, msg, sizeof msg);
      msz_rules_free(r);
      return moesz_error_set(err, MOESZ_E_ARG, "tensor bound pattern '%s': %s at offset %zu", t->regex, (char *)msg,
                             (size_t)off);
    }
    r->n++;
  }
  *out = r;
  return MOESZ_OK;
}

double msz_rules_eb(msz_rules *r, const char *name) {
  if (!r) return 0;
  for (int i = 0; i < r->n; i++)
    if (pcre2_match(r->re[i], (PCRE2_SPTR)name, strlen(name), 0, 0, r->md, NULL) >= 0) {
      r->hits[i]++;
      return r->src[i].eb;
    }
  return 0;
}

int msz_rules_check_hits(const msz_rules *r, moesz_error *err) {
  for (int i = 0; r && i < r->n; i++)
    if (!r->hits[i])
      return moesz_error_set(err, MOESZ_E_ARG, "tensor bound pattern '%s' matches no expert matrix written (names "
                             "look like '<tensor>#<expert>.<gate|up|down>')", r->src[i].regex);
  return MOESZ_OK;
}
