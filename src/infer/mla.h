/* infer/mla.h - DeepSeek-V3 multi-head latent attention (mla.c) and the
 * sigmoid group-limited router of DeepSeek-V3 and GLM-4.5 (route.c): the
 * parts of those families' forward pass that engine.c calls into. Internal
 * to src/infer. Semantics: docs/INFERENCE.md. */
#ifndef MOESZ_INFER_MLA_H
#define MOESZ_INFER_MLA_H
#include <stdint.h>
#include "infer/kernels.h"
#include "moesz/model.h"
#include "moesz/tensor.h"

typedef struct moesz_mla moesz_mla;

/* Binds the MLA weights of every layer of cfg (kv_lora_rank > 0) from st by
 * name, checks their shapes against the config and allocates the latent
 * cache for max_ctx positions and work buffers for bmax tokens per call.
 * MOESZ_E_NOTFOUND / MOESZ_E_FORMAT name the tensor. */
int moesz_mla_open(const moesz_config *cfg, const moesz_st *st, int max_ctx, int bmax,
                   moesz_mla **out, moesz_error *err);
void moesz_mla_close(moesz_mla *m);
/* Widest matrix input (columns) the MLA linear maps use: for kernel scratch. */
int moesz_mla_max_cols(const moesz_mla *m);
/* Attention of layer L for n <= bmax tokens at positions pos0..pos0+n-1:
 * xn [n, d] (normed input); writes their latent rows into the cache and adds
 * o_proj(attention) to the residual x [n, d]. */
int moesz_mla_forward(moesz_mla *m, moesz_kctx *kc, int L, const float *xn, int n, int pos0,
                      float *x, moesz_error *err);
/* The same against another latent cache cache_all [n_layers][ctx][kv_lora_rank
 * + qk_rope_head_dim] (a sequence of moesz_engine_step), ctx <= the
 * max_ctx given to moesz_mla_open. */
int moesz_mla_forward_at(moesz_mla *m, moesz_kctx *kc, int L, const float *xn, int n, int pos0,
                         float *cache_all, int ctx, float *x, moesz_error *err);
/* Bytes per token per layer of the f32 cache: MLA keeps kv_lora_rank +
 * qk_rope_head_dim floats; expanded K/V would keep n_heads * (qk_nope +
 * qk_rope + v_head_dim) floats. */
uint64_t moesz_mla_cache_bytes(const moesz_config *cfg);
uint64_t moesz_mla_expanded_bytes(const moesz_config *cfg);

/* One token's routing, DeepSeek-V3 / GLM-4.5 style: logits [E] become
 * sigmoid scores s; choice scores c = s + bias (bias [E] or NULL); with
 * n_group > 1 each group scores the sum of its two best c and only the
 * topk_group best groups stay selectable (the others' c set to -inf, as
 * transformers' masked_fill); the top k of c are chosen (larger first, lower
 * index first on ties) and weighted by s, renormalised when renorm (sum +
 * 1e-20) and multiplied by scale. tmp holds 3 * E floats. */
void moesz_route_sigmoid_groups(const float *logits, const float *bias, int E, int n_group,
                                int topk_group, int k, int renorm, float scale, int32_t *idx,
                                float *w, float *tmp);
#endif
