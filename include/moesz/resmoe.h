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

/* The model-to-model transform: layers[L] != 0 selects MoE layer L. Writes
 * out_dir/model.safetensors (original names, shapes, dtypes; non-expert
 * tensors bit-exact), copies config.json and tokenizer files, and the JSON
 * report to report_path (optional). The folder is written beside out_dir
 * and renamed into place at the end; an existing non-empty out_dir is refused
 * unless o->force, and so is an output that is (or holds) an input file. */
int moesz_resmoe_model(const moesz_model *m, const char *out_dir, const moesz_resmoe_opts *o, const uint8_t *layers,
                       const char *report_path, int progress, moesz_error *err);
#endif
