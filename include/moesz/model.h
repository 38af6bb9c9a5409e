/* moesz/model.h - config.json -> model description for each supported
 * family, and tensor naming rules: which tensor is "layer L, expert E,
 * matrix M", attention, norm or router. Owned by src/model. */
#ifndef MOESZ_MODEL_H
#define MOESZ_MODEL_H
#include "moesz/base.h"
#include "moesz/tensor.h"

typedef enum moesz_arch {
  MOESZ_ARCH_LLAMA = 0,   /* LlamaForCausalLM (dense: one "expert") */
  MOESZ_ARCH_MIXTRAL,     /* MixtralForCausalLM */
  MOESZ_ARCH_QWEN2_MOE,   /* Qwen2MoeForCausalLM */
  MOESZ_ARCH_QWEN3_MOE,   /* Qwen3MoeForCausalLM */
  MOESZ_ARCH_OLMOE,       /* OlmoeForCausalLM */
  MOESZ_ARCH_DEEPSEEK,    /* DeepseekForCausalLM (v1, model_type "deepseek") */
  MOESZ_ARCH_SWITCH,      /* SwitchTransformersForConditionalGeneration (compression only) */
  MOESZ_ARCH_DEEPSEEK_V3, /* DeepseekV3ForCausalLM (DeepSeek-V3/R1, Kimi-K2: MLA, sigmoid group routing) */
  MOESZ_ARCH_GLM4_MOE,    /* Glm4MoeForCausalLM (GLM-4.5/4.6) */
  MOESZ_ARCH_GPT_OSS,     /* GptOssForCausalLM */
  MOESZ_ARCH_COUNT
} moesz_arch;

#define MOESZ_MAX_LAYERS 256

typedef struct moesz_config {
  moesz_arch arch;
  char arch_name[64];      /* "MixtralForCausalLM" */
  char model_type[64];     /* "mixtral" */
  int n_layers;            /* decoder layers (Switch: encoder + decoder blocks) */
  int hidden;              /* d_model */
  int intermediate;        /* dense MLP width (dense layers / Llama) */
  int moe_intermediate;    /* routed expert width n */
  int n_experts;           /* routed experts per MoE layer (0 for Llama) */
  int top_k;               /* experts per token */
  int n_shared;            /* shared experts (DeepSeek: n_shared_experts) */
  int shared_intermediate; /* total width of the shared MLP (Qwen2: shared_expert_intermediate_size;
                              DeepSeek: moe_intermediate * n_shared) */
  int has_shared_gate;     /* Qwen2-MoE: sigmoid(shared_expert_gate(x)) */
  int norm_topk_prob;      /* renormalise top-k weights */
  int n_heads, n_kv_heads, head_dim;
  int vocab;
  int max_pos;
  float norm_eps;
  float rope_theta;
  int tie_embeddings;
  int qkv_bias;            /* Qwen2: q/k/v projections have bias */
  int qk_norm;             /* 0 none, 1 per head (Qwen3), 2 whole projection (OLMoE) */
  float clip_qkv;          /* OLMoE; 0 = none */
  int first_k_dense;       /* DeepSeek first_k_dense_replace */
  int moe_layer_freq;      /* DeepSeek moe_layer_freq; Qwen2 decoder_sparse_step */
  int bos_id, eos_id;      /* -1 if absent (eos list: the first) */
  int n_enc_layers;        /* Switch: encoder blocks (layers [0, n_enc_layers) are the
                              encoder, the rest decoder blocks); 0 for decoder-only */
  int n_moe_layers;        /* count of is_moe[] set */
  int rel_buckets;         /* Switch relative_attention_num_buckets (0 otherwise) */
  uint8_t is_moe[MOESZ_MAX_LAYERS]; /* [n_layers] 1 if layer L has routed experts */
  /* DeepSeek-V3 multi-head latent attention (all 0 for the other families) */
  int q_lora_rank;         /* q_a_proj [q_lora_rank, d] -> norm -> q_b_proj; 0: plain q_proj */
  int kv_lora_rank;        /* latent width c_kv; > 0 marks MLA */
  int qk_nope_dim;         /* qk_nope_head_dim: per-head query/key part without RoPE */
  int qk_rope_dim;         /* qk_rope_head_dim: decoupled RoPE part (shared by all heads for keys) */
  int v_head_dim;          /* per-head value width */
  int rope_interleave;     /* 1: RoPE rotates pairs (2i, 2i+1) (DeepSeek-V3 rope_interleave) */
  /* sigmoid routing with a selection-only correction bias (DeepSeek-V3, GLM-4.5) */
  int score_sigmoid;       /* 1: scores = sigmoid(logits); mlp.gate.e_score_correction_bias [E] */
  int n_group, topk_group; /* group-limited top-k: E experts in n_group groups, keep topk_group */
  float routed_scale;      /* routed_scaling_factor (1 when absent) */
  int rotary_dim;          /* dims of each head that RoPE rotates (GLM partial_rotary_factor);
                              0 = the whole head */
  /* gpt-oss (GptOssForCausalLM); zero for the other families */
  int sliding_window;      /* keys a sliding layer sees, itself included (0 = none) */
  uint8_t is_sliding[MOESZ_MAX_LAYERS]; /* [n_layers] 1: layer_types[L] is "sliding_attention" */
  int attn_sinks;          /* per-head learned sink logit in the attention softmax */
  int router_bias;         /* router linear has a bias (role ROUTER_LINEAR_BIAS); top-k of logits, then softmax */
  int expert_bias;         /* gate_up / down projections of the experts have biases */
  int gate_up_interleaved; /* fused gate_up rows: gate at even, up at odd */
  float swiglu_alpha;      /* gate * sigmoid(alpha * gate) (1.702); 0 = plain SiLU */
  float swiglu_limit;      /* gate <= limit, |up| <= limit, output (up + 1) * glu */
  int mxfp4;               /* quantization_config.quant_method == "mxfp4" */
  /* YaRN RoPE scaling (rope_scaling / rope_parameters type "yarn"; DeepSeek-V3, GLM-4.5,
     gpt-oss), as transformers' _compute_yarn_parameters; yarn = 0: none */
  int yarn;
  float yarn_factor, yarn_beta_fast, yarn_beta_slow;
  float yarn_mscale, yarn_mscale_all_dim; /* DeepSeek mscale / mscale_all_dim (0 = absent) */
  float yarn_attn_factor;  /* the cos/sin multiplier, resolved at parse time: attention_factor if
                              given, else mscale(factor, mscale) / mscale(factor, mscale_all_dim)
                              when both are set, else 0.1 ln(factor) + 1 (1 for factor <= 1) */
  int yarn_orig_max_pos;   /* original_max_position_embeddings */
  int yarn_truncate;       /* floor/ceil the correction range (default 1) */
} moesz_config;

const char *moesz_arch_name(moesz_arch a);
/* Parses config.json text. Unknown architecture -> MOESZ_E_UNSUPPORTED naming it;
 * missing/NaN/negative numbers -> MOESZ_E_FORMAT. */
int moesz_config_parse(const char *json, size_t len, moesz_config *out, moesz_error *err);
/* Reads DIR/config.json (or a path to a config file). */
int moesz_config_load(const char *path, moesz_config *out, moesz_error *err);

typedef enum moesz_role {
  MOESZ_ROLE_OTHER = 0,
  MOESZ_ROLE_EMBED,        /* token embedding [vocab, hidden] */
  MOESZ_ROLE_LM_HEAD,      /* [vocab, hidden] */
  MOESZ_ROLE_FINAL_NORM,
  MOESZ_ROLE_ATTN_NORM,    /* input_layernorm */
  MOESZ_ROLE_FFN_NORM,     /* post_attention_layernorm */
  MOESZ_ROLE_ATTN_Q, MOESZ_ROLE_ATTN_K, MOESZ_ROLE_ATTN_V, MOESZ_ROLE_ATTN_O,
  MOESZ_ROLE_ATTN_Q_BIAS, MOESZ_ROLE_ATTN_K_BIAS, MOESZ_ROLE_ATTN_V_BIAS,
  MOESZ_ROLE_Q_NORM, MOESZ_ROLE_K_NORM,
  MOESZ_ROLE_ROUTER,       /* [n_experts, hidden] */
  MOESZ_ROLE_EXPERT,       /* routed expert matrix (mat says which) */
  MOESZ_ROLE_SHARED_EXPERT,/* shared expert matrix */
  MOESZ_ROLE_SHARED_GATE,  /* Qwen2 shared_expert_gate [1, hidden] */
  MOESZ_ROLE_DENSE_MLP,    /* MLP of a dense layer (mat says which) */
  MOESZ_ROLE_ATTN_O_BIAS,  /* Llama attention_bias = true */
  MOESZ_ROLE_ATTN_REL_BIAS,/* Switch/T5 relative_attention_bias [buckets, heads] */
  MOESZ_ROLE_CROSS_ATTN_NORM, /* Switch decoder: layer norm before cross-attention */
  MOESZ_ROLE_ATTN_LATENT,  /* MLA low-rank projections: q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj */
  MOESZ_ROLE_LATENT_NORM,  /* MLA q_a_layernorm, kv_a_layernorm */
  MOESZ_ROLE_ROUTER_BIAS,  /* mlp.gate.e_score_correction_bias [n_experts] */
  MOESZ_ROLE_ATTN_SINKS,   /* gpt-oss self_attn.sinks [n_heads] */
  MOESZ_ROLE_ROUTER_LINEAR_BIAS, /* gpt-oss mlp.router.bias [n_experts] (added to the router logits) */
  MOESZ_ROLE_EXPERT_BIAS,  /* gpt-oss stacked expert biases: gate_up [E, 2n], down [E, d] (mat says which) */
  MOESZ_ROLE_COUNT
} moesz_role;

typedef enum moesz_mat {
  MOESZ_MAT_NONE = 0,
  MOESZ_MAT_GATE,          /* w1 / gate_proj   [n, d]  (Switch wi) */
  MOESZ_MAT_UP,            /* w3 / up_proj     [n, d] */
  MOESZ_MAT_DOWN,          /* w2 / down_proj   [d, n]  (Switch wo) */
  MOESZ_MAT_GATE_UP        /* stacked gate_up_proj [E, 2n, d] or [E, d, 2n] layouts */
} moesz_mat;

typedef struct moesz_tensor_role {
  moesz_role role;
  int layer;               /* -1 if not in a layer */
  int expert;              /* routed expert index; -1 for all (stacked) or n/a */
  moesz_mat mat;
  int stacked;             /* 1 if the tensor holds all experts of the layer (3-D) */
  int cross;               /* Switch decoder: 1 for the cross-attention q/k/v/o */
  int mx;                  /* MXFP4 expert tensors: 1 *_blocks [E, rows, cols/32, 16] U8,
                              2 *_scales [E, rows, cols/32] U8 (e8m0); 0 otherwise */
} moesz_tensor_role;

/* 1 for roles whose tensors are routed-expert weights (what the codec and
 * ResMoE work on): MOESZ_ROLE_EXPERT only. */
int moesz_role_is_expert(moesz_role r);

const char *moesz_role_name(moesz_role r);
/* Maps a tensor name to its role under cfg's family naming rules. Names the
 * family does not use map to MOESZ_ROLE_OTHER with layer -1. */
void moesz_tensor_classify(const moesz_config *cfg, const char *name, moesz_tensor_role *out);

/* A model folder opened: config + tensors. */
typedef struct moesz_model_index moesz_model_index; /* private: expert lookup */
typedef struct moesz_model {
  moesz_config cfg;
  moesz_st *st;
  char path[4096];
  moesz_tensor_role *roles; /* [moesz_st_count(st)] role of tensor i (same order) */
  moesz_model_index *idx;
  int borrowed_st;          /* 1: st belongs to someone else (moesz_model_wrap_dense) */
  int experts_elsewhere;    /* 1: routed experts are not in st (served from a container) */
} moesz_model;

/* Opens DIR (config.json + safetensors). Checks that every routed expert
 * matrix of every MoE layer is present with the shape the config implies
 * (either layout) -> MOESZ_E_FORMAT naming the first missing/misshapen one. */
int moesz_model_open(const char *dir, moesz_model **out, moesz_error *err);
/* The same from a parsed config and an opened tensor set (e.g. moesz_st_parse
 * of bytes in memory); takes ownership of st, also on failure. label names
 * the model in messages and path (may be NULL). */
int moesz_model_wrap(const moesz_config *cfg, moesz_st *st, const char *label, moesz_model **out,
                     moesz_error *err);
void moesz_model_close(moesz_model *m);
/* A model over tensors someone else owns (st outlives the model and is not
 * closed by it), whose routed experts live elsewhere (a .msz container serves
 * them): dense weights, shared experts and dense MLPs are reached through st
 * as usual. */
int moesz_model_wrap_dense(const moesz_config *cfg, moesz_st *st, const char *path, moesz_model **out,
                           moesz_error *err);

/* One expert matrix as a 2-D row-major view [rows, cols] with a row stride in
 * elements (stacked layouts give views into the 3-D tensor; a transposed
 * stacked layout is reported with transposed = 1: then element (r, c) is at
 * data[c * ld + r]). gate/up are [n, d], down is [d, n] in the logical
 * orientation transformers uses for nn.Linear weights. A view with dtype
 * MOESZ_VIEW_CL holds a matrix in the codec's compute layout: data points to
 * a parsed moesz_cl (moesz/codec.h), ld = cols, transposed = 0. */
#define MOESZ_VIEW_CL ((moesz_dtype)(MOESZ_DT_COUNT + 1))
/* A view with dtype MOESZ_VIEW_MXFP4 holds a gpt-oss MXFP4 matrix: data points
 * to a moesz_mxfp4_view (below), ld = cols, transposed = 0. */
#define MOESZ_VIEW_MXFP4 ((moesz_dtype)(MOESZ_DT_COUNT + 2))
typedef struct moesz_matview {
  const void *data;
  moesz_dtype dtype;
  int64_t rows, cols;      /* logical shape */
  int64_t ld;              /* stride between consecutive rows (or cols if transposed) */
  int transposed;
} moesz_matview;

/* Routed expert E of layer L (shared = 0) or shared expert E (shared = 1;
 * Qwen2's single shared_expert is E = 0; DeepSeek's fused shared_experts is
 * E = 0 with width shared_intermediate). MOESZ_E_NOTFOUND if absent. */
int moesz_model_expert(const moesz_model *m, int layer, int expert, int shared,
                       moesz_mat mat, moesz_matview *out, moesz_error *err);
/* The tensor of a per-layer role (norms, attention, biases, q/k norms,
 * router, shared gate) in layer L, or of a model-wide role (embed, lm_head,
 * final_norm) with L = -1; NULL if the checkpoint has none. lm_head falls back
 * to the embedding when tie_embeddings is set and no lm_head is stored.
 * Expert and MLP matrices go through moesz_model_expert. Switch: the
 * self-attention tensors (cross = 0); of several embeddings or final norms
 * the first by name. */
const moesz_tensor *moesz_model_tensor(const moesz_model *m, moesz_role role, int layer);
/* gpt-oss experts published in MXFP4: one expert's matrix as packed e2m1
 * values (two per byte, low nibble first) and one e8m0 scale per 32 values
 * (value = fp4 * 2^(scale - 127)), in nn.Linear orientation: gate_up [2n, d]
 * (gate at even rows, up at odd), down [d, n]. */
typedef struct moesz_mxfp4_view {
  const uint8_t *blocks;   /* [rows, cols / 32, 16] */
  const uint8_t *scales;   /* [rows, cols / 32] */
  int64_t rows, cols;
} moesz_mxfp4_view;
/* MXFP4 view of gpt-oss expert E's gate_up or down matrix in layer L;
 * MOESZ_E_NOTFOUND when that matrix is not stored as MXFP4. For gpt-oss,
 * moesz_model_expert returns views of the unquantized stacked form: gate_up
 * [2n, d] (interleaved rows), down [d, n], and as MOESZ_MAT_GATE / _UP the
 * two row halves [0, n) / [n, 2n) of gate_up (not gate and up: those
 * interleave), which is how containers store and serve gpt-oss experts. */
int moesz_model_expert_mxfp4(const moesz_model *m, int layer, int expert, moesz_mat mat, moesz_mxfp4_view *out,
                             moesz_error *err);
/* How the routed experts are stored: "per-expert", "stacked" ([E, 2n, d] /
 * [E, d, n]), "stacked-transposed" ([E, d, 2n] / [E, n, d]), "mixed" or
 * "mxfp4" (gpt-oss blocks + scales) or "none" (no MoE layer). */
const char *moesz_model_expert_layout(const moesz_model *m);
/* Dense layers (is_moe[L] == 0; every Llama layer) are the one-expert case:
 * expert 0, shared 0 of such a layer returns its dense MLP matrix. */

/* Parameter and byte counts by role (tensors as stored; tied embeddings
 * count once, as transformers' num_parameters() does). */
typedef struct moesz_counts {
  int64_t params[MOESZ_ROLE_COUNT], bytes[MOESZ_ROLE_COUNT];
  int64_t tensors[MOESZ_ROLE_COUNT];
  int64_t total_params, total_bytes;
  int64_t expert_params, expert_bytes;  /* routed experts (MOESZ_ROLE_EXPERT) */
  int64_t other_params, other_bytes;    /* everything else */
} moesz_counts;
void moesz_model_count(const moesz_model *m, moesz_counts *out);
/* The parameter counts (params[], totals; bytes and tensors left 0) that a
 * complete checkpoint of this configuration has, from the config alone: for
 * sizing, synthetic checkpoints and as a cross-check of moesz_model_count. */
void moesz_config_count(const moesz_config *cfg, moesz_counts *out);

/* Statistics of one matrix (src/model/stats.c). entropy_bits is the
 * order-0 entropy in bits per value of q = round(x / (2 eb)) over the finite
 * values: the rate an ideal error-bounded quantizer + entropy coder reaches. */
typedef struct moesz_matstats {
  int64_t n;               /* values */
  int64_t nonfinite;       /* NaN/Inf (excluded from the rest) */
  double mean, std, min, max;
  double eb;
  double entropy_bits;     /* bits per value; 0 when eb <= 0 */
  int64_t distinct_q;      /* distinct codes */
} moesz_matstats;
int moesz_matview_stats(const moesz_matview *v, double eb, moesz_matstats *out, moesz_error *err);
/* Copies a view (strided or transposed) into contiguous row-major bytes
 * [rows, cols] of its own dtype. */
void moesz_matview_gather(const moesz_matview *v, void *dst);
/* Copies a view into a dense row-major f32 buffer [rows * cols]. */
int moesz_matview_to_f32(const moesz_matview *v, float *dst, moesz_error *err);

/* Random-weight checkpoints of real shapes (src/model/synth.c). like names
 * the family whose real config values are used (mixtral: Mixtral-8x7B,
 * olmoe: OLMoE-1B-7B, qwen3_moe: Qwen3-30B-A3B, qwen2_moe: Qwen1.5-MoE-A2.7B,
 * deepseek: DeepSeekMoE-16B, llama: Llama-2-7B, gpt_oss: gpt-oss-20b with MXFP4
 * experts); fields > 0 override them. */
typedef struct moesz_synth_opts {
  const char *like;
  int layers, experts, top_k, hidden, expert_width, vocab, heads, kv_heads;  /* 0: the family's; experts and
                               top_k are ignored for dense families; top_k > experts is MOESZ_E_ARG */
  moesz_dtype dtype;        /* F32, BF16 or F16 */
  double std;               /* weight standard deviation (default 0.02) */
  uint64_t seed;
  int force;                /* replace an existing non-empty model folder */
} moesz_synth_opts;
/* Writes DIR/config.json and DIR/model.safetensors, into a temporary folder
 * beside DIR renamed to DIR at the end. An existing non-empty DIR is refused
 * (MOESZ_E_ARG) unless force, which replaces a model folder whole. */
int moesz_synth_write(const moesz_synth_opts *o, const char *dir, moesz_error *err);
/* The checkpoint as a plan: config.json text and every tensor in file order,
 * each generated alone by moesz_synth_fill (its own random stream), so a
 * writer may produce them in any order and hold one at a time. */
typedef struct moesz_synth_tensor {
  char name[128];
  int64_t rows, cols;       /* cols = 0: 1-D [rows] */
  int ones;                 /* 1: all ones (norms), else N(0, std^2) */
  uint64_t count;           /* seed index: position in file order, from 1 */
  int layer, expert;        /* a routed expert matrix: its layer and expert; -1 otherwise */
  moesz_mat mat;            /* routed expert matrix: GATE / UP / DOWN; 0 otherwise */
  int mx;                   /* gpt-oss MXFP4 stacked experts [stack, rows, cols] (N(0, std^2) quantised):
                               1 = the _blocks U8 [stack, rows, cols/32, 16], 2 = the _scales U8
                               [stack, rows, cols/32] (same seed index as its blocks); 0 otherwise */
  int64_t stack;            /* mx: experts stacked */
} moesz_synth_tensor;
typedef struct moesz_synth_plan {
  char *config_json;        /* config.json text as the folder holds it */
  moesz_synth_tensor *t;    /* [n] in file order */
  size_t n;
  moesz_dtype dtype;
  double std;
  uint64_t seed;
} moesz_synth_plan;
int moesz_synth_plan_make(const moesz_synth_opts *o, moesz_synth_plan *p, moesz_error *err);
void moesz_synth_plan_free(moesz_synth_plan *p);
/* Tensor t's dtype, rank and shape in the folder's model.safetensors; returns its bytes. */
size_t moesz_synth_tensor_shape(const moesz_synth_plan *p, const moesz_synth_tensor *t, moesz_dtype *dtype,
                                int *ndim, int64_t shape[4]);
/* Writes tensor t's values (rows * max(cols, 1) of p->dtype; mx: its MXFP4
 * blocks or scales) to out: the bytes the folder's model.safetensors holds for it. */
int moesz_synth_fill(const moesz_synth_plan *p, const moesz_synth_tensor *t, void *out, moesz_error *err);
const char *moesz_synth_families(void);
#endif
