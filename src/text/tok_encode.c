/* text/tok_encode.c - owns encoding: added tokens split out first (leftmost
 * longest), then per segment the normalisers (NFC via utf8proc, Prepend,
 * Replace), the pre-tokenisers (regex splits, Isolated), and BPE per piece
 * (lowest merge rank first, leftmost among equals, as `tokenizers` does),
 * then the template post-processor. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "text/tok_internal.h"

typedef struct ivec { int32_t *v; size_t n, cap; int oom; } ivec;
static void push(ivec *a, int32_t x) {
  if (a->oom) return;
  if (a->n == a->cap) {
    size_t nc = a->cap ? 2 * a->cap : 256;
    int32_t *nv = realloc(a->v, nc * sizeof *nv);
    if (!nv) { a->oom = 1; return; }
    a->v = nv;
    a->cap = nc;
  }
  a->v[a->n++] = x;
}

/* ---------------------------------------------------------------- BPE */

typedef struct hent { uint32_t rank; int32_t pos, left, right; } hent;
typedef struct heap { hent *h; size_t n, cap; } heap;
static int hless(const hent *a, const hent *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }
static int hpush(heap *q, hent e) {
  if (q->n == q->cap) {
    size_t nc = q->cap ? 2 * q->cap : 64;
    hent *nh = realloc(q->h, nc * sizeof *nh);
    if (!nh) return -1;
    q->h = nh;
    q->cap = nc;
  }
  size_t i = q->n++;
  while (i && hless(&e, &q->h[(i - 1) / 2])) { q->h[i] = q->h[(i - 1) / 2]; i = (i - 1) / 2; }
  q->h[i] = e;
  return 0;
}
static hent hpop(heap *q) {
  hent top = q->h[0], last = q->h[--q->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= q->n) break;
    if (c + 1 < q->n && hless(&q->h[c + 1], &q->h[c])) c++;
    if (!hless(&q->h[c], &last)) break;
    q->h[i] = q->h[c];
    i = c;
  }
  if (q->n) q->h[i] = last;
  return top;
}

typedef struct bpe_buf { int32_t *id, *prev, *next; size_t cap; heap q; } bpe_buf;

static int try_pair(const moesz_tok *t, bpe_buf *b, int32_t i) {
  int32_t j = b->next[i];
  if (j < 0) return 0;
  uint32_t rank;
  int32_t out;
  if (!tok_merge(t, b->id[i], b->id[j], &rank, &out)) return 0;
  hent e = {rank, i, b->id[i], b->id[j]};
  return hpush(&b->q, e);
}

/* Merges the symbols ids[0..n) in place; returns the new count (or -1: out of memory). */
static long bpe(const moesz_tok *t, bpe_buf *b, size_t n) {
  if (n < 2) return (long)n;
  for (size_t i = 0; i < n; i++) { b->prev[i] = (int32_t)i - 1; b->next[i] = i + 1 < n ? (int32_t)i + 1 : -1; }
  b->q.n = 0;
  for (size_t i = 0; i + 1 < n; i++)
    if (try_pair(t, b, (int32_t)i)) return -1;
  while (b->q.n) {
    hent e = hpop(&b->q);
    int32_t i = e.pos, j = b->next[i];
    if (b->id[i] != e.left || j < 0 || b->id[j] != e.right) continue;   /* stale */
    uint32_t rank;
    int32_t out;
    tok_merge(t, e.left, e.right, &rank, &out);
    b->id[i] = out;
    b->id[j] = -1;
    b->next[i] = b->next[j];
    if (b->next[j] >= 0) b->prev[b->next[j]] = i;
    if (b->prev[i] >= 0 && try_pair(t, b, b->prev[i])) return -1;
    if (try_pair(t, b, i)) return -1;
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = b->next[i]) b->id[k++] = b->id[i];
  return (long)k;
}

static int reserve(bpe_buf *b, size_t n) {
  if (n <= b->cap) return 0;
  size_t nc = n * 2;
  int32_t *a = realloc(b->id, nc * 4), *p = a ? realloc(b->prev, nc * 4) : NULL, *q = p ? realloc(b->next, nc * 4) : NULL;
  if (a) b->id = a;
  if (p) b->prev = p;
  if (q) b->next = q;
  if (!a || !p || !q) return -1;
  b->cap = nc;
  return 0;
}

static size_t utf8_len(uint8_t c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }

/* One pre-token piece -> ids. */
static int encode_piece(const moesz_tok *t, const char *s, size_t n, bpe_buf *b, ivec *out) {
  if (!n) return 0;
  if (reserve(b, 4 * n + 4)) return -1;
  size_t k = 0;
  if (t->byte_level) {
    for (size_t i = 0; i < n; i++) {
      int32_t id = t->byte_id[(uint8_t)s[i]];
      if (id < 0) id = t->unk;
      if (id >= 0) b->id[k++] = id;
    }
  } else {
    for (size_t i = 0; i < n;) {
      size_t l = utf8_len((uint8_t)s[i]);
      if (i + l > n) l = n - i;
      int32_t id = tok_lookup(t, s + i, l);
      if (id >= 0) b->id[k++] = id;
      else if (t->byte_fallback) {
        for (size_t j = 0; j < l; j++) {
          int32_t bid = t->byte_id[(uint8_t)s[i + j]];
          if (bid >= 0) b->id[k++] = bid;
          else if (t->unk >= 0) b->id[k++] = t->unk;
        }
      } else if (t->unk >= 0 && !(t->fuse_unk && k && b->id[k - 1] == t->unk)) b->id[k++] = t->unk;
      i += l;
    }
  }
  if (t->ignore_merges && t->byte_level && k > 1) {
    /* the whole piece as one vocab token, when it is one */
    char tmp[512];
    size_t m = 0;
    for (size_t i = 0; i < n && m + 3 < sizeof tmp; i++) {
      uint32_t cp = t->byte_cp[(uint8_t)s[i]];
      if (cp < 0x80) tmp[m++] = (char)cp;
      else { tmp[m++] = (char)(0xc0 | cp >> 6); tmp[m++] = (char)(0x80 | (cp & 63)); }
    }
    int32_t id = tok_lookup(t, tmp, m);
    if (id >= 0) { push(out, id); return out->oom ? -1 : 0; }
  }
  long r = bpe(t, b, k);
  if (r < 0) return -1;
  for (long i = 0; i < r; i++) push(out, b->id[i]);
  return out->oom ? -1 : 0;
}

/* ------------------------------------------------------ pre-tokenising */

typedef struct span { size_t off, len; } span;
typedef struct svec { span *v; size_t n, cap; } svec;
static int spush(svec *a, size_t off, size_t len) {
  if (!len) return 0;
  if (a->n == a->cap) {
    size_t nc = a->cap ? 2 * a->cap : 64;
    span *nv = realloc(a->v, nc * sizeof *nv);
    if (!nv) return -1;
    a->v = nv;
    a->cap = nc;
  }
  a->v[a->n].off = off;
  a->v[a->n].len = len;
  a->n++;
  return 0;
}

/* Splits every span of in by re (Isolated: matches and gaps both kept). */
static int split(const tok_pre *p, const char *s, const svec *in, svec *out, pcre2_match_data *md) {
  out->n = 0;
  for (size_t k = 0; k < in->n; k++) {
    size_t off = in->v[k].off, end = off + in->v[k].len, pos = off;
    while (pos < end) {
      int rc = pcre2_match(p->re, (PCRE2_SPTR)s, end, pos, PCRE2_NO_UTF_CHECK, md, NULL);
      if (rc < 0) break;
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      size_t ms = ov[0], me = ov[1];
      if (me == ms) {                       /* empty match: step one character */
        if (ms >= end) break;
        size_t l = utf8_len((uint8_t)s[ms]);
        if (spush(out, pos, ms + l - pos)) return -1;
        pos = ms + l;
        continue;
      }
      if (spush(out, pos, ms - pos) || spush(out, ms, me - ms)) return -1;
      pos = me;
    }
    if (spush(out, pos, end - pos)) return -1;
  }
  return 0;
}

/* Normalised copy of a segment (malloc'd). */
static char *normalize(const moesz_tok *t, const char *s, size_t n, size_t *out_n) {
  char *cur = malloc(n + 1);
  if (!cur) return NULL;
  memcpy(cur, s, n);
  cur[n] = 0;
  if (t->nfc && n) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)cur, (utf8proc_ssize_t)n, &dst, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r >= 0) { free(cur); cur = (char *)dst; n = (size_t)r; }   /* invalid UTF-8: left as it is */
    else free(dst);
  }
  if (t->prepend && n) {
    size_t pl = strlen(t->prepend);
    char *c = malloc(n + pl + 1);
    if (!c) { free(cur); return NULL; }
    memcpy(c, t->prepend, pl);
    memcpy(c + pl, cur, n + 1);
    free(cur);
    cur = c;
    n += pl;
  }
  if (t->repl_from) {
    size_t fl = strlen(t->repl_from), tl = strlen(t->repl_to), cnt = 0;
    for (const char *p = cur; (p = strstr(p, t->repl_from)); p += fl) cnt++;
    if (cnt) {
      char *c = malloc(n + cnt * (tl > fl ? tl - fl : 0) + 1), *o = c;
      if (!c) { free(cur); return NULL; }
      const char *p = cur, *q;
      while ((q = strstr(p, t->repl_from))) { memcpy(o, p, (size_t)(q - p)); o += q - p; memcpy(o, t->repl_to, tl); o += tl; p = q + fl; }
      size_t rest = n - (size_t)(p - cur);
      memcpy(o, p, rest);
      o += rest;
      *o = 0;
      n = (size_t)(o - c);
      free(cur);
      cur = c;
    }
  }
  if (t->prefix_space && n && cur[0] != ' ') {
    char *c = malloc(n + 2);
    if (!c) { free(cur); return NULL; }
    c[0] = ' ';
    memcpy(c + 1, cur, n + 1);
    free(cur);
    cur = c;
    n++;
  }
  *out_n = n;
  return cur;
}

static int encode_segment(const moesz_tok *t, const char *s, size_t n, bpe_buf *b, ivec *out, pcre2_match_data *md) {
  if (!n) return 0;
  size_t nn;
  char *norm = normalize(t, s, n, &nn);
  if (!norm) return -1;
  svec a = {0}, c = {0};
  int rc = spush(&a, 0, nn);
  for (int i = 0; !rc && i < t->npre; i++) {
    rc = split(&t->pre[i], norm, &a, &c, md);
    svec tmp = a; a = c; c = tmp;
  }
  for (size_t k = 0; !rc && k < a.n; k++) rc = encode_piece(t, norm + a.v[k].off, a.v[k].len, b, out);
  free(a.v);
  free(c.v);
  free(norm);
  return rc;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t valid_seq(const uint8_t *p, size_t n) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t l = utf8proc_iterate(p, (utf8proc_ssize_t)(n < 4 ? n : 4), &cp);
  return l > 0 ? (size_t)l : 0;
}

/* A copy of text with every invalid UTF-8 byte replaced by U+FFFD (as
 * `tokenizers` sees text: Python strings are always valid), or NULL if the
 * text is valid already. */
static char *sanitize(const char *text, size_t len, size_t *out_len, int *oom) {
  size_t i = 0;
  while (i < len) {
    size_t l = valid_seq((const uint8_t *)text + i, len - i);
    if (!l) break;
    i += l;
  }
  if (i == len) return NULL;
  char *o = malloc(3 * len + 1);
  if (!o) { *oom = 1; return NULL; }
  size_t k = 0;
  for (i = 0; i < len;) {
    size_t l = valid_seq((const uint8_t *)text + i, len - i);
    if (l) { memcpy(o + k, text + i, l); k += l; i += l; }
    else { memcpy(o + k, "\xef\xbf\xbd", 3); k += 3; i++; }
  }
  *out_len = k;
  return o;
}

int moesz_tok_encode(const moesz_tok *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                     moesz_error *err) {
  *ids = NULL;
  *n = 0;
  if (!t || (!text && len)) return moesz_error_set(err, MOESZ_E_ARG, "tokenizer: NULL argument");
  int oom = 0;
  char *clean = sanitize(text, len, &len, &oom);
  if (oom) return moesz_error_set(err, MOESZ_E_NOMEM, "tokenizer: out of memory");
  if (clean) text = clean;
  ivec out = {0};
  bpe_buf b;
  memset(&b, 0, sizeof b);
  pcre2_match_data *md = pcre2_match_data_create(4, NULL);
  int rc = md ? 0 : -1;
  if (add_special)
    for (int i = 0; i < t->tmpl.npre; i++) push(&out, t->tmpl.pre[i]);
  size_t seg = 0, pos = 0;
  while (!rc && pos < len) {
    uint8_t c = (uint8_t)text[pos];
    const tok_added *hit = NULL;
    for (int k = t->added_first[c]; k < t->added_first[c + 1]; k++) {
      const tok_added *a = &t->added[k];
      if (a->len <= len - pos && !memcmp(text + pos, a->content, a->len)) { hit = a; break; }
    }
    if (!hit) { pos++; continue; }
    rc = encode_segment(t, text + seg, pos - seg, &b, &out, md);
    push(&out, hit->id);
    pos += hit->len;
    seg = pos;
  }
  if (!rc) rc = encode_segment(t, text + seg, len - seg, &b, &out, md);
  if (add_special)
    for (int i = 0; i < t->tmpl.npost; i++) push(&out, t->tmpl.post[i]);
  pcre2_match_data_free(md);
  free(clean);
  free(b.id); free(b.prev); free(b.next); free(b.q.h);
  if (rc || out.oom) { free(out.v); return moesz_error_set(err, MOESZ_E_NOMEM, "tokenizer: out of memory"); }
  *ids = out.v;
  *n = out.n;
  return MOESZ_OK;
}
