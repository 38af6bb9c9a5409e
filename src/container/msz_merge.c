/* container/msz_merge.c - owns joining part containers (each the experts of
 * one layer range, written by moesz_msz_write with opts.part) into one
 * container, byte for byte the one a single run over every layer writes:
 * the parts' files, dense image and sources must agree, their layer ranges
 * be disjoint and cover every MoE layer; blobs are copied (checksums
 * verified) at the offsets a single run gives them, and the result is
 * validated as moesz_msz_open does before it is renamed into place.
 * docs/CONTAINER.md "Parts". */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/xxh.h"
#include "base/bytes.h"
#include "base/util.h"
#include "container/msz_internal.h"

typedef struct mpart {
  const char *path;
  moesz_msz *c;
  cJSON *man;                 /* the part's manifest */
} mpart;

typedef struct mwriter {
  moesz_afile af;
  uint64_t pos;               /* bytes written so far */
} mwriter;

static int m_put(mwriter *w, const void *buf, size_t n, moesz_error *err) {
  int rc = moesz_afile_write(&w->af, buf, n, err);
  if (!rc) w->pos += n;
  return rc;
}

/* Zero padding to the next blob boundary, then the blob; *off = its offset. */
static int m_blob(mwriter *w, const moesz_msz *c, const moesz_msz_rec *r, uint64_t *off, moesz_error *err) {
  static const uint8_t zero[MOESZ_MSZ_ALIGN] = {0};
  size_t pad = (size_t)((MOESZ_MSZ_ALIGN - w->pos % MOESZ_MSZ_ALIGN) % MOESZ_MSZ_ALIGN);
  int rc = pad ? m_put(w, zero, pad, err) : MOESZ_OK;
  const void *data;
  if (!rc) rc = moesz_msz_blob(c, r, &data, err);
  *off = w->pos;
  return rc ? rc : m_put(w, data, r->len, err);
}

static int part_cmp(const void *a, const void *b) {
  const mpart *x = a, *y = b;
  return (x->c->part_first > y->c->part_first) - (x->c->part_first < y->c->part_first);
}

/* The parts agree on what is not an expert: embedded files, dense image, sources. */
static int same_model(const mpart *a, const mpart *b, moesz_error *err) {
  static const char *KEYS[] = {"files", "dense", "sources"};
  static const char *WHAT[] = {"embedded files (config, tokenizer)", "dense tensors", "expert source tensors"};
  for (int k = 0; k < 3; k++)
    if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(a->man, KEYS[k]),
                       cJSON_GetObjectItemCaseSensitive(b->man, KEYS[k]), 1))
      return moesz_error_set(err, MOESZ_E_ARG, "%s and %s differ in their %s: parts of different models or "
                             "options", a->path, b->path, WHAT[k]);
  return MOESZ_OK;
}

int moesz_msz_merge(const char *const *paths, int n, const char *out, moesz_error *err) {
  if (n < 1) return moesz_error_set(err, MOESZ_E_ARG, "merge: no parts");
  int rc = moesz_output_check(out, 0, paths, (size_t)n, "output", err);
  if (rc) return rc;
  mpart *p = calloc((size_t)n, sizeof *p);
  cJSON *man = NULL;
  char *mtxt = NULL;
  mwriter w;
  memset(&w, 0, sizeof w);
  int opened = 0;
  if (!p) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    p[i].path = paths[i];
    if ((rc = moesz_msz_open_part(paths[i], &p[i].c, err))) goto done;
    if (!p[i].c->part) { rc = moesz_error_set(err, MOESZ_E_ARG, "%s is a whole container, not a part", paths[i]); goto done; }
    if (p[i].c->nrm) {
      rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "%s holds ResMoE layers: merging ResMoE parts is not supported "
                           "(compress the model with --method resmoe in one run)", paths[i]);
      goto done;
    }
    const char *m = (const char *)p[i].c->map + p[i].c->manifest_off;
    if (!(p[i].man = cJSON_ParseWithLength(m, p[i].c->size - p[i].c->manifest_off))) {
      rc = moesz_error_set(err, MOESZ_E_NOMEM, "%s: cannot parse the manifest again", paths[i]);
      goto done;
    }
  }
  qsort(p, (size_t)n, sizeof *p, part_cmp);
  for (int i = 1; i < n; i++) {
    if ((rc = same_model(&p[0], &p[i], err))) goto done;
    if (p[i].c->part_first <= p[i - 1].c->part_last) {
      rc = moesz_error_set(err, MOESZ_E_ARG, "%s (layers %d-%d) and %s (layers %d-%d) overlap", p[i - 1].path,
                           p[i - 1].c->part_first, p[i - 1].c->part_last, p[i].path, p[i].c->part_first,
                           p[i].c->part_last);
      goto done;
    }
  }
  const moesz_config *cfg = &p[0].c->cfg;
  for (int L = 0, i = 0; L < cfg->n_layers; L++) {
    while (i < n && p[i].c->part_last < L) i++;
    if (cfg->is_moe[L] && (i == n || p[i].c->part_first > L)) {
      rc = moesz_error_set(err, MOESZ_E_ARG, "no part holds MoE layer %d (every MoE layer must be in one part)", L);
      goto done;
    }
  }

  /* the first part's manifest, its experts replaced by every part's */
  if (!(man = cJSON_Duplicate(p[0].man, 1))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  cJSON_DeleteItemFromObjectCaseSensitive(man, "part");
  cJSON *exps = cJSON_CreateArray();
  if (!exps || !cJSON_ReplaceItemInObjectCaseSensitive(man, "experts", exps)) {
    cJSON_Delete(exps);
    rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
    goto done;
  }
  if ((rc = moesz_afile_open(&w.af, out, err))) goto done;
  opened = 1;
  uint8_t hdr[MOESZ_MSZ_HEADER] = {0};
  if ((rc = m_put(&w, hdr, sizeof hdr, err))) goto done;
  const moesz_msz *c0 = p[0].c;
  cJSON *jf = cJSON_GetObjectItemCaseSensitive(man, "files")->child;
  uint64_t off;
  for (size_t i = 0; i < c0->nfiles; i++, jf = jf->next) {
    if ((rc = m_blob(&w, c0, &c0->files[i], &off, err))) goto done;
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(jf, "off"), (double)off);
  }
  if ((rc = m_blob(&w, c0, &c0->dense_rec, &off, err))) goto done;
  cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(man, "dense"), "off"),
                       (double)off);
  for (int i = 0; i < n; i++) {
    const cJSON *jx = cJSON_GetObjectItemCaseSensitive(p[i].man, "experts")->child;
    for (size_t k = 0; k < p[i].c->nex; k++, jx = jx->next) {
      cJSON *xo = cJSON_Duplicate(jx, 1);
      if (!xo) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
      cJSON_AddItemToArray(exps, xo);
      if ((rc = m_blob(&w, p[i].c, &p[i].c->ex[k].rec, &off, err))) {
        moesz_error_wrap(err, rc, "%s", p[i].path);
        goto done;
      }
      cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(xo, "off"), (double)off);
    }
  }

  /* manifest, header, then the whole-container checks before the rename */
  static const uint8_t zero[MOESZ_MSZ_ALIGN] = {0};
  size_t pad = (size_t)((MOESZ_MSZ_ALIGN - w.pos % MOESZ_MSZ_ALIGN) % MOESZ_MSZ_ALIGN);
  if (pad && (rc = m_put(&w, zero, pad, err))) goto done;
  if (!(mtxt = cJSON_PrintUnformatted(man))) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto done; }
  uint64_t moff = w.pos, mlen = strlen(mtxt);
  if ((rc = m_put(&w, mtxt, mlen, err))) goto done;
  memcpy(hdr, MOESZ_MSZ_MAGIC, 8);
  moesz_wr32le(hdr + 8, MOESZ_MSZ_VERSION);
  moesz_wr64le(hdr + 16, moff);
  moesz_wr64le(hdr + 24, mlen);
  moesz_wr64le(hdr + 32, XXH3_64bits(mtxt, mlen));
  moesz_wr64le(hdr + 40, w.pos);
  if (fseek(w.af.f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w.af.f) != sizeof hdr || fflush(w.af.f)) {
    rc = moesz_error_set(err, MOESZ_E_IO, "%s: cannot write the header", w.af.tmp);
    goto done;
  }
  moesz_msz *chk;
  if ((rc = moesz_msz_open(w.af.tmp, &chk, err))) {
    moesz_error_wrap(err, rc, "the joined container fails its checks");
    goto done;
  }
  moesz_msz_close(chk);
  opened = 0;
  rc = moesz_afile_commit(&w.af, err);
done:
  if (opened) moesz_afile_abort(&w.af);
  for (int i = 0; i < n; i++) {
    moesz_msz_close(p[i].c);
    cJSON_Delete(p[i].man);
  }
  free(p);
  cJSON_Delete(man);
  free(mtxt);
  return rc;
}
