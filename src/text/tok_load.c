/* text/tok_load.c - owns reading tokenizer.json into a moesz_tok: vocab and
 * merges into hash tables, normaliser / pre-tokeniser / post-processor /
 * decoder chains (the kinds the supported model families use; anything else
 * is rejected by name), added tokens, byte-level tables. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "text/tok_internal.h"

#define MAX_JSON (256u << 20)
#define MAX_VOCAB (1 << 22)

/* GPT-2's byte -> code point map: printable Latin-1 bytes map to themselves,
 * the others to 256 + k in byte order. */
static void byte_map(moesz_tok *t) {
  int k = 0;
  for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    t->byte_cp[b] = (uint16_t)(keep ? b : 256 + k++);
    t->cp_byte[t->byte_cp[b]] = (int16_t)b;
  }
}

static int put_utf8(uint32_t cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
  o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
  return 3;
}

int32_t tok_lookup(const moesz_tok *t, const char *s, size_t n) {
  uint32_t m = t->hcap - 1;
  for (uint32_t h = tok_hash(s, n) & m;; h = (h + 1) & m) {
    uint32_t v = t->hslot[h];
    if (!v) return -1;
    int32_t id = (int32_t)v - 1;
    if (t->slen[id] == n && !memcmp(t->str[id], s, n)) return id;
  }
}

static uint32_t mhash(uint64_t k) { k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; return (uint32_t)k; }

int tok_merge(const moesz_tok *t, int32_t a, int32_t b, uint32_t *rank, int32_t *out) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint32_t m = t->mcap - 1;
  for (uint32_t h = mhash(key) & m;; h = (h + 1) & m) {
    if (t->mkey[h] == ~0ull) return 0;
    if (t->mkey[h] == key) { *rank = t->mrank[h]; *out = (int32_t)t->mout[h]; return 1; }
  }
}

static int set_token(moesz_tok *t, int32_t id, const char *s, moesz_error *err) {
  if (id < 0 || id >= t->nvocab) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: id %d out of range", id);
  if (t->str[id]) {
    if (strcmp(t->str[id], s)) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: id %d used twice", id);
    return MOESZ_OK;
  }
  size_t n = strlen(s);
  if (!(t->str[id] = malloc(n + 1))) return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  memcpy(t->str[id], s, n + 1);
  t->slen[id] = (uint32_t)n;
  if (tok_lookup(t, s, n) >= 0) return MOESZ_OK;    /* same string twice: first id wins */
  uint32_t m = t->hcap - 1, h = tok_hash(s, n) & m;
  while (t->hslot[h]) h = (h + 1) & m;
  t->hslot[h] = (uint32_t)id + 1;
  return MOESZ_OK;
}

static int json_id(const cJSON *j, int32_t *out) {
  if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble >= MAX_VOCAB || j->valuedouble != (double)(int)j->valuedouble) return 0;
  *out = (int32_t)j->valuedouble;
  return 1;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(j) ? j->valuestring : NULL;
}
static int jbool(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k)); }

static int compile(moesz_tok *t, const char *pat, int invert, int kind, moesz_error *err) {
  if (t->npre == 8) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: more than 8 pre-tokenizers");
  int ec;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &ec, &off, NULL);
  if (!re) {
    PCRE2_UCHAR msg[200];
    pcre2_get_error_message(ec, msg, sizeof msg);
    return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: bad regex at %zu: %s", (size_t)off, (char *)msg);
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  t->pre[t->npre].kind = kind;
  t->pre[t->npre].re = re;
  t->pre[t->npre].invert = invert;
  t->npre++;
  return MOESZ_OK;
}

static const char *GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_normalizer(moesz_tok *t, const cJSON *n, moesz_error *err) {
  if (!n || cJSON_IsNull(n)) return MOESZ_OK;
  const char *type = jstr(n, "type");
  if (!type) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: normalizer without a type");
  if (!strcmp(type, "Sequence")) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    for (const cJSON *c = l ? l->child : NULL; c; c = c->next) {
      int rc = load_normalizer(t, c, err);
      if (rc) return rc;
    }
    return MOESZ_OK;
  }
  if (!strcmp(type, "NFC")) { t->nfc = 1; return MOESZ_OK; }
  if (!strcmp(type, "Prepend")) {
    const char *p = jstr(n, "prepend");
    if (!p || !(t->prepend = strdup(p))) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: bad Prepend");
    return MOESZ_OK;
  }
  if (!strcmp(type, "Replace")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const char *from = pat ? jstr(pat, "String") : NULL, *to = jstr(n, "content");
    if (!from || !to || !*from || t->repl_from) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: only one string Replace normalizer is supported");
    t->repl_from = strdup(from);
    t->repl_to = strdup(to);
    return t->repl_from && t->repl_to ? MOESZ_OK : moesz_error_set(err, MOESZ_E_NOMEM, "out of memory");
  }
  return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: normalizer '%s' is not supported", type);
}

static int load_pre(moesz_tok *t, const cJSON *p, moesz_error *err) {
  if (!p || cJSON_IsNull(p)) return MOESZ_OK;
  const char *type = jstr(p, "type");
  if (!type) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: pre_tokenizer without a type");
  if (!strcmp(type, "Sequence")) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    for (const cJSON *c = l ? l->child : NULL; c; c = c->next) {
      int rc = load_pre(t, c, err);
      if (rc) return rc;
    }
    return MOESZ_OK;
  }
  if (!strcmp(type, "ByteLevel")) {
    t->byte_level = 1;
    t->prefix_space = jbool(p, "add_prefix_space");
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
    if (!ur || cJSON_IsTrue(ur)) return compile(t, GPT2_RE, 0, PRE_BYTELEVEL_REGEX, err);
    return MOESZ_OK;
  }
  if (!strcmp(type, "Split")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = pat ? jstr(pat, "Regex") : NULL, *beh = jstr(p, "behavior");
    if (!re || !beh || strcmp(beh, "Isolated"))
      return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: only Split with a Regex pattern and behavior Isolated is supported");
    return compile(t, re, jbool(p, "invert"), PRE_SPLIT, err);
  }
  return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: pre_tokenizer '%s' is not supported", type);
}

static int load_decoder(moesz_tok *t, const cJSON *d, moesz_error *err) {
  if (!d || cJSON_IsNull(d)) return MOESZ_OK;
  const char *type = jstr(d, "type");
  if (!type) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: decoder without a type");
  if (!strcmp(type, "Sequence")) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(d, "decoders");
    for (const cJSON *c = l ? l->child : NULL; c; c = c->next) {
      int rc = load_decoder(t, c, err);
      if (rc) return rc;
    }
    return MOESZ_OK;
  }
  if (!strcmp(type, "ByteLevel")) t->dec_byte_level = 1;
  else if (!strcmp(type, "Replace")) t->dec_replace = 1;
  else if (!strcmp(type, "ByteFallback")) t->dec_byte_fallback = 1;
  else if (!strcmp(type, "Fuse")) {}
  else if (!strcmp(type, "Strip")) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "start");
    t->dec_strip = cJSON_IsNumber(s) ? (int)s->valuedouble : 0;
  } else if (!strcmp(type, "Metaspace")) { t->dec_replace = 1; t->dec_strip = 1; }
  else return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: decoder '%s' is not supported", type);
  return MOESZ_OK;
}

static int load_post(moesz_tok *t, const cJSON *p, moesz_error *err) {
  if (!p || cJSON_IsNull(p)) return MOESZ_OK;
  const char *type = jstr(p, "type");
  if (!type) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: post_processor without a type");
  if (!strcmp(type, "ByteLevel")) return MOESZ_OK;
  if (!strcmp(type, "Sequence")) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(p, "processors");
    for (const cJSON *c = l ? l->child : NULL; c; c = c->next) {
      int rc = load_post(t, c, err);
      if (rc) return rc;
    }
    return MOESZ_OK;
  }
  if (strcmp(type, "TemplateProcessing")) return moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: post_processor '%s' is not supported", type);
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
  int after = 0;
  for (const cJSON *it = single ? single->child : NULL; it; it = it->next) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
    if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) { after = 1; continue; }
    const char *name = sp ? jstr(sp, "id") : NULL;
    if (!name) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: bad TemplateProcessing item");
    int32_t id = tok_lookup(t, name, strlen(name));
    if (id < 0) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: template token '%s' is not in the vocabulary", name);
    if (after) { if (t->tmpl.npost < 4) t->tmpl.post[t->tmpl.npost++] = id; }
    else if (t->tmpl.npre < 4) t->tmpl.pre[t->tmpl.npre++] = id;
  }
  return MOESZ_OK;
}

static int cmp_added(const void *a, const void *b) {
  const tok_added *x = a, *y = b;
  uint8_t fx = (uint8_t)x->content[0], fy = (uint8_t)y->content[0];
  if (fx != fy) return fx < fy ? -1 : 1;
  return x->len > y->len ? -1 : x->len < y->len;   /* longest first */
}

static uint32_t pow2_above(uint64_t n) { uint32_t c = 16; while (c < n) c <<= 1; return c; }

int moesz_tok_load_json(const char *json, size_t len, moesz_tok **out, moesz_error *err) {
  *out = NULL;
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root) return moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: not valid JSON");
  moesz_tok *t = calloc(1, sizeof *t);
  int rc = MOESZ_OK;
  if (!t) { cJSON_Delete(root); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  t->unk = t->bos = t->eos = -1;
  byte_map(t);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const char *mtype = model ? jstr(model, "type") : NULL;
  if (!mtype) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: no model"); goto fail; }
  if (strcmp(mtype, "BPE")) { rc = moesz_error_set(err, MOESZ_E_UNSUPPORTED, "tokenizer: model type '%s' is not supported (BPE only)", mtype); goto fail; }
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: BPE needs a vocab object and a merges array"); goto fail; }
  int32_t maxid = -1, id = 0;
  size_t nv = 0;
  for (const cJSON *v = vocab->child; v; v = v->next, nv++) {
    if (!json_id(v, &id)) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: vocab entry '%s' has a bad id", v->string ? v->string : "?"); goto fail; }
    if (id > maxid) maxid = id;
  }
  for (const cJSON *a = added ? added->child : NULL; a; a = a->next, nv++) {
    if (!json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id) || !jstr(a, "content")) { rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: bad added token"); goto fail; }
    if (id > maxid) maxid = id;
  }
  t->nvocab = maxid + 1;
  t->str = calloc((size_t)t->nvocab + 1, sizeof *t->str);
  t->slen = calloc((size_t)t->nvocab + 1, sizeof *t->slen);
  t->is_special = calloc((size_t)t->nvocab + 1, 1);
  t->hcap = pow2_above(2 * nv + 2);
  t->hslot = calloc(t->hcap, sizeof *t->hslot);
  if (!t->str || !t->slen || !t->is_special || !t->hslot) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  for (const cJSON *v = vocab->child; v; v = v->next) {
    json_id(v, &id);
    if ((rc = set_token(t, id, v->string, err))) goto fail;
  }
  /* added tokens */
  int na = added ? cJSON_GetArraySize(added) : 0;
  t->added = calloc((size_t)na + 1, sizeof *t->added);
  if (!t->added) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
    json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id);
    const char *c = jstr(a, "content");
    if (!*c) continue;
    if ((rc = set_token(t, id, c, err))) goto fail;
    tok_added *x = &t->added[t->nadded++];
    x->content = t->str[id];
    x->len = (uint32_t)strlen(c);
    x->id = id;
    x->special = jbool(a, "special");
    t->is_special[id] = (uint8_t)x->special;
  }
  qsort(t->added, (size_t)t->nadded, sizeof *t->added, cmp_added);
  for (int b = 0, k = 0; b <= 256; b++) {
    while (k < t->nadded && (uint8_t)t->added[k].content[0] < b) k++;
    t->added_first[b] = k;
  }
  /* merges */
  int nm = cJSON_GetArraySize(merges);
  t->mcap = pow2_above(2 * (uint64_t)nm + 2);
  t->mkey = malloc(sizeof *t->mkey * t->mcap);
  t->mrank = malloc(sizeof *t->mrank * t->mcap);
  t->mout = malloc(sizeof *t->mout * t->mcap);
  if (!t->mkey || !t->mrank || !t->mout) { rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; }
  memset(t->mkey, 0xff, sizeof *t->mkey * t->mcap);
  uint32_t rank = 0;
  char *buf = NULL;
  size_t bcap = 0;
  for (const cJSON *m = merges->child; m; m = m->next, rank++) {
    const char *a, *b;
    char *sp = NULL;
    if (cJSON_IsString(m)) {
      sp = strchr(m->valuestring, ' ');
      if (!sp || sp == m->valuestring) { free(buf); rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: merge %u is not 'a b'", rank); goto fail; }
      a = m->valuestring;
      b = sp + 1;
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
      a = m->child->valuestring;
      b = m->child->next->valuestring;
    } else { free(buf); rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: merge %u is malformed", rank); goto fail; }
    size_t la = sp ? (size_t)(sp - a) : strlen(a), lb = strlen(b);
    if (la + lb + 1 > bcap) { bcap = 2 * (la + lb + 1); char *nb = realloc(buf, bcap); if (!nb) { free(buf); rc = moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); goto fail; } buf = nb; }
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    int32_t ia = tok_lookup(t, a, la), ib = tok_lookup(t, b, lb), io = tok_lookup(t, buf, la + lb);
    if (ia < 0 || ib < 0 || io < 0) { free(buf); rc = moesz_error_set(err, MOESZ_E_FORMAT, "tokenizer: merge %u names tokens outside the vocabulary", rank); goto fail; }
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t mm = t->mcap - 1, h = mhash(key) & mm;
    while (t->mkey[h] != ~0ull && t->mkey[h] != key) h = (h + 1) & mm;
    if (t->mkey[h] == key) continue;   /* first rank wins */
    t->mkey[h] = key;
    t->mrank[h] = rank;
    t->mout[h] = (uint32_t)io;
  }
  free(buf);
  const char *unk = jstr(model, "unk_token");
  if (unk) t->unk = tok_lookup(t, unk, strlen(unk));
  t->byte_fallback = jbool(model, "byte_fallback");
  t->fuse_unk = jbool(model, "fuse_unk");
  t->ignore_merges = jbool(model, "ignore_merges");
  if ((rc = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err))) goto fail;
  if ((rc = load_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))) goto fail;
  if ((rc = load_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err))) goto fail;
  if ((rc = load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err))) goto fail;
  for (int b = 0; b < 256; b++) {
    char s[8];
    if (t->byte_level) {
      int n = put_utf8(t->byte_cp[b], s);
      t->byte_id[b] = tok_lookup(t, s, (size_t)n);
    } else {
      snprintf(s, sizeof s, "<0x%02X>", b);
      t->byte_id[b] = tok_lookup(t, s, 6);
    }
  }
  /* BOS / EOS: the template's first special token, and the usual names */
  static const char *EOS[] = {"</s>", "<|endoftext|>", "<｜end▁of▁sentence｜>", "<|im_end|>"};
  static const char *BOS[] = {"<s>", "<｜begin▁of▁sentence｜>", "<|begin_of_text|>"};
  if (t->tmpl.npre) t->bos = t->tmpl.pre[0];
  for (size_t i = 0; t->bos < 0 && i < sizeof BOS / sizeof *BOS; i++) t->bos = tok_lookup(t, BOS[i], strlen(BOS[i]));
  for (size_t i = 0; t->eos < 0 && i < sizeof EOS / sizeof *EOS; i++) t->eos = tok_lookup(t, EOS[i], strlen(EOS[i]));
  cJSON_Delete(root);
  *out = t;
  return MOESZ_OK;
fail:
  cJSON_Delete(root);
  moesz_tok_free(t);
  return rc;
}

int moesz_tok_load(const char *path, moesz_tok **out, moesz_error *err) {
  char p[4096];
  *out = NULL;
  if (moesz_path_is_dir(path)) {
    if (moesz_path_join(p, sizeof p, path, "tokenizer.json")) return moesz_error_set(err, MOESZ_E_ARG, "path too long");
    path = p;
  }
  char *txt;
  size_t len;
  int rc = moesz_file_read_all(path, MAX_JSON, &txt, &len, err);
  if (rc) return rc;
  rc = moesz_tok_load_json(txt, len, out, err);
  free(txt);
  if (rc) moesz_error_wrap(err, rc, "%s", path);
  return rc;
}

void moesz_tok_free(moesz_tok *t) {
  if (!t) return;
  for (int32_t i = 0; t->str && i < t->nvocab; i++) free(t->str[i]);
  for (int i = 0; i < t->npre; i++) pcre2_code_free(t->pre[i].re);
  free(t->str); free(t->slen); free(t->is_special); free(t->hslot);
  free(t->mkey); free(t->mrank); free(t->mout); free(t->added);
  free(t->prepend); free(t->repl_from); free(t->repl_to);
  free(t);
}

int moesz_tok_bos(const moesz_tok *t) { return t->bos; }
int moesz_tok_eos(const moesz_tok *t) { return t->eos; }
size_t moesz_tok_vocab_size(const moesz_tok *t) { return (size_t)t->nvocab; }
int moesz_tok_id(const moesz_tok *t, const char *s) { return tok_lookup(t, s, strlen(s)); }
