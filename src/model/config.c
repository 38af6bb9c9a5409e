/* model/config.c - owns config.json parsing: Hugging Face config text ->
 * moesz_config for each supported family (Mixtral, Qwen2-MoE, Qwen3-MoE,
 * OLMoE, DeepSeekMoE v1, DeepSeek-V3, GLM-4.5, Switch Transformers, Llama, gpt-oss), with the defaults the
 * transformers configuration classes use when a key is absent, and strict
 * checks (missing, non-numeric, NaN, negative or absurd values are errors that
 * name the key). docs/MODELS.md lists the keys read per family. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "moesz/model.h"

#define CFG_MAX_FILE (16u << 20)   /* a config.json is a few KB; refuse > 16 MB */
#define CFG_MAX_DIM (1 << 20)      /* hidden / intermediate / heads upper bound */
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_EXPERTS 4096

static const struct { const char *arch; const char *model_type; moesz_arch id; } ARCHS[] = {
  {"LlamaForCausalLM", "llama", MOESZ_ARCH_LLAMA},
  {"MixtralForCausalLM", "mixtral", MOESZ_ARCH_MIXTRAL},
  {"Qwen2MoeForCausalLM", "qwen2_moe", MOESZ_ARCH_QWEN2_MOE},
  {"Qwen3MoeForCausalLM", "qwen3_moe", MOESZ_ARCH_QWEN3_MOE},
  {"OlmoeForCausalLM", "olmoe", MOESZ_ARCH_OLMOE},
  {"DeepseekForCausalLM", "deepseek", MOESZ_ARCH_DEEPSEEK},
  {"SwitchTransformersForConditionalGeneration", "switch_transformers", MOESZ_ARCH_SWITCH},
  {"DeepseekV3ForCausalLM", "deepseek_v3", MOESZ_ARCH_DEEPSEEK_V3},
  {"Glm4MoeForCausalLM", "glm4_moe", MOESZ_ARCH_GLM4_MOE},
  {"GptOssForCausalLM", "gpt_oss", MOESZ_ARCH_GPT_OSS},
};
#define NARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *moesz_arch_name(moesz_arch a) {
  for (size_t i = 0; i < NARCHS; i++)
    if (ARCHS[i].id == a) return ARCHS[i].arch;
  return "unknown";
}

/* ---- typed key access ---------------------------------------------------- */

typedef struct cfgp {
  const cJSON *root;
  moesz_error *err;
} cfgp;

/* 1 if key is present and not null. */
static int has(const cfgp *p, const char *key) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(p->root, key);
  return it && !cJSON_IsNull(it);
}

/* Reads a number in [lo, hi]; absent/null -> def (or an error when req). */
static int get_num(const cfgp *p, const char *key, int req, double def, double lo, double hi,
                   double *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(p->root, key);
  if (!it || cJSON_IsNull(it)) {
    if (req) return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: missing key \"%s\"", key);
    *out = def;
    return MOESZ_OK;
  }
  double v;
  if (cJSON_IsNumber(it)) v = it->valuedouble;
  else if (cJSON_IsBool(it)) v = cJSON_IsTrue(it) ? 1 : 0;
  else return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not a number", key);
  if (!isfinite(v))
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not finite", key);
  if (v < lo || v > hi)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" = %g outside [%g, %g]", key, v,
                           lo, hi);
  *out = v;
  return MOESZ_OK;
}

static int get_int(const cfgp *p, const char *key, int req, int def, int lo, int hi, int *out) {
  double v;
  int rc = get_num(p, key, req, def, lo, hi, &v);
  if (rc) return rc;
  if (v != floor(v))
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" = %g is not an integer", key, v);
  *out = (int)v;
  return MOESZ_OK;
}

static int get_bool(const cfgp *p, const char *key, int def, int *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(p->root, key);
  if (!it || cJSON_IsNull(it)) { *out = def; return MOESZ_OK; }
  if (cJSON_IsBool(it)) { *out = cJSON_IsTrue(it); return MOESZ_OK; }
  if (cJSON_IsNumber(it) && (it->valuedouble == 0 || it->valuedouble == 1)) {
    *out = it->valuedouble != 0;
    return MOESZ_OK;
  }
  return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not a boolean", key);
}

/* Token id: integer, null/absent (-1) or a list (first element). */
static int get_token(const cfgp *p, const char *key, int vocab, int *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(p->root, key);
  *out = -1;
  if (!it || cJSON_IsNull(it)) return MOESZ_OK;
  if (cJSON_IsArray(it)) {
    it = cJSON_GetArrayItem(it, 0);
    if (!it) return MOESZ_OK;
  }
  if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0 ||
      it->valuedouble != floor(it->valuedouble) || it->valuedouble >= 2147483647.0)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not a token id", key);
  /* transformers tolerates ids outside the vocabulary (with a warning); keep
   * the value only when it is a usable id. */
  *out = it->valuedouble < vocab ? (int)it->valuedouble : -1;
  return MOESZ_OK;
}

/* rope_theta: top-level (transformers 4.x) or rope_parameters.rope_theta (5.x). */
static int get_rope_theta(const cfgp *p, double def, float *out) {
  double v = def;
  int rc;
  if (has(p, "rope_theta")) {
    if ((rc = get_num(p, "rope_theta", 1, 0, 1e-3, 1e12, &v))) return rc;
  } else {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(p->root, "rope_parameters");
    if (rp && cJSON_IsObject(rp)) {
      cfgp sub = {rp, p->err};
      if ((rc = get_num(&sub, "rope_theta", 0, def, 1e-3, 1e12, &v)))
        return moesz_error_wrap(p->err, rc, "rope_parameters");
    }
  }
  *out = (float)v;
  return MOESZ_OK;
}

static int get_string(const cfgp *p, const char *key, char *dst, size_t cap) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(p->root, key);
  dst[0] = 0;
  if (!it || cJSON_IsNull(it)) return MOESZ_OK;
  if (!cJSON_IsString(it) || !it->valuestring)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not a string", key);
  snprintf(dst, cap, "%s", it->valuestring);
  return MOESZ_OK;
}

/* ---- families ------------------------------------------------------------ */

#define TRY(x) do { int rc_ = (x); if (rc_) return rc_; } while (0)

/* Keys shared by the decoder-only families. */
static int parse_decoder_common(const cfgp *p, moesz_config *c, float eps_def, double theta_def) {
  TRY(get_int(p, "num_hidden_layers", 1, 0, 1, MOESZ_MAX_LAYERS, &c->n_layers));
  TRY(get_int(p, "hidden_size", 1, 0, 1, CFG_MAX_DIM, &c->hidden));
  TRY(get_int(p, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB, &c->vocab));
  TRY(get_int(p, "num_attention_heads", 1, 0, 1, CFG_MAX_DIM, &c->n_heads));
  TRY(get_int(p, "num_key_value_heads", 0, c->n_heads, 1, CFG_MAX_DIM, &c->n_kv_heads));
  if (c->n_heads % c->n_kv_heads)
    return moesz_error_set(p->err, MOESZ_E_FORMAT,
                           "config: \"num_attention_heads\" (%d) is not a multiple of "
                           "\"num_key_value_heads\" (%d)", c->n_heads, c->n_kv_heads);
  if (has(p, "head_dim")) {
    TRY(get_int(p, "head_dim", 1, 0, 1, CFG_MAX_DIM, &c->head_dim));
  } else {
    if (c->hidden % c->n_heads)
      return moesz_error_set(p->err, MOESZ_E_FORMAT,
                             "config: \"hidden_size\" (%d) is not a multiple of "
                             "\"num_attention_heads\" (%d) and no \"head_dim\" is given",
                             c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
  }
  /* absent: unknown (0); present: a real length */
  TRY(get_int(p, "max_position_embeddings", 0, 0, has(p, "max_position_embeddings") ? 1 : 0, 1 << 30, &c->max_pos));
  double eps;
  TRY(get_num(p, "rms_norm_eps", 0, eps_def, 0, 1.0, &eps));
  c->norm_eps = (float)eps;
  TRY(get_rope_theta(p, theta_def, &c->rope_theta));
  return MOESZ_OK;
}

/* Qwen2/Qwen3-MoE layer pattern: MoE iff experts > 0, not in mlp_only_layers
 * and (i + 1) % decoder_sparse_step == 0. */
static int qwen_layers(const cfgp *p, moesz_config *c) {
  TRY(get_int(p, "decoder_sparse_step", 0, 1, 0, MOESZ_MAX_LAYERS, &c->moe_layer_freq));
  uint8_t only[MOESZ_MAX_LAYERS] = {0};
  const cJSON *ml = cJSON_GetObjectItemCaseSensitive(p->root, "mlp_only_layers");
  if (ml && !cJSON_IsNull(ml)) {
    if (!cJSON_IsArray(ml))
      return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"mlp_only_layers\" is not a list");
    const cJSON *e;
    cJSON_ArrayForEach(e, ml) {
      if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < 0 ||
          e->valuedouble != floor(e->valuedouble) || e->valuedouble >= c->n_layers)
        return moesz_error_set(p->err, MOESZ_E_FORMAT,
                               "config: \"mlp_only_layers\" holds a value that is not a layer "
                               "index below %d", c->n_layers);
      only[(int)e->valuedouble] = 1;
    }
  }
  for (int i = 0; i < c->n_layers; i++)
    c->is_moe[i] = c->n_experts > 0 && !only[i] && c->moe_layer_freq > 0 &&
                   (i + 1) % c->moe_layer_freq == 0;
  return MOESZ_OK;
}

static int parse_experts(const cfgp *p, moesz_config *c, const char *key, int def_e, int def_k) {
  TRY(get_int(p, key, def_e < 0, def_e, 0, CFG_MAX_EXPERTS, &c->n_experts));
  TRY(get_int(p, "num_experts_per_tok", def_k < 0, def_k, 1, CFG_MAX_EXPERTS, &c->top_k));
  if (c->n_experts > 0 && c->top_k > c->n_experts)
    return moesz_error_set(p->err, MOESZ_E_FORMAT,
                           "config: \"num_experts_per_tok\" (%d) exceeds the %d experts", c->top_k,
                           c->n_experts);
  return MOESZ_OK;
}

static int parse_llama(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-6f, 10000.0));
  TRY(get_int(p, "intermediate_size", 1, 0, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_bool(p, "attention_bias", 0, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  c->n_experts = 0;
  c->top_k = 0;
  return MOESZ_OK;
}

static int parse_mixtral(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-5f, 1e6));
  TRY(get_int(p, "intermediate_size", 1, 0, 1, CFG_MAX_DIM, &c->intermediate));
  c->moe_intermediate = c->intermediate;
  TRY(parse_experts(p, c, "num_local_experts", 8, 2));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  c->norm_topk_prob = 1;
  c->moe_layer_freq = 1;
  for (int i = 0; i < c->n_layers; i++) c->is_moe[i] = c->n_experts > 0;
  return MOESZ_OK;
}

static int parse_qwen2(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-6f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 5632, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_int(p, "moe_intermediate_size", 0, 1408, 1, CFG_MAX_DIM, &c->moe_intermediate));
  TRY(get_int(p, "shared_expert_intermediate_size", 0, 5632, 0, CFG_MAX_DIM,
              &c->shared_intermediate));
  TRY(parse_experts(p, c, has(p, "num_experts") ? "num_experts" : "num_local_experts", 60, 4));
  TRY(get_bool(p, "norm_topk_prob", 0, &c->norm_topk_prob));
  TRY(get_bool(p, "qkv_bias", 1, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  c->n_shared = c->shared_intermediate > 0;
  c->has_shared_gate = c->n_shared;
  return qwen_layers(p, c);
}

static int parse_qwen3(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-6f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 6144, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_int(p, "moe_intermediate_size", 0, 768, 1, CFG_MAX_DIM, &c->moe_intermediate));
  TRY(parse_experts(p, c, has(p, "num_experts") ? "num_experts" : "num_local_experts", 128, 8));
  TRY(get_bool(p, "norm_topk_prob", 0, &c->norm_topk_prob));
  TRY(get_bool(p, "attention_bias", 0, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  c->qk_norm = 1;
  return qwen_layers(p, c);
}

static int parse_olmoe(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-5f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 2048, 1, CFG_MAX_DIM, &c->intermediate));
  c->moe_intermediate = c->intermediate;
  TRY(parse_experts(p, c, "num_experts", 64, 8));
  TRY(get_bool(p, "norm_topk_prob", 0, &c->norm_topk_prob));
  TRY(get_bool(p, "attention_bias", 0, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  double clip;
  TRY(get_num(p, "clip_qkv", 0, 0, 0, 1e30, &clip));
  c->clip_qkv = (float)clip;
  c->qk_norm = 2;
  c->moe_layer_freq = 1;
  for (int i = 0; i < c->n_layers; i++) c->is_moe[i] = c->n_experts > 0;
  return MOESZ_OK;
}

/* DeepSeekMoE v1 (trust_remote_code configuration_deepseek.py): MoE iff
 * n_routed_experts is set, i >= first_k_dense_replace and i % moe_layer_freq == 0. */
static int parse_deepseek(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-6f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 11008, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_int(p, "moe_intermediate_size", 0, 1407, 1, CFG_MAX_DIM, &c->moe_intermediate));
  TRY(parse_experts(p, c, "n_routed_experts", 0, 1));
  TRY(get_int(p, "n_shared_experts", 0, 0, 0, CFG_MAX_EXPERTS, &c->n_shared));
  TRY(get_int(p, "first_k_dense_replace", 0, 0, 0, MOESZ_MAX_LAYERS, &c->first_k_dense));
  TRY(get_int(p, "moe_layer_freq", 0, 1, 1, MOESZ_MAX_LAYERS, &c->moe_layer_freq));
  TRY(get_bool(p, "norm_topk_prob", 0, &c->norm_topk_prob));
  TRY(get_bool(p, "attention_bias", 0, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  char sf[32];
  TRY(get_string(p, "scoring_func", sf, sizeof sf));
  if (sf[0] && strcmp(sf, "softmax"))
    return moesz_error_set(p->err, MOESZ_E_UNSUPPORTED,
                           "config: \"scoring_func\" \"%s\" (only softmax is supported)", sf);
  if ((long long)c->moe_intermediate * c->n_shared > CFG_MAX_DIM)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"n_shared_experts\" too large");
  c->shared_intermediate = c->moe_intermediate * c->n_shared;
  for (int i = 0; i < c->n_layers; i++)
    c->is_moe[i] = c->n_experts > 0 && i >= c->first_k_dense && i % c->moe_layer_freq == 0;
  return MOESZ_OK;
}

/* ---- DeepSeek-V3 / GLM-4.5 ------------------------------------------------ */

/* transformers' get_mscale: 0.1 m ln(scale) + 1, 1 for scale <= 1 */
static double yarn_get_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

/* YaRN from rope_scaling (transformers 4.x, Hub configs) or rope_parameters
 * (5.x): type/rope_type "yarn" with factor, original_max_position_embeddings,
 * beta_fast, beta_slow, mscale, mscale_all_dim, attention_factor, truncate
 * (DeepSeek-V3, GLM-4.5, gpt-oss: one set of fields for all). attention_factor
 * is resolved here as transformers' _compute_yarn_parameters does, so
 * yarn_attn_factor is always the cos/sin multiplier.
 * Other types are left to the engine, which refuses what it does not implement. */
static int parse_yarn(const cfgp *p, moesz_config *c) {
  static const char *KEYS[] = {"rope_scaling", "rope_parameters"};
  for (int k = 0; k < 2; k++) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(p->root, KEYS[k]);
    if (!o || !cJSON_IsObject(o)) continue;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "yarn")) continue;
    cfgp sub = {o, p->err};
    double f, bf, bs, ms, msa, af;
    int rc;
    if ((rc = get_num(&sub, "factor", 1, 0, 1e-6, 1e6, &f)) ||
        (rc = get_num(&sub, "beta_fast", 0, 32, 1e-6, 1e6, &bf)) ||
        (rc = get_num(&sub, "beta_slow", 0, 1, 1e-6, 1e6, &bs)) ||
        (rc = get_num(&sub, "mscale", 0, 0, 0, 1e6, &ms)) ||
        (rc = get_num(&sub, "mscale_all_dim", 0, 0, 0, 1e6, &msa)) ||
        (rc = get_num(&sub, "attention_factor", 0, 0, 0, 1e6, &af)) ||
        (rc = get_int(&sub, "original_max_position_embeddings", 0, c->max_pos, 1, 1 << 30,
                      &c->yarn_orig_max_pos)) ||
        (rc = get_bool(&sub, "truncate", 1, &c->yarn_truncate)))
      return moesz_error_wrap(p->err, rc, "%s", KEYS[k]);
    if (c->yarn_orig_max_pos <= 0)
      return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: %s: yarn without "
                             "\"original_max_position_embeddings\" or \"max_position_embeddings\"", KEYS[k]);
    c->yarn = 1;
    c->yarn_factor = (float)f;
    c->yarn_beta_fast = (float)bf;
    c->yarn_beta_slow = (float)bs;
    c->yarn_mscale = (float)ms;
    c->yarn_mscale_all_dim = (float)msa;
    if (af <= 0)
      af = ms > 0 && msa > 0 ? yarn_get_mscale(f, ms) / yarn_get_mscale(f, msa) : yarn_get_mscale(f, 1.0);
    c->yarn_attn_factor = (float)af;
    return MOESZ_OK;
  }
  return MOESZ_OK;
}

/* Routing shared by DeepSeek-V3 and GLM-4.5: sigmoid scores, correction bias,
 * n_group groups of which topk_group are kept, routed_scaling_factor. */
static int parse_group_routing(const cfgp *p, moesz_config *c, int def_group, int def_topk_group,
                               double def_scale) {
  TRY(get_int(p, "n_group", 0, def_group, 1, CFG_MAX_EXPERTS, &c->n_group));
  TRY(get_int(p, "topk_group", 0, def_topk_group, 1, CFG_MAX_EXPERTS, &c->topk_group));
  double sc;
  TRY(get_num(p, "routed_scaling_factor", 0, def_scale, 0, 1e6, &sc));
  c->routed_scale = (float)sc;
  char sf[32];
  TRY(get_string(p, "scoring_func", sf, sizeof sf));
  if (sf[0] && strcmp(sf, "sigmoid"))
    return moesz_error_set(p->err, MOESZ_E_UNSUPPORTED,
                           "config: \"scoring_func\" \"%s\" (this family routes with sigmoid)", sf);
  c->score_sigmoid = 1;
  if (c->n_experts > 0) {
    if (c->n_experts % c->n_group)
      return moesz_error_set(p->err, MOESZ_E_FORMAT,
                             "config: %d experts do not split into \"n_group\" = %d groups",
                             c->n_experts, c->n_group);
    if (c->topk_group > c->n_group)
      return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"topk_group\" (%d) exceeds \"n_group\" (%d)",
                             c->topk_group, c->n_group);
    if (c->n_experts / c->n_group < 2 && c->n_group > 1)
      return moesz_error_set(p->err, MOESZ_E_FORMAT,
                             "config: groups of fewer than 2 experts (group score is a top-2 sum)");
    if ((long long)c->topk_group * (c->n_experts / c->n_group) < c->top_k)
      return moesz_error_set(p->err, MOESZ_E_FORMAT,
                             "config: \"topk_group\" %d groups of %d experts hold fewer than "
                             "\"num_experts_per_tok\" = %d", c->topk_group, c->n_experts / c->n_group,
                             c->top_k);
  }
  TRY(get_int(p, "n_shared_experts", 0, 1, 0, CFG_MAX_EXPERTS, &c->n_shared));
  TRY(get_int(p, "first_k_dense_replace", 0, c->first_k_dense, 0, MOESZ_MAX_LAYERS, &c->first_k_dense));
  TRY(get_int(p, "moe_layer_freq", 0, 1, 1, MOESZ_MAX_LAYERS, &c->moe_layer_freq));
  TRY(get_bool(p, "norm_topk_prob", 1, &c->norm_topk_prob));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  if ((long long)c->moe_intermediate * c->n_shared > CFG_MAX_DIM)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"n_shared_experts\" too large");
  c->shared_intermediate = c->moe_intermediate * c->n_shared;
  for (int i = 0; i < c->n_layers; i++)
    c->is_moe[i] = c->n_experts > 0 && i >= c->first_k_dense && i % c->moe_layer_freq == 0;
  return MOESZ_OK;
}

/* DeepSeek-V3 / R1 / Kimi-K2 (transformers DeepseekV3Config defaults). */
static int parse_deepseek_v3(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-6f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 18432, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_int(p, "moe_intermediate_size", 0, 2048, 1, CFG_MAX_DIM, &c->moe_intermediate));
  TRY(parse_experts(p, c, "n_routed_experts", 256, 8));
  if (!has(p, "q_lora_rank") && cJSON_GetObjectItemCaseSensitive(p->root, "q_lora_rank"))
    c->q_lora_rank = 0;                      /* null: plain q_proj */
  else
    TRY(get_int(p, "q_lora_rank", 0, 1536, 1, CFG_MAX_DIM, &c->q_lora_rank));
  TRY(get_int(p, "kv_lora_rank", 0, 512, 1, CFG_MAX_DIM, &c->kv_lora_rank));
  TRY(get_int(p, "qk_nope_head_dim", 0, 128, 0, CFG_MAX_DIM, &c->qk_nope_dim));
  TRY(get_int(p, "qk_rope_head_dim", 0, 64, 2, CFG_MAX_DIM, &c->qk_rope_dim));
  TRY(get_int(p, "v_head_dim", 0, 128, 1, CFG_MAX_DIM, &c->v_head_dim));
  TRY(get_bool(p, "rope_interleave", 1, &c->rope_interleave));
  if (c->qk_rope_dim % 2)
    return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"qk_rope_head_dim\" (%d) is odd",
                           c->qk_rope_dim);
  int ab;
  TRY(get_bool(p, "attention_bias", 0, &ab));
  if (ab)
    return moesz_error_set(p->err, MOESZ_E_UNSUPPORTED,
                           "config: \"attention_bias\" true for DeepSeek-V3 (not implemented)");
  /* head_dim in a transformers config is the RoPE part; the query/key head is nope + rope */
  c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
  c->n_kv_heads = c->n_heads;
  c->first_k_dense = 3;
  TRY(parse_group_routing(p, c, 8, 4, 2.5));
  return parse_yarn(p, c);
}

/* GLM-4.5 / 4.6 (transformers Glm4MoeConfig defaults). */
static int parse_glm4_moe(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-5f, 10000.0));
  TRY(get_int(p, "intermediate_size", 0, 10944, 1, CFG_MAX_DIM, &c->intermediate));
  TRY(get_int(p, "moe_intermediate_size", 0, 1408, 1, CFG_MAX_DIM, &c->moe_intermediate));
  TRY(parse_experts(p, c, "n_routed_experts", 128, 8));
  TRY(get_bool(p, "attention_bias", 0, &c->qkv_bias));
  int qkn;
  TRY(get_bool(p, "use_qk_norm", 0, &qkn));
  c->qk_norm = qkn ? 1 : 0;
  double prf;   /* top level (Hub configs) or inside rope_parameters (transformers 5.x) */
  const cJSON *rp = cJSON_GetObjectItemCaseSensitive(p->root, "rope_parameters");
  if (!has(p, "partial_rotary_factor") && rp && cJSON_IsObject(rp)) {
    cfgp sub = {rp, p->err};
    int rc = get_num(&sub, "partial_rotary_factor", 0, 0.5, 1e-6, 1.0, &prf);
    if (rc) return moesz_error_wrap(p->err, rc, "rope_parameters");
  } else {
    TRY(get_num(p, "partial_rotary_factor", 0, 0.5, 1e-6, 1.0, &prf));
  }
  c->rotary_dim = (int)(c->head_dim * prf);   /* int(head_dim * factor), as transformers */
  if (c->rotary_dim < 2 || c->rotary_dim % 2)
    return moesz_error_set(p->err, MOESZ_E_FORMAT,
                           "config: \"partial_rotary_factor\" %g gives %d rotary dims of %d (need an "
                           "even number >= 2)", prf, c->rotary_dim, c->head_dim);
  if (c->rotary_dim == c->head_dim) c->rotary_dim = 0;
  c->first_k_dense = 1;
  TRY(parse_group_routing(p, c, 1, 1, 1.0));
  return parse_yarn(p, c);
}

/* gpt-oss: every layer MoE (num_local_experts, top-k of the router logits
 * then softmax), layer_types alternating sliding / full attention (default:
 * even layers sliding), attention sinks, q/k/v/o biases, expert biases,
 * clamped SwiGLU (alpha 1.702, swiglu_limit), MXFP4 experts as published. */
static int parse_gptoss(const cfgp *p, moesz_config *c) {
  TRY(parse_decoder_common(p, c, 1e-5f, 150000.0));
  TRY(get_int(p, "intermediate_size", 0, 2880, 1, CFG_MAX_DIM, &c->intermediate));
  c->moe_intermediate = c->intermediate;
  TRY(parse_experts(p, c, "num_local_experts", 128, 4));
  TRY(get_bool(p, "attention_bias", 1, &c->qkv_bias));
  TRY(get_bool(p, "tie_word_embeddings", 0, &c->tie_embeddings));
  TRY(get_int(p, "sliding_window", 0, 128, 0, 1 << 30, &c->sliding_window));
  double lim, alpha;
  TRY(get_num(p, "swiglu_limit", 0, 7.0, 0, 1e30, &lim));
  TRY(get_num(p, "swiglu_alpha", 0, 1.702, 0, 1e30, &alpha));
  c->swiglu_limit = (float)lim;
  c->swiglu_alpha = (float)alpha;
  c->attn_sinks = c->router_bias = c->expert_bias = c->gate_up_interleaved = 1;
  c->moe_layer_freq = 1;
  for (int i = 0; i < c->n_layers; i++) {
    c->is_moe[i] = c->n_experts > 0;
    c->is_sliding[i] = (i + 1) % 2 != 0;
  }
  const cJSON *lt = cJSON_GetObjectItemCaseSensitive(p->root, "layer_types");
  if (lt && !cJSON_IsNull(lt)) {
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
      return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"layer_types\" is not a list of %d strings",
                             c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt) {
      if (cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention")) c->is_sliding[i] = 1;
      else if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) c->is_sliding[i] = 0;
      else return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"layer_types\"[%d] is neither "
                                  "\"sliding_attention\" nor \"full_attention\"", i);
      i++;
    }
  }
  if (c->sliding_window == 0)
    for (int i = 0; i < c->n_layers; i++) c->is_sliding[i] = 0;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(p->root, "quantization_config");
  if (q && !cJSON_IsNull(q)) {
    cfgp sub = {q, p->err};
    char qm[32];
    if (!cJSON_IsObject(q)) return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"quantization_config\" is not an object");
    TRY(get_string(&sub, "quant_method", qm, sizeof qm));
    if (strcmp(qm, "mxfp4"))
      return moesz_error_set(p->err, MOESZ_E_UNSUPPORTED, "config: quantization \"%s\" (gpt-oss: mxfp4 or none)", qm);
    c->mxfp4 = 1;
  }
  /* RoPE scaling: YaRN (parse_yarn) or none; other types are refused here */
  static const char *RK[] = {"rope_scaling", "rope_parameters"};
  for (int k = 0; k < 2; k++) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(p->root, RK[k]);
    if (!o || cJSON_IsNull(o)) continue;
    if (!cJSON_IsObject(o)) return moesz_error_set(p->err, MOESZ_E_FORMAT, "config: \"%s\" is not an object", RK[k]);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, "yarn") && strcmp(t->valuestring, "default"))
      return moesz_error_set(p->err, MOESZ_E_UNSUPPORTED, "config: RoPE scaling \"%s\" (gpt-oss: yarn or none)",
                             t->valuestring);
  }
  return parse_yarn(p, c);
}

/* Switch Transformers: encoder blocks then decoder blocks form layers
 * [0, n_enc) and [n_enc, n_enc + n_dec). Block i of a stack is sparse iff
 * step == 1 or i % step == 1 (transformers' SwitchTransformersStack). */
static int parse_switch(const cfgp *p, moesz_config *c) {
  int n_enc, n_dec, enc_step, dec_step;
  TRY(get_int(p, "num_layers", 0, 12, 1, MOESZ_MAX_LAYERS, &n_enc));
  TRY(get_int(p, "num_decoder_layers", 0, n_enc, 0, MOESZ_MAX_LAYERS, &n_dec));
  if (n_enc + n_dec > MOESZ_MAX_LAYERS)
    return moesz_error_set(p->err, MOESZ_E_FORMAT,
                           "config: \"num_layers\" + \"num_decoder_layers\" = %d exceeds %d",
                           n_enc + n_dec, MOESZ_MAX_LAYERS);
  c->n_layers = n_enc + n_dec;
  c->n_enc_layers = n_enc;
  TRY(get_int(p, "d_model", 0, 768, 1, CFG_MAX_DIM, &c->hidden));
  TRY(get_int(p, "d_ff", 0, 2048, 1, CFG_MAX_DIM, &c->intermediate));
  c->moe_intermediate = c->intermediate;
  TRY(get_int(p, "d_kv", 0, 64, 1, CFG_MAX_DIM, &c->head_dim));
  TRY(get_int(p, "num_heads", 0, 12, 1, CFG_MAX_DIM, &c->n_heads));
  c->n_kv_heads = c->n_heads;
  TRY(get_int(p, "vocab_size", 0, 32128, 1, CFG_MAX_VOCAB, &c->vocab));
  TRY(get_int(p, "num_experts", 0, 8, 0, CFG_MAX_EXPERTS, &c->n_experts));
  c->top_k = 1;
  TRY(get_int(p, "encoder_sparse_step", 0, 1, 0, MOESZ_MAX_LAYERS, &enc_step));
  TRY(get_int(p, "decoder_sparse_step", 0, 1, 0, MOESZ_MAX_LAYERS, &dec_step));
  double eps;
  TRY(get_num(p, "layer_norm_epsilon", 0, 1e-6, 0, 1.0, &eps));
  c->norm_eps = (float)eps;
  TRY(get_bool(p, "tie_word_embeddings", 1, &c->tie_embeddings));
  TRY(get_int(p, "relative_attention_num_buckets", 0, 32, 1, 1 << 16, &c->rel_buckets));
  c->moe_layer_freq = enc_step;
  for (int i = 0; i < n_enc; i++)
    c->is_moe[i] = c->n_experts > 0 && enc_step > 0 && (enc_step == 1 || i % enc_step == 1);
  for (int i = 0; i < n_dec; i++)
    c->is_moe[n_enc + i] = c->n_experts > 0 && dec_step > 0 && (dec_step == 1 || i % dec_step == 1);
  return MOESZ_OK;
}

int moesz_config_parse(const char *json, size_t len, moesz_config *out, moesz_error *err) {
  if (!json || !out) return moesz_error_set(err, MOESZ_E_ARG, "config: NULL argument");
  memset(out, 0, sizeof *out);
  out->bos_id = out->eos_id = -1;
  /* the whole text must be one JSON value (trailing whitespace allowed) */
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (root && end) {
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < json + len && *end) {
      cJSON_Delete(root);
      return moesz_error_set(err, MOESZ_E_FORMAT, "config: trailing bytes after the JSON object");
    }
  }
  if (!root) {
    /* show where: NaN / Infinity literals (Python's json writes them) land here */
    size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
    size_t from = at > 32 ? at - 32 : 0, to = at + 8 < len ? at + 8 : len, k = 0;
    char ctx[48];
    for (size_t i = from; i < to && k < sizeof ctx - 1; i++)
      ctx[k++] = json[i] >= 32 && json[i] < 127 ? json[i] : ' ';
    ctx[k] = 0;
    return moesz_error_set(err, MOESZ_E_FORMAT,
                           "config: not valid JSON at byte %zu (NaN/Infinity are not JSON): ...%s...", at,
                           ctx);
  }
  int rc = MOESZ_OK;
  if (!cJSON_IsObject(root)) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "config: not a JSON object");
    goto done;
  }
  cfgp p = {root, err};
  char arch[64] = "";
  const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  if (archs && cJSON_IsArray(archs)) {
    const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
    if (a0 && cJSON_IsString(a0) && a0->valuestring) snprintf(arch, sizeof arch, "%s", a0->valuestring);
    else if (a0) {
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "config: \"architectures\"[0] is not a string");
      goto done;
    }
  } else if (archs && !cJSON_IsNull(archs)) {
    rc = moesz_error_set(err, MOESZ_E_FORMAT, "config: \"architectures\" is not a list");
    goto done;
  }
  if ((rc = get_string(&p, "model_type", out->model_type, sizeof out->model_type))) goto done;
  int found = -1;
  for (size_t i = 0; i < NARCHS && found < 0; i++)
    if (arch[0] ? !strcmp(arch, ARCHS[i].arch) : !strcmp(out->model_type, ARCHS[i].model_type))
      found = (int)i;
  if (found < 0) {
    if (arch[0])
      rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED,
                           "config: unsupported architecture \"%s\" (model_type \"%s\"); supported: "
                           "Llama, Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeekMoE v1, "
                           "DeepSeek-V3, GLM-4.5, Switch Transformers, gpt-oss", arch, out->model_type);
    else if (out->model_type[0])
      rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED,
                           "config: unsupported model_type \"%s\" and no \"architectures\"",
                           out->model_type);
    else
      rc = moesz_error_set(err, MOESZ_E_FORMAT,
                           "config: neither \"architectures\" nor \"model_type\" is given");
    goto done;
  }
  out->arch = ARCHS[found].id;
  snprintf(out->arch_name, sizeof out->arch_name, "%s", ARCHS[found].arch);
  if (!out->model_type[0])
    snprintf(out->model_type, sizeof out->model_type, "%s", ARCHS[found].model_type);
  switch (out->arch) {
    case MOESZ_ARCH_LLAMA: rc = parse_llama(&p, out); break;
    case MOESZ_ARCH_MIXTRAL: rc = parse_mixtral(&p, out); break;
    case MOESZ_ARCH_QWEN2_MOE: rc = parse_qwen2(&p, out); break;
    case MOESZ_ARCH_QWEN3_MOE: rc = parse_qwen3(&p, out); break;
    case MOESZ_ARCH_OLMOE: rc = parse_olmoe(&p, out); break;
    case MOESZ_ARCH_DEEPSEEK: rc = parse_deepseek(&p, out); break;
    case MOESZ_ARCH_SWITCH: rc = parse_switch(&p, out); break;
    case MOESZ_ARCH_DEEPSEEK_V3: rc = parse_deepseek_v3(&p, out); break;
    case MOESZ_ARCH_GLM4_MOE: rc = parse_glm4_moe(&p, out); break;
    case MOESZ_ARCH_GPT_OSS: rc = parse_gptoss(&p, out); break;
    default: rc = moesz_error_set(err, MOESZ_E_INTERNAL, "config: arch table"); break;
  }
  if (rc) goto done;
  if ((rc = get_token(&p, "bos_token_id", out->vocab, &out->bos_id))) goto done;
  if ((rc = get_token(&p, "eos_token_id", out->vocab, &out->eos_id))) goto done;
  out->n_moe_layers = 0;
  for (int i = 0; i < out->n_layers; i++) out->n_moe_layers += out->is_moe[i];
done:
  cJSON_Delete(root);
  if (rc) {
    int keep = out->arch;
    memset(out, 0, sizeof *out);
    out->arch = keep;
    out->bos_id = out->eos_id = -1;
  }
  return rc;
}

int moesz_config_load(const char *path, moesz_config *out, moesz_error *err) {
  if (!path || !out) return moesz_error_set(err, MOESZ_E_ARG, "config: NULL argument");
  char file[4096];
  if (moesz_path_is_dir(path)) {
    if (moesz_path_join(file, sizeof file, path, "config.json"))
      return moesz_error_set(err, MOESZ_E_ARG, "%s: path too long", path);
  } else {
    if (strlen(path) >= sizeof file) return moesz_error_set(err, MOESZ_E_ARG, "path too long");
    memcpy(file, path, strlen(path) + 1);
  }
  char *text = NULL;
  size_t len = 0;
  int rc = moesz_file_read_all(file, CFG_MAX_FILE, &text, &len, err);
  if (rc) return rc;
  rc = moesz_config_parse(text, len, out, err);
  free(text);
  if (rc) return moesz_error_wrap(err, rc, "%s", file);
  return MOESZ_OK;
}
