/* moesz/infer.h - the inference engine: forward pass per family (Llama,
 * Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeekMoE v1, gpt-oss) with the semantics
 * transformers implements, KV cache, batched prompt processing, the expert
 * provider interface through which every expert matrix is reached, and the
 * sampler. Owned by src/infer (see docs/INFERENCE.md). */
#ifndef MOESZ_INFER_H
#define MOESZ_INFER_H
#include "moesz/base.h"
#include "moesz/model.h"

/* ---------------------------------------------------------------- engine */

typedef struct moesz_engine moesz_engine;

typedef struct moesz_engine_opts {
  int threads;        /* 0 = all cores */
  int max_ctx;        /* KV cache length; 0 = min(config max_pos, 4096) */
  int expert_group;   /* routed experts held (got, not released) at once; 0 = all the
                         experts a layer needs for the current batch */
  int scalar;         /* 1 = scalar kernels only (tests); 0 = AVX2 when the CPU has it */
  int fast_dot;       /* compute-layout experts: 0 = x split in two 16-bit halves per 256 columns
                         (the f32 product with the decoded weights up to rounding); 1 = x rounded
                         to 16 bits per 256 columns (half the multiplies; |x error| <= 2^-16 of the
                         block's largest |x|); 2 = as 1, and in decode (one token) 4-bit groups
                         against x rounded to 8 bits per 128 columns (one byte-multiply a code;
                         |x error| <= 2^-8 of the block's largest |x|). 1 and 2 also multiply BF16
                         weights against x rounded to BF16 (vdpbf16ps), on CPUs with
                         AVX512_BF16 only (elsewhere BF16 products stay exact) */
  int exact_bf16;     /* 1 = BF16 weights keep exact products with x even when fast_dot is set
                         (fast_dot then changes the compute layout's products alone) */
} moesz_engine_opts;

/* model_dir: a Hugging Face model folder (config.json + safetensors).
 * Missing tensors or shapes that contradict the config -> MOESZ_E_FORMAT /
 * MOESZ_E_NOTFOUND naming the tensor; unsupported family (Switch) ->
 * MOESZ_E_UNSUPPORTED. */
int  moesz_engine_open(const char *model_dir, const moesz_engine_opts *o, moesz_engine **out,
                       moesz_error *err);
void moesz_engine_close(moesz_engine *e);
int  moesz_engine_vocab(const moesz_engine *e);
int  moesz_engine_max_ctx(const moesz_engine *e);
int  moesz_engine_threads(const moesz_engine *e);      /* threads its steps run on (the caller's included) */
const moesz_config *moesz_engine_config(const moesz_engine *e);
void moesz_engine_reset(moesz_engine *e);             /* empty the KV cache (position 0) */
int  moesz_engine_pos(const moesz_engine *e);          /* tokens in the KV cache */
/* Appends n tokens at the current position (batched prompt processing when n > 1) and writes
 * logits [n, vocab] (all_logits = 1) or only the last position's [vocab] (all_logits = 0).
 * MOESZ_E_RANGE for an id outside the vocab or context overflow (nothing is appended then). */
int  moesz_engine_forward(moesz_engine *e, const int32_t *tokens, size_t n, int all_logits,
                          float *logits, moesz_error *err);
/* Drops the KV cache back to position pos (<= current position), e.g. to
 * rescore several continuations of a shared prefix. */
int  moesz_engine_truncate(moesz_engine *e, int pos, moesz_error *err);

/* Several sequences at once (a server's concurrent requests). A sequence
 * owns its KV cache and position; the engine's weights, scratch and expert
 * provider are shared. max_ctx <= moesz_engine_max_ctx (0 = that). A
 * sequence is used with the engine that created it (or that engine's
 * siblings: moesz_engine_open_sibling), and must be freed
 * before the engine is closed. */
typedef struct moesz_seq moesz_seq;
int  moesz_seq_create(moesz_engine *e, int max_ctx, moesz_seq **out, moesz_error *err);
void moesz_seq_free(moesz_seq *s);                     /* NULL ok */
void moesz_seq_reset(moesz_seq *s);                    /* position 0, memory kept */
int  moesz_seq_pos(const moesz_seq *s);                /* tokens in its KV cache */
int  moesz_seq_max_ctx(const moesz_seq *s);

typedef struct moesz_step_item {
  moesz_seq *seq;
  const int32_t *tokens;  /* [n] appended at the sequence's position */
  int n;
  int all_logits;         /* 1: logits [n, vocab]; 0: the last token's [vocab] */
  float *logits;
} moesz_step_item;
/* One forward step over several sequences (each at most once): every item's
 * tokens go through each layer together, attention per sequence against its
 * own KV cache, and the MLP / MoE block over all rows at once, so a routed
 * expert is fetched once (one provider get) for every token of every
 * sequence routed to it. Logits equal those of moesz_engine_forward on each
 * sequence alone. At most moesz_engine_step_capacity tokens in all;
 * MOESZ_E_RANGE for more, an id outside the vocab or a context overflow,
 * MOESZ_E_ARG for a bad item (nothing is appended then; on any error no
 * position moves). */
int  moesz_engine_step(moesz_engine *e, const moesz_step_item *items, int n_items, moesz_error *err);
int  moesz_engine_step_capacity(const moesz_engine *e);

/* ------------------------------------------------------ expert provider */

/* The three matrices of one expert in nn.Linear orientation:
 * gate [n, d], up [n, d], down [d, n] (d = hidden, n = expert width).
 * Views may be F32, BF16 or F16, row-major or transposed (see moesz_matview). */
typedef struct moesz_expert_mats {
  moesz_matview gate, up, down;
  moesz_matview gate_up;   /* gpt-oss only, optional: the fused [2n, d] matrix, gate at even rows, up
                              at odd (gate and up then left empty); without it gpt-oss's gate and up
                              are the row halves [0, n) / [n, 2n) of that matrix; down as above */
} moesz_expert_mats;

/* How the forward pass reaches experts. For each MoE layer and batch the
 * engine calls get() once per expert some token was routed to (and once per
 * shared expert), computes with the views, then calls release() with the
 * same (layer, expert, shared); views stay valid in between. shared = 1 asks
 * for shared expert E (Qwen2: E = 0; DeepSeek: the fused shared MLP, E = 0).
 * Dense layers' MLPs (cfg.is_moe[L] == 0: Llama, DeepSeek's first_k_dense
 * layers, Qwen2's mlp_only_layers) are the one-expert case, as in
 * moesz_model_expert: expert 0, shared 0 of such a layer.
 * route() (optional, may be NULL) is told which routed experts layer L
 * needs for the current batch before the first get() of that layer, and
 * hidden [n_tokens, d] holds the normalised inputs of the MoE block, so a
 * cache can plan loads or predict the next layer. get() errors abort the
 * forward pass with that error. Calls come from one thread at a time, unless
 * the provider sets `concurrent` and siblings of the engine step at once. */
typedef struct moesz_expert_provider {
  void *ctx;
  int  (*get)(void *ctx, int layer, int expert, int shared, moesz_expert_mats *out,
              moesz_error *err);
  void (*release)(void *ctx, int layer, int expert, int shared);
  void (*route)(void *ctx, int layer, const int32_t *experts, int n_experts,
                const float *hidden, int n_tokens);
  void (*destroy)(void *ctx);      /* optional; called by moesz_engine_close if owned */
  /* optional: get() of the n distinct routed experts experts[0..n) of a layer
   * into out[experts[i]], all or nothing (on failure none stays held). The
   * container's provider loads the missing ones at once on its own threads;
   * NULL: the engine calls get() one by one. */
  int  (*get_many)(void *ctx, int layer, const int32_t *experts, int n, moesz_expert_mats *out,
                   moesz_error *err);
  /* 1: get, release and route may be called from several threads at once
   * (what moesz_engine_open_sibling needs); 0: from one thread at a time */
  int concurrent;
} moesz_expert_provider;

/* The default provider: zero-copy views into m's mmap'd safetensors
 * (moesz_model_expert). m must outlive the provider. */
int moesz_expert_provider_mmap(const moesz_model *m, moesz_expert_provider *out,
                               moesz_error *err);
/* gpt-oss's provider over m (src/infer/provider_oss.c): gate and up as the row
 * halves of the interleaved gate_up (see moesz_model_expert) and down, in
 * row-major buffers held from get() to release() (copies of unquantized
 * stacked experts), or as MOESZ_VIEW_MXFP4 views of MXFP4 blocks + scales,
 * which the kernels multiply as they lie. The engine uses it when it is given no provider for a gpt-oss
 * model. destroy frees it. */
int moesz_expert_provider_gptoss(const moesz_model *m, moesz_expert_provider *out, moesz_error *err);

/* Opens an engine over an open model, with experts reached through prov
 * (NULL = the mmap provider). own_model != 0 hands m to the engine (closed by
 * moesz_engine_close); own_provider != 0 makes close call prov->destroy. The
 * dense weights (embeddings, attention, norms, routers, lm_head) are read
 * from m->st. */
int moesz_engine_open_model(moesz_model *m, int own_model, const moesz_expert_provider *prov,
                            int own_provider, const moesz_engine_opts *o, moesz_engine **out,
                            moesz_error *err);
const moesz_model *moesz_engine_model(const moesz_engine *e);

/* Opens an engine over a .msz container (src/container): dense weights used
 * in place, routed experts decoded on demand into an expert cache with the
 * given budget and policy (co may be NULL: unlimited LRU). *cache (optional)
 * receives the cache for its statistics; it is owned by the engine. */
/* 1 if path is a .msz container (moesz_engine_open then serves it with an
 * unlimited cache). */
int moesz_engine_is_msz(const char *path);
struct moesz_cache_opts;
struct moesz_cache;
int moesz_engine_open_msz(const char *path, const struct moesz_cache_opts *co, const moesz_engine_opts *o,
                          moesz_engine **out, struct moesz_cache **cache, moesz_error *err);

/* Opens a sibling of e: an engine with its own scratch and `threads`
 * threads over e's model and expert provider, whose steps may run at the
 * same time as e's and other siblings' (one thread each): e.g. a server's
 * workers, one per core. It steps the sequences created by e (and
 * by e's other siblings); its misses load one at a time on its own thread
 * (no get_many). Needs a provider with `concurrent` set (the mmap and .msz
 * providers; not gpt-oss's); close every sibling before e. */
int moesz_engine_open_sibling(moesz_engine *e, int threads, moesz_engine **out, moesz_error *err);

/* Counters since open (or the last reset_stats). */
typedef struct moesz_engine_stats {
  uint64_t tokens;            /* tokens forwarded */
  uint64_t forward_calls;     /* moesz_engine_forward calls */
  uint64_t expert_gets;       /* provider get() calls (routed + shared + dense) */
  uint64_t expert_tokens;     /* sum over routed get() of tokens routed there */
  double seconds;             /* wall time inside moesz_engine_forward */
} moesz_engine_stats;
void moesz_engine_stats_get(const moesz_engine *e, moesz_engine_stats *out);
void moesz_engine_stats_reset(moesz_engine *e);

/* --------------------------------------------------------------- sampler */

/* Sampling state; no global RNG. temperature <= 0 is greedy (argmax, lowest
 * id on ties); otherwise softmax(logits / temperature), restricted to the
 * smallest set of most likely tokens whose mass reaches top_p (top_p >= 1 or
 * <= 0: no restriction), drawn with a xorshift RNG seeded from seed. */
typedef struct moesz_sampler {
  float temperature;
  float top_p;
  uint64_t rng;           /* xorshift64* state, never 0 */
  int cap;                /* scratch capacity (entries) */
  void *scratch;          /* [cap] (prob, id) pairs, owned */
} moesz_sampler;

void moesz_sampler_init(moesz_sampler *s, float temperature, float top_p, uint64_t seed);
void moesz_sampler_free(moesz_sampler *s);
/* Returns the sampled id in [0, n), or a negative moesz_status (MOESZ_E_NOMEM,
 * MOESZ_E_ARG for n <= 0). logits is not modified. */
int32_t moesz_sampler_sample(moesz_sampler *s, const float *logits, int n);
/* Index of the largest value (first on ties); -1 if n <= 0. */
int32_t moesz_argmax(const float *x, int n);

#endif
