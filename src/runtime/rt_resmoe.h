/* runtime/rt_resmoe.h - ResMoE layers in the expert cache (rt_resmoe.c):
 * every ResMoE layer's barycenter decoded once and pinned, and a miss
 * restored from it and the expert's residual. Blob bytes come through the
 * cache's fetch function, never from the mapping directly. Owned by
 * src/runtime. */
#ifndef MOESZ_RT_RESMOE_H
#define MOESZ_RT_RESMOE_H
#include "moesz/container.h"

/* How stored blob bytes are fetched (checksum-verified): get fills *data
 * and an opaque *token that put (optional) hands back when done. */
typedef struct moesz_runtime_blob_src {
  int (*get)(void *ctx, const moesz_msz_rec *r, const void **data, void **token, moesz_error *err);
  void (*put)(void *ctx, void *token);
  void *ctx;
} moesz_runtime_blob_src;

typedef struct moesz_runtime_resmoe moesz_runtime_resmoe;

/* Decodes the barycenter of every ResMoE layer of c (F32 [n, D], kept until
 * destroy). *out = NULL when c has no ResMoE layer. *pinned = bytes held,
 * *read = stored bytes fetched. */
int moesz_runtime_resmoe_create(const moesz_msz *c, const moesz_runtime_blob_src *src, moesz_runtime_resmoe **out,
                                uint64_t *pinned, uint64_t *read, moesz_error *err);
void moesz_runtime_resmoe_destroy(moesz_runtime_resmoe *r);
/* 1 if layer is a ResMoE layer (r may be NULL). */
int moesz_runtime_resmoe_has(const moesz_runtime_resmoe *r, int layer);
/* Restores expert e of a ResMoE layer from its residual blob's stored bytes
 * (res, checksum-verified by the caller's fetch): W' = B' + R' (sparse add
 * for pruned residuals, B' + U'V' for SVD), split into gate [n, d] | up
 * [n, d] | down [d, n] as dtype (F32 / F16 / BF16) into buf (3 n d elements)
 * with views v. Thread-safe (the barycenters are read-only). */
int moesz_runtime_resmoe_restore(moesz_runtime_resmoe *r, int layer, int e, const void *res, moesz_dtype dtype, uint8_t *buf,
                                 moesz_matview v[3], moesz_error *err);
#endif
