/* model/model.c - owns moesz_model: a model folder opened as config +
 * safetensors, every tensor classified once, an index from (layer, expert,
 * matrix) to the tensor that holds it (per-expert 2-D tensors or stacked 3-D
 * tensors in either orientation; gpt-oss's interleaved stacked experts and
 * MXFP4 blocks + scales), shape checks against the config, 2-D views of
 * expert matrices (MXFP4 views for gpt-oss) and parameter/byte counts by role. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moesz/model.h"
#include "moesz/tensor.h"

/* Matrix slots: 0 gate, 1 up, 2 down, 3 fused gate_up (stacked only). */
#define NSLOT 4
static int slot_of(moesz_mat m) { return (int)m - 1; }

struct moesz_model_index {
  int n_layers, n_experts;
  const moesz_tensor **legacy;                    /* [n_layers][n_experts][3] */
  const moesz_tensor *stk[MOESZ_MAX_LAYERS][NSLOT]; /* stacked [E, ., .] */
  uint8_t stk_t[MOESZ_MAX_LAYERS][NSLOT];         /* 1: stored [E, in, out] (transposed) */
  const moesz_tensor *shared[MOESZ_MAX_LAYERS][3];
  const moesz_tensor *dense[MOESZ_MAX_LAYERS][3];
  const moesz_tensor *by_role[MOESZ_MAX_LAYERS + 1][MOESZ_ROLE_COUNT]; /* [L + 1]; 0: model-wide */
  const moesz_tensor *mxb[MOESZ_MAX_LAYERS][NSLOT]; /* gpt-oss MXFP4 *_blocks [E, rows, cols/32, 16] */
  const moesz_tensor *mxs[MOESZ_MAX_LAYERS][NSLOT]; /* gpt-oss MXFP4 *_scales [E, rows, cols/32] */
};

static const char *MAT_NAMES[] = {"none", "gate", "up", "down", "gate_up"};

static const moesz_tensor **legacy_at(moesz_model_index *x, int L, int e, int s) {
  return &x->legacy[((size_t)L * (size_t)x->n_experts + (size_t)e) * 3 + (size_t)s];
}

/* Logical [rows, cols] of matrix slot s for width n (gate/up [n, d], down [d, n]). */
static void logical_shape(int s, int64_t n, int64_t d, int64_t *rows, int64_t *cols) {
  if (s == 2) { *rows = d; *cols = n; }
  else if (s == 3) { *rows = 2 * n; *cols = d; }
  else { *rows = n; *cols = d; }
}

static int check_2d(const moesz_tensor *t, int64_t rows, int64_t cols, moesz_error *err) {
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return moesz_error_set(err, MOESZ_E_FORMAT,
                           "tensor %s: shape does not match the config (expected [%lld, %lld])",
                           t->name, (long long)rows, (long long)cols);
  return MOESZ_OK;
}

/* Stacked [E, rows, cols] (transformers) or [E, cols, rows] (transposed). */
static int check_stacked(const moesz_tensor *t, int64_t E, int64_t rows, int64_t cols,
                         uint8_t *transposed, moesz_error *err) {
  if (t->ndim == 3 && t->shape[0] == E) {
    if (t->shape[1] == rows && t->shape[2] == cols) { *transposed = 0; return MOESZ_OK; }
    if (t->shape[1] == cols && t->shape[2] == rows) { *transposed = 1; return MOESZ_OK; }
  }
  return moesz_error_set(err, MOESZ_E_FORMAT,
                         "tensor %s: stacked expert shape does not match the config (expected "
                         "[%lld, %lld, %lld] or [%lld, %lld, %lld])",
                         t->name, (long long)E, (long long)rows, (long long)cols, (long long)E,
                         (long long)cols, (long long)rows);
}

static int shape_is(const moesz_tensor *t, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t want[4] = {a, b, c, d};
  if (t->ndim != nd) return 0;
  for (int i = 0; i < nd; i++)
    if (t->shape[i] != want[i]) return 0;
  return 1;
}

/* gpt-oss expert tensors of one layer: stacked as transformers holds them
 * (gate_up_proj [E, d, 2n], down_proj [E, n, d]: always the [E, in, out]
 * orientation, also when the sizes make it ambiguous), their biases [E, 2n]
 * / [E, d], or MXFP4 blocks [E, rows, cols/32, 16] and scales [E, rows,
 * cols/32] (U8) in the nn.Linear orientation (rows = 2n / d). */
static int gptoss_index(moesz_model_index *x, const moesz_config *c, const moesz_tensor *t,
                        const moesz_tensor_role *r, moesz_error *err) {
  int s = slot_of(r->mat), L = r->layer;
  int64_t E = c->n_experts, d = c->hidden, n = c->moe_intermediate;
  int64_t rows = s == 3 ? 2 * n : d, cols = s == 3 ? d : n;
  if (r->role == MOESZ_ROLE_EXPERT_BIAS) {
    if (!shape_is(t, 2, E, rows, 0, 0))
      return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: shape does not match the config (expected "
                             "[%lld, %lld])", t->name, (long long)E, (long long)rows);
    return MOESZ_OK;
  }
  if (r->mx) {
    if (cols % 32)
      return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: MXFP4 needs a multiple of 32 input "
                             "columns (config gives %lld)", t->name, (long long)cols);
    int ok = t->dtype == MOESZ_DT_U8 &&
             (r->mx == 1 ? shape_is(t, 4, E, rows, cols / 32, 16) : shape_is(t, 3, E, rows, cols / 32, 0));
    if (!ok)
      return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: MXFP4 %s must be U8 [%lld, %lld, %lld%s]",
                             t->name, r->mx == 1 ? "blocks" : "scales", (long long)E, (long long)rows,
                             (long long)(cols / 32), r->mx == 1 ? ", 16" : "");
    if (r->mx == 1) x->mxb[L][s] = t;
    else x->mxs[L][s] = t;
    return MOESZ_OK;
  }
  if (!shape_is(t, 3, E, cols, rows, 0))
    return moesz_error_set(err, MOESZ_E_FORMAT, "tensor %s: shape does not match the config (expected "
                           "[%lld, %lld, %lld])", t->name, (long long)E, (long long)cols, (long long)rows);
  x->stk[L][s] = t;
  x->stk_t[L][s] = 1;
  return MOESZ_OK;
}

static int build_index(moesz_model *m, moesz_error *err) {
  const moesz_config *c = &m->cfg;
  moesz_model_index *x = calloc(1, sizeof *x);
  if (!x) return moesz_error_set(err, MOESZ_E_NOMEM, "model index");
  m->idx = x;
  x->n_layers = c->n_layers;
  x->n_experts = c->n_experts;
  size_t nl = (size_t)c->n_layers * (size_t)(c->n_experts > 0 ? c->n_experts : 1) * 3;
  x->legacy = calloc(nl, sizeof *x->legacy);
  if (!x->legacy) return moesz_error_set(err, MOESZ_E_NOMEM, "model index");
  size_t n = moesz_st_count(m->st);
  m->roles = calloc(n ? n : 1, sizeof *m->roles);
  if (!m->roles) return moesz_error_set(err, MOESZ_E_NOMEM, "model roles");
  int64_t d = c->hidden;
  for (size_t i = 0; i < n; i++) {
    const moesz_tensor *t = moesz_st_at(m->st, i);
    moesz_tensor_role *r = &m->roles[i];
    moesz_tensor_classify(c, t->name, r);
    int s = slot_of(r->mat), rc;
    int64_t rows, cols;
    if (!r->cross && r->role != MOESZ_ROLE_OTHER && !x->by_role[r->layer + 1][r->role])
      x->by_role[r->layer + 1][r->role] = t;
    if (c->arch == MOESZ_ARCH_GPT_OSS && (r->role == MOESZ_ROLE_EXPERT || r->role == MOESZ_ROLE_EXPERT_BIAS)) {
      if ((rc = gptoss_index(x, c, t, r, err))) return rc;
      continue;
    }
    switch (r->role) {
      case MOESZ_ROLE_EXPERT:
        if (r->stacked) {
          logical_shape(s, c->moe_intermediate, d, &rows, &cols);
          if ((rc = check_stacked(t, c->n_experts, rows, cols, &x->stk_t[r->layer][s], err)))
            return rc;
          x->stk[r->layer][s] = t;
        } else {
          logical_shape(s, c->moe_intermediate, d, &rows, &cols);
          if ((rc = check_2d(t, rows, cols, err))) return rc;
          *legacy_at(x, r->layer, r->expert, s) = t;
        }
        break;
      case MOESZ_ROLE_SHARED_EXPERT:
        logical_shape(s, c->shared_intermediate, d, &rows, &cols);
        if ((rc = check_2d(t, rows, cols, err))) return rc;
        x->shared[r->layer][s] = t;
        break;
      case MOESZ_ROLE_DENSE_MLP:
        logical_shape(s, c->intermediate, d, &rows, &cols);
        if ((rc = check_2d(t, rows, cols, err))) return rc;
        x->dense[r->layer][s] = t;
        break;
      default: break;
    }
  }
  /* Every routed expert matrix of every MoE layer must be reachable (unless
   * the experts live elsewhere, as in a container). */
  if (m->experts_elsewhere) return MOESZ_OK;
  if (c->arch == MOESZ_ARCH_GPT_OSS) {
    for (int L = 0; L < c->n_layers; L++)
      for (int s = 2; c->is_moe[L] && s <= 3; s++)
        if (!x->stk[L][s] && !(x->mxb[L][s] && x->mxs[L][s]))
          return moesz_error_set(err, MOESZ_E_FORMAT, "layer %d: experts.%s missing from the checkpoint "
                                 "(neither stacked nor MXFP4 blocks + scales)", L,
                                 s == 3 ? "gate_up_proj" : "down_proj");
    return MOESZ_OK;
  }
  int nmat = c->arch == MOESZ_ARCH_SWITCH ? 2 : 3;
  static const int SWITCH_SLOTS[] = {0, 2}, SWIGLU_SLOTS[] = {0, 1, 2};
  const int *slots = c->arch == MOESZ_ARCH_SWITCH ? SWITCH_SLOTS : SWIGLU_SLOTS;
  for (int L = 0; L < c->n_layers; L++) {
    if (!c->is_moe[L]) continue;
    for (int k = 0; k < nmat; k++) {
      int s = slots[k];
      int have_stk = x->stk[L][s] || (s < 2 && x->stk[L][3]);
      for (int e = 0; e < c->n_experts; e++) {
        if (*legacy_at(x, L, e, s) || have_stk) continue;
        return moesz_error_set(err, MOESZ_E_FORMAT,
                               "layer %d expert %d: %s matrix missing from the checkpoint", L, e,
                               MAT_NAMES[s + 1]);
      }
    }
  }
  return MOESZ_OK;
}

int moesz_model_wrap(const moesz_config *cfg, moesz_st *st, const char *label, moesz_model **out,
                     moesz_error *err) {
  if (!out) {
    moesz_st_close(st);
    return moesz_error_set(err, MOESZ_E_ARG, "model: NULL argument");
  }
  *out = NULL;
  if (!cfg || !st) {
    moesz_st_close(st);
    return moesz_error_set(err, MOESZ_E_ARG, "model: NULL argument");
  }
  moesz_model *m = calloc(1, sizeof *m);
  if (!m) {
    moesz_st_close(st);
    return moesz_error_set(err, MOESZ_E_NOMEM, "model");
  }
  m->cfg = *cfg;
  m->st = st;
  snprintf(m->path, sizeof m->path, "%s", label ? label : "");
  int rc = build_index(m, err);
  if (rc) {
    if (label) moesz_error_wrap(err, rc, "%s", label);
    moesz_model_close(m);
    return rc;
  }
  *out = m;
  return MOESZ_OK;
}

int moesz_model_open(const char *dir, moesz_model **out, moesz_error *err) {
  if (!dir || !out) return moesz_error_set(err, MOESZ_E_ARG, "model: NULL argument");
  *out = NULL;
  if (strlen(dir) >= sizeof ((moesz_model *)0)->path)
    return moesz_error_set(err, MOESZ_E_ARG, "model: path too long");
  moesz_config cfg;
  moesz_st *st = NULL;
  int rc = moesz_config_load(dir, &cfg, err);
  if (!rc) rc = moesz_st_open(dir, &st, err);
  if (rc) return rc;
  return moesz_model_wrap(&cfg, st, dir, out, err);
}

void moesz_model_close(moesz_model *m) {
  if (!m) return;
  if (m->idx) free(m->idx->legacy);
  free(m->idx);
  free(m->roles);
  if (!m->borrowed_st) moesz_st_close(m->st);
  free(m);
}

static void view_2d(const moesz_tensor *t, moesz_matview *v) {
  v->data = t->data;
  v->dtype = t->dtype;
  v->rows = t->shape[0];
  v->cols = t->shape[1];
  v->ld = t->shape[1];
  v->transposed = 0;
}

/* View of expert e, logical rows [r0, r0 + rows) of a stacked tensor whose
 * per-expert logical matrix has full_rows rows. */
static void view_stacked(const moesz_tensor *t, int transposed, int e, int64_t r0, int64_t rows,
                         int64_t full_rows, int64_t cols, moesz_matview *v) {
  size_t es = moesz_dtype_size(t->dtype);
  size_t per = (size_t)full_rows * (size_t)cols;
  const char *base = (const char *)t->data + (size_t)e * per * es;
  v->dtype = t->dtype;
  v->rows = rows;
  v->cols = cols;
  v->transposed = transposed;
  if (!transposed) {
    v->data = base + (size_t)r0 * (size_t)cols * es;
    v->ld = cols;
  } else { /* stored [cols][full_rows]: (r, c) at c * full_rows + r */
    v->data = base + (size_t)r0 * es;
    v->ld = full_rows;
  }
}

int moesz_model_expert(const moesz_model *m, int layer, int expert, int shared, moesz_mat mat,
                       moesz_matview *out, moesz_error *err) {
  if (!m || !out) return moesz_error_set(err, MOESZ_E_ARG, "model_expert: NULL argument");
  memset(out, 0, sizeof *out);
  const moesz_config *c = &m->cfg;
  const moesz_model_index *x = m->idx;
  if (layer < 0 || layer >= c->n_layers)
    return moesz_error_set(err, MOESZ_E_RANGE, "layer %d outside [0, %d)", layer, c->n_layers);
  if (mat < MOESZ_MAT_GATE || mat > MOESZ_MAT_GATE_UP)
    return moesz_error_set(err, MOESZ_E_ARG, "model_expert: bad matrix %d", (int)mat);
  int s = slot_of(mat);
  const moesz_tensor *t = NULL;
  if (shared || !c->is_moe[layer]) {
    if (expert != 0)
      return moesz_error_set(err, MOESZ_E_RANGE, "layer %d: %s expert %d (only 0 exists)", layer,
                             shared ? "shared" : "dense", expert);
    if (s < 3) t = shared ? (c->is_moe[layer] ? x->shared[layer][s] : NULL) : x->dense[layer][s];
    if (!t)
      return moesz_error_set(err, MOESZ_E_NOTFOUND, "layer %d: no %s %s matrix", layer,
                             shared ? "shared expert" : "dense MLP", MAT_NAMES[s + 1]);
    view_2d(t, out);
    return MOESZ_OK;
  }
  if (expert < 0 || expert >= c->n_experts)
    return moesz_error_set(err, MOESZ_E_RANGE, "layer %d: expert %d outside [0, %d)", layer, expert,
                           c->n_experts);
  int64_t n = c->moe_intermediate, d = c->hidden;
  if (c->arch == MOESZ_ARCH_GPT_OSS) {
    int sl = s < 2 ? 3 : s;   /* gate / up: the two row halves of the interleaved gate_up */
    if (!(t = x->stk[layer][sl]))
      return moesz_error_set(err, x->mxb[layer][sl] ? MOESZ_E_UNSUPPORTED : MOESZ_E_NOTFOUND,
                             "layer %d expert %d: %s matrix %s", layer, expert, MAT_NAMES[s + 1],
                             x->mxb[layer][sl] ? "is MXFP4 (moesz_model_expert_mxfp4)" : "missing");
    int64_t rows, cols;
    logical_shape(sl, n, d, &rows, &cols);
    if (s < 2) view_stacked(t, 1, expert, s == 0 ? 0 : n, n, 2 * n, d, out);
    else view_stacked(t, 1, expert, 0, rows, rows, cols, out);
    return MOESZ_OK;
  }
  if (s < 3 && (t = x->legacy[((size_t)layer * (size_t)c->n_experts + (size_t)expert) * 3 +
                              (size_t)s])) {
    view_2d(t, out);
    return MOESZ_OK;
  }
  int64_t rows, cols;
  if ((t = x->stk[layer][s])) {
    logical_shape(s, n, d, &rows, &cols);
    view_stacked(t, x->stk_t[layer][s], expert, 0, rows, rows, cols, out);
    return MOESZ_OK;
  }
  if (s < 2 && (t = x->stk[layer][3])) { /* gate = rows [0, n), up = rows [n, 2n) */
    view_stacked(t, x->stk_t[layer][3], expert, s == 0 ? 0 : n, n, 2 * n, d, out);
    return MOESZ_OK;
  }
  return moesz_error_set(err, MOESZ_E_NOTFOUND, "layer %d expert %d: no %s matrix", layer, expert,
                         MAT_NAMES[s + 1]);
}

int moesz_model_expert_mxfp4(const moesz_model *m, int layer, int expert, moesz_mat mat, moesz_mxfp4_view *out,
                             moesz_error *err) {
  if (!m || !out) return moesz_error_set(err, MOESZ_E_ARG, "model_expert_mxfp4: NULL argument");
  memset(out, 0, sizeof *out);
  const moesz_config *c = &m->cfg;
  if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer] || expert < 0 || expert >= c->n_experts)
    return moesz_error_set(err, MOESZ_E_RANGE, "layer %d expert %d: no such routed expert", layer, expert);
  if (mat != MOESZ_MAT_GATE_UP && mat != MOESZ_MAT_DOWN)
    return moesz_error_set(err, MOESZ_E_ARG, "model_expert_mxfp4: gate_up or down only");
  int s = slot_of(mat);
  const moesz_tensor *b = m->idx->mxb[layer][s], *sc = m->idx->mxs[layer][s];
  if (!b || !sc)
    return moesz_error_set(err, MOESZ_E_NOTFOUND, "layer %d: %s is not stored as MXFP4", layer, MAT_NAMES[s + 1]);
  int64_t rows = b->shape[1], g = b->shape[2];
  out->rows = rows;
  out->cols = g * 32;
  out->blocks = (const uint8_t *)b->data + (size_t)expert * (size_t)rows * (size_t)g * 16;
  out->scales = (const uint8_t *)sc->data + (size_t)expert * (size_t)rows * (size_t)g;
  return MOESZ_OK;
}

const moesz_tensor *moesz_model_tensor(const moesz_model *m, moesz_role role, int layer) {
  if (!m || !m->idx || (unsigned)role >= MOESZ_ROLE_COUNT || layer < -1 || layer >= m->cfg.n_layers)
    return NULL;
  const moesz_tensor *t = m->idx->by_role[layer + 1][role];
  if (!t && role == MOESZ_ROLE_LM_HEAD && layer == -1 && m->cfg.tie_embeddings)
    t = m->idx->by_role[0][MOESZ_ROLE_EMBED];
  return t;
}

const char *moesz_model_expert_layout(const moesz_model *m) {
  if (!m || !m->idx) return "none";
  int legacy = 0, stk = 0, stk_t = 0;
  for (size_t i = 0; i < moesz_st_count(m->st); i++) {
    const moesz_tensor_role *r = &m->roles[i];
    if (r->role != MOESZ_ROLE_EXPERT) continue;
    if (!r->stacked) legacy = 1;
    else if (r->mx) return "mxfp4";
    else if (m->idx->stk_t[r->layer][slot_of(r->mat)]) stk_t = 1;
    else stk = 1;
  }
  if (legacy + stk + stk_t > 1) return "mixed";
  return legacy ? "per-expert" : stk ? "stacked" : stk_t ? "stacked-transposed" : "none";
}

void moesz_model_count(const moesz_model *m, moesz_counts *out) {
  memset(out, 0, sizeof *out);
  if (!m) return;
  size_t n = moesz_st_count(m->st);
  int have_embed = 0, have_shared_w = 0;
  for (size_t i = 0; i < n; i++) {
    if (m->roles[i].role == MOESZ_ROLE_EMBED) have_embed = 1;
    if (!strcmp(moesz_st_at(m->st, i)->name, "shared.weight")) have_shared_w = 1;
  }
  for (size_t i = 0; i < n; i++) {
    const moesz_tensor *t = moesz_st_at(m->st, i);
    moesz_role r = m->roles[i].role;
    out->tensors[r]++;
    /* Tied weights are one parameter: lm_head tied to the embedding; Switch's
     * encoder/decoder embed_tokens are always the shared embedding. */
    if (r == MOESZ_ROLE_LM_HEAD && m->cfg.tie_embeddings && have_embed) continue;
    if (r == MOESZ_ROLE_EMBED && m->cfg.arch == MOESZ_ARCH_SWITCH && have_shared_w &&
        strcmp(t->name, "shared.weight"))
      continue;
    /* MXFP4 (gpt-oss): a blocks byte holds two parameters; scales hold none */
    int64_t np = m->roles[i].mx == 1 ? 2 * (int64_t)t->numel : m->roles[i].mx == 2 ? 0 : (int64_t)t->numel;
    out->params[r] += np;
    out->bytes[r] += (int64_t)t->nbytes;
    out->total_params += np;
    out->total_bytes += (int64_t)t->nbytes;
    if (moesz_role_is_expert(r)) {
      out->expert_params += np;
      out->expert_bytes += (int64_t)t->nbytes;
    } else {
      out->other_params += np;
      out->other_bytes += (int64_t)t->nbytes;
    }
  }
}

static void add(moesz_counts *k, moesz_role r, int64_t n) {
  k->params[r] += n;
  k->total_params += n;
  if (moesz_role_is_expert(r)) k->expert_params += n;
  else k->other_params += n;
}

void moesz_config_count(const moesz_config *c, moesz_counts *k) {
  memset(k, 0, sizeof *k);
  if (!c) return;
  int64_t d = c->hidden, V = c->vocab, E = c->n_experts, n = c->moe_intermediate;
  int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
  add(k, MOESZ_ROLE_EMBED, V * d);
  if (!c->tie_embeddings) add(k, MOESZ_ROLE_LM_HEAD, V * d);
  if (c->arch == MOESZ_ARCH_SWITCH) {
    add(k, MOESZ_ROLE_FINAL_NORM, 2 * d);
    for (int L = 0; L < c->n_layers; L++) {
      int dec = L >= c->n_enc_layers, first = L == 0 || L == c->n_enc_layers;
      add(k, MOESZ_ROLE_ATTN_NORM, d);
      add(k, MOESZ_ROLE_FFN_NORM, d);
      add(k, MOESZ_ROLE_ATTN_Q, (1 + dec) * qd * d);
      add(k, MOESZ_ROLE_ATTN_K, (1 + dec) * qd * d);
      add(k, MOESZ_ROLE_ATTN_V, (1 + dec) * qd * d);
      add(k, MOESZ_ROLE_ATTN_O, (1 + dec) * qd * d);
      if (first) add(k, MOESZ_ROLE_ATTN_REL_BIAS, (int64_t)c->rel_buckets * c->n_heads);
      if (dec) add(k, MOESZ_ROLE_CROSS_ATTN_NORM, d);
      if (c->is_moe[L]) {
        add(k, MOESZ_ROLE_ROUTER, E * d);
        add(k, MOESZ_ROLE_EXPERT, E * 2 * n * d);
      } else {
        add(k, MOESZ_ROLE_DENSE_MLP, 2 * (int64_t)c->intermediate * d);
      }
    }
    return;
  }
  add(k, MOESZ_ROLE_FINAL_NORM, d);
  for (int L = 0; L < c->n_layers; L++) {
    add(k, MOESZ_ROLE_ATTN_NORM, d);
    add(k, MOESZ_ROLE_FFN_NORM, d);
    if (c->kv_lora_rank > 0) {   /* MLA: q (low-rank or plain), latent kv, o */
      int64_t ql = c->q_lora_rank, kl = c->kv_lora_rank, nh = c->n_heads;
      if (ql > 0) {
        add(k, MOESZ_ROLE_ATTN_LATENT, ql * d + qd * ql);
        add(k, MOESZ_ROLE_LATENT_NORM, ql);
      } else {
        add(k, MOESZ_ROLE_ATTN_Q, qd * d);
      }
      add(k, MOESZ_ROLE_ATTN_LATENT, (kl + c->qk_rope_dim) * d +
                                     nh * (c->qk_nope_dim + c->v_head_dim) * kl);
      add(k, MOESZ_ROLE_LATENT_NORM, kl);
      add(k, MOESZ_ROLE_ATTN_O, d * nh * c->v_head_dim);
    } else {
      add(k, MOESZ_ROLE_ATTN_Q, qd * d);
      add(k, MOESZ_ROLE_ATTN_K, kvd * d);
      add(k, MOESZ_ROLE_ATTN_V, kvd * d);
      add(k, MOESZ_ROLE_ATTN_O, d * qd);
      if (c->qkv_bias) {
        add(k, MOESZ_ROLE_ATTN_Q_BIAS, qd);
        add(k, MOESZ_ROLE_ATTN_K_BIAS, kvd);
        add(k, MOESZ_ROLE_ATTN_V_BIAS, kvd);
        if (c->arch != MOESZ_ARCH_QWEN2_MOE && c->arch != MOESZ_ARCH_GLM4_MOE)
          add(k, MOESZ_ROLE_ATTN_O_BIAS, d);
      }
      if (c->qk_norm == 1) {
        add(k, MOESZ_ROLE_Q_NORM, c->head_dim);
        add(k, MOESZ_ROLE_K_NORM, c->head_dim);
      } else if (c->qk_norm == 2) {
        add(k, MOESZ_ROLE_Q_NORM, qd);
        add(k, MOESZ_ROLE_K_NORM, kvd);
      }
      if (c->attn_sinks) add(k, MOESZ_ROLE_ATTN_SINKS, c->n_heads);
    }
    if (!c->is_moe[L]) {
      add(k, MOESZ_ROLE_DENSE_MLP, 3 * (int64_t)c->intermediate * d);
      continue;
    }
    add(k, MOESZ_ROLE_ROUTER, E * d);
    if (c->score_sigmoid) add(k, MOESZ_ROLE_ROUTER_BIAS, E);
    add(k, MOESZ_ROLE_EXPERT, E * 3 * n * d);
    if (c->router_bias) add(k, MOESZ_ROLE_ROUTER_LINEAR_BIAS, E);
    if (c->expert_bias) add(k, MOESZ_ROLE_EXPERT_BIAS, E * (2 * n + d));
    if (c->n_shared) add(k, MOESZ_ROLE_SHARED_EXPERT, 3 * (int64_t)c->shared_intermediate * d);
    if (c->has_shared_gate) add(k, MOESZ_ROLE_SHARED_GATE, d);
  }
}

int moesz_model_wrap_dense(const moesz_config *cfg, moesz_st *st, const char *path, moesz_model **out,
                     moesz_error *err) {
  if (!cfg || !st || !out) return moesz_error_set(err, MOESZ_E_ARG, "model: NULL argument");
  *out = NULL;
  moesz_model *m = calloc(1, sizeof *m);
  if (!m) return moesz_error_set(err, MOESZ_E_NOMEM, "model");
  m->cfg = *cfg;
  m->st = st;
  m->borrowed_st = 1;
  m->experts_elsewhere = 1;
  snprintf(m->path, sizeof m->path, "%s", path ? path : "");
  int rc = build_index(m, err);
  if (rc) {
    moesz_model_close(m);
    return rc;
  }
  *out = m;
  return MOESZ_OK;
}
