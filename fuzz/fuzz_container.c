/* fuzz/fuzz_container.c - libFuzzer target for the .msz reader: opens the
 * input as a container or a part container (compress --layers) and, if it
 * validates, decodes every blob (a whole container must open both ways, a
 * part only as a part); for ResMoE layers also restores every expert from
 * its barycenter and residual and parses each residual blob's header alone.
 * Seeds: plain (raw, zstd), part and ResMoE (pruned, SVD) containers of a
 * micro model. */
#include <stdlib.h>
#include "moesz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moesz_msz *c, *w = NULL;
  if (moesz_msz_open_part_mem(data, size, &c, NULL)) {
    if (!moesz_msz_open_mem(data, size, &w, NULL)) abort();   /* a whole container opens as a part too */
    return 0;
  }
  int whole = !moesz_msz_open_mem(data, size, &w, NULL);
  moesz_msz_close(w);
  if (whole == moesz_msz_part(c, NULL, NULL)) abort();       /* whole opens iff it is not a part */
  for (size_t i = 0; i < moesz_msz_count(c); i++) {
    const moesz_msz_rec *r = moesz_msz_at(c, i);
    if (r->raw_bytes > (64u << 20)) continue;
    void *dst = malloc(r->raw_bytes / moesz_dtype_size(r->dtype) * 4 + 4);
    if (dst) moesz_msz_read(c, r, MOESZ_DT_F32, dst, NULL);
    free(dst);
  }
  const moesz_config *cfg = moesz_msz_config(c);
  for (int L = 0; L < cfg->n_layers; L++) {
    const moesz_msz_resmoe_layer *l = moesz_msz_resmoe(c, L);
    if (!l || (size_t)l->n * (size_t)l->D > (16u << 20)) continue;
    float *X = malloc((size_t)l->n * (size_t)l->D * sizeof *X);
    for (int e = 0; X && e < l->E; e++) {
      moesz_msz_resmoe_expert(c, L, e, X, NULL);
      const void *b;
      moesz_residual_info ri;
      if (!moesz_msz_blob(c, &l->res[e], &b, NULL)) moesz_resmoe_residual_info(b, l->res[e].len, &ri, NULL);
    }
    free(X);
  }
  moesz_msz_close(c);
  return 0;
}
