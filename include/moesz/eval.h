/* moesz/eval.h - judging a model (src/eval): perplexity with sliding windows
 * exactly as the Hugging Face perplexity guide computes it, KL(ref || model)
 * and top-1 agreement against a reference model on the same windows, and
 * log-likelihood scoring of multiple-choice / cloze tasks as
 * lm-evaluation-harness does it. */
#ifndef MOESZ_EVAL_H
#define MOESZ_EVAL_H
#include "moesz/base.h"
#include "moesz/infer.h"
#include "moesz/text.h"
#include "moesz/container.h"

/* One window of the sliding-window scheme: tokens [begin, end) are fed, the
 * predictions of tokens [score_from, end) are scored (score_from >= begin + 1). */
typedef struct moesz_window { size_t begin, end, score_from; } moesz_window;
/* Windows for n tokens with context ctx and stride (HF guide: begin steps by
 * stride; each window scores what the previous did not). Returns the count
 * written (at most cap; call with cap 0 to size). ctx >= 2, 1 <= stride <= ctx. */
size_t moesz_ppl_windows(size_t n, size_t ctx, size_t stride, moesz_window *out, size_t cap);

typedef struct moesz_ppl_result {
  double nll;              /* total negative log-likelihood (nats) */
  size_t tokens;           /* scored tokens */
  double ppl;              /* exp(nll / tokens) */
  double kl;               /* mean KL(ref || model) per scored token (nats), with a reference */
  double top1;             /* fraction of scored tokens where both argmaxes agree */
  double ref_ppl;          /* the reference's perplexity on the same tokens */
  double seconds;
} moesz_ppl_result;

/* Perplexity of ids[0..n) under e; with ref != NULL also KL and top-1
 * against ref (both must share the vocabulary). progress: 1 = a line on stderr. */
int moesz_eval_ppl(moesz_engine *e, moesz_engine *ref, const int32_t *ids, size_t n, size_t ctx, size_t stride,
                   int progress, moesz_ppl_result *out, moesz_error *err);
/* As moesz_eval_ppl, but e reads each window one token at a time (one
 * forward call per token, as generation does: the decode kernels), ref still
 * a window at a time. Same windows, same scores up to the kernels' rounding. */
int moesz_eval_ppl_decode(moesz_engine *e, moesz_engine *ref, const int32_t *ids, size_t n, size_t ctx,
                          size_t stride, int progress, moesz_ppl_result *out, moesz_error *err);

/* Sum of log P(cont | ctx) over the continuation tokens, and whether every
 * continuation token is the greedy argmax. n_ctx >= 1. */
int moesz_eval_loglik(moesz_engine *e, const int32_t *ctx, size_t n_ctx, const int32_t *cont, size_t n_cont,
                      double *ll, int *greedy, moesz_error *err);

typedef struct moesz_task_result {
  size_t n;                /* items scored */
  double acc, acc_stderr;
  double acc_norm, acc_norm_stderr;   /* multiple choice: loglik / characters of the choice */
  double ppl;              /* cloze (LAMBADA): exp(-mean loglik) */
  int cloze;               /* 1 for context/continuation tasks */
  double seconds;
} moesz_task_result;

/* BOS in task scoring, as lm-evaluation-harness's add_bos_token. */
typedef enum moesz_bos_mode {
  MOESZ_BOS_AUTO = 0,   /* as the tokenizer's post-processor does (the harness's default) */
  MOESZ_BOS_YES,        /* always, once (not doubled when the tokenizer adds it) */
  MOESZ_BOS_NO          /* never */
} moesz_bos_mode;
int moesz_bos_mode_parse(const char *s, moesz_bos_mode *out);   /* "auto" | "yes" | "no" */

/* The tokens lm-evaluation-harness scores for the request (context,
 * continuation): with a non-empty context, all trailing whitespace of the
 * context (Python's str.isspace) moves to the continuation, whole =
 * enc(context + continuation), ctx = enc(context), cont = whole[len(ctx):],
 * each encoding with BOS as bos says; with an empty context (or one of
 * whitespace only), cont = enc(context + continuation) without special tokens and ctx = [BOS] (EOS when the
 * tokenizer has no BOS), unless cont already starts with that token, which
 * then becomes the context. Caller frees *ctx and *cont. */
int moesz_eval_encode_pair(const moesz_tok *t, const char *context, const char *continuation, moesz_bos_mode bos,
                           int32_t **ctx, size_t *n_ctx, int32_t **cont, size_t *n_cont, moesz_error *err);

/* Runs a task file (JSON lines; formats: {query, choices, gold},
 * {context_options, continuation, gold}, {context, continuation}); limit 0 = all. */
int moesz_eval_task(moesz_engine *e, const moesz_tok *t, const char *path, size_t limit, moesz_bos_mode bos,
                    int progress, moesz_task_result *out, moesz_error *err);
/* ------------------------------------------------------------- sweep
 * Layer sensitivity (src/eval/sweep.c): for each cell (layer group, error
 * kind, bound, seed) only that group's routed expert weights are perturbed
 * and the model is scored against the unperturbed one on the same tokens:
 * KL(original || perturbed), top-1 agreement, perplexity, and with the codec
 * the group's expert bytes. docs/EVAL.md "Sweep". */
typedef enum moesz_sweep_err {
  MOESZ_SWEEP_CODEC = 0,   /* the real codec round trip (entropy pipeline) at the bound */
  MOESZ_SWEEP_GAUSSIAN,    /* w + N(0, eb^2) */
  MOESZ_SWEEP_UNIFORM      /* w + U(-eb, eb) */
} moesz_sweep_err;
const char *moesz_sweep_err_name(moesz_sweep_err e);
int moesz_sweep_err_parse(const char *s, moesz_sweep_err *out);   /* "codec" | "gaussian" | "uniform" */

typedef struct moesz_sweep_group {
  char name[48];           /* letters, digits, '_', '-', '.' */
  int first, last;         /* layers [first, last]; their MoE layers' routed experts are perturbed */
} moesz_sweep_group;

/* Groups from a spec: "auto" (shallow / middle / deep thirds of the layers,
 * and all) or comma-separated items RANGE or NAME=RANGE (RANGE: A-B, A or
 * A-); per_layer appends one group per MoE layer (named L<i>). Each group
 * must hold a MoE layer. Caller frees *out. */
int moesz_sweep_groups(const moesz_config *cfg, const char *spec, int per_layer, moesz_sweep_group **out, int *n,
                       moesz_error *err);

typedef struct moesz_sweep_opts {
  const moesz_sweep_group *groups;
  int n_groups;
  const double *ebs;       /* [n_ebs] bounds > 0 */
  int n_ebs;
  int eb_mode;             /* MOESZ_EB_ABS / REL / STD (codec.h): eb scaled by 1, by the matrix's value
                              range, or by its std - the codec's meaning, applied per matrix to noise too */
  const moesz_sweep_err *errs;   /* [n_errs] */
  int n_errs;
  int seeds;               /* noise kinds: seeds 0..seeds-1, one cell each; the codec: seed 0 only */
  size_t ctx, stride;      /* perplexity windows (moesz_eval_ppl) */
  int threads;             /* engine and codec threads; 0 = all cores */
  int progress;            /* progress with ETA on stderr */
  /* task accuracy per cell (moesz_eval_task, BOS as the tokenizer adds it):
   * DIR/tasks.csv and tasks.md; the unperturbed model's accuracy beside it */
  const char *const *tasks;   /* [n_tasks] JSON-lines task files, or NULL */
  int n_tasks;
  size_t task_limit;       /* items per task, 0 = all */
  const moesz_tok *tok;    /* the model's tokenizer (needed with tasks) */
} moesz_sweep_opts;

/* One cell's results, one row of DIR/results.csv. */
typedef struct moesz_sweep_row {
  char group[48];
  int first, last;
  moesz_sweep_err err;
  int eb_mode;
  double eb;
  int seed;
  size_t tokens;           /* scored tokens */
  double kl, top1, ppl, ref_ppl;
  uint64_t raw_bytes;      /* the group's routed expert matrices, original dtype */
  uint64_t stored_bytes;   /* their codec streams (codec cells; 0 for noise) */
  double seconds;
} moesz_sweep_row;

typedef struct moesz_sweep_summary { int cells, skipped, ran; } moesz_sweep_summary;

/* One task result of one cell, one row of DIR/tasks.csv. */
typedef struct moesz_sweep_task_row {
  char group[48];
  int first, last;
  moesz_sweep_err err;
  int eb_mode;
  double eb;
  int seed;
  size_t tokens;           /* the cell's key, as in results.csv */
  char task[64];           /* the task file's name without folder and .jsonl */
  size_t items;            /* items scored */
  double acc, acc_norm;    /* perturbed model (acc_norm 0 for tasks without it) */
  double ref_acc, ref_acc_norm;   /* the unperturbed model on the same items */
} moesz_sweep_task_row;

/* Runs every cell of o over ids[0..n) with model m (its routed experts
 * perturbed through an expert provider; the reference is m itself) and
 * writes DIR/results.csv (rewritten atomically after each cell; cells already
 * in it with the same key - group, layers, error, eb mode, eb, seed, tokens -
 * are skipped, so an interrupted sweep resumes), results.json, results.md
 * and one SVG per metric (kl.svg, top1.svg, ppl.svg: metric vs eb per group
 * and error). With tasks, each cell also scores them on the perturbed model
 * into DIR/tasks.csv (same resume rule: a cell runs again only for what is
 * missing from either file) and tasks.md. dir is created if absent. */
int moesz_sweep_run(moesz_model *m, const int32_t *ids, size_t n, const moesz_sweep_opts *o, const char *dir,
                    moesz_sweep_summary *sum, moesz_error *err);
/* Parses the text of a results.csv (len bytes, need not be NUL-terminated)
 * into *rows (caller frees); a header other than the sweep's, or a line that
 * is not a well-formed row, is MOESZ_E_FORMAT naming the line. */
int moesz_sweep_csv_parse(const char *text, size_t len, moesz_sweep_row **rows, size_t *n, moesz_error *err);
/* Parses the text of a tasks.csv as moesz_sweep_csv_parse does results.csv. */
int moesz_sweep_tasks_csv_parse(const char *text, size_t len, moesz_sweep_task_row **rows, size_t *n,
                                moesz_error *err);
/* Writes results.json, results.md and the SVGs of rows into dir (sweep_report.c). */
int moesz_sweep_report(const moesz_sweep_row *rows, size_t n, const char *dir, moesz_error *err);
/* ------------------------------------------------------------- policy
 * Per-layer bounds chosen under a quality target (src/eval/policy.c,
 * docs/EVAL.md "Bound policy", `moesz compress --target-kl`): each MoE
 * layer's sensitivity is measured with the sweep (codec cells, one layer at a
 * time, every candidate bound: the metric's rise and the layer's stored
 * expert bytes), the bounds that minimise the predicted bytes under the
 * target are chosen assuming the layers' rises add up, the container is
 * written and its rise measured end to end; a miss tightens the budget and
 * tries again. */
typedef enum moesz_policy_metric {
  MOESZ_POLICY_KL = 0,     /* target: mean KL(original || compressed) per token, nats */
  MOESZ_POLICY_PPL         /* target: relative perplexity rise, ppl / ppl_original - 1 */
} moesz_policy_metric;

/* The measurements a plan is made from; layer i at bound j costs
 * cost[i * n_ebs + j] (KL, or log(ppl / ppl_original) for the perplexity
 * target) and bytes[i * n_ebs + j] stored expert bytes. */
typedef struct moesz_policy_table {
  int n_layers;            /* layers planned */
  int n_ebs;               /* candidate bounds, ascending */
  const double *ebs;       /* [n_ebs] */
  const double *cost;      /* [n_layers * n_ebs] */
  const uint64_t *bytes;   /* [n_layers * n_ebs] */
} moesz_policy_table;

/* Greedy marginal bytes per unit of cost: every layer starts at the smallest
 * bound; a layer's cost is made non-decreasing in the bound (the running
 * maximum, negatives clipped to 0, so noise in the measurements cannot buy a
 * bound); while a move fits the budget, the move (a layer to any larger
 * bound that saves bytes) with the most bytes saved per unit of added cost
 * is taken (cost-free moves first). choice[i]: index into ebs. The sums of
 * the chosen cells are the prediction. MOESZ_E_RANGE when even the smallest
 * bounds exceed the budget. */
int moesz_policy_plan(const moesz_policy_table *t, double budget, int *choice, double *pred_cost,
                      uint64_t *pred_bytes, moesz_error *err);

/* Writes bounds (layer_eb[L] > 0, 0 = no bound given) as a --layer-eb spec,
 * runs of equal bounds merged ("0-1:0.002,2-7:0.01"), each bound printed with
 * the fewest digits that read back to the same double. -1 if it does not fit. */
int moesz_policy_spec(const double *layer_eb, int n_layers, char *out, size_t cap);

struct moesz_policy_result;
typedef struct moesz_policy_opts {
  moesz_policy_metric metric;
  double target;           /* > 0: KL nats/token, or the relative perplexity rise (0.01 = 1%) */
  const double *ebs;       /* [n_ebs] candidate bounds, ascending, > 0 (in msz->eb_mode) */
  int n_ebs;
  size_t ctx, stride;      /* windows over the calibration tokens (moesz_eval_ppl) */
  int tries;               /* compress + verify rounds, >= 1 */
  int threads;             /* engine and codec threads; 0 = all cores */
  int progress;            /* the sweep's progress line and one line per try on stderr */
  const moesz_msz_opts *msz;   /* container options (method MOESZ_MSZ_CODEC or _COMPUTE); layer_eb is the policy's */
  /* called after each try with its plan and measurement (res as returned); may be NULL */
  void (*report)(void *user, const struct moesz_policy_result *res);
  void *user;
} moesz_policy_opts;

typedef struct moesz_policy_result {
  double *layer_eb;        /* [n_layers] chosen bounds (0 for layers without experts); caller frees */
  int tries;               /* rounds run */
  double budget;           /* the budget of the plan that was kept (target, or tightened) */
  double predicted;        /* the plan's predicted cost (KL, or log of the perplexity ratio) */
  uint64_t predicted_bytes;   /* the plan's predicted expert bytes (sum of the chosen cells) */
  double kl, top1, ppl, ref_ppl;   /* measured end to end on the calibration tokens */
  size_t tokens;           /* scored tokens */
  moesz_msz_summary msz;   /* the written container */
} moesz_policy_result;

/* Measures (sweep cells in sweep_dir: results.csv there is reused, so a rerun
 * with another target costs no new cell), plans, writes the container at out
 * and verifies it on ids[0..n); retries with a tighter budget when the
 * measured rise exceeds the target. On success out holds the container
 * whose measured rise is within the target; when no try meets it, out is
 * removed and MOESZ_E_RANGE returned (res still holds the last try). */
int moesz_policy_run(moesz_model *m, const int32_t *ids, size_t n, const moesz_policy_opts *o, const char *sweep_dir,
                     const char *out, moesz_policy_result *res, moesz_error *err);
#endif
