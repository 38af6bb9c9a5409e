/* model/synth.c - owns random-weight checkpoints of real model shapes
 * (`moesz synth --like olmoe ...`): the family's real config values with
 * optional overrides, written as config.json + model.safetensors in the
 * family's Hugging Face naming, weights ~ N(0, std^2), norms = 1. For scale
 * and speed tests; deterministic for a seed. The checkpoint is first laid
 * out as a plan (config text + one entry per tensor, each with its own seed
 * index), so a tensor can be generated alone, in any order: the container
 * module streams a plan into a .msz without the folder (msz_synth.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/util.h"
#include "moesz/model.h"

typedef struct family {
  const char *like, *arch, *model_type;
  int layers, hidden, inter, moe_inter, experts, top_k, shared, heads, kv_heads, head_dim, vocab;
  double theta;
} family;

/* Real values: Mixtral-8x7B, OLMoE-1B-7B, Qwen3-30B-A3B, Qwen1.5-MoE-A2.7B, DeepSeekMoE-16B, Llama-2-7B,
 * DeepSeek-V3 (head_dim: qk_nope + qk_rope), GLM-4.5 (the rest of their keys: synth_v3_glm below),
 * gpt-oss-20b (experts in MXFP4 as published; sliding window 128 on even layers, YaRN factor 32). */
static const family FAMILIES[] = {
  {"mixtral", "MixtralForCausalLM", "mixtral", 32, 4096, 14336, 14336, 8, 2, 0, 32, 8, 128, 32000, 1e6},
  {"olmoe", "OlmoeForCausalLM", "olmoe", 16, 2048, 1024, 1024, 64, 8, 0, 16, 16, 128, 50304, 1e4},
  {"qwen3_moe", "Qwen3MoeForCausalLM", "qwen3_moe", 48, 2048, 6144, 768, 128, 8, 0, 32, 4, 128, 151936, 1e6},
  {"qwen2_moe", "Qwen2MoeForCausalLM", "qwen2_moe", 24, 2048, 5632, 1408, 60, 4, 1, 16, 16, 128, 151936, 1e6},
  {"deepseek", "DeepseekForCausalLM", "deepseek", 28, 2048, 10944, 1408, 64, 6, 2, 16, 16, 128, 102400, 1e4},
  {"llama", "LlamaForCausalLM", "llama", 32, 4096, 11008, 0, 0, 0, 0, 32, 32, 128, 32000, 1e4},
  {"deepseek_v3", "DeepseekV3ForCausalLM", "deepseek_v3", 61, 7168, 18432, 2048, 256, 8, 1, 128, 128, 192, 129280, 1e4},
  {"glm4_moe", "Glm4MoeForCausalLM", "glm4_moe", 92, 5120, 12288, 1536, 160, 8, 1, 96, 8, 128, 151552, 1e6},
  {"gpt_oss", "GptOssForCausalLM", "gpt_oss", 24, 2880, 2880, 2880, 32, 4, 0, 64, 8, 64, 201088, 150000},
};

/* DeepSeek-V3 MLA shape (kept under --hidden / --heads overrides). */
enum { V3_Q_LORA = 1536, V3_KV_LORA = 512, V3_NOPE = 128, V3_ROPE = 64, V3_V = 128 };

/* The keys DeepSeek-V3 and GLM-4.5 add: routing (sigmoid, groups, scaling),
 * dense first layers (3 as published; 1 under --layers), MLA (V3), partial
 * rotary / q-k norm / bias (GLM). */
static void synth_v3_glm(cJSON *c, const family *f, int is_v3, int real_layers) {
  cJSON_AddNumberToObject(c, "n_routed_experts", f->experts);
  cJSON_AddNumberToObject(c, "n_shared_experts", f->shared);
  cJSON_AddNumberToObject(c, "n_group", is_v3 && f->experts % 8 == 0 ? 8 : 1);
  cJSON_AddNumberToObject(c, "topk_group", is_v3 && f->experts % 8 == 0 ? 4 : 1);
  cJSON_AddNumberToObject(c, "routed_scaling_factor", 2.5);
  cJSON_AddNumberToObject(c, "first_k_dense_replace", real_layers ? 3 : f->layers > 1 ? 1 : 0);
  cJSON_AddStringToObject(c, "scoring_func", "sigmoid");
  if (is_v3) {
    cJSON_AddNumberToObject(c, "q_lora_rank", V3_Q_LORA);
    cJSON_AddNumberToObject(c, "kv_lora_rank", V3_KV_LORA);
    cJSON_AddNumberToObject(c, "qk_nope_head_dim", V3_NOPE);
    cJSON_AddNumberToObject(c, "qk_rope_head_dim", V3_ROPE);
    cJSON_AddNumberToObject(c, "v_head_dim", V3_V);
    cJSON_AddBoolToObject(c, "rope_interleave", 1);
  } else {
    cJSON_AddNumberToObject(c, "partial_rotary_factor", 0.5);
    cJSON_AddBoolToObject(c, "use_qk_norm", 1);
    cJSON_AddBoolToObject(c, "attention_bias", 1);
  }
}

const char *moesz_synth_families(void) {
  return "mixtral, olmoe, qwen3_moe, qwen2_moe, deepseek, llama, deepseek_v3, glm4_moe, gpt_oss";
}

typedef struct rng { uint64_t s[4]; } rng;
static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next(rng *r) {
  uint64_t res = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
  r->s[2] ^= r->s[0]; r->s[3] ^= r->s[1]; r->s[1] ^= r->s[2]; r->s[0] ^= r->s[3];
  r->s[2] ^= t; r->s[3] = rotl(r->s[3], 45);
  return res;
}
static double unif(rng *r) { return ((double)(next(r) >> 11) + 0.5) * 0x1p-53; }

/* gpt-oss stacked experts as published: per expert matrix N(0, std^2)
 * values [rows, cols] (their own stream: the blocks entry's seed index and
 * the expert) quantised to MXFP4; t->mx says whether out gets the blocks
 * [E, rows, cols/32, 16] or the scales [E, rows, cols/32]. */
static int fill_mxfp4(const moesz_synth_plan *p, const moesz_synth_tensor *t, uint8_t *out, moesz_error *err) {
  if (t->cols % 32) return moesz_error_set(err, MOESZ_E_ARG, "synth: %s: MXFP4 needs a multiple of 32 columns (%lld)",
                                           t->name, (long long)t->cols);
  size_t per = (size_t)t->rows * (size_t)t->cols, ng = per / 32;
  float *f = malloc(per * sizeof *f);
  uint8_t *blk = malloc(ng * 16), *sc = malloc(ng);
  int rc = MOESZ_OK;
  if (!f || !blk || !sc) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "synth: %s: out of memory", t->name); goto done; }
  for (int64_t e = 0; e < t->stack; e++) {
    uint64_t sm = p->seed ^ (0x632be59bd9b4e019ull * t->count) ^ (0x9e3779b97f4a7c15ull * (uint64_t)(e + 1));
    rng r = {{splitmix(&sm), splitmix(&sm), splitmix(&sm), splitmix(&sm)}};
    for (size_t i = 0; i < per; i += 2) {
      double u = unif(&r), v = unif(&r), rad = sqrt(-2.0 * log(u)) * p->std;
      f[i] = (float)(rad * cos(2 * M_PI * v));
      if (i + 1 < per) f[i + 1] = (float)(rad * sin(2 * M_PI * v));
    }
    moesz_mxfp4_from_f32(f, ng, blk, sc);
    if (t->mx == 1) memcpy(out + (size_t)e * ng * 16, blk, ng * 16);
    else memcpy(out + (size_t)e * ng, sc, ng);
  }
done:
  free(f); free(blk); free(sc);
  return rc;
}

size_t moesz_synth_tensor_shape(const moesz_synth_plan *p, const moesz_synth_tensor *t, moesz_dtype *dtype,
                                int *ndim, int64_t shape[4]) {
  if (t->mx) {
    int64_t g = t->cols / 32;
    *dtype = MOESZ_DT_U8;
    *ndim = t->mx == 1 ? 4 : 3;
    shape[0] = t->stack; shape[1] = t->rows; shape[2] = g; shape[3] = 16;
    return (size_t)t->stack * (size_t)t->rows * (size_t)g * (t->mx == 1 ? 16u : 1u);
  }
  *dtype = p->dtype;
  *ndim = t->cols ? 2 : 1;
  shape[0] = t->rows; shape[1] = t->cols;
  return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1) * moesz_dtype_size(p->dtype);
}

/* Fills n values of tensor t (f32 scratch, converted to the plan's dtype in
 * chunks): N(0, std^2) by Box-Muller from the tensor's own stream, or ones.
 * The chunk is even, so the pairs fall as in one pass. */
int moesz_synth_fill(const moesz_synth_plan *p, const moesz_synth_tensor *t, void *out, moesz_error *err) {
  enum { CHUNK = 1 << 14 };
  if (t->mx) return fill_mxfp4(p, t, out, err);
  size_t n = (size_t)t->rows * (size_t)(t->cols ? t->cols : 1), es = moesz_dtype_size(p->dtype);
  float *f = malloc(CHUNK * sizeof *f);
  if (!f) return moesz_error_set(err, MOESZ_E_NOMEM, "synth: %s: out of memory", t->name);
  uint64_t sm = p->seed ^ (0x632be59bd9b4e019ull * t->count);
  rng r = {{splitmix(&sm), splitmix(&sm), splitmix(&sm), splitmix(&sm)}};
  for (size_t at = 0; at < n; at += CHUNK) {
    size_t m = n - at < CHUNK ? n - at : CHUNK;
    if (t->ones) {
      for (size_t i = 0; i < m; i++) f[i] = 1.0f;
    } else {
      for (size_t i = 0; i < m; i += 2) {    /* Box-Muller, two values per draw */
        double u = unif(&r), v = unif(&r), rad = sqrt(-2.0 * log(u)) * p->std;
        f[i] = (float)(rad * cos(2 * M_PI * v));
        if (i + 1 < m) f[i + 1] = (float)(rad * sin(2 * M_PI * v));
      }
    }
    moesz_from_f32(p->dtype, f, (uint8_t *)out + at * es, m);
  }
  free(f);
  return MOESZ_OK;
}

void moesz_synth_plan_free(moesz_synth_plan *p) {
  if (!p) return;
  free(p->config_json);
  free(p->t);
  memset(p, 0, sizeof *p);
}

/* Appends tensor name [rows, cols] to the plan; its seed index is its position (from 1). */
static int plan_add(moesz_synth_plan *p, size_t *cap, const char *name, int64_t rows, int64_t cols, int ones, int layer,
                    int expert, moesz_mat mat, moesz_error *err) {
  if (p->n == *cap) {
    size_t nc = *cap ? 2 * *cap : 256;
    moesz_synth_tensor *nt = realloc(p->t, nc * sizeof *nt);
    if (!nt) return moesz_error_set(err, MOESZ_E_NOMEM, "synth: out of memory");
    p->t = nt;
    *cap = nc;
  }
  moesz_synth_tensor *t = &p->t[p->n++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->rows = rows;
  t->cols = cols;
  t->ones = ones;
  t->count = p->n;
  t->layer = layer;
  t->expert = expert;
  t->mat = mat;
  return MOESZ_OK;
}

int moesz_synth_plan_make(const moesz_synth_opts *o, moesz_synth_plan *p, moesz_error *err) {
  memset(p, 0, sizeof *p);
  const family *fam = NULL;
  for (size_t i = 0; i < sizeof FAMILIES / sizeof *FAMILIES; i++)
    if (!strcmp(o->like, FAMILIES[i].like)) fam = &FAMILIES[i];
  if (!fam) return moesz_error_set(err, MOESZ_E_ARG, "synth: unknown family '%s' (%s)", o->like, moesz_synth_families());
  family f = *fam;
  if (f.experts && o->top_k > 0 && o->top_k > (o->experts > 0 ? o->experts : f.experts))
    return moesz_error_set(err, MOESZ_E_ARG, "synth: top-k %d exceeds the %d experts", o->top_k,
                           o->experts > 0 ? o->experts : f.experts);
  if (o->layers > 0) f.layers = o->layers;
  if (o->experts > 0 && f.experts) f.experts = o->experts;
  if (o->top_k > 0 && f.top_k) f.top_k = o->top_k;
  int is_v3 = !strcmp(f.like, "deepseek_v3"), is_glm = !strcmp(f.like, "glm4_moe");
  if (o->hidden > 0 && (is_v3 || is_glm)) f.inter = (int)((int64_t)f.inter * o->hidden / f.hidden);
  if (o->hidden > 0) f.hidden = o->hidden;
  if (o->expert_width > 0) { if (f.experts) f.moe_inter = o->expert_width; else f.inter = o->expert_width; }
  if (o->vocab > 0) f.vocab = o->vocab;
  if (o->heads > 0) f.heads = o->heads;
  if (o->kv_heads > 0) f.kv_heads = o->kv_heads;
  if ((o->hidden > 0 || o->heads > 0) && !is_v3 && !is_glm) f.head_dim = f.hidden / f.heads;
  if (f.top_k > f.experts) f.top_k = f.experts;   /* the family's default top-k, above a smaller --experts */
  if (is_v3) f.kv_heads = f.heads;                /* MLA: one latent, every head its own K/V */
  if (f.heads % f.kv_heads || f.layers > MOESZ_MAX_LAYERS || f.layers < 1 || f.hidden < 2)
    return moesz_error_set(err, MOESZ_E_ARG, "synth: inconsistent shape (heads %d, kv heads %d, layers %d)", f.heads, f.kv_heads, f.layers);
  int is_mixtral = !strcmp(f.like, "mixtral"), is_ds = !strcmp(f.like, "deepseek"), is_q2 = !strcmp(f.like, "qwen2_moe");
  int is_q3 = !strcmp(f.like, "qwen3_moe"), is_ol = !strcmp(f.like, "olmoe"), is_oss = !strcmp(f.like, "gpt_oss");
  /* config.json */
  cJSON *c = cJSON_CreateObject();
  cJSON *ar = cJSON_AddArrayToObject(c, "architectures");
  cJSON_AddItemToArray(ar, cJSON_CreateString(f.arch));
  cJSON_AddStringToObject(c, "model_type", f.model_type);
  cJSON_AddNumberToObject(c, "vocab_size", f.vocab);
  cJSON_AddNumberToObject(c, "hidden_size", f.hidden);
  cJSON_AddNumberToObject(c, "intermediate_size", f.experts && (is_mixtral || is_ol || is_oss) ? f.moe_inter : f.inter);
  cJSON_AddNumberToObject(c, "num_hidden_layers", f.layers);
  cJSON_AddNumberToObject(c, "num_attention_heads", f.heads);
  cJSON_AddNumberToObject(c, "num_key_value_heads", f.kv_heads);
  if (!is_v3) cJSON_AddNumberToObject(c, "head_dim", f.head_dim);
  cJSON_AddNumberToObject(c, "max_position_embeddings", 4096);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
  cJSON_AddNumberToObject(c, "rope_theta", f.theta);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", 0);
  cJSON_AddNumberToObject(c, "bos_token_id", 1);
  cJSON_AddNumberToObject(c, "eos_token_id", 2);
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddStringToObject(c, "torch_dtype", o->dtype == MOESZ_DT_F32 ? "float32" : o->dtype == MOESZ_DT_F16 ? "float16" : "bfloat16");
  if (is_v3 || is_glm) synth_v3_glm(c, &f, is_v3, o->layers <= 0);
  if (f.experts && !is_v3 && !is_glm) {
    cJSON_AddNumberToObject(c, is_mixtral || is_oss ? "num_local_experts" : is_ds ? "n_routed_experts" : "num_experts", f.experts);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", f.top_k);
    if (!is_mixtral && !is_ol && !is_oss) cJSON_AddNumberToObject(c, "moe_intermediate_size", f.moe_inter);
    cJSON_AddBoolToObject(c, "norm_topk_prob", is_q3);
  }
  if (f.experts && (is_v3 || is_glm)) {
    cJSON_AddNumberToObject(c, "num_experts_per_tok", f.top_k);
    cJSON_AddNumberToObject(c, "moe_intermediate_size", f.moe_inter);
    cJSON_AddBoolToObject(c, "norm_topk_prob", 1);
  }
  if (is_q2) {
    cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", 4 * f.moe_inter);
    cJSON_AddNumberToObject(c, "decoder_sparse_step", 1);
    cJSON_AddItemToObject(c, "mlp_only_layers", cJSON_CreateArray());
  }
  if (is_q3) cJSON_AddNumberToObject(c, "decoder_sparse_step", 1), cJSON_AddItemToObject(c, "mlp_only_layers", cJSON_CreateArray());
  if (is_oss) {   /* gpt-oss-20b's attention and expert settings */
    cJSON_AddNumberToObject(c, "sliding_window", 128);
    cJSON_AddBoolToObject(c, "attention_bias", 1);
    cJSON_AddNumberToObject(c, "swiglu_limit", 7.0);
    cJSON_AddNumberToObject(c, "swiglu_alpha", 1.702);
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    for (int i = 0; i < f.layers; i++) cJSON_AddItemToArray(lt, cJSON_CreateString(i % 2 ? "full_attention" : "sliding_attention"));
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "yarn");
    cJSON_AddNumberToObject(rs, "factor", 32.0);
    cJSON_AddNumberToObject(rs, "beta_fast", 32.0);
    cJSON_AddNumberToObject(rs, "beta_slow", 1.0);
    cJSON_AddBoolToObject(rs, "truncate", 0);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 4096);
    cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
    cJSON_AddStringToObject(q, "quant_method", "mxfp4");
  }
  if (is_ds) {
    cJSON_AddNumberToObject(c, "n_shared_experts", f.shared);
    cJSON_AddNumberToObject(c, "first_k_dense_replace", f.layers > 1 ? 1 : 0);
    cJSON_AddNumberToObject(c, "moe_layer_freq", 1);
    cJSON_AddStringToObject(c, "scoring_func", "softmax");
  }
  char *txt = cJSON_Print(c);
  cJSON_Delete(c);
  if (!txt) return moesz_error_set(err, MOESZ_E_NOMEM, "synth: out of memory");
  moesz_config cfg;
  int rc = moesz_config_parse(txt, strlen(txt), &cfg, err);
  if (rc) { free(txt); return rc; }
  p->config_json = txt;
  p->dtype = o->dtype;
  p->std = o->std > 0 ? o->std : 0.02;
  p->seed = o->seed;
  size_t cap = 0;
  int64_t d = cfg.hidden, hd = cfg.head_dim, V = cfg.vocab;
  char nm[256];
#define ADDX(L, e, mat, rows, cols, ones, ...) do { snprintf(nm, sizeof nm, __VA_ARGS__); \
    if ((rc = plan_add(p, &cap, nm, rows, cols, ones, L, e, mat, err))) goto fail; } while (0)
#define ADD(rows, cols, ones, ...) ADDX(-1, -1, (moesz_mat)0, rows, cols, ones, __VA_ARGS__)
  /* MXFP4 stacked experts [E, rows, cols]: a _blocks and a _scales entry on one seed index */
#define ADDMX(rows, cols, ...) do { char base_[200]; snprintf(base_, sizeof base_, __VA_ARGS__); \
    for (int k_ = 1; k_ <= 2; k_++) { \
      ADD(rows, cols, 0, "%s%s", base_, k_ == 1 ? "_blocks" : "_scales"); \
      p->t[p->n - 1].mx = k_; p->t[p->n - 1].stack = cfg.n_experts; \
      if (k_ == 2) p->t[p->n - 1].count = p->t[p->n - 2].count; } } while (0)
  ADD(V, d, 0, "model.embed_tokens.weight");
  for (int L = 0; L < cfg.n_layers; L++) {
    const char *pf = "model.layers";
    ADD(d, 0, 1, "%s.%d.input_layernorm.weight", pf, L);
    ADD(d, 0, 1, "%s.%d.post_attention_layernorm.weight", pf, L);
    if (is_v3) {
      int64_t nh = cfg.n_heads;
      ADD(cfg.q_lora_rank, d, 0, "%s.%d.self_attn.q_a_proj.weight", pf, L);
      ADD(cfg.q_lora_rank, 0, 1, "%s.%d.self_attn.q_a_layernorm.weight", pf, L);
      ADD(nh * hd, cfg.q_lora_rank, 0, "%s.%d.self_attn.q_b_proj.weight", pf, L);
      ADD(cfg.kv_lora_rank + cfg.qk_rope_dim, d, 0, "%s.%d.self_attn.kv_a_proj_with_mqa.weight", pf, L);
      ADD(cfg.kv_lora_rank, 0, 1, "%s.%d.self_attn.kv_a_layernorm.weight", pf, L);
      ADD(nh * (cfg.qk_nope_dim + cfg.v_head_dim), cfg.kv_lora_rank, 0, "%s.%d.self_attn.kv_b_proj.weight", pf, L);
      ADD(d, nh * cfg.v_head_dim, 0, "%s.%d.self_attn.o_proj.weight", pf, L);
    } else {
      ADD(cfg.n_heads * hd, d, 0, "%s.%d.self_attn.q_proj.weight", pf, L);
      ADD(cfg.n_kv_heads * hd, d, 0, "%s.%d.self_attn.k_proj.weight", pf, L);
      ADD(cfg.n_kv_heads * hd, d, 0, "%s.%d.self_attn.v_proj.weight", pf, L);
      ADD(d, cfg.n_heads * hd, 0, "%s.%d.self_attn.o_proj.weight", pf, L);
    }
    if (is_q2 || is_glm || is_oss) {
      ADD(cfg.n_heads * hd, 0, 0, "%s.%d.self_attn.q_proj.bias", pf, L);
      ADD(cfg.n_kv_heads * hd, 0, 0, "%s.%d.self_attn.k_proj.bias", pf, L);
      ADD(cfg.n_kv_heads * hd, 0, 0, "%s.%d.self_attn.v_proj.bias", pf, L);
    }
    if (is_oss) {
      ADD(d, 0, 0, "%s.%d.self_attn.o_proj.bias", pf, L);
      ADD(cfg.n_heads, 0, 0, "%s.%d.self_attn.sinks", pf, L);
      ADD(cfg.n_experts, d, 0, "%s.%d.mlp.router.weight", pf, L);
      ADD(cfg.n_experts, 0, 0, "%s.%d.mlp.router.bias", pf, L);
      ADD(cfg.n_experts, 2 * (int64_t)cfg.moe_intermediate, 0, "%s.%d.mlp.experts.gate_up_proj_bias", pf, L);
      ADD(cfg.n_experts, d, 0, "%s.%d.mlp.experts.down_proj_bias", pf, L);
      ADDMX(2 * (int64_t)cfg.moe_intermediate, d, "%s.%d.mlp.experts.gate_up_proj", pf, L);
      ADDMX(d, cfg.moe_intermediate, "%s.%d.mlp.experts.down_proj", pf, L);
      continue;
    }
    if (is_q3 || is_glm) { ADD(hd, 0, 1, "%s.%d.self_attn.q_norm.weight", pf, L); ADD(hd, 0, 1, "%s.%d.self_attn.k_norm.weight", pf, L); }
    if (is_ol) {
      ADD(cfg.n_heads * hd, 0, 1, "%s.%d.self_attn.q_norm.weight", pf, L);
      ADD(cfg.n_kv_heads * hd, 0, 1, "%s.%d.self_attn.k_norm.weight", pf, L);
    }
    if (!cfg.is_moe[L]) {
      ADD(cfg.intermediate, d, 0, "%s.%d.mlp.gate_proj.weight", pf, L);
      ADD(cfg.intermediate, d, 0, "%s.%d.mlp.up_proj.weight", pf, L);
      ADD(d, cfg.intermediate, 0, "%s.%d.mlp.down_proj.weight", pf, L);
      continue;
    }
    const char *blk = is_mixtral ? "block_sparse_moe" : "mlp";
    ADD(cfg.n_experts, d, 0, "%s.%d.%s.gate.weight", pf, L, blk);
    if (cfg.score_sigmoid) ADD(cfg.n_experts, 0, 0, "%s.%d.mlp.gate.e_score_correction_bias", pf, L);
    int64_t n = cfg.moe_intermediate;
    for (int e = 0; e < cfg.n_experts; e++) {
      if (is_mixtral) {
        ADDX(L, e, MOESZ_MAT_GATE, n, d, 0, "%s.%d.block_sparse_moe.experts.%d.w1.weight", pf, L, e);
        ADDX(L, e, MOESZ_MAT_DOWN, d, n, 0, "%s.%d.block_sparse_moe.experts.%d.w2.weight", pf, L, e);
        ADDX(L, e, MOESZ_MAT_UP, n, d, 0, "%s.%d.block_sparse_moe.experts.%d.w3.weight", pf, L, e);
      } else {
        ADDX(L, e, MOESZ_MAT_GATE, n, d, 0, "%s.%d.mlp.experts.%d.gate_proj.weight", pf, L, e);
        ADDX(L, e, MOESZ_MAT_UP, n, d, 0, "%s.%d.mlp.experts.%d.up_proj.weight", pf, L, e);
        ADDX(L, e, MOESZ_MAT_DOWN, d, n, 0, "%s.%d.mlp.experts.%d.down_proj.weight", pf, L, e);
      }
    }
    if (is_q2 || is_ds || is_v3 || is_glm) {
      const char *sh = is_q2 ? "shared_expert" : "shared_experts";
      int64_t sn = cfg.shared_intermediate;
      ADD(sn, d, 0, "%s.%d.mlp.%s.gate_proj.weight", pf, L, sh);
      ADD(sn, d, 0, "%s.%d.mlp.%s.up_proj.weight", pf, L, sh);
      ADD(d, sn, 0, "%s.%d.mlp.%s.down_proj.weight", pf, L, sh);
      if (is_q2) ADD(1, d, 0, "%s.%d.mlp.shared_expert_gate.weight", pf, L);
    }
  }
  ADD(d, 0, 1, "model.norm.weight");
  ADD(V, d, 0, "lm_head.weight");
#undef ADDMX
#undef ADD
#undef ADDX
  return MOESZ_OK;
fail:
  moesz_synth_plan_free(p);
  return rc;
}

static int synth_into(const moesz_synth_opts *o, const char *dir, moesz_error *err) {
  moesz_synth_plan p;
  int rc = moesz_synth_plan_make(o, &p, err);
  if (rc) return rc;
  char path[4096];
  if (moesz_path_join(path, sizeof path, dir, "config.json")) rc = moesz_error_set(err, MOESZ_E_ARG, "path too long");
  if (!rc) {
    moesz_afile af;
    rc = moesz_afile_open(&af, path, err);
    if (!rc) rc = moesz_afile_write(&af, p.config_json, strlen(p.config_json), err);
    if (!rc) rc = moesz_afile_commit(&af, err);
    else moesz_afile_abort(&af);
  }
  if (!rc && moesz_path_join(path, sizeof path, dir, "model.safetensors")) rc = moesz_error_set(err, MOESZ_E_ARG, "path too long");
  moesz_stw *w = NULL;
  if (!rc) rc = moesz_stw_create(path, &w, err);
  void *buf = NULL;
  for (size_t i = 0; !rc && i < p.n; i++) {
    const moesz_synth_tensor *t = &p.t[i];
    moesz_dtype dt;
    int nd;
    int64_t shape[4];
    size_t nbytes = moesz_synth_tensor_shape(&p, t, &dt, &nd, shape);
    void *nb = realloc(buf, nbytes ? nbytes : 1);
    if (!nb) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "synth: %s: out of memory", t->name); break; }
    buf = nb;
    if ((rc = moesz_synth_fill(&p, t, buf, err))) break;
    rc = moesz_stw_add_copy(w, t->name, dt, nd, shape, buf, err);
  }
  free(buf);
  if (!rc) rc = moesz_stw_meta(w, "format", "pt", err);
  if (!rc) rc = moesz_stw_commit(w, err);
  else moesz_stw_abort(w);
  moesz_synth_plan_free(&p);
  return rc;
}

int moesz_synth_write(const moesz_synth_opts *o, const char *dir, moesz_error *err) {
  moesz_adir d;
  int rc = moesz_adir_open(&d, dir, o->force, err);
  if (rc) return rc;
  if ((rc = synth_into(o, d.tmp, err))) {
    moesz_adir_abort(&d);
    return rc;
  }
  return moesz_adir_commit(&d, err);
}
