/* infer/engine.c - the forward pass: weights bound from the checkpoint by
 * role and checked against the config, KV cache, batched prompt processing,
 * attention per family (qkv bias, q/k norm per head or over the whole
 * projection, clip_qkv, GQA, rotate-half RoPE), dense MLP and MoE blocks
 * (fp32 router softmax, top-k, per-family renormalisation, shared experts
 * with or without sigmoid gate) with experts reached through the provider,
 * final norm and lm_head (tied or not). DeepSeek-V3's latent attention and
 * the sigmoid group router of DeepSeek-V3 / GLM-4.5 live in mla.c / route.c;
 * GLM's partial rotary is here; gpt-oss's sinks, sliding windows, YaRN and
 * biased clamped-SwiGLU experts (moe_block_oss, kernels_oss.c).
 * Semantics: docs/INFERENCE.md. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/pool.h"
#include "base/util.h"
#include "infer/kernels.h"
#include "infer/mla.h"
#include "moesz/infer.h"
#include "moesz/tensor.h"

#define BMAX 128   /* tokens per internal batch */

typedef struct layer_w {
  float *attn_norm, *ffn_norm;          /* [d] */
  moesz_matview wq, wk, wv, wo;         /* [nh*hd, d], [nkv*hd, d] x2, [d, nh*hd] */
  float *bq, *bk, *bv, *bo;             /* biases or NULL */
  float *q_norm, *k_norm;               /* [hd] (per head) or [nh*hd]/[nkv*hd] (whole) */
  moesz_matview router;                 /* [E, d] (MoE layers) */
  moesz_matview shared_gate;            /* [1, d] (Qwen2-MoE) */
  float *router_bias;                   /* [E] e_score_correction_bias (sigmoid routing) */
  float *sinks, *router_b;              /* gpt-oss: [nh], [E] */
  float *gu_b, *dn_b;                   /* gpt-oss expert biases: [E, 2n], [E, d] */
  int has[8];                           /* presence flags, see bind_tensor */
} layer_w;

enum { H_Q, H_K, H_V, H_O, H_ANORM, H_FNORM, H_ROUTER, H_SGATE };

struct moesz_engine {
  moesz_model *m;
  int own_model;
  const moesz_engine *root;             /* the engine whose sequences this one steps: itself, or the
                                           engine a sibling was opened from */
  moesz_engine_opts opts;               /* as opened (threads as asked) */
  moesz_expert_provider prov;
  int own_prov;
  moesz_config cfg;
  int d, nh, nkv, hd, qw, kvw, vocab, max_ctx, pos;
  int renorm;                           /* renormalise top-k weights */
  float renorm_eps;                     /* DeepSeek adds 1e-20 to the denominator */
  int group;                            /* experts held at once */
  int inter_max;                        /* widest MLP (dense / routed / shared) */
  moesz_matview embed, lm_head;         /* [vocab, d] */
  float *final_norm;                    /* [d] */
  layer_w *L;                           /* [n_layers] */
  float *kcache, *vcache;               /* [n_layers][max_ctx][kvw] */
  float *inv_freq;                      /* [hd/2] */
  float att_scale;
  moesz_pool *pool;
  moesz_kctx kc;
  /* work buffers for one internal batch of n <= BMAX tokens */
  float *x, *xn;                        /* [BMAX, d] */
  float *q, *att;                       /* [BMAX, qw] */
  float *rl;                            /* [BMAX, E] router logits / probs */
  int32_t *topi;                        /* [BMAX, k] */
  float *topw;                          /* [BMAX, k] */
  int32_t *cnt, *off, *fill;            /* [E] */
  int32_t *row_tok;                     /* [BMAX*k] token of each gathered row */
  float *row_w;                         /* [BMAX*k] routing weight of each row */
  int32_t *active;                      /* [E] */
  moesz_expert_mats *mats;              /* [E] */
  float *xg, *yd;                       /* [BMAX*k, d] gathered inputs / expert outputs */
  float *hg, *hu;                       /* [BMAX*k, inter_max] */
  float *moe;                           /* [BMAX, d] */
  float *sg;                            /* [BMAX] shared gate logits */
  float *kst, *vst;                     /* [BMAX, kvw] k / v rows of a several-sequence step */
  moesz_mla *mla;                       /* DeepSeek-V3 latent attention (NULL otherwise) */
  int rd;                               /* rotated dims per head (GLM partial rotary; hd otherwise) */
  float *rtmp;                          /* [3E] sigmoid router scratch */
  moesz_kjob *jobs;                     /* [2E + 4] */
  moesz_engine_stats st;
};

/* ------------------------------------------------------------ providers */

static int mmap_get(void *ctx, int layer, int expert, int shared, moesz_expert_mats *o,
                    moesz_error *err) {
  const moesz_model *m = ctx;
  int rc = moesz_model_expert(m, layer, expert, shared, MOESZ_MAT_GATE, &o->gate, err);
  if (!rc) rc = moesz_model_expert(m, layer, expert, shared, MOESZ_MAT_UP, &o->up, err);
  if (!rc) rc = moesz_model_expert(m, layer, expert, shared, MOESZ_MAT_DOWN, &o->down, err);
  return rc;
}
static void mmap_release(void *ctx, int layer, int expert, int shared) {
  (void)ctx; (void)layer; (void)expert; (void)shared;
}

int moesz_expert_provider_mmap(const moesz_model *m, moesz_expert_provider *out,
                               moesz_error *err) {
  if (!m || !out) return moesz_error_set(err, MOESZ_E_ARG, "expert provider: NULL argument");
  memset(out, 0, sizeof *out);
  out->ctx = (void *)m;
  out->get = mmap_get;
  out->release = mmap_release;
  out->concurrent = 1;   /* views into the mapping: no state */
  return MOESZ_OK;
}

/* -------------------------------------------------------------- binding */

static int is_matrix_dtype(moesz_dtype t) {
  return t == MOESZ_DT_F32 || t == MOESZ_DT_BF16 || t == MOESZ_DT_F16;
}

static int bind_mat(const moesz_tensor *t, int64_t rows, int64_t cols, moesz_matview *v,
                    moesz_error *err) {
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return moesz_error_set(err, MOESZ_E_FORMAT,
                           "tensor %s: shape contradicts the config (expected [%lld, %lld])",
                           t->name, (long long)rows, (long long)cols);
  if (!is_matrix_dtype(t->dtype))
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tensor %s: dtype %s not supported for compute",
                           t->name, moesz_dtype_name(t->dtype));
  v->data = t->data; v->dtype = t->dtype; v->rows = rows; v->cols = cols; v->ld = cols;
  v->transposed = 0;
  return MOESZ_OK;
}

static int bind_vec(const moesz_tensor *t, int64_t n, float **out, moesz_error *err) {
  if (t->ndim != 1 || t->shape[0] != n)
    return moesz_error_set(err, MOESZ_E_FORMAT,
                           "tensor %s: shape contradicts the config (expected [%lld])", t->name,
                           (long long)n);
  if (*out) return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: duplicate", t->name);
  float *v = malloc(sizeof(float) * (size_t)n);
  if (!v) return moesz_error_set(err, MOESZ_E_NOMEM, "tensor %s", t->name);
  if (moesz_to_f32(t->dtype, t->data, v, (size_t)n)) {
    free(v);
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tensor %s: dtype %s not supported",
                           t->name, moesz_dtype_name(t->dtype));
  }
  *out = v;
  return MOESZ_OK;
}

static int bind_tensor(moesz_engine *e, const moesz_tensor *t, const moesz_tensor_role *r,
                       moesz_error *err) {
  const moesz_config *c = &e->cfg;
  int64_t d = e->d;
  if (r->layer >= c->n_layers) return MOESZ_OK;
  layer_w *l = r->layer >= 0 ? &e->L[r->layer] : NULL;
  int qkn = c->qk_norm == 1;
  switch (r->role) {
  case MOESZ_ROLE_EMBED: return bind_mat(t, e->vocab, d, &e->embed, err);
  case MOESZ_ROLE_LM_HEAD: return bind_mat(t, e->vocab, d, &e->lm_head, err);
  case MOESZ_ROLE_FINAL_NORM: return bind_vec(t, d, &e->final_norm, err);
  default: break;
  }
  if (!l) return MOESZ_OK;
  if (c->kv_lora_rank > 0 && (r->role == MOESZ_ROLE_ATTN_Q || r->role == MOESZ_ROLE_ATTN_O))
    return MOESZ_OK;   /* MLA binds its own (mla.c) */
  switch (r->role) {
  case MOESZ_ROLE_ROUTER_BIAS:
    if (!c->is_moe[r->layer]) return MOESZ_OK;
    return bind_vec(t, c->n_experts, &l->router_bias, err);
  case MOESZ_ROLE_ATTN_NORM: l->has[H_ANORM] = 1; return bind_vec(t, d, &l->attn_norm, err);
  case MOESZ_ROLE_FFN_NORM: l->has[H_FNORM] = 1; return bind_vec(t, d, &l->ffn_norm, err);
  case MOESZ_ROLE_ATTN_Q: l->has[H_Q] = 1; return bind_mat(t, e->qw, d, &l->wq, err);
  case MOESZ_ROLE_ATTN_K: l->has[H_K] = 1; return bind_mat(t, e->kvw, d, &l->wk, err);
  case MOESZ_ROLE_ATTN_V: l->has[H_V] = 1; return bind_mat(t, e->kvw, d, &l->wv, err);
  case MOESZ_ROLE_ATTN_O: l->has[H_O] = 1; return bind_mat(t, d, e->qw, &l->wo, err);
  case MOESZ_ROLE_ATTN_Q_BIAS: return bind_vec(t, e->qw, &l->bq, err);
  case MOESZ_ROLE_ATTN_K_BIAS: return bind_vec(t, e->kvw, &l->bk, err);
  case MOESZ_ROLE_ATTN_V_BIAS: return bind_vec(t, e->kvw, &l->bv, err);
  case MOESZ_ROLE_Q_NORM: return bind_vec(t, qkn ? e->hd : e->qw, &l->q_norm, err);
  case MOESZ_ROLE_K_NORM: return bind_vec(t, qkn ? e->hd : e->kvw, &l->k_norm, err);
  case MOESZ_ROLE_ROUTER:
    if (!c->is_moe[r->layer]) return MOESZ_OK;
    l->has[H_ROUTER] = 1;
    return bind_mat(t, c->n_experts, d, &l->router, err);
  case MOESZ_ROLE_ATTN_SINKS: return bind_vec(t, e->nh, &l->sinks, err);
  case MOESZ_ROLE_ROUTER_LINEAR_BIAS:
    if (!c->is_moe[r->layer]) return MOESZ_OK;
    return bind_vec(t, c->n_experts, &l->router_b, err);
  case MOESZ_ROLE_EXPERT_BIAS:   /* [E, rows] read as one vector */
    if (!c->is_moe[r->layer] || t->ndim != 2) return MOESZ_OK;
    {
      moesz_tensor flat = *t;
      flat.ndim = 1;
      flat.shape[0] = t->shape[0] * t->shape[1];
      int64_t want = (int64_t)c->n_experts * (r->mat == MOESZ_MAT_DOWN ? d : 2 * (int64_t)c->moe_intermediate);
      return bind_vec(&flat, want, r->mat == MOESZ_MAT_DOWN ? &l->dn_b : &l->gu_b, err);
    }
  case MOESZ_ROLE_SHARED_GATE:
    if (!c->is_moe[r->layer]) return MOESZ_OK;
    l->has[H_SGATE] = 1;
    return bind_mat(t, 1, d, &l->shared_gate, err);
  default: return MOESZ_OK;
  }
}

static int missing(moesz_error *err, int layer, const char *what) {
  if (layer < 0) return moesz_error_set(err, MOESZ_E_NOTFOUND, "missing tensor: %s", what);
  return moesz_error_set(err, MOESZ_E_NOTFOUND, "missing tensor: layer %d %s", layer, what);
}

static int bind_all(moesz_engine *e, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  size_t nt = moesz_st_count(e->m->st);
  for (size_t i = 0; i < nt; i++) {
    const moesz_tensor *t = moesz_st_at(e->m->st, i);
    moesz_tensor_role r;
    moesz_tensor_classify(c, t->name, &r);
    int rc = bind_tensor(e, t, &r, err);
    if (rc) return rc;
  }
  /* o_proj bias (Llama attention_bias = true) is looked up by name */
  for (int L = 0; L < c->n_layers; L++) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.bias", L);
    const moesz_tensor *t = moesz_st_find(e->m->st, name);
    if (t) { int rc = bind_vec(t, e->d, &e->L[L].bo, err); if (rc) return rc; }
  }
  if (!e->embed.data) return missing(err, -1, "token embedding (model.embed_tokens.weight)");
  if (!e->lm_head.data) {
    if (!c->tie_embeddings) return missing(err, -1, "lm_head.weight (tie_word_embeddings is false)");
    e->lm_head = e->embed;
  }
  if (!e->final_norm) return missing(err, -1, "final norm (model.norm.weight)");
  for (int L = 0; L < c->n_layers; L++) {
    layer_w *l = &e->L[L];
    if (!l->has[H_ANORM]) return missing(err, L, "input_layernorm");
    if (!l->has[H_FNORM]) return missing(err, L, "post_attention_layernorm");
    if (!l->has[H_Q] && !c->kv_lora_rank) return missing(err, L, "q_proj");
    if (!l->has[H_K] && !c->kv_lora_rank) return missing(err, L, "k_proj");
    if (!l->has[H_V] && !c->kv_lora_rank) return missing(err, L, "v_proj");
    if (!l->has[H_O] && !c->kv_lora_rank) return missing(err, L, "o_proj");
    if (c->is_moe[L] && c->score_sigmoid && !l->router_bias)
      return missing(err, L, "router correction bias (mlp.gate.e_score_correction_bias)");
    if (c->qkv_bias && (!l->bq || !l->bk || !l->bv)) return missing(err, L, "q/k/v_proj bias");
    if (c->qk_norm && (!l->q_norm || !l->k_norm)) return missing(err, L, "q_norm/k_norm");
    if (c->is_moe[L] && !l->has[H_ROUTER]) return missing(err, L, "router (mlp.gate)");
    if (c->is_moe[L] && c->has_shared_gate && !l->has[H_SGATE])
      return missing(err, L, "shared_expert_gate");
    if (c->attn_sinks && !l->sinks) return missing(err, L, "self_attn.sinks");
    if (c->is_moe[L] && c->router_bias && !l->router_b) return missing(err, L, "mlp.router.bias");
    if (c->is_moe[L] && c->expert_bias && (!l->gu_b || !l->dn_b))
      return missing(err, L, "mlp.experts.gate_up_proj_bias / down_proj_bias");
  }
  return MOESZ_OK;
}

/* ---------------------------------------------------------- open / close */

static const char *rope_kind(const cJSON *o) {
  if (!cJSON_IsObject(o)) return NULL;
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
  if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(o, "type");
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Features of config.json the forward pass does not implement are refused
 * rather than computed wrongly: activations other than SiLU, RoPE scaling
 * variants, MLP biases, sliding-window attention inside the context. A
 * sliding window that is at least the KV cache length changes nothing, so the
 * context is capped at the window instead. */
static int check_config_features(const char *dir, const moesz_config *c, int *max_ctx,
                                 moesz_error *err) {
  char path[4200];
  if (!moesz_path_is_dir(dir) || moesz_path_join(path, sizeof path, dir, "config.json")) return MOESZ_OK;
  char *txt = NULL;
  size_t len = 0;
  if (moesz_file_read_all(path, 16u << 20, &txt, &len, NULL)) return MOESZ_OK; /* model module read it */
  cJSON *root = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!root) return MOESZ_OK;
  int rc = MOESZ_OK;
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
  const char *rs = rope_kind(cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"));
  const char *rp = rope_kind(cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"));
  const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
  const cJSON *usw = cJSON_GetObjectItemCaseSensitive(root, "use_sliding_window");
  if (cJSON_IsString(act) && strcmp(act->valuestring, "silu") && strcmp(act->valuestring, "swish"))
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s: hidden_act \"%s\" (only silu)", dir,
                         act->valuestring);
  else if (((rs && strcmp(rs, "default")) || (rp && strcmp(rp, "default"))) &&
           !(c->yarn && (c->kv_lora_rank > 0 || c->arch == MOESZ_ARCH_GPT_OSS)))   /* YaRN: mla.c, gpt-oss */
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s: RoPE scaling \"%s\" not implemented", dir,
                         rs && strcmp(rs, "default") ? rs : rp);
  else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "mlp_bias")))
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s: mlp_bias not implemented", dir);
  else if (cJSON_IsNumber(sw) && sw->valuedouble >= 1 && !cJSON_IsFalse(usw) && !cJSON_IsNull(usw) &&
           sw->valuedouble < *max_ctx && c->arch != MOESZ_ARCH_GPT_OSS)   /* gpt-oss: windows as configured */
    *max_ctx = (int)sw->valuedouble;  /* exact up to the window */
  cJSON_Delete(root);
  return rc;
}

static int alloc_buffers(moesz_engine *e, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  size_t E = c->n_experts > 0 ? (size_t)c->n_experts : 1;
  size_t K = c->top_k > 0 ? (size_t)c->top_k : 1;
  size_t d = (size_t)e->d, rows = BMAX * K, im = (size_t)e->inter_max;
  size_t kv = c->kv_lora_rank > 0 ? 1 : (size_t)c->n_layers * (size_t)e->max_ctx * (size_t)e->kvw, tmp;
  if (!moesz_mul_ok(kv, sizeof(float), &tmp))
    return moesz_error_set(err, MOESZ_E_NOMEM, "KV cache size overflows");
#define A(p, n) do { (p) = calloc((n), sizeof *(p)); \
    if (!(p)) return moesz_error_set(err, MOESZ_E_NOMEM, "engine buffers (%s)", #p); } while (0)
  A(e->kcache, kv); A(e->vcache, kv);
  A(e->x, BMAX * d); A(e->xn, BMAX * d);
  A(e->q, BMAX * (size_t)e->qw); A(e->att, BMAX * (size_t)e->qw);
  A(e->rl, BMAX * E); A(e->topi, BMAX * K); A(e->topw, BMAX * K);
  A(e->cnt, E); A(e->off, E + 1); A(e->fill, E); A(e->active, E);
  A(e->row_tok, rows); A(e->row_w, rows); A(e->mats, E);
  A(e->xg, rows * d); A(e->yd, rows * d);
  A(e->hg, rows * im); A(e->hu, rows * im);
  A(e->moe, BMAX * d); A(e->sg, BMAX);
  A(e->kst, BMAX * (size_t)e->kvw); A(e->vst, BMAX * (size_t)e->kvw);
  A(e->jobs, 2 * E + 4);
  A(e->rtmp, 3 * E);
#undef A
  return MOESZ_OK;
}

int moesz_engine_open_model(moesz_model *m, int own_model, const moesz_expert_provider *prov,
                            int own_provider, const moesz_engine_opts *o, moesz_engine **out,
                            moesz_error *err) {
  if (!m || !out) return moesz_error_set(err, MOESZ_E_ARG, "engine: NULL argument");
  *out = NULL;
  moesz_engine *e = calloc(1, sizeof *e);
  if (!e) return moesz_error_set(err, MOESZ_E_NOMEM, "engine");
  e->m = m;
  e->own_model = own_model;
  e->cfg = m->cfg;
  if (prov) { e->prov = *prov; e->own_prov = own_provider; }
  else moesz_expert_provider_mmap(m, &e->prov, NULL);
  int rc = MOESZ_OK;
  const moesz_config *c = &e->cfg;
  moesz_engine_opts opts = {0};
  if (o) opts = *o;
  e->root = e;
  e->opts = opts;
  if (opts.fast_dot < 0 || opts.fast_dot > 2) {
    rc = moesz_error_set(err, MOESZ_E_ARG, "engine: fast_dot %d (0 exact, 1 16-bit x, 2 also 8-bit x)", opts.fast_dot);
    goto fail;
  }
  if (c->arch == MOESZ_ARCH_SWITCH || c->arch >= MOESZ_ARCH_COUNT) {
    rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s: no forward pass for architecture %s",
                         m->path, c->arch_name);
    goto fail;
  }
  if (!e->prov.get || !e->prov.release) {
    rc = moesz_error_set(err, MOESZ_E_ARG, "expert provider without get/release");
    goto fail;
  }
  e->d = c->hidden;
  e->nh = c->n_heads;
  e->nkv = c->n_kv_heads > 0 ? c->n_kv_heads : c->n_heads;
  e->hd = c->head_dim > 0 ? c->head_dim : (c->n_heads > 0 ? c->hidden / c->n_heads : 0);
  e->vocab = c->vocab;
  if (e->d <= 0 || e->nh <= 0 || e->hd <= 0 || (e->hd % 2 && !c->kv_lora_rank) || e->nh % e->nkv ||
      e->vocab <= 0 || c->n_layers <= 0 || c->n_layers > MOESZ_MAX_LAYERS) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT,
                         "%s: config not usable for inference (hidden %d, heads %d/%d, head_dim "
                         "%d, vocab %d, layers %d)", m->path, e->d, e->nh, e->nkv, e->hd,
                         e->vocab, c->n_layers);
    goto fail;
  }
  int any_moe = 0;
  for (int L = 0; L < c->n_layers; L++) any_moe |= c->is_moe[L];
  if (any_moe && (c->n_experts <= 0 || c->top_k <= 0 || c->top_k > c->n_experts ||
                  c->moe_intermediate <= 0)) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: MoE config not usable (experts %d, top_k %d, "
                         "expert width %d)", m->path, c->n_experts, c->top_k, c->moe_intermediate);
    goto fail;
  }
  e->qw = e->nh * e->hd;
  e->kvw = e->nkv * e->hd;
  e->renorm = c->arch == MOESZ_ARCH_MIXTRAL ? 1 : c->norm_topk_prob;
  if (c->arch == MOESZ_ARCH_DEEPSEEK) {
    e->renorm = c->norm_topk_prob && c->top_k > 1;
    e->renorm_eps = 1e-20f;
  }
  e->inter_max = c->gate_up_interleaved ? 2 * c->moe_intermediate : c->intermediate;
  if (c->moe_intermediate > e->inter_max) e->inter_max = c->moe_intermediate;
  if (c->shared_intermediate > e->inter_max) e->inter_max = c->shared_intermediate;
  if (e->inter_max <= 0) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "%s: config has no MLP width", m->path);
    goto fail;
  }
  e->max_ctx = opts.max_ctx > 0 ? opts.max_ctx : (c->max_pos > 0 && c->max_pos < 4096 ? c->max_pos : 4096);
  if ((rc = check_config_features(m->path, c, &e->max_ctx, err))) goto fail;
  e->group = opts.expert_group > 0 ? opts.expert_group : (c->n_experts > 0 ? c->n_experts : 1);
  e->L = calloc((size_t)c->n_layers, sizeof *e->L);
  e->rd = c->rotary_dim > 0 && c->rotary_dim < e->hd ? c->rotary_dim : e->hd;
  e->inv_freq = calloc((size_t)e->hd / 2, sizeof(float));
  if (!e->L || !e->inv_freq) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "engine"); goto fail; }
  /* as transformers: inv_freq = 1 / theta^(arange(0, hd, 2) / hd) in float32 */
  for (int i = 0; i < e->rd / 2; i++) {
    float ex = (float)(2 * i) / (float)e->rd;
    e->inv_freq[i] = 1.0f / powf(c->rope_theta > 0 ? c->rope_theta : 10000.0f, ex);
  }
  e->att_scale = (float)(1.0 / sqrt((double)e->hd));
  if (c->yarn && c->kv_lora_rank == 0) {   /* YaRN: scaled frequencies; cos and sin times
                                              attention_factor scale q.k by its square (MLA: mla.c) */
    moesz_k_yarn_inv_freq(e->rd, c->rope_theta, c->yarn_factor, c->yarn_beta_fast, c->yarn_beta_slow,
                          c->yarn_orig_max_pos, c->yarn_truncate, e->inv_freq);
    e->att_scale *= c->yarn_attn_factor * c->yarn_attn_factor;
  }
  if (c->arch == MOESZ_ARCH_GPT_OSS && !prov) {
    if ((rc = moesz_expert_provider_gptoss(m, &e->prov, err))) goto fail;
    e->own_prov = 1;
  }
  if ((rc = bind_all(e, err))) { moesz_error_wrap(err, rc, "%s", m->path); goto fail; }
  if (c->kv_lora_rank > 0 && (rc = moesz_mla_open(c, m->st, e->max_ctx, BMAX, &e->mla, err))) {
    moesz_error_wrap(err, rc, "%s", m->path);
    goto fail;
  }
  if ((rc = alloc_buffers(e, err))) goto fail;
  e->pool = moesz_pool_create(opts.threads);
  if (!e->pool) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "thread pool"); goto fail; }
  size_t maxc = (size_t)(e->d > e->inter_max ? e->d : e->inter_max);
  if ((size_t)e->qw > maxc) maxc = (size_t)e->qw;
  if (e->mla && (size_t)moesz_mla_max_cols(e->mla) > maxc) maxc = (size_t)moesz_mla_max_cols(e->mla);
  if (moesz_kctx_init(&e->kc, e->pool, opts.scalar ? 0 : -1,
                      moesz_k_scratch_need(maxc, (size_t)e->max_ctx))) {
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "kernel scratch");
    goto fail;
  }
  e->kc.cl_act = opts.fast_dot;
  e->kc.bf16x = opts.fast_dot >= 1 && !opts.exact_bf16;   /* BF16 weights against BF16 x, where the CPU has AVX512_BF16 */
  *out = e;
  return MOESZ_OK;
fail:
  e->own_model = 0;      /* on failure the caller keeps m and prov */
  if (prov) e->own_prov = 0;   /* a provider the engine made itself is freed */
  moesz_engine_close(e);
  return rc;
}

int moesz_engine_open_sibling(moesz_engine *e, int threads, moesz_engine **out, moesz_error *err) {
  if (!e || !out) return moesz_error_set(err, MOESZ_E_ARG, "sibling engine: NULL argument");
  *out = NULL;
  if (!e->prov.concurrent)
    return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "sibling engine: this engine's expert provider is not "
                           "safe to call from several threads");
  moesz_expert_provider p = e->prov;
  p.get_many = NULL;   /* its misses load one by one on the step's own thread */
  moesz_engine_opts o = e->opts;
  o.threads = threads;
  o.expert_group = e->group;
  o.max_ctx = e->max_ctx;
  int rc = moesz_engine_open_model(e->m, 0, &p, 0, &o, out, err);
  if (!rc) (*out)->root = e->root;
  return rc;
}

int moesz_engine_open(const char *model_dir, const moesz_engine_opts *o, moesz_engine **out,
                      moesz_error *err) {
  if (moesz_engine_is_msz(model_dir)) return moesz_engine_open_msz(model_dir, NULL, o, out, NULL, err);
  moesz_model *m = NULL;
  int rc = moesz_model_open(model_dir, &m, err);
  if (rc) return rc;
  rc = moesz_engine_open_model(m, 1, NULL, 0, o, out, err);
  if (rc) moesz_model_close(m);
  return rc;
}

void moesz_engine_close(moesz_engine *e) {
  if (!e) return;
  if (e->L)
    for (int L = 0; L < e->cfg.n_layers; L++) {
      layer_w *l = &e->L[L];
      free(l->attn_norm); free(l->ffn_norm); free(l->bq); free(l->bk); free(l->bv); free(l->bo);
      free(l->q_norm); free(l->k_norm); free(l->router_bias);
      free(l->sinks); free(l->router_b); free(l->gu_b); free(l->dn_b);
    }
  free(e->L);
  free(e->final_norm); free(e->inv_freq);
  free(e->kcache); free(e->vcache);
  free(e->x); free(e->xn); free(e->q); free(e->att); free(e->rl); free(e->topi); free(e->topw);
  free(e->cnt); free(e->off); free(e->fill); free(e->active); free(e->row_tok); free(e->row_w);
  free(e->mats); free(e->xg); free(e->yd); free(e->hg); free(e->hu); free(e->moe); free(e->sg);
  free(e->jobs); free(e->kst); free(e->vst); free(e->rtmp);
  moesz_mla_close(e->mla);
  moesz_kctx_free(&e->kc);
  moesz_pool_destroy(e->pool);
  if (e->own_prov && e->prov.destroy) e->prov.destroy(e->prov.ctx);
  if (e->own_model) moesz_model_close(e->m);
  free(e);
}

int moesz_engine_vocab(const moesz_engine *e) { return e->vocab; }
int moesz_engine_max_ctx(const moesz_engine *e) { return e->max_ctx; }
int moesz_engine_threads(const moesz_engine *e) { return e->kc.nthreads; }
const moesz_config *moesz_engine_config(const moesz_engine *e) { return &e->cfg; }
const moesz_model *moesz_engine_model(const moesz_engine *e) { return e->m; }
void moesz_engine_reset(moesz_engine *e) { e->pos = 0; }
int moesz_engine_pos(const moesz_engine *e) { return e->pos; }
int moesz_engine_truncate(moesz_engine *e, int pos, moesz_error *err) {
  if (pos < 0 || pos > e->pos)
    return moesz_error_set(err, MOESZ_E_RANGE, "truncate to %d: cache holds %d tokens", pos, e->pos);
  e->pos = pos;
  return MOESZ_OK;
}
void moesz_engine_stats_get(const moesz_engine *e, moesz_engine_stats *out) { *out = e->st; }
void moesz_engine_stats_reset(moesz_engine *e) { memset(&e->st, 0, sizeof e->st); }

/* ------------------------------------------------------------- forward */

static moesz_kjob job(const moesz_matview *w, const float *x, size_t ldx, float *y, size_t ldy,
                      int n, int acc) {
  moesz_kjob j = {*w, x, ldx, y, ldy, n, acc};
  return j;
}

static void add_bias(float *y, size_t ld, const float *b, int n, int w) {
  for (int t = 0; t < n; t++)
    for (int i = 0; i < w; i++) y[(size_t)t * ld + i] += b[i];
}

static void clamp_rows(float *y, size_t ld, int n, int w, float c) {
  for (int t = 0; t < n; t++)
    for (int i = 0; i < w; i++) {
      float *v = &y[(size_t)t * ld + i];
      if (*v < -c) *v = -c;
      else if (*v > c) *v = c;
    }
}

static int check_expert(const moesz_engine *e, int L, int ex, int shared,
                        const moesz_expert_mats *mt, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  int64_t n = shared ? c->shared_intermediate : (c->is_moe[L] ? c->moe_intermediate : c->intermediate);
  int64_t d = e->d;
  if (c->gate_up_interleaved && c->is_moe[L] && !shared && mt->gate_up.data) {   /* gpt-oss: gate_up [2n, d], down [d, n] */
    const moesz_matview *g = &mt->gate_up, *dn = &mt->down;
    if (g->rows != 2 * n || g->cols != d || !dn->data || dn->rows != d || dn->cols != n)
      return moesz_error_set(err, MOESZ_E_FORMAT, "layer %d expert %d: gate_up [%lld, %lld] / down [%lld, %lld], "
                             "config says [%lld, %lld] / [%lld, %lld]", L, ex, (long long)g->rows, (long long)g->cols,
                             (long long)dn->rows, (long long)dn->cols, (long long)(2 * n), (long long)d, (long long)d,
                             (long long)n);
    if ((!is_matrix_dtype(g->dtype) && g->dtype != MOESZ_VIEW_CL) || (!is_matrix_dtype(dn->dtype) && dn->dtype != MOESZ_VIEW_CL))
      return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "layer %d expert %d: dtype %s / %s", L, ex,
                             moesz_dtype_name(g->dtype), moesz_dtype_name(dn->dtype));
    return MOESZ_OK;
  }
  const moesz_matview *v[3] = {&mt->gate, &mt->up, &mt->down};
  static const char *nm[3] = {"gate", "up", "down"};
  for (int i = 0; i < 3; i++) {
    int64_t er = i == 2 ? d : n, ec = i == 2 ? n : d;
    if (!v[i]->data || v[i]->rows != er || v[i]->cols != ec)
      return moesz_error_set(err, MOESZ_E_FORMAT, "layer %d %s %d: %s matrix is [%lld, %lld], "
                             "config says [%lld, %lld]", L,
                             shared ? "shared expert" : (c->is_moe[L] ? "expert" : "dense MLP"),
                             ex, nm[i], (long long)v[i]->rows, (long long)v[i]->cols,
                             (long long)er, (long long)ec);
    if (!is_matrix_dtype(v[i]->dtype) && v[i]->dtype != MOESZ_VIEW_CL && v[i]->dtype != MOESZ_VIEW_MXFP4)
      return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "layer %d expert %d: %s dtype %s", L, ex,
                             nm[i], moesz_dtype_name(v[i]->dtype));
  }
  return MOESZ_OK;
}

/* One SwiGLU MLP on n rows: y (+)= down(silu(gate x) * up x). */
static int run_mlp(moesz_engine *e, const moesz_expert_mats *mt, const float *x, int n, float *y,
                   int acc) {
  size_t im = (size_t)mt->gate.rows, d = (size_t)e->d;
  moesz_kjob j[2] = {job(&mt->gate, x, d, e->hg, im, n, 0), job(&mt->up, x, d, e->hu, im, n, 0)};
  int rc = moesz_k_linear(&e->kc, j, 2);
  if (rc) return rc;
  moesz_k_silu_mul(e->hg, e->hu, (size_t)n * im);
  j[0] = job(&mt->down, e->hg, im, y, d, n, acc);
  return moesz_k_linear(&e->kc, j, 1);
}

static int get_expert(moesz_engine *e, int L, int ex, int shared, moesz_expert_mats *mt,
                      moesz_error *err) {
  memset(mt, 0, sizeof *mt);
  int rc = e->prov.get(e->prov.ctx, L, ex, shared, mt, err);
  if (rc) return moesz_error_wrap(err, rc, "layer %d %sexpert %d", L, shared ? "shared " : "", ex);
  e->st.expert_gets++;
  rc = check_expert(e, L, ex, shared, mt, err);
  if (rc) e->prov.release(e->prov.ctx, L, ex, shared);
  return rc;
}

/* Gets the routed experts e->active[g0, g1) of layer L into e->mats, all at
 * once where the provider can (get_many loads the missing ones together),
 * else one by one; *got: the end of those held from g0 (the caller releases
 * [g0, *got) whatever the status). */
static int get_group(moesz_engine *e, int L, int g0, int g1, int *got, moesz_error *err) {
  int rc = MOESZ_OK;
  *got = g0;
  if (e->prov.get_many && g1 - g0 > 1) {
    rc = e->prov.get_many(e->prov.ctx, L, e->active + g0, g1 - g0, e->mats, err);
    if (rc) return moesz_error_wrap(err, rc, "layer %d", L);
    *got = g1;
    for (int a = g0; a < g1 && !rc; a++) {
      int x = e->active[a];
      e->st.expert_gets++;
      e->st.expert_tokens += (uint64_t)e->cnt[x];
      rc = check_expert(e, L, x, 0, &e->mats[x], err);
    }
    return rc;
  }
  for (; *got < g1; (*got)++) {
    int x = e->active[*got];
    if ((rc = get_expert(e, L, x, 0, &e->mats[x], err))) break;
    e->st.expert_tokens += (uint64_t)e->cnt[x];
  }
  return rc;
}

/* Rows grouped by expert (expert order), tokens in order within each, from
 * the routing in e->topi / e->topw [n, K] and the counts e->cnt [E]: offsets
 * e->off, row token and weight, the gathered inputs e->xg (n > 1), and the
 * active experts e->active; returns how many are active. */
static int group_rows(moesz_engine *e, int n, int E, int K) {
  size_t d = (size_t)e->d;
  int nact = 0;
  e->off[0] = 0;
  for (int x = 0; x < E; x++) {
    e->off[x + 1] = e->off[x] + e->cnt[x];
    e->fill[x] = e->off[x];
    if (e->cnt[x]) e->active[nact++] = x;
  }
  for (int t = 0; t < n; t++)
    for (int j = 0; j < K; j++) {
      int x = e->topi[(size_t)t * K + j], r = e->fill[x]++;
      e->row_tok[r] = t;
      e->row_w[r] = e->topw[(size_t)t * K + j];
      if (n > 1) memcpy(e->xg + (size_t)r * d, e->xn + (size_t)t * d, d * sizeof(float));
    }
  return nact;
}

/* Top-k of p[E] (largest first, lower index first on ties). */
static void topk(const float *p, int E, int k, int32_t *idx, float *w) {
  for (int j = 0; j < k; j++) { idx[j] = -1; w[j] = -1; }
  for (int i = 0; i < E; i++) {
    float v = p[i];
    if (v <= w[k - 1] && idx[k - 1] >= 0) continue;
    int j = k - 1;
    while (j > 0 && (idx[j - 1] < 0 || v > w[j - 1])) { w[j] = w[j - 1]; idx[j] = idx[j - 1]; j--; }
    w[j] = v;
    idx[j] = i;
  }
}

/* The routed experts of a group as one region of the pool, one task per
 * expert: its gate and up, SiLU and down on the task's thread
 * (moesz_k_linear_on: the tasks moesz_k_linear would run, so the same sums).
 * For a batch whose products are each too small to share out: one wake-up
 * per layer instead of two, and both threads busy. */
typedef struct {
  moesz_engine *e;
  const int32_t *act;                   /* [ntask] experts */
  const float *xin;
  size_t xstep;
  atomic_int rc;
} xpar_ctx;

static void xpar_task(void *vctx, size_t i, int tid) {
  xpar_ctx *X = vctx;
  moesz_engine *e = X->e;
  int x = X->act[i];
  size_t d = (size_t)e->d, im = (size_t)e->cfg.moe_intermediate, r0 = (size_t)e->off[x];
  moesz_kjob j[2] = {job(&e->mats[x].gate, X->xin + r0 * X->xstep, d, e->hg + r0 * im, im, e->cnt[x], 0),
                     job(&e->mats[x].up, X->xin + r0 * X->xstep, d, e->hu + r0 * im, im, e->cnt[x], 0)};
  int rc = moesz_k_linear_on(&e->kc, j, 2, tid);
  if (!rc) {
    moesz_k_silu_mul(e->hg + r0 * im, e->hu + r0 * im, (size_t)e->cnt[x] * im);
    j[0] = job(&e->mats[x].down, e->hg + r0 * im, im, e->yd + r0 * d, d, e->cnt[x], 0);
    rc = moesz_k_linear_on(&e->kc, j, 1, tid);
  }
  if (rc) atomic_store(&X->rc, rc);
}

/* 1 when experts active[g0..g1) of an n-token step run as one region
 * (xpar_task): several tokens, two or more threads and experts, every
 * expert's gate + up below kctx.serial_macs (each would run on one thread
 * anyway), all of them together at or above it. */
static int xpar_pays(const moesz_engine *e, int g0, int g1, int n) {
  if (n < 2 || g1 - g0 < 2 || e->kc.nthreads < 2 || !e->pool) return 0;
  double one = 2.0 * (double)e->d * (double)e->cfg.moe_intermediate, all = 0;
  for (int a = g0; a < g1; a++) {
    double m = one * (double)e->cnt[e->active[a]];
    if (m >= (double)e->kc.serial_macs) return 0;
    all += 1.5 * m;
  }
  return all >= (double)e->kc.serial_macs;
}

static int moe_block(moesz_engine *e, int L, int n, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  int E = c->n_experts, K = c->top_k, rc;
  size_t d = (size_t)e->d, im = (size_t)c->moe_intermediate;
  /* router: logits [n, E], softmax in fp32, top-k, renormalisation */
  moesz_kjob j0 = job(&l->router, e->xn, d, e->rl, (size_t)E, n, 0);
  if ((rc = moesz_k_linear(&e->kc, &j0, 1))) return moesz_error_set(err, rc, "router");
  memset(e->cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int t = 0; t < n; t++) {
    float *p = e->rl + (size_t)t * E;
    int32_t *ti = e->topi + (size_t)t * K;
    float *tw = e->topw + (size_t)t * K;
    if (c->score_sigmoid) {   /* DeepSeek-V3 / GLM-4.5 (route.c) */
      moesz_route_sigmoid_groups(p, l->router_bias, E, c->n_group, c->topk_group, K, c->norm_topk_prob,
                                 c->routed_scale, ti, tw, e->rtmp);
      for (int j = 0; j < K; j++) e->cnt[ti[j]]++;
      continue;
    }
    moesz_k_softmax(p, E);
    topk(p, E, K, ti, tw);
    if (e->renorm) {
      float s = 0;
      for (int j = 0; j < K; j++) s += tw[j];
      s += e->renorm_eps;
      for (int j = 0; j < K; j++) tw[j] /= s;
    }
    for (int j = 0; j < K; j++) e->cnt[ti[j]]++;
  }
  int nact = group_rows(e, n, E, K);
  /* one token: every expert reads xn itself (no gathered copies) */
  const float *xin = n > 1 ? e->xg : e->xn;
  size_t xstep = n > 1 ? d : 0;
  if (e->prov.route) e->prov.route(e->prov.ctx, L, e->active, nact, e->xn, n);
  memset(e->moe, 0, sizeof(float) * (size_t)n * d);
  for (int g0 = 0; g0 < nact; g0 += e->group) {
    int g1 = g0 + e->group < nact ? g0 + e->group : nact, got;
    rc = get_group(e, L, g0, g1, &got, err);
    if (!rc && xpar_pays(e, g0, g1, n)) {
      xpar_ctx X = {.e = e, .act = e->active + g0, .xin = xin, .xstep = xstep};
      atomic_init(&X.rc, MOESZ_OK);
      moesz_pool_run(e->pool, (size_t)(g1 - g0), xpar_task, &X);
      if ((rc = atomic_load(&X.rc))) moesz_error_set(err, rc, "layer %d: expert matmul failed", L);
    } else if (!rc) {
      /* gate and up of every expert of the group in one parallel region */
      int nj = 0;
      for (int a = g0; a < g1; a++) {
        int x = e->active[a];
        size_t r0 = (size_t)e->off[x];
        e->jobs[nj++] = job(&e->mats[x].gate, xin + r0 * xstep, d, e->hg + r0 * im, im, e->cnt[x], 0);
        e->jobs[nj++] = job(&e->mats[x].up, xin + r0 * xstep, d, e->hu + r0 * im, im, e->cnt[x], 0);
      }
      rc = moesz_k_linear(&e->kc, e->jobs, nj);
      if (!rc) {
        size_t r0 = (size_t)e->off[e->active[g0]], r1 = (size_t)e->off[e->active[g1 - 1] + 1];
        moesz_k_silu_mul(e->hg + r0 * im, e->hu + r0 * im, (r1 - r0) * im);
        nj = 0;
        for (int a = g0; a < g1; a++) {
          int x = e->active[a];
          size_t q0 = (size_t)e->off[x];
          e->jobs[nj++] = job(&e->mats[x].down, e->hg + q0 * im, im, e->yd + q0 * d, d, e->cnt[x], 0);
        }
        rc = moesz_k_linear(&e->kc, e->jobs, nj);
      }
      if (rc) moesz_error_set(err, rc, "layer %d: expert matmul failed", L);
    }
    for (int a = g0; a < got; a++) e->prov.release(e->prov.ctx, L, e->active[a], 0);
    if (rc) return rc;
    /* weighted sum into moe, expert by expert (as transformers' index_add_) */
    for (int a = g0; a < g1; a++) {
      int x = e->active[a];
      for (int r = e->off[x]; r < e->off[x + 1]; r++) {
        float w = e->row_w[r], *o = e->moe + (size_t)e->row_tok[r] * d;
        const float *y = e->yd + (size_t)r * d;
        for (size_t i = 0; i < d; i++) o[i] += y[i] * w;
      }
    }
  }
  /* shared expert(s): Qwen2 sigmoid-gated, DeepSeek plain */
  if (c->shared_intermediate > 0) {
    moesz_expert_mats mt;
    if ((rc = get_expert(e, L, 0, 1, &mt, err))) return rc;
    rc = run_mlp(e, &mt, e->xn, n, e->yd, 0);
    if (!rc && c->has_shared_gate) {
      j0 = job(&l->shared_gate, e->xn, d, e->sg, 1, n, 0);
      rc = moesz_k_linear(&e->kc, &j0, 1);
    }
    e->prov.release(e->prov.ctx, L, 0, 1);
    if (rc) return moesz_error_set(err, rc, "layer %d: shared expert matmul failed", L);
    for (int t = 0; t < n; t++) {
      float gs = c->has_shared_gate ? 1.0f / (1.0f + expf(-e->sg[t])) : 1.0f;
      float *o = e->moe + (size_t)t * d;
      const float *y = e->yd + (size_t)t * d;
      if (c->has_shared_gate) for (size_t i = 0; i < d; i++) o[i] += gs * y[i];
      else for (size_t i = 0; i < d; i++) o[i] += y[i];
    }
  }
  for (size_t i = 0; i < (size_t)n * d; i++) e->x[i] += e->moe[i];
  return MOESZ_OK;
}

/* gpt-oss MoE block: router logits + bias, top-k of the logits, softmax over
 * the k chosen; per expert gate_up = W x + b (gate at even, up at odd
 * columns), h = (clamp(up) + 1) * g sigmoid(alpha g) with g = min(gate,
 * limit), y = down h + b; output sum of weight * y (transformers'
 * GptOssTopKRouter / GptOssExperts). */
static int moe_block_oss(moesz_engine *e, int L, int n, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  int E = c->n_experts, K = c->top_k, rc = MOESZ_OK;
  size_t d = (size_t)e->d, im = (size_t)c->moe_intermediate, im2 = 2 * im;
  moesz_kjob j0 = job(&l->router, e->xn, d, e->rl, (size_t)E, n, 0);
  if ((rc = moesz_k_linear(&e->kc, &j0, 1))) return moesz_error_set(err, rc, "router");
  add_bias(e->rl, (size_t)E, l->router_b, n, E);
  memset(e->cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int t = 0; t < n; t++) {
    int32_t *ti = e->topi + (size_t)t * K;
    float *tw = e->topw + (size_t)t * K;
    topk(e->rl + (size_t)t * E, E, K, ti, tw);
    moesz_k_softmax(tw, K);
    for (int j = 0; j < K; j++) e->cnt[ti[j]]++;
  }
  int nact = group_rows(e, n, E, K);
  const float *xin = n > 1 ? e->xg : e->xn;
  size_t xstep = n > 1 ? d : 0;
  if (e->prov.route) e->prov.route(e->prov.ctx, L, e->active, nact, e->xn, n);
  memset(e->moe, 0, sizeof(float) * (size_t)n * d);
  for (int g0 = 0; g0 < nact; g0 += e->group) {
    int g1 = g0 + e->group < nact ? g0 + e->group : nact, got, nj = 0;
    rc = get_group(e, L, g0, g1, &got, err);
    if (!rc) {
      for (int a = g0; a < g1; a++) {
        int x = e->active[a];
        size_t r0 = (size_t)e->off[x];
        if (e->mats[x].gate_up.data) {
          e->jobs[nj++] = job(&e->mats[x].gate_up, xin + r0 * xstep, d, e->hg + r0 * im2, im2, e->cnt[x], 0);
        } else {   /* the two row halves of gate_up (a container's gate / up records) */
          e->jobs[nj++] = job(&e->mats[x].gate, xin + r0 * xstep, d, e->hg + r0 * im2, im2, e->cnt[x], 0);
          e->jobs[nj++] = job(&e->mats[x].up, xin + r0 * xstep, d, e->hg + r0 * im2 + im, im2, e->cnt[x], 0);
        }
      }
      rc = moesz_k_linear(&e->kc, e->jobs, nj);
      nj = 0;
      for (int a = g0; a < g1 && !rc; a++) {
        int x = e->active[a];
        size_t r0 = (size_t)e->off[x];
        moesz_k_swiglu_oss(e->hg + r0 * im2, im2, l->gu_b + (size_t)x * im2, e->cnt[x], (int)im, c->swiglu_alpha,
                           c->swiglu_limit, e->hu + r0 * im, im);
        e->jobs[nj++] = job(&e->mats[x].down, e->hu + r0 * im, im, e->yd + r0 * d, d, e->cnt[x], 0);
      }
      if (!rc) rc = moesz_k_linear(&e->kc, e->jobs, nj);
      if (rc) moesz_error_set(err, rc, "layer %d: expert matmul failed", L);
    }
    for (int a = g0; a < got; a++) e->prov.release(e->prov.ctx, L, e->active[a], 0);
    if (rc) return rc;
    for (int a = g0; a < g1; a++) {
      int x = e->active[a];
      const float *b = l->dn_b + (size_t)x * d;
      for (int r = e->off[x]; r < e->off[x + 1]; r++) {
        float w = e->row_w[r], *o = e->moe + (size_t)e->row_tok[r] * d;
        const float *y = e->yd + (size_t)r * d;
        for (size_t i = 0; i < d; i++) o[i] += (y[i] + b[i]) * w;
      }
    }
  }
  for (size_t i = 0; i < (size_t)n * d; i++) e->x[i] += e->moe[i];
  return MOESZ_OK;
}

/* Attention of layer L over n rows whose KV cache for this layer starts at
 * kbase / vbase [ctx][kvw]: the plain kernel, or with sinks and a sliding
 * window (gpt-oss). */
static void attend(moesz_engine *e, int L, const float *q, const float *kbase, const float *vbase, int pos0,
                   int n, float *att) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  size_t qw = (size_t)e->qw;
  if (l->sinks || c->is_sliding[L])   /* gpt-oss */
    moesz_k_attention_sinks(&e->kc, q, qw, kbase, vbase, pos0, n, e->nh, e->nkv, e->hd, e->att_scale,
                            c->is_sliding[L] ? c->sliding_window : 0, l->sinks, att, qw);
  else
    moesz_k_attention(&e->kc, q, qw, kbase, vbase, pos0, n, e->nh, e->nkv, e->hd, e->att_scale, att, qw);
}

/* After the q/k/v projections of n rows at positions pos0..: biases, q/k
 * norms, clip_qkv and RoPE (partial for GLM) on q [n, qw] and the rows k, v
 * [n, kvw]. */
static void qkv_post(moesz_engine *e, int L, float *q, float *kc, float *vc, int pos0, int n) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  size_t qw = (size_t)e->qw, kvw = (size_t)e->kvw;
  if (l->bq) add_bias(q, qw, l->bq, n, e->qw);
  if (l->bk) add_bias(kc, kvw, l->bk, n, e->kvw);
  if (l->bv) add_bias(vc, kvw, l->bv, n, e->kvw);
  if (c->qk_norm == 2) {   /* OLMoE: over the whole projection */
    moesz_k_rmsnorm(q, qw, q, qw, l->q_norm, n, e->qw, c->norm_eps);
    moesz_k_rmsnorm(kc, kvw, kc, kvw, l->k_norm, n, e->kvw, c->norm_eps);
  }
  if (c->clip_qkv > 0) {
    clamp_rows(q, qw, n, e->qw, c->clip_qkv);
    clamp_rows(kc, kvw, n, e->kvw, c->clip_qkv);
    clamp_rows(vc, kvw, n, e->kvw, c->clip_qkv);
  }
  if (c->qk_norm == 1) {   /* Qwen3: per head */
    moesz_k_rmsnorm(q, (size_t)e->hd, q, (size_t)e->hd, l->q_norm, n * e->nh, e->hd, c->norm_eps);
    moesz_k_rmsnorm(kc, (size_t)e->hd, kc, (size_t)e->hd, l->k_norm, n * e->nkv, e->hd, c->norm_eps);
  }
  for (int t = 0; t < n; t++) {
    if (e->rd < e->hd) {   /* partial rotary (GLM): the first rd dims of each head */
      for (int h = 0; h < e->nh; h++)
        moesz_k_rope(q + (size_t)t * qw + (size_t)h * e->hd, 1, e->rd, pos0 + t, e->inv_freq);
      for (int h = 0; h < e->nkv; h++)
        moesz_k_rope(kc + (size_t)t * kvw + (size_t)h * e->hd, 1, e->rd, pos0 + t, e->inv_freq);
      continue;
    }
    moesz_k_rope(q + (size_t)t * qw, e->nh, e->hd, pos0 + t, e->inv_freq);
    moesz_k_rope(kc + (size_t)t * kvw, e->nkv, e->hd, pos0 + t, e->inv_freq);
  }
}

/* Attention of layer L for n rows of x (one sequence, positions pos0..); x
 * gets the attention output added. kcache / vcache are the sequence's caches
 * for every layer, [n_layers][ctx][kvw]; with MLA kcache is its latent cache
 * [n_layers][ctx][kv_lora_rank + rope dims] (NULL: the engine's own) and
 * vcache is unused. Scratch: e->xn, e->q, e->att rows 0..n-1. */
static int attn_block(moesz_engine *e, int L, float *x, float *kcache, float *vcache, int ctx, int pos0,
                      int n, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  size_t d = (size_t)e->d, qw = (size_t)e->qw, kvw = (size_t)e->kvw;
  int rc;
  moesz_k_rmsnorm(e->xn, d, x, d, l->attn_norm, n, e->d, c->norm_eps);
  if (e->mla)
    return kcache ? moesz_mla_forward_at(e->mla, &e->kc, L, e->xn, n, pos0, kcache, ctx, x, err)
                  : moesz_mla_forward(e->mla, &e->kc, L, e->xn, n, pos0, x, err);
  float *kbase = kcache + (size_t)L * (size_t)ctx * kvw, *vbase = vcache + (size_t)L * (size_t)ctx * kvw;
  float *kc = kbase + (size_t)pos0 * kvw, *vc = vbase + (size_t)pos0 * kvw;
  moesz_kjob j[3] = {job(&l->wq, e->xn, d, e->q, qw, n, 0), job(&l->wk, e->xn, d, kc, kvw, n, 0),
                     job(&l->wv, e->xn, d, vc, kvw, n, 0)};
  if ((rc = moesz_k_linear(&e->kc, j, 3))) return moesz_error_set(err, rc, "layer %d: qkv", L);
  qkv_post(e, L, e->q, kc, vc, pos0, n);
  attend(e, L, e->q, kbase, vbase, pos0, n, e->att);
  j[0] = job(&l->wo, e->att, qw, x, d, n, 1);
  if ((rc = moesz_k_linear(&e->kc, j, 1))) return moesz_error_set(err, rc, "layer %d: o_proj", L);
  if (l->bo) add_bias(x, d, l->bo, n, e->d);
  return MOESZ_OK;
}

/* The MLP (dense or MoE) of layer L on rows 0..n-1 of e->x (any mix of
 * sequences: experts are fetched once for all of them). */
static int mlp_block(moesz_engine *e, int L, int n, moesz_error *err) {
  const moesz_config *c = &e->cfg;
  layer_w *l = &e->L[L];
  size_t d = (size_t)e->d;
  int rc;
  moesz_k_rmsnorm(e->xn, d, e->x, d, l->ffn_norm, n, e->d, c->norm_eps);
  if (c->is_moe[L]) return c->gate_up_interleaved ? moe_block_oss(e, L, n, err) : moe_block(e, L, n, err);
  moesz_expert_mats mt;
  if ((rc = get_expert(e, L, 0, 0, &mt, err))) return rc;
  rc = run_mlp(e, &mt, e->xn, n, e->x, 1);
  e->prov.release(e->prov.ctx, L, 0, 0);
  if (rc) return moesz_error_set(err, rc, "layer %d: MLP matmul failed", L);
  return MOESZ_OK;
}

static int layer_forward(moesz_engine *e, int L, int pos0, int n, moesz_error *err) {
  int rc = attn_block(e, L, e->x, e->mla ? NULL : e->kcache, e->vcache, e->max_ctx, pos0, n, err);
  return rc ? rc : mlp_block(e, L, n, err);
}
int moesz_engine_forward(moesz_engine *e, const int32_t *tokens, size_t n, int all_logits,
                         float *logits, moesz_error *err) {
  if (!e || (!tokens && n) || !logits) return moesz_error_set(err, MOESZ_E_ARG, "forward: NULL argument");
  if (n == 0) return moesz_error_set(err, MOESZ_E_ARG, "forward: no tokens");
  for (size_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= e->vocab)
      return moesz_error_set(err, MOESZ_E_RANGE, "token id %d (position %zu) outside the "
                             "vocabulary [0, %d)", (int)tokens[i], i, e->vocab);
  if (n > (size_t)(e->max_ctx - e->pos))
    return moesz_error_set(err, MOESZ_E_RANGE, "context overflow: %d tokens cached + %zu new > "
                           "context length %d", e->pos, n, e->max_ctx);
  double t0 = moesz_time_now();
  int start = e->pos, rc = MOESZ_OK;
  size_t d = (size_t)e->d, es = moesz_dtype_size(e->embed.dtype);
  for (size_t b0 = 0; b0 < n; b0 += BMAX) {
    int nb = (int)(n - b0 < BMAX ? n - b0 : BMAX);
    for (int t = 0; t < nb; t++) {
      const char *row = (const char *)e->embed.data + (size_t)tokens[b0 + t] * d * es;
      moesz_to_f32(e->embed.dtype, row, e->x + (size_t)t * d, d);
    }
    for (int L = 0; L < e->cfg.n_layers && !rc; L++) rc = layer_forward(e, L, e->pos, nb, err);
    if (rc) break;
    e->pos += nb;
    /* logits of every row, or of the very last token only */
    int last = b0 + (size_t)nb == n;
    if (!all_logits && !last) continue;
    int r0 = all_logits ? 0 : nb - 1, nr = nb - r0;
    moesz_k_rmsnorm(e->xn, d, e->x + (size_t)r0 * d, d, e->final_norm, nr, e->d, e->cfg.norm_eps);
    float *out = all_logits ? logits + b0 * (size_t)e->vocab : logits;
    moesz_kjob j = job(&e->lm_head, e->xn, d, out, (size_t)e->vocab, nr, 0);
    if ((rc = moesz_k_linear(&e->kc, &j, 1))) { moesz_error_set(err, rc, "lm_head"); break; }
  }
  if (rc) { e->pos = start; return rc; }
  e->st.tokens += n;
  e->st.forward_calls++;
  e->st.seconds += moesz_time_now() - t0;
  return MOESZ_OK;
}

/* ------------------------------------------------- several sequences */

/* A sequence: its own KV cache and position; the engine's weights, scratch
 * and expert provider are shared. Used by moesz_engine_step. */
struct moesz_seq {
  const moesz_engine *e;
  int max_ctx, pos;
  float *kcache, *vcache;               /* [n_layers][max_ctx][kvw]; MLA: kcache is the latent
                                           cache [n_layers][max_ctx][kv_lora_rank + rope dims],
                                           vcache NULL */
};

int moesz_seq_create(moesz_engine *e, int max_ctx, moesz_seq **out, moesz_error *err) {
  if (!e || !out) return moesz_error_set(err, MOESZ_E_ARG, "sequence: NULL argument");
  *out = NULL;
  if (max_ctx <= 0) max_ctx = e->max_ctx;
  if (max_ctx > e->max_ctx)
    return moesz_error_set(err, MOESZ_E_RANGE, "sequence context %d > the engine's %d", max_ctx, e->max_ctx);
  size_t row = e->mla ? (size_t)(moesz_mla_cache_bytes(&e->cfg) / sizeof(float)) : (size_t)e->kvw;
  size_t kv = (size_t)e->cfg.n_layers * (size_t)max_ctx * row;
  moesz_seq *s = calloc(1, sizeof *s);
  if (s) {
    s->kcache = malloc(kv * sizeof(float));
    if (!e->mla) s->vcache = malloc(kv * sizeof(float));
  }
  if (!s || !s->kcache || (!e->mla && !s->vcache)) {
    moesz_seq_free(s);
    return moesz_error_set(err, MOESZ_E_NOMEM, "sequence KV cache (%zu floats)", (e->mla ? 1 : 2) * kv);
  }
  s->e = e;
  s->max_ctx = max_ctx;
  *out = s;
  return MOESZ_OK;
}

void moesz_seq_free(moesz_seq *s) {
  if (!s) return;
  free(s->kcache);
  free(s->vcache);
  free(s);
}
void moesz_seq_reset(moesz_seq *s) { s->pos = 0; }
int moesz_seq_pos(const moesz_seq *s) { return s->pos; }
int moesz_seq_max_ctx(const moesz_seq *s) { return s->max_ctx; }
int moesz_engine_step_capacity(const moesz_engine *e) { (void)e; return BMAX; }

/* Attention of layer L for every item of a step (rows one after another in
 * e->x): the q/k/v and o projections over all rows at once (weights read
 * once), k / v rows copied into each sequence's cache, attention per
 * sequence (with sinks / sliding windows where the layer has them). MLA
 * (DeepSeek-V3) runs each sequence through attn_block, the path of
 * moesz_engine_forward, against that sequence's latent cache. */
static int attn_multi(moesz_engine *e, int L, const moesz_step_item *it, int ni, int total, moesz_error *err) {
  layer_w *l = &e->L[L];
  size_t d = (size_t)e->d, qw = (size_t)e->qw, kvw = (size_t)e->kvw;
  int rc;
  if (e->mla) {
    for (int i = 0, r = 0; i < ni; r += it[i].n, i++) {
      moesz_seq *s = it[i].seq;
      if ((rc = attn_block(e, L, e->x + (size_t)r * d, s->kcache, NULL, s->max_ctx, s->pos, it[i].n, err)))
        return rc;
    }
    return MOESZ_OK;
  }
  moesz_k_rmsnorm(e->xn, d, e->x, d, l->attn_norm, total, e->d, e->cfg.norm_eps);
  moesz_kjob j[3] = {job(&l->wq, e->xn, d, e->q, qw, total, 0), job(&l->wk, e->xn, d, e->kst, kvw, total, 0),
                     job(&l->wv, e->xn, d, e->vst, kvw, total, 0)};
  if ((rc = moesz_k_linear(&e->kc, j, 3))) return moesz_error_set(err, rc, "layer %d: qkv", L);
  for (int i = 0, r = 0; i < ni; r += it[i].n, i++) {
    moesz_seq *s = it[i].seq;
    size_t lo = (size_t)L * (size_t)s->max_ctx * kvw, n = (size_t)it[i].n;
    float *kb = s->kcache + lo, *vb = s->vcache + lo;
    float *kc = kb + (size_t)s->pos * kvw, *vc = vb + (size_t)s->pos * kvw;
    memcpy(kc, e->kst + (size_t)r * kvw, n * kvw * sizeof(float));
    memcpy(vc, e->vst + (size_t)r * kvw, n * kvw * sizeof(float));
    qkv_post(e, L, e->q + (size_t)r * qw, kc, vc, s->pos, it[i].n);
    attend(e, L, e->q + (size_t)r * qw, kb, vb, s->pos, it[i].n, e->att + (size_t)r * qw);
  }
  j[0] = job(&l->wo, e->att, qw, e->x, d, total, 1);
  if ((rc = moesz_k_linear(&e->kc, j, 1))) return moesz_error_set(err, rc, "layer %d: o_proj", L);
  if (l->bo) add_bias(e->x, d, l->bo, total, e->d);
  return MOESZ_OK;
}

int moesz_engine_step(moesz_engine *e, const moesz_step_item *it, int n_items, moesz_error *err) {
  if (!e || (!it && n_items)) return moesz_error_set(err, MOESZ_E_ARG, "step: NULL argument");
  if (n_items <= 0) return moesz_error_set(err, MOESZ_E_ARG, "step: no sequences");
  int total = 0;
  for (int i = 0; i < n_items; i++) {
    const moesz_step_item *a = &it[i];
    if (!a->seq || a->seq->e->root != e->root || !a->tokens || !a->logits || a->n <= 0)
      return moesz_error_set(err, MOESZ_E_ARG, "step: item %d: bad sequence, tokens or logits", i);
    for (int j = 0; j < i; j++)
      if (it[j].seq == a->seq) return moesz_error_set(err, MOESZ_E_ARG, "step: sequence given twice");
    if (a->n > a->seq->max_ctx - a->seq->pos)
      return moesz_error_set(err, MOESZ_E_RANGE, "context overflow: %d tokens cached + %d new > context "
                             "length %d", a->seq->pos, a->n, a->seq->max_ctx);
    for (int t = 0; t < a->n; t++)
      if (a->tokens[t] < 0 || a->tokens[t] >= e->vocab)
        return moesz_error_set(err, MOESZ_E_RANGE, "token id %d outside the vocabulary [0, %d)",
                               (int)a->tokens[t], e->vocab);
    total += a->n;
    if (total > BMAX)
      return moesz_error_set(err, MOESZ_E_RANGE, "step: more than %d tokens at once", BMAX);
  }
  double t0 = moesz_time_now();
  size_t d = (size_t)e->d, es = moesz_dtype_size(e->embed.dtype);
  /* rows of every item one after another in e->x */
  for (int i = 0, r = 0; i < n_items; r += it[i].n, i++)
    for (int t = 0; t < it[i].n; t++) {
      const char *row = (const char *)e->embed.data + (size_t)it[i].tokens[t] * d * es;
      moesz_to_f32(e->embed.dtype, row, e->x + (size_t)(r + t) * d, d);
    }
  int rc = MOESZ_OK;
  for (int L = 0; L < e->cfg.n_layers && !rc; L++) {
    if (n_items == 1) {   /* one sequence: exactly the path of moesz_engine_forward */
      moesz_seq *s = it[0].seq;
      rc = attn_block(e, L, e->x, s->kcache, s->vcache, s->max_ctx, s->pos, it[0].n, err);
    } else rc = attn_multi(e, L, it, n_items, total, err);
    if (!rc) rc = mlp_block(e, L, total, err);
  }
  if (rc) return rc;   /* positions unchanged: the rows written past them are ignored */
  /* final norm of the rows that want logits, packed; one lm_head job per run of
   * items whose logits lie one after another (a server's buffer: the weights
   * are read once for all of them), else per item */
  int nr = 0, nj = 0;
  for (int i = 0, r = 0; i < n_items; r += it[i].n, i++) {
    int r0 = it[i].all_logits ? r : r + it[i].n - 1, k = r + it[i].n - r0;
    moesz_k_rmsnorm(e->xn + (size_t)nr * d, d, e->x + (size_t)r0 * d, d, e->final_norm, k, e->d,
                    e->cfg.norm_eps);
    moesz_kjob *pj = nj ? &e->jobs[nj - 1] : NULL;
    if (pj && pj->y + (size_t)pj->n * (size_t)e->vocab == it[i].logits) pj->n += k;
    else e->jobs[nj++] = job(&e->lm_head, e->xn + (size_t)nr * d, d, it[i].logits, (size_t)e->vocab, k, 0);
    nr += k;
    if (nj == 2 * e->cfg.n_experts + 4 || i == n_items - 1) {
      if ((rc = moesz_k_linear(&e->kc, e->jobs, nj))) return moesz_error_set(err, rc, "lm_head");
      nj = 0;
    }
  }
  for (int i = 0; i < n_items; i++) it[i].seq->pos += it[i].n;
  e->st.tokens += (uint64_t)total;
  e->st.forward_calls++;
  e->st.seconds += moesz_time_now() - t0;
  return MOESZ_OK;
}
