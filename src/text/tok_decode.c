/* text/tok_decode.c - owns decoding: ids -> token strings -> bytes through
 * the decoder chain (ByteLevel code points back to bytes; Replace "▁" -> " ",
 * ByteFallback <0xNN> -> byte, Strip), and streaming decoding that emits only
 * complete UTF-8 and holds back a partial character. */
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "text/tok_internal.h"

typedef moesz_buf bvec;
static void bput(bvec *b, const char *s, size_t n) { moesz_buf_put(b, s, n); }

static int hexv(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* Appends the bytes of token id. */
static void token_bytes(const moesz_tok *t, int32_t id, bvec *o) {
  const char *s = t->str[id];
  size_t n = t->slen[id];
  if (t->dec_byte_level) {
    for (size_t i = 0; i < n;) {
      uint8_t c = (uint8_t)s[i];
      uint32_t cp = c;
      size_t l = 1;
      if (c >= 0xc0 && c < 0xe0 && i + 1 < n) { cp = (uint32_t)(c & 31) << 6 | ((uint8_t)s[i + 1] & 63); l = 2; }
      else if (c >= 0xe0) l = c < 0xf0 ? 3 : 4;
      if (l <= 2 && cp < 512 && t->cp_byte[cp] >= 0) { char b = (char)t->cp_byte[cp]; bput(o, &b, 1); }
      else bput(o, s + i, l > n - i ? n - i : l);
      i += l;
    }
    return;
  }
  if (t->dec_byte_fallback && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexv(s[3]) >= 0 && hexv(s[4]) >= 0) {
    char b = (char)(hexv(s[3]) * 16 + hexv(s[4]));
    bput(o, &b, 1);
    return;
  }
  if (t->dec_replace) {
    for (size_t i = 0; i < n;) {
      if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) { bput(o, " ", 1); i += 3; }
      else { bput(o, s + i, 1); i++; }
    }
    return;
  }
  bput(o, s, n);
}

int moesz_tok_decode(const moesz_tok *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                     moesz_error *err) {
  *out = NULL;
  if (len) *len = 0;
  bvec o = {0};
  bput(&o, "", 0);
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->nvocab || !t->str[id]) {
      free(o.p);
      return moesz_error_set(err, MOESZ_E_RANGE, "tokenizer: id %d is not in the vocabulary (size %d)", id, t->nvocab);
    }
    if (skip_special && t->is_special[id]) continue;
    token_bytes(t, id, &o);
  }
  if (o.oom) { free(o.p); return moesz_error_set(err, MOESZ_E_NOMEM, "out of memory"); }
  size_t strip = 0;
  while ((int)strip < t->dec_strip && strip < o.n && o.p[strip] == ' ') strip++;
  memmove(o.p, o.p + strip, o.n - strip + 1);
  *out = o.p;
  if (len) *len = o.n - strip;
  return MOESZ_OK;
}

struct moesz_tok_stream {
  const moesz_tok *t;
  bvec pend;                 /* bytes not yet emitted (a partial UTF-8 character) */
};

moesz_tok_stream *moesz_tok_stream_new(const moesz_tok *t) {
  moesz_tok_stream *s = calloc(1, sizeof *s);
  if (s) s->t = t;
  return s;
}

void moesz_tok_stream_free(moesz_tok_stream *s) {
  if (!s) return;
  free(s->pend.p);
  free(s);
}

/* Length of the prefix of p made of complete UTF-8 sequences (invalid bytes count as complete). */
static size_t complete_prefix(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + l > n) {
      int ok = 1;
      for (size_t k = i + 1; k < n; k++) ok &= (p[k] & 0xc0) == 0x80;
      if (ok) break;            /* a character still arriving */
      l = 1;
    }
    i += l;
  }
  return i;
}

int moesz_tok_stream_put(moesz_tok_stream *s, int32_t id, char *buf, size_t cap, size_t *len) {
  *len = 0;
  const moesz_tok *t = s->t;
  if (id < 0 || id >= t->nvocab || !t->str[id]) return MOESZ_E_RANGE;
  if (t->is_special[id]) return MOESZ_OK;
  token_bytes(t, id, &s->pend);
  if (s->pend.oom) return MOESZ_E_NOMEM;
  size_t k = complete_prefix((const uint8_t *)s->pend.p, s->pend.n);
  if (k > cap) k = cap;
  memcpy(buf, s->pend.p, k);
  memmove(s->pend.p, s->pend.p + k, s->pend.n - k);
  s->pend.n -= k;
  *len = k;
  return MOESZ_OK;
}
