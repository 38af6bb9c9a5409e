/* container/msz_check.c - owns the completeness checks an open container
 * must pass after its manifest has parsed: every routed expert matrix the
 * config implies present exactly once with the implied shape, no routed
 * record the config does not imply, every source tensor covered exactly once
 * by its records' views, and each blob's stream header (codec, zstd) agreeing
 * with its manifest record (count, dtype, bound). A part container (one
 * layer range of a split compression) is checked over its own layers: its
 * records lie in the range, each MoE layer of the range is complete, and a
 * source no record slices belongs to another part; a gpt-oss layer whose
 * MXFP4 experts are kept in the dense image has no records. docs/CONTAINER.md
 * "Checks". */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "moesz/codec.h"
#include "container/msz_internal.h"

static const char *MAT[] = {"none", "gate", "up", "down"};

/* The routed matrices of an expert for the config's family: SwiGLU experts
 * have gate, up, down; Switch experts wi (stored as gate) and wo (down). */
static int routed_mats(const moesz_config *cfg, moesz_mat mats[3]) {
  if (cfg->arch == MOESZ_ARCH_SWITCH) {
    mats[0] = MOESZ_MAT_GATE;
    mats[1] = MOESZ_MAT_DOWN;
    return 2;
  }
  mats[0] = MOESZ_MAT_GATE;
  mats[1] = MOESZ_MAT_UP;
  mats[2] = MOESZ_MAT_DOWN;
  return 3;
}

/* 1 if layer L of a gpt-oss container keeps its MXFP4 experts (blocks and
 * scales of gate_up and down) in the dense image. */
static int mx_kept(const moesz_msz *c, int L) {
  if (c->cfg.arch != MOESZ_ARCH_GPT_OSS || !c->dense) return 0;
  static const char *T[] = {"gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"};
  for (int k = 0; k < 4; k++) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%s", L, T[k]);
    if (!moesz_st_find(c->dense, name)) return 0;
  }
  return 1;
}

static int check_routed(const moesz_msz *c, moesz_error *err) {
  const moesz_config *cfg = &c->cfg;
  moesz_mat mats[3];
  int nm = routed_mats(cfg, mats);
  int64_t n = cfg->moe_intermediate, d = cfg->hidden;
  /* each routed record is one the config implies (with the lookup's one
   * record per slot and the loop below: each implied matrix exactly once) */
  for (size_t i = 0; i < c->nex; i++) {
    const moesz_msz_rec *r = &c->ex[i].rec;
    if (r->shared) continue;
    int ok = 0;
    for (int k = 0; k < nm; k++) ok |= r->mat == mats[k];
    if (!ok || !cfg->is_moe[r->layer] || r->expert >= cfg->n_experts)
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: record %s (layer %d expert %d %s) is not a routed "
                             "expert matrix of this config", r->name, r->layer, r->expert, MAT[r->mat]);
    if (c->part && (r->layer < c->part_first || r->layer > c->part_last))
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: record %s (layer %d) lies outside the part's layers "
                             "%d-%d", r->name, r->layer, c->part_first, c->part_last);
  }
  int moe_in_range = 0;
  for (int L = 0; L < cfg->n_layers; L++) {
    if (!cfg->is_moe[L]) continue;
    if (c->part && (L < c->part_first || L > c->part_last)) continue;   /* another part's layer */
    moe_in_range++;
    if (mx_kept(c, L)) {   /* gpt-oss MXFP4 experts kept in the dense image: no records */
      for (int e = 0; e < cfg->n_experts; e++)
        for (int k = 0; k < nm; k++)
          if (moesz_msz_expert(c, L, e, 0, mats[k]))
            return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: layer %d keeps its MXFP4 experts in the dense "
                                   "image and also has expert records", L);
      continue;
    }
    for (int e = 0; e < cfg->n_experts; e++)
      for (int k = 0; k < nm; k++) {
        const moesz_msz_rec *r = moesz_msz_expert(c, L, e, 0, mats[k]);
        if (!r)
          return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: layer %d expert %d: no %s matrix (the config "
                                 "implies %d routed experts in this layer)", L, e, MAT[mats[k]], cfg->n_experts);
        int64_t rows = mats[k] == MOESZ_MAT_DOWN ? d : n, cols = mats[k] == MOESZ_MAT_DOWN ? n : d;
        if (r->shape[0] != rows || r->shape[1] != cols)
          return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: record %s has shape [%lld, %lld], the config "
                                 "implies [%lld, %lld]", r->name, (long long)r->shape[0], (long long)r->shape[1],
                                 (long long)rows, (long long)cols);
      }
  }
  if (c->part && !moe_in_range)
    return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: part layers %d-%d hold no MoE layer", c->part_first,
                           c->part_last);
  return MOESZ_OK;
}

/* A view as a rectangle of its source seen as a grid ld elements wide. */
typedef struct rect { uint64_t c0, c1, r0, r1; const char *name; } rect;

static int rect_cmp(const void *a, const void *b) {
  const rect *x = a, *y = b;
  if (x->c0 != y->c0) return x->c0 < y->c0 ? -1 : 1;
  if (x->c1 != y->c1) return x->c1 < y->c1 ? -1 : 1;
  return x->r0 < y->r0 ? -1 : x->r0 > y->r0;
}

/* Every element of every source tensor lies in exactly one record's view:
 * the views of a source share one stride and are rectangles in it; their
 * column bands are equal or disjoint, rows within a band disjoint, and the
 * areas add up to the tensor (so nothing is left for decompress to fill
 * with zeros). */
static int check_sources(const moesz_msz *c, moesz_error *err) {
  for (size_t s = 0; s < c->nsrc; s++) {
    for (size_t t = 0; t < s; t++)
      if (!strcmp(c->src[s].name, c->src[t].name))
        return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: source %s listed twice", c->src[s].name);
    if (c->dense && moesz_st_find(c->dense, c->src[s].name))
      return moesz_error_set(err, MOESZ_E_FORMAT, "manifest: source %s is also a dense tensor", c->src[s].name);
  }
  size_t *count = calloc(c->nsrc + 1, sizeof *count), *start = calloc(c->nsrc + 2, sizeof *start);
  rect *rs = malloc((c->nex + 1) * sizeof *rs);
  uint64_t *ld = calloc(c->nsrc + 1, sizeof *ld);
  int rc = MOESZ_OK;
  if (!count || !start || !rs || !ld) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  for (size_t i = 0; i < c->nex; i++) count[c->ex[i].tensor]++;
  for (size_t s = 0; s < c->nsrc; s++) start[s + 1] = start[s] + count[s];
  memset(count, 0, (c->nsrc + 1) * sizeof *count);
  for (size_t i = 0; i < c->nex && !rc; i++) {
    const msz_expert *x = &c->ex[i];
    const msz_src *src = &c->src[x->tensor];
    uint64_t outer = (uint64_t)(x->view_t ? x->rec.shape[1] : x->rec.shape[0]);
    uint64_t inner = (uint64_t)(x->view_t ? x->rec.shape[0] : x->rec.shape[1]);
    if (!ld[x->tensor]) ld[x->tensor] = x->view_ld;
    if (x->view_ld != ld[x->tensor] || x->view_off % x->view_ld + inner > x->view_ld)
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: record %s: its view of %s is not a band of the "
                           "tensor's rows", x->rec.name, src->name);
    rect *r = &rs[start[x->tensor] + count[x->tensor]++];
    r->c0 = x->view_off % x->view_ld;
    r->c1 = r->c0 + inner;
    r->r0 = x->view_off / x->view_ld;
    r->r1 = r->r0 + outer;
    r->name = x->rec.name;
  }
  for (size_t s = 0; s < c->nsrc && !rc; s++) {
    rect *r = rs + start[s];
    size_t k = count[s];
    qsort(r, k, sizeof *r, rect_cmp);
    uint64_t area = 0;
    for (size_t i = 0; i < k && !rc; i++) {
      area += (r[i].c1 - r[i].c0) * (r[i].r1 - r[i].r0);   /* each inside the tensor: no overflow */
      if (i && r[i].c0 < r[i - 1].c1 && (r[i].c0 != r[i - 1].c0 || r[i].c1 != r[i - 1].c1 || r[i].r0 < r[i - 1].r1))
        rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: records %s and %s overlap in %s", r[i - 1].name,
                             r[i].name, c->src[s].name);
    }
    if (!k && c->part) continue;   /* a source of another part's layers */
    if (!rc && area != c->src[s].numel)
      rc = moesz_error_set(err, MOESZ_E_FORMAT, "manifest: the records cover %llu of the %llu elements of "
                           "source %s", (unsigned long long)area, (unsigned long long)c->src[s].numel, c->src[s].name);
  }
done:
  free(count);
  free(start);
  free(rs);
  free(ld);
  return rc;
}

/* The manifest's JSON number for a bound: cJSON prints 15 significant digits
 * when they read back within an ulp, so a bound the codec derived (rel / std
 * modes) comes back up to an ulp or two away from the stream's own. */
static int same_bound(double a, double b) { return fabs(a - b) <= 4 * DBL_EPSILON * fabs(b); }

/* Each blob's own header agrees with its record. */
static int check_streams(const moesz_msz *c, moesz_error *err) {
  for (size_t i = 0; i < c->nex; i++) {
    const moesz_msz_rec *r = &c->ex[i].rec;
    const void *blob = (const uint8_t *)c->map + r->off;
    size_t n = r->raw_bytes / moesz_dtype_size(r->dtype);
    if (r->method == MOESZ_MSZ_CODEC) {
      moesz_codec_info info;
      int rc = moesz_codec_info_read(blob, r->len, &info, err);
      if (rc) return moesz_error_wrap(err, rc, "record %s", r->name);
      if (info.count != n || info.in_dtype != r->dtype || info.out_dtype != r->dtype)
        return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: its codec stream holds %zu %s values (checked in %s), "
                               "the manifest says %zu %s", r->name, info.count, moesz_dtype_name(info.in_dtype),
                               moesz_dtype_name(info.out_dtype), n, moesz_dtype_name(r->dtype));
      if (!same_bound(info.eb, r->eb))
        return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: its codec stream's bound %.17g differs from the "
                               "manifest's %.17g", r->name, info.eb, r->eb);
    } else if (r->method == MOESZ_MSZ_COMPUTE) {
      moesz_cl m;
      int rc = moesz_cl_header(blob, r->len, &m, err);
      if (rc) return moesz_error_wrap(err, rc, "record %s", r->name);
      if (m.rows != r->shape[0] || m.cols != r->shape[1] || !same_bound(m.eb, r->eb))
        return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: its compute layout is [%lld, %lld] at bound %.17g, the "
                               "manifest says [%lld, %lld] at %.17g", r->name, (long long)m.rows, (long long)m.cols, m.eb,
                               (long long)r->shape[0], (long long)r->shape[1], r->eb);
    } else if (r->method == MOESZ_MSZ_RESMOE) {
      continue;   /* residual and barycenter headers: msz_resmoe_parse */
    } else {
      if (r->eb != 0)
        return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: a lossless blob with bound %g", r->name, r->eb);
      if (r->method == MOESZ_MSZ_ZSTD && ZSTD_getFrameContentSize(blob, r->len) != r->raw_bytes)
        return moesz_error_set(err, MOESZ_E_FORMAT, "record %s: its zstd frame does not declare %zu bytes",
                               r->name, r->raw_bytes);
    }
  }
  return MOESZ_OK;
}

int msz_check(const moesz_msz *c, moesz_error *err) {
  int rc = check_routed(c, err);
  if (!rc) rc = check_sources(c, err);
  if (!rc) rc = check_streams(c, err);
  return rc;
}
