/* model/classify.c - owns the tensor naming rules: a tensor name of a
 * supported family -> role (embedding, attention q/k/v/o, norms, router,
 * routed expert E / shared expert / dense MLP matrix gate|up|down), layer and
 * expert index. Both the per-expert Hub layout (`experts.3.w1.weight`,
 * `experts.3.gate_proj.weight`, Switch `experts.expert_3.wi.weight`) and the
 * stacked 3-D layout of transformers 5.x modules (`experts.gate_up_proj`,
 * `experts.down_proj`, optionally with a `.weight` suffix) are recognised.
 * Names outside a family's rules, layers >= n_layers and experts >=
 * n_experts are MOESZ_ROLE_OTHER. DeepSeek-V3's multi-head latent attention
 * (q_a/q_b/kv_a/kv_b projections and their norms) and the router's
 * e_score_correction_bias (ROUTER_BIAS) have roles of their own. gpt-oss adds
 * attention sinks, the router linear's bias (ROUTER_LINEAR_BIAS), stacked
 * expert biases and MXFP4 blocks/scales tensors. Rules per family:
 * docs/MODELS.md. */
#include <string.h>
#include "moesz/model.h"

static const char *ROLE_NAMES[MOESZ_ROLE_COUNT] = {
  "other", "embed", "lm_head", "final_norm", "attn_norm", "ffn_norm",
  "attn_q", "attn_k", "attn_v", "attn_o", "attn_q_bias", "attn_k_bias", "attn_v_bias",
  "q_norm", "k_norm", "router", "expert", "shared_expert", "shared_gate", "dense_mlp",
  "attn_o_bias", "attn_rel_bias", "cross_attn_norm", "attn_latent", "latent_norm", "router_bias",
  "attn_sinks", "router_linear_bias", "expert_bias",
};

const char *moesz_role_name(moesz_role r) {
  return (unsigned)r < MOESZ_ROLE_COUNT ? ROLE_NAMES[r] : "invalid";
}

int moesz_role_is_expert(moesz_role r) { return r == MOESZ_ROLE_EXPERT; }

/* Consumes literal p at *s. */
static int eat(const char **s, const char *p) {
  size_t n = strlen(p);
  if (strncmp(*s, p, n)) return 0;
  *s += n;
  return 1;
}

/* Consumes a decimal index (no sign, no leading zeros except "0", < 1e6)
 * followed by '.'. */
static int eat_index(const char **s, int *v) {
  const char *q = *s;
  if (*q < '0' || *q > '9') return 0;
  if (*q == '0' && q[1] >= '0' && q[1] <= '9') return 0;
  long x = 0;
  while (*q >= '0' && *q <= '9') {
    x = x * 10 + (*q - '0');
    if (x >= 1000000) return 0;
    q++;
  }
  if (*q != '.') return 0;
  *v = (int)x;
  *s = q + 1;
  return 1;
}

static void set(moesz_tensor_role *o, moesz_role r, moesz_mat m) {
  o->role = r;
  o->mat = m;
}

/* MLP matrix names: Mixtral w1/w3/w2, Switch wi/wo, everyone else *_proj. */
static moesz_mat mat_of(const moesz_config *c, const char *s, int *ok) {
  *ok = 1;
  if (c->arch == MOESZ_ARCH_MIXTRAL) {
    if (!strcmp(s, "w1.weight")) return MOESZ_MAT_GATE;
    if (!strcmp(s, "w3.weight")) return MOESZ_MAT_UP;
    if (!strcmp(s, "w2.weight")) return MOESZ_MAT_DOWN;
  } else if (c->arch == MOESZ_ARCH_SWITCH) {
    if (!strcmp(s, "wi.weight")) return MOESZ_MAT_GATE;
    if (!strcmp(s, "wo.weight")) return MOESZ_MAT_DOWN;
  } else {
    if (!strcmp(s, "gate_proj.weight")) return MOESZ_MAT_GATE;
    if (!strcmp(s, "up_proj.weight")) return MOESZ_MAT_UP;
    if (!strcmp(s, "down_proj.weight")) return MOESZ_MAT_DOWN;
  }
  *ok = 0;
  return MOESZ_MAT_NONE;
}

/* Stacked 3-D expert tensors: experts.{gate_up_proj,gate_proj,up_proj,down_proj}[.weight]. */
static moesz_mat stacked_mat_of(const char *s, int *ok) {
  static const struct { const char *n; moesz_mat m; } T[] = {
    {"gate_up_proj", MOESZ_MAT_GATE_UP}, {"gate_proj", MOESZ_MAT_GATE},
    {"up_proj", MOESZ_MAT_UP}, {"down_proj", MOESZ_MAT_DOWN},
  };
  *ok = 0;
  for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
    const char *q = s;
    if (eat(&q, T[i].n) && (!*q || !strcmp(q, ".weight"))) {
      *ok = 1;
      return T[i].m;
    }
  }
  return MOESZ_MAT_NONE;
}

/* gpt-oss MoE block: router.{weight,bias}; experts.{gate_up_proj,down_proj}
 * stacked (transformers' [E, d, 2n] / [E, n, d]), their _bias [E, 2n] /
 * [E, d], or as published in MXFP4: _blocks [E, rows, cols/32, 16] and
 * _scales [E, rows, cols/32] with rows = 2n / d (nn.Linear orientation). */
static void classify_gptoss_mlp(const char *s, moesz_tensor_role *o) {
  if (!strcmp(s, "router.weight")) { set(o, MOESZ_ROLE_ROUTER, MOESZ_MAT_NONE); return; }
  if (!strcmp(s, "router.bias")) { set(o, MOESZ_ROLE_ROUTER_LINEAR_BIAS, MOESZ_MAT_NONE); return; }
  if (!eat(&s, "experts.")) return;
  moesz_mat m;
  if (eat(&s, "gate_up_proj")) m = MOESZ_MAT_GATE_UP;
  else if (eat(&s, "down_proj")) m = MOESZ_MAT_DOWN;
  else return;
  if (!*s) set(o, MOESZ_ROLE_EXPERT, m);
  else if (!strcmp(s, "_bias")) set(o, MOESZ_ROLE_EXPERT_BIAS, m);
  else if (!strcmp(s, "_blocks")) { set(o, MOESZ_ROLE_EXPERT, m); o->mx = 1; }
  else if (!strcmp(s, "_scales")) { set(o, MOESZ_ROLE_EXPERT, m); o->mx = 2; }
  else return;
  o->stacked = 1;
}

/* The MLP part of decoder layer L (after "mlp." or "block_sparse_moe."). */
static void classify_mlp(const moesz_config *c, int L, const char *s, moesz_tensor_role *o) {
  int ok, e;
  moesz_mat m;
  if (c->arch == MOESZ_ARCH_GPT_OSS) {
    if (c->is_moe[L]) classify_gptoss_mlp(s, o);
    return;
  }
  if (c->is_moe[L]) {
    if (!strcmp(s, "gate.weight")) { set(o, MOESZ_ROLE_ROUTER, MOESZ_MAT_NONE); return; }
    if (c->score_sigmoid && !strcmp(s, "gate.e_score_correction_bias")) {
      set(o, MOESZ_ROLE_ROUTER_BIAS, MOESZ_MAT_NONE);
      return;
    }
    if (eat(&s, "experts.")) {
      if (eat_index(&s, &e)) {
        m = mat_of(c, s, &ok);
        if (ok && e < c->n_experts) {
          set(o, MOESZ_ROLE_EXPERT, m);
          o->expert = e;
        }
        return;
      }
      m = stacked_mat_of(s, &ok);
      if (ok) {
        set(o, MOESZ_ROLE_EXPERT, m);
        o->stacked = 1;
      }
      return;
    }
    if (c->arch == MOESZ_ARCH_QWEN2_MOE && c->n_shared) {
      if (!strcmp(s, "shared_expert_gate.weight")) {
        set(o, MOESZ_ROLE_SHARED_GATE, MOESZ_MAT_NONE);
        return;
      }
      if (eat(&s, "shared_expert.")) {
        m = mat_of(c, s, &ok);
        if (ok) { set(o, MOESZ_ROLE_SHARED_EXPERT, m); o->expert = 0; }
        return;
      }
    }
    if ((c->arch == MOESZ_ARCH_DEEPSEEK || c->arch == MOESZ_ARCH_DEEPSEEK_V3 ||
         c->arch == MOESZ_ARCH_GLM4_MOE) && c->n_shared && eat(&s, "shared_experts.")) {
      m = mat_of(c, s, &ok);
      if (ok) { set(o, MOESZ_ROLE_SHARED_EXPERT, m); o->expert = 0; }
      return;
    }
    return;
  }
  m = mat_of(c, s, &ok);
  if (ok) set(o, MOESZ_ROLE_DENSE_MLP, m);
}

static void classify_decoder(const moesz_config *c, const char *name, moesz_tensor_role *o) {
  const char *s = name;
  if (!strcmp(s, "lm_head.weight")) { set(o, MOESZ_ROLE_LM_HEAD, MOESZ_MAT_NONE); return; }
  eat(&s, "model.");
  if (!strcmp(s, "embed_tokens.weight")) { set(o, MOESZ_ROLE_EMBED, MOESZ_MAT_NONE); return; }
  if (!strcmp(s, "norm.weight")) { set(o, MOESZ_ROLE_FINAL_NORM, MOESZ_MAT_NONE); return; }
  int L;
  if (!eat(&s, "layers.") || !eat_index(&s, &L) || L >= c->n_layers) return;
  o->layer = L;
  static const struct { const char *n; moesz_role r; int need; } ATTN[] = {
    {"input_layernorm.weight", MOESZ_ROLE_ATTN_NORM, 0},
    {"post_attention_layernorm.weight", MOESZ_ROLE_FFN_NORM, 0},
    {"self_attn.q_proj.weight", MOESZ_ROLE_ATTN_Q, 0},
    {"self_attn.k_proj.weight", MOESZ_ROLE_ATTN_K, 0},
    {"self_attn.v_proj.weight", MOESZ_ROLE_ATTN_V, 0},
    {"self_attn.o_proj.weight", MOESZ_ROLE_ATTN_O, 0},
    {"self_attn.q_proj.bias", MOESZ_ROLE_ATTN_Q_BIAS, 1},
    {"self_attn.k_proj.bias", MOESZ_ROLE_ATTN_K_BIAS, 1},
    {"self_attn.v_proj.bias", MOESZ_ROLE_ATTN_V_BIAS, 1},
    {"self_attn.o_proj.bias", MOESZ_ROLE_ATTN_O_BIAS, 2},
    {"self_attn.q_norm.weight", MOESZ_ROLE_Q_NORM, 3},
    {"self_attn.k_norm.weight", MOESZ_ROLE_K_NORM, 3},
    {"self_attn.sinks", MOESZ_ROLE_ATTN_SINKS, 4},
  };
  if (c->kv_lora_rank > 0) {   /* MLA (DeepSeek-V3): q_proj only without q_lora_rank */
    static const struct { const char *n; moesz_role r; int q_lora; } MLA[] = {
      {"self_attn.q_a_proj.weight", MOESZ_ROLE_ATTN_LATENT, 1},
      {"self_attn.q_b_proj.weight", MOESZ_ROLE_ATTN_LATENT, 1},
      {"self_attn.q_a_layernorm.weight", MOESZ_ROLE_LATENT_NORM, 1},
      {"self_attn.q_proj.weight", MOESZ_ROLE_ATTN_Q, 0},
      {"self_attn.kv_a_proj_with_mqa.weight", MOESZ_ROLE_ATTN_LATENT, -1},
      {"self_attn.kv_b_proj.weight", MOESZ_ROLE_ATTN_LATENT, -1},
      {"self_attn.kv_a_layernorm.weight", MOESZ_ROLE_LATENT_NORM, -1},
      {"self_attn.o_proj.weight", MOESZ_ROLE_ATTN_O, -1},
      {"input_layernorm.weight", MOESZ_ROLE_ATTN_NORM, -1},
      {"post_attention_layernorm.weight", MOESZ_ROLE_FFN_NORM, -1},
    };
    for (size_t i = 0; i < sizeof MLA / sizeof MLA[0]; i++) {
      if (strcmp(s, MLA[i].n)) continue;
      if (MLA[i].q_lora >= 0 && MLA[i].q_lora != (c->q_lora_rank > 0)) break;
      set(o, MLA[i].r, MOESZ_MAT_NONE);
      return;
    }
    if (strncmp(s, "mlp.", 4)) { o->layer = -1; return; }
  }
  for (size_t i = 0; i < sizeof ATTN / sizeof ATTN[0]; i++) {
    if (strcmp(s, ATTN[i].n)) continue;
    int need = ATTN[i].need;
    /* o_proj bias: Llama/DeepSeek/OLMoE/Qwen3 attention_bias adds it; Qwen2's qkv_bias does not. */
    if ((need == 1 && !c->qkv_bias) ||
        (need == 2 && (!c->qkv_bias || c->arch == MOESZ_ARCH_QWEN2_MOE ||
                        c->arch == MOESZ_ARCH_GLM4_MOE)) ||
        (need == 3 && !c->qk_norm) || (need == 4 && !c->attn_sinks)) {
      o->layer = -1;
      return;
    }
    set(o, ATTN[i].r, MOESZ_MAT_NONE);
    return;
  }
  const char *t = s;
  if (eat(&t, "mlp.") ||
      (c->arch == MOESZ_ARCH_MIXTRAL && c->is_moe[L] && eat(&t, "block_sparse_moe.")))
    classify_mlp(c, L, t, o);
  if (o->role == MOESZ_ROLE_OTHER) o->layer = -1;
}

/* Switch Transformers (encoder-decoder). Decoder block b is layer n_enc + b. */
static void classify_switch(const moesz_config *c, const char *name, moesz_tensor_role *o) {
  const char *s = name;
  if (!strcmp(s, "shared.weight") || !strcmp(s, "encoder.embed_tokens.weight") ||
      !strcmp(s, "decoder.embed_tokens.weight")) {
    set(o, MOESZ_ROLE_EMBED, MOESZ_MAT_NONE);
    return;
  }
  if (!strcmp(s, "lm_head.weight")) { set(o, MOESZ_ROLE_LM_HEAD, MOESZ_MAT_NONE); return; }
  if (!strcmp(s, "encoder.final_layer_norm.weight") || !strcmp(s, "decoder.final_layer_norm.weight")) {
    set(o, MOESZ_ROLE_FINAL_NORM, MOESZ_MAT_NONE);
    return;
  }
  int dec;
  if (eat(&s, "encoder.block.")) dec = 0;
  else if (eat(&s, "decoder.block.")) dec = 1;
  else return;
  int b, sub;
  if (!eat_index(&s, &b) || !eat(&s, "layer.") || !eat_index(&s, &sub)) return;
  int L = dec ? c->n_enc_layers + b : b;
  if (b >= (dec ? c->n_layers - c->n_enc_layers : c->n_enc_layers)) return;
  int ff = dec ? 2 : 1;
  moesz_tensor_role r = *o;
  r.layer = L;
  if (sub == 0 || (dec && sub == 1)) {
    const char *att = sub == 0 ? "SelfAttention." : "EncDecAttention.";
    if (!strcmp(s, "layer_norm.weight")) {
      set(&r, sub == 0 ? MOESZ_ROLE_ATTN_NORM : MOESZ_ROLE_CROSS_ATTN_NORM, MOESZ_MAT_NONE);
    } else if (eat(&s, att)) {
      r.cross = sub == 1;
      if (!strcmp(s, "q.weight")) set(&r, MOESZ_ROLE_ATTN_Q, MOESZ_MAT_NONE);
      else if (!strcmp(s, "k.weight")) set(&r, MOESZ_ROLE_ATTN_K, MOESZ_MAT_NONE);
      else if (!strcmp(s, "v.weight")) set(&r, MOESZ_ROLE_ATTN_V, MOESZ_MAT_NONE);
      else if (!strcmp(s, "o.weight")) set(&r, MOESZ_ROLE_ATTN_O, MOESZ_MAT_NONE);
      else if (sub == 0 && !strcmp(s, "relative_attention_bias.weight"))
        set(&r, MOESZ_ROLE_ATTN_REL_BIAS, MOESZ_MAT_NONE);
    }
  } else if (sub == ff) {
    int ok, e;
    moesz_mat m;
    if (!strcmp(s, "layer_norm.weight")) set(&r, MOESZ_ROLE_FFN_NORM, MOESZ_MAT_NONE);
    else if (eat(&s, "mlp.")) {
      if (!c->is_moe[L]) {
        m = mat_of(c, s, &ok);
        if (ok) set(&r, MOESZ_ROLE_DENSE_MLP, m);
      } else if (!strcmp(s, "router.classifier.weight")) {
        set(&r, MOESZ_ROLE_ROUTER, MOESZ_MAT_NONE);
      } else if (eat(&s, "experts.expert_") && eat_index(&s, &e) && e < c->n_experts) {
        m = mat_of(c, s, &ok);
        if (ok) { set(&r, MOESZ_ROLE_EXPERT, m); r.expert = e; }
      }
    }
  }
  if (r.role != MOESZ_ROLE_OTHER) *o = r;
}

void moesz_tensor_classify(const moesz_config *cfg, const char *name, moesz_tensor_role *out) {
  memset(out, 0, sizeof *out);
  out->role = MOESZ_ROLE_OTHER;
  out->layer = -1;
  out->expert = -1;
  out->mat = MOESZ_MAT_NONE;
  if (!cfg || !name) return;
  if (cfg->arch == MOESZ_ARCH_SWITCH) classify_switch(cfg, name, out);
  else classify_decoder(cfg, name, out);
  if (out->role == MOESZ_ROLE_OTHER) {
    out->layer = -1;
    out->expert = -1;
    out->mat = MOESZ_MAT_NONE;
    out->stacked = 0;
    out->cross = 0;
    out->mx = 0;
  }
}
