/* moesz/resmoe.h - ResMoE (src/resmoe): per MoE layer, a Wasserstein
 * barycenter of the experts (alternating exact linear assignment of hidden
 * units), and per expert a compressed residual against it (magnitude pruning
 * with one threshold, or a truncated SVD whose left factor the three blocks
 * share); restoration W' = B + R' in the permuted basis, which computes the
 * same function, so no permutation is stored. Baselines through the same
 * path: plain pruning, plain SVD, unaligned mean + pruned residual. */
#ifndef MOESZ_RESMOE_H
#define MOESZ_RESMOE_H
#include "moesz/base.h"
#include "moesz/model.h"
#include "moesz/codec.h"

/* Exact linear assignment (minimisation) on a dense n x n cost (row-major):
 * assign[i] = column of row i. u, v (optional, [n]) receive dual potentials
 * with u[i] + v[j] <= cost[i][j] and equality on the assignment. */
int moesz_lap_solve(const double *cost, int n, int *assign, double *u, double *v, moesz_error *err);

typedef enum { MOESZ_RESMOE = 0, MOESZ_RESMOE_PRUNE, MOESZ_RESMOE_SVD, MOESZ_RESMOE_MEAN_RESIDUAL } moesz_resmoe_method;
typedef enum { MOESZ_RESIDUAL_PRUNE = 0, MOESZ_RESIDUAL_SVD } moesz_residual_kind;

typedef struct moesz_resmoe_opts {
  moesz_resmoe_method method;
  moesz_residual_kind residual;   /* for resmoe */
  double keep;                    /* fraction of each expert's parameters kept (default 0.25) */
  int init_mean;                  /* barycenter starts from the mean (default: expert 0) */
  int max_iter;                   /* default 100 */
  double tol;                     /* stop when ||B_new - B||_F^2 <= tol (default 1e-7) */
  int threads;
  int force;                      /* moesz_resmoe_model: replace an existing non-empty model folder */
} moesz_resmoe_opts;

typedef struct moesz_resmoe_report {
  int iters;
  double objective[101];          /* sum_k ||P_k X_k - B||_F^2 after each iteration */
  double *rel_err;                /* [E] ||W'_k - P_k X_k||_F / ||X_k||_F (caller frees) */
  uint64_t stored_params, original_params;
  uint64_t stored_bytes, original_bytes;   /* at the layer's dtype; pruned indices as u32 */
  double seconds, lap_seconds;
} moesz_resmoe_report;

/* One layer: X[k] is expert k as an n x D row-major matrix (D = 3d for
 * SwiGLU: [gate | up | down^T]). On return X[k] holds the restored expert in
 * the same layout (rows in the barycenter's order for resmoe). es = bytes
 * per parameter for the accounting. */
int moesz_resmoe_layer(float **X, int E, int n, int D, size_t es, const moesz_resmoe_opts *o,
                       moesz_resmoe_report *rep, moesz_error *err);

/* The shared expert B [n, D] and the alignments perm[k] ([E][n]; row j of
 * the aligned expert k is row perm[k][j] of X[k]): alternating assignment for
 * MOESZ_RESMOE, the unaligned mean for MEAN_RESIDUAL, zero for PRUNE / SVD.
 * Fills rep->iters, objective and lap_seconds (rep zeroed by the caller). */
int moesz_resmoe_barycenter(float *const *X, int E, int n, int D, const moesz_resmoe_opts *o, float *B, int **perm,
                            moesz_resmoe_report *rep, moesz_error *err);
/* Keeps the floor(keep m) largest |r[i]| (one threshold, ties in order) and
 * zeroes the rest; 0, or -1 when out of memory. */
int moesz_resmoe_prune(float *r, size_t m, double keep);

/* ---------------------------------------------------------------------
 * Stored form (src/resmoe/stored.c): a layer as the codec stream of its
 * barycenter B' (F32 [n, D]) plus one residual blob per expert, taken
 * against the decoded B' so the barycenter's coding error does not add up
 * (bounds: docs/RESMOE.md; blob format: docs/CONTAINER.md). */

#define MOESZ_RESIDUAL_MAGIC "MZR1"
#define MOESZ_RESIDUAL_HEADER 40

typedef enum { MOESZ_POS_DELTA_ZSTD = 0, MOESZ_POS_BITMAP = 1, MOESZ_POS_BITMAP_ZSTD = 2 } moesz_pos_coding;

typedef struct moesz_resmoe_stored {
  int E, n, D;
  moesz_residual_kind kind;
  int rank;                   /* SVD residuals: rank of every expert's factors (0 for prune) */
  void *bary;                 /* codec stream of B' [n, D] (F32) */
  size_t bary_len;
  double bary_eb;             /* absolute bound of B' */
  void **res;                 /* [E] residual blobs */
  size_t *res_len;            /* [E] */
  double *res_eb;             /* [E] absolute bound of the residual's coded values (SVD: max of the two factors) */
  double *thr;                /* [E] prune: largest |x - b'| left out (0 for SVD) */
  double *max_err;            /* [E] max |w' - x| over the aligned expert, w' restored in F32 */
  uint64_t *kept;             /* [E] prune: values kept; SVD: rank * (n + D) */
  int *perm;                  /* [E * n] row j of restored expert k is row perm[k * n + j] of X[k] */
  moesz_resmoe_report rep;    /* barycenter iterations and timing (rel_err unused) */
} moesz_resmoe_stored;

/* Encodes one layer (X[k] expert k as n x D rows, left unchanged) with o's
 * method (RESMOE aligned barycenter, MEAN_RESIDUAL unaligned mean, PRUNE /
 * SVD zero base = plain pruning / low rank), o->residual, o->keep in (0, 1];
 * cp: the codec's bound, mode and pipeline for B', values and factors.
 * Fails with MOESZ_E_ARG for keep outside (0, 1] or an SVD rank of 0. */
int moesz_resmoe_encode(float *const *X, int E, int n, int D, const moesz_resmoe_opts *o, const moesz_codec_params *cp,
                        moesz_resmoe_stored *out, moesz_error *err);
void moesz_resmoe_stored_free(moesz_resmoe_stored *s);

typedef struct moesz_residual_info {
  moesz_residual_kind kind;
  moesz_pos_coding pos;       /* prune: how positions are coded */
  uint32_t rows, cols;        /* n, D */
  uint64_t count;             /* prune: values kept; SVD: rank */
  uint64_t a_len, b_len;      /* prune: positions, values; SVD: U' [n, r], V' [r, D] */
} moesz_residual_info;

/* Validates a residual blob's header and section sizes (no payload decoded). */
int moesz_resmoe_residual_info(const void *blob, size_t len, moesz_residual_info *info, moesz_error *err);
/* X [n, D] holds B' on entry; adds the decoded residual (sparse add for
 * prune, X += U' V' for SVD), giving the restored aligned expert W'. Rejects
 * a blob of another shape, positions outside the matrix, rank 0, corrupt or
 * truncated sections. On error X is unspecified. */
int moesz_resmoe_residual_add(const void *blob, size_t len, int n, int D, float *X, moesz_error *err);

/* The model-to-model transform: layers[L] != 0 selects MoE layer L. Writes
 * out_dir/model.safetensors (original names, shapes, dtypes; non-expert
 * tensors bit-exact), copies config.json and tokenizer files, and the JSON
 * report to report_path (optional). The folder is written beside out_dir
 * and renamed into place at the end; an existing non-empty out_dir is refused
 * unless o->force, and so is an output that is (or holds) an input file. */
int moesz_resmoe_model(const moesz_model *m, const char *out_dir, const moesz_resmoe_opts *o, const uint8_t *layers,
                       const char *report_path, int progress, moesz_error *err);
#endif
