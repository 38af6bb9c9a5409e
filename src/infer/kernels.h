/* infer/kernels.h - the hot loops of the forward pass: linear layers over
 * F32/BF16/F16 weights and the codec's compute layout (matrix-vector for one
 * token, a small-batch path for a few tokens over BF16/F16 rows, packed
 * blocked matrix-matrix for larger batches), RMSNorm, RoPE
 * (rotate-half), softmax, SiLU, causal attention with GQA over an f32 KV
 * cache. AVX2+FMA(+F16C) and, for matvecs, the packed path and the compute
 * layout, AVX-512 versions (kernels_x512.c for the packed path and the
 * AVX512_BF16 dot products of kctx.bf16x) are picked at run time (cpuid;
 * kctx.simd) with scalar fallbacks that compute the same function. Multithreaded over output rows (linear) and
 * (token, head) pairs (attention) through base/pool; calls with little work
 * run on the caller's thread. Owned by src/infer. */
#ifndef MOESZ_INFER_KERNELS_H
#define MOESZ_INFER_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "base/pool.h"
#include "moesz/model.h"

/* Execution context shared by the kernels of one engine. */
typedef struct moesz_kctx {
  moesz_pool *pool;        /* NULL = serial */
  int nthreads;            /* pool size (>= 1) */
  int simd;                /* 1: use the AVX2 paths (only if the CPU has them); 2: AVX-512 F/BW/VNNI
                              paths too, where kernels have them (F32/BF16 matvec, BF16 small batch, the
                              packed path's micro-kernel, compute layout); 3: also AVX512_VBMI, the
                              compute layout's one-token kernel, x exact or to 16 bits (moesz_kx_cl_rows) */
  size_t scratch_floats;   /* per-thread scratch size */
  float **scratch;         /* [nthreads][scratch_floats] packing / score buffers */
  uint64_t gen;            /* bumped per moesz_k_linear call */
  uint64_t *memo_gen;      /* [nthreads] call in which scratch holds split x (BF16) */
  const float **memo_x;    /* [nthreads] which x it holds (for the compute layout: split x, with the
                              gen's top bit set) */
  uint64_t *memo_shape;    /* [nthreads] small-batch split x: its token count and stride */
  int sb_max;              /* products of 2..sb_max tokens (at most 16) over row-major BF16/F16 rows
                              take the small-batch path (per token the one-token sums, each weight row
                              read once for several tokens); more tokens, and F32 rows, the packed path.
                              Default 12; 0 or 1: packed from 2 tokens (benchmarks) */
  int64_t serial_macs;     /* a moesz_k_linear / moesz_k_attention call of fewer multiply-adds runs its
                              tasks on the calling thread (same tasks, same results): a pool wake-up
                              costs about as much as 2^18 of one core's. Default 2^18; 0: always the pool */
  int no_int;              /* 1: compute-layout kernels take the float path only (benchmarks) */
  int cl_act;              /* compute layout, integer path: 0 = x split into two 16-bit halves per group
                              (the f32 product up to rounding); 1 = x rounded to 16 bits per 256 columns
                              (one multiply a code; |x error| <= 2^-16 of the block's largest |x|);
                              2 = as 1, and 4- and 2-bit groups against x rounded to 8 bits per 128 columns
                              (|x error| <= 2^-8 of the block's largest |x|; vpmaddubsw): one token's
                              rows mostly of 4- or 2-bit groups, and products of 5 or more tokens (the 8-bit tile,
                              moesz_k_cl8_rows) */
  int dpbf16;              /* set by moesz_kctx_init: the CPU has AVX512_BF16 and its kernels agree
                              with the AVX2 ones here (simd >= 2) */
  int bf16x;               /* 1: row-major BF16 weights against x rounded to BF16 (nearest even), by
                              vdpbf16ps, for any token count, where dpbf16 (else as 0); 0 = exact
                              (the f32 product of the BF16 weights and x). Default 0 */
  void (*bf16_rows)(const uint16_t *w, size_t ld, size_t cols, int nr, const uint16_t *xb, size_t ldb,
                    int nt, float *y, size_t ldy, int acc);
  void (*x_to_bf16)(const float *x, size_t ldx, int n, size_t cols, uint16_t *xb, size_t ldb);
                           /* the bf16x kernel and its x rounding: moesz_kx_bf16_rows and
                              moesz_kx_x_to_bf16 (kernels_x512.c); a test puts the same source built
                              against portable AVX-512 here to run the path on any CPU */
} moesz_kctx;

/* 1 if this CPU runs the AVX2+FMA+F16C kernels. */
int moesz_k_cpu_simd(void);
/* Sets up ctx for nthreads threads (pool may be NULL) with per-thread scratch
 * of at least scratch_floats. simd = -1: auto (the best the CPU has), 0:
 * scalar, 1: AVX2 if present, 2: AVX-512 where present (else AVX2). */
int moesz_kctx_init(moesz_kctx *c, moesz_pool *pool, int simd, size_t scratch_floats);
void moesz_kctx_free(moesz_kctx *c);
/* Scratch (floats per thread) the linear kernels need for matrices with at
 * most max_cols columns, and attention for max_ctx positions. */
size_t moesz_k_scratch_need(size_t max_cols, size_t max_ctx);

/* One linear map: Y[t, r] (+)= sum_c W[r, c] * X[t, c] for t < n, r < rows.
 * W is a matview (F32/BF16/F16, row-major or transposed); X [n, W.cols] with
 * row stride ldx; Y [n, W.rows] with row stride ldy. accumulate = 1 adds to Y. */
typedef struct moesz_kjob {
  moesz_matview w;
  const float *x; size_t ldx;
  float *y; size_t ldy;
  int n;
  int accumulate;
} moesz_kjob;

/* Runs several independent linear maps in one parallel region (tasks are row
 * chunks of every job). MOESZ_E_UNSUPPORTED for a dtype other than
 * F32/BF16/F16. */
int moesz_k_linear(moesz_kctx *c, const moesz_kjob *jobs, int njobs);
/* The same tasks as moesz_k_linear (so the same results, bit for bit), all on
 * the calling thread, using thread tid's scratch: for a task of a region of
 * c->pool (tid its thread) that runs several products itself, e.g. one MoE
 * expert's gate, up and down. Never wakes the pool. MOESZ_E_INTERNAL for tid
 * outside [0, nthreads). */
int moesz_k_linear_on(moesz_kctx *c, const moesz_kjob *jobs, int njobs, int tid);

/* Rows r0..r1 of a compute-layout matrix (moesz/codec.h) times nt tokens
 * x [nt, cols] (row stride ldx): y[t * ldy + (r - r0)] (+)= step * sum q x +
 * escapes. simd: 1 AVX2 paths, 2 also AVX-512 (kernels_cl.c), 3 one token at
 * act 0 or 1 through moesz_kx_cl_rows (kernels_x512.c); scratch (moesz_k_cl_scratch_bytes,
 * 32-byte aligned, or NULL: float path only) holds x split for the integer
 * path; act: how x meets the codes, as kctx.cl_act (0 exact, 1 16-bit x, 2
 * also 8-bit x for one token's 4-bit rows); have_xq = 1 says it already holds
 * this x (the same nt <= 4 tokens, the same act). Returns 1 when scratch then
 * holds these tokens' split x. moesz_k_linear calls it for views of dtype
 * MOESZ_VIEW_CL with 1 or 2 tokens. */
struct moesz_cl;
int moesz_k_cl_rows(const struct moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt,
                    float *y, size_t ldy, int acc, int simd, int act, void *scratch, int have_xq);
size_t moesz_k_cl_scratch_bytes(int64_t cols);
/* kctx.cl_act == 2, several tokens (AVX2): rows r0..r1 (at most 16) of a
 * compute-layout matrix times nt tokens with its groups of 1 to 4 bits against x
 * rounded to 8 bits per 128 columns (as one token's in decode), by vpmaddubsw
 * over the rows' codes rearranged once into bytes (the "8-bit tile"); groups
 * of other widths, and the escapes, against x in f32. Rows all mostly of
 * 2-bit groups skip the tile: their 2- and 4-bit groups meet 8-bit x straight
 * from the codes, four tokens at a time, groups of other widths f32 x. scratch (32-byte
 * aligned, scratch_bytes long) holds the tile and the tokens' 8-bit x;
 * have_xq = 1 says it already holds these nt tokens' (the last call returned
 * 2 for the same x); simd >= 2: the AVX512_VNNI kernel (kctx.simd, the same
 * results). Returns 0 if it did nothing (no AVX2, a non-finite x, or
 * more than one group in 8 of another width: the caller takes the f32 tile),
 * 2 if scratch now holds all nt tokens' 8-bit x, else 1. */
int moesz_k_cl8_rows(const struct moesz_cl *m, int64_t r0, int64_t r1, const float *x, size_t ldx, int nt, float *y,
                     size_t ldy, int acc, void *scratch, size_t scratch_bytes, int have_xq, int simd);
/* Rows r0..r1 of a compute-layout matrix as f32 into dst [r1 - r0, cols]: the
 * tile the batched (prompt) path multiplies, as it does for BF16 rows. */
void moesz_k_cl_unpack(const struct moesz_cl *m, int64_t r0, int64_t r1, float *dst, int simd);

/* dot(W row r, x) for one row of a matview (reference / tests). */
float moesz_k_row_dot(const moesz_matview *w, int64_t r, const float *x, int simd);

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] for each of n rows of width
 * d (strides ldx/ldo; in-place allowed). w may be NULL (no weight). */
void moesz_k_rmsnorm(float *out, size_t ldo, const float *x, size_t ldx, const float *w,
                     int n, int d, float eps);
/* HF rotate-half RoPE on nh heads of width hd (contiguous) at position pos;
 * inv_freq [hd/2]. */
void moesz_k_rope(float *x, int nh, int hd, int pos, const float *inv_freq);
/* In-place softmax of x[n] computed in fp32 (max-subtracted). */
void moesz_k_softmax(float *x, int n);
/* g[i] = silu(g[i]) * u[i]. */
void moesz_k_silu_mul(float *g, const float *u, size_t n);
/* Causal attention for n new tokens at positions pos0..pos0+n-1.
 * q [n, nh*hd] (row stride ldq); K/V caches [ctx, nkv*hd] hold positions
 * 0..pos0+n-1; out [n, nh*hd] (row stride ldo). Head h uses KV head
 * h / (nh / nkv); scores scaled by scale. Uses ctx scratch (>= pos0+n floats). */
void moesz_k_attention(moesz_kctx *c, const float *q, size_t ldq, const float *kc,
                       const float *vc, int pos0, int n, int nh, int nkv, int hd, float scale,
                       float *out, size_t ldo);

/* gpt-oss (kernels_oss.c). Attention as moesz_k_attention over the keys of
 * positions [p - window + 1, p] (window <= 0: all), with sinks[h] (NULL:
 * none) joining head h's softmax denominator as one more logit. */
void moesz_k_attention_sinks(moesz_kctx *c, const float *q, size_t ldq, const float *kc, const float *vc,
                             int pos0, int n, int nh, int nkv, int hd, float scale, int window,
                             const float *sinks, float *out, size_t ldo);
/* h[t, i] = (clamp(u, -limit, limit) + 1) * g * sigmoid(alpha * g) with
 * g = min(gu[t, 2i] + b[2i], limit), u = gu[t, 2i+1] + b[2i+1] (b may be NULL),
 * for n rows of width outputs (gu [n, 2 width], row strides ldgu / ldh). */
void moesz_k_swiglu_oss(const float *gu, size_t ldgu, const float *bias, int n, int width, float alpha,
                        float limit, float *h, size_t ldh);
/* YaRN inverse frequencies [dim / 2] (transformers' _compute_yarn_parameters,
 * float32); the cos/sin multiplier (attention factor) is the caller's. */
void moesz_k_yarn_inv_freq(int dim, float base, float factor, float beta_fast, float beta_slow, int orig_max_pos,
                           int truncate, float *inv_freq);
/* MXFP4 views (dtype MOESZ_VIEW_MXFP4, data a moesz_mxfp4_view): rows r0..r1
 * times one token x [cols] -> y[r - r0] (+)=, the e2m1 codes multiplied where
 * they lie, each group's sum times its scale; and rows r0..r1 unpacked to f32
 * [r1 - r0, cols] for the batched path. moesz_k_linear calls them. */
void moesz_k_mxfp4_rows(const moesz_mxfp4_view *m, int64_t r0, int64_t r1, const float *x, float *y, int acc, int simd);
void moesz_k_mxfp4_unpack(const moesz_mxfp4_view *m, int64_t r0, int64_t r1, float *dst);
#endif
