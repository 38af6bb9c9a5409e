/* codec/huff.c - owns the entropy stage: length-limited canonical Huffman
 * codes (at most HUF_MAXLEN bits, so one table lookup decodes a symbol;
 * optimal for that limit by package-merge),
 * four interleaved LSB-first bit streams (symbol i in stream i % 4) so the
 * decoder runs four independent chains, and an escape array for zigzag codes
 * beyond the alphabet. Layout of an encoded block:
 *   u32 bytes[4] | u32 n_esc | stream 0..3 (each followed by 8 zero bytes) | u32 esc[n_esc]
 * Symbols: 0 (HUF_VERB) for a value stored verbatim (its bits are in the
 * chunk's verbatim array, in order), 1 (HUF_ESC) for codes beyond the
 * alphabet (the code, with its nudge flag, follows in esc[]), 2 + 2 z for
 * zigzag codes z < 2047, 3 + 2 z for the same codes nudged.
 * Two decoders of the same blocks: one symbol per lookup (any output dtype),
 * and for 16-bit output one or two values per lookup through a pair table,
 * used where the code lengths predict enough pairs for the stream's size
 * (huf_pairs_pay; docs/CODEC.md "Pair decoding"). */
#include <stdlib.h>
#include <string.h>
#include "base/bytes.h"
#include "codec/codec_internal.h"

typedef struct { uint64_t w; int sym; } leaf;
static int cmp_leaf(const void *a, const void *b) {
  const leaf *x = a, *y = b;
  if (x->w != y->w) return x->w < y->w ? -1 : 1;
  return x->sym - y->sym;
}

/* Optimal code lengths of at most HUF_MAXLEN bits for the nonzero counts of
 * hist, by package-merge (Larmore & Hirschberg 1990): level HUF_MAXLEN's list
 * is the leaves by weight; each shallower level merges the leaves with the
 * pairs ("packages") of the level below. The cheapest 2k - 2 items of level 1
 * are chosen; the packages among the first n items of a level expand to the
 * first 2 x (their number) items of the next; a leaf's code length is the
 * number of chosen items it appears in. Needs k <= 2^HUF_MAXLEN (HUF_NSYM). */
typedef struct { uint64_t w; int leaf; } pm_item;   /* leaf index, or -1 for a package */

int huf_lengths(const uint64_t *hist, uint8_t *len) {
  int rc = -1;
  memset(len, 0, HUF_NSYM);
  leaf *lv = malloc(sizeof *lv * HUF_NSYM);
  pm_item *lists = malloc(sizeof *lists * (size_t)HUF_MAXLEN * 2 * HUF_NSYM);
  int size[HUF_MAXLEN];
  if (!lv || !lists) goto out;
  int k = 0;
  for (int s = 0; s < HUF_NSYM; s++)
    if (hist[s]) { lv[k].w = hist[s]; lv[k].sym = s; k++; }
  rc = 0;
  if (k == 1) len[lv[0].sym] = 1;
  if (k <= 1) goto out;
  qsort(lv, (size_t)k, sizeof *lv, cmp_leaf);
  /* lists[j] holds level j + 1; the deepest level first */
  pm_item *deep = lists + (size_t)(HUF_MAXLEN - 1) * 2 * HUF_NSYM;
  for (int i = 0; i < k; i++) deep[i] = (pm_item){lv[i].w, i};
  size[HUF_MAXLEN - 1] = k;
  for (int j = HUF_MAXLEN - 2; j >= 0; j--) {
    const pm_item *below = lists + (size_t)(j + 1) * 2 * HUF_NSYM;
    pm_item *cur = lists + (size_t)j * 2 * HUF_NSYM;
    int np = size[j + 1] / 2, li = 0, pi = 0, n = 0;
    while (li < k || pi < np) {
      uint64_t pw = pi < np ? below[2 * pi].w + below[2 * pi + 1].w : UINT64_MAX;
      if (li < k && lv[li].w <= pw) { cur[n++] = (pm_item){lv[li].w, li}; li++; }
      else { cur[n++] = (pm_item){pw, -1}; pi++; }
    }
    size[j] = n;
  }
  int chosen = 2 * k - 2;
  for (int j = 0; j < HUF_MAXLEN && chosen > 0; j++) {
    const pm_item *cur = lists + (size_t)j * 2 * HUF_NSYM;
    int packages = 0;
    for (int i = 0; i < chosen && i < size[j]; i++) {
      if (cur[i].leaf >= 0) len[lv[cur[i].leaf].sym]++;
      else packages++;
    }
    chosen = 2 * packages;
  }
out:
  free(lv);
  free(lists);
  return rc;
}

/* Canonical codes (shorter first, then by symbol), bit-reversed for LSB-first. */
static void canonical(const uint8_t *len, uint16_t *code) {
  int count[HUF_MAXLEN + 1] = {0}, next[HUF_MAXLEN + 2] = {0};
  for (int s = 0; s < HUF_NSYM; s++) count[len[s]]++;
  count[0] = 0;
  for (int l = 1, c = 0; l <= HUF_MAXLEN; l++) { c = (c + count[l - 1]) << 1; next[l] = c; }
  for (int s = 0; s < HUF_NSYM; s++) {
    int l = len[s];
    if (!l) { code[s] = 0; continue; }
    unsigned c = (unsigned)next[l]++, r = 0;
    for (int b = 0; b < l; b++) r |= ((c >> b) & 1u) << (l - 1 - b);
    code[s] = (uint16_t)r;
  }
}

void huf_enc_init(huf_enc *h, const uint8_t *len) {
  memcpy(h->len, len, HUF_NSYM);
  canonical(len, h->code);
}

size_t huf_enc_bound(size_t n) { return 20 + 4 * ((n / 4 + 1) * HUF_MAXLEN / 8 + 24) + 4 * n; }

typedef struct { uint8_t *p; size_t pos; uint64_t acc; int bits; } bitw;
static inline void bw_add(bitw *w, uint32_t v, int n) {
  w->acc |= (uint64_t)v << w->bits;
  w->bits += n;
}
/* Writes the whole bytes of the accumulator (8 bytes stored, 0..6 kept):
 * the stream area has slack past its end for the overhang. */
static inline void bw_commit(bitw *w) {
  moesz_wr64le(w->p + w->pos, w->acc);
  int nb = w->bits >> 3;
  w->pos += (size_t)nb;
  w->acc >>= nb * 8;              /* nb <= 6: at most 7 + 4 x 12 bits are pending */
  w->bits &= 7;
}
static inline void bw_flush(bitw *w) {
  while (w->bits > 0) { w->p[w->pos++] = (uint8_t)w->acc; w->acc >>= 8; w->bits -= 8; }
  memset(w->p + w->pos, 0, 8);
  w->pos += 8;
}

/* Symbol of code z into w; an escape's code goes to the escape list. */
static inline void enc_one(const huf_enc *h, bitw *w, uint32_t z, uint8_t *esc, uint32_t *nesc) {
  uint32_t sym = huf_sym(z);
  if (__builtin_expect(sym == HUF_ESC, 0)) { moesz_wr32le(esc + 4 * (size_t)*nesc, z); (*nesc)++; }
  bw_add(w, h->code[sym], h->len[sym]);
}

size_t huf_encode(const huf_enc *h, const uint32_t *codes, size_t n, uint8_t *out) {
  size_t cap = (n / 4 + 1) * HUF_MAXLEN / 8 + 24;
  uint8_t *tmp = out + 20 + 4 * cap;               /* escapes staged after the stream area */
  bitw w[4];
  for (int s = 0; s < 4; s++) { w[s].p = out + 20 + (size_t)s * cap; w[s].pos = 0; w[s].acc = 0; w[s].bits = 0; }
  uint32_t nesc = 0;
  size_t i = 0;
  /* 16 values a round: four symbols (<= 48 bits) into each stream, then one commit per stream */
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 4; j++)
      for (int s = 0; s < 4; s++) enc_one(h, &w[s], codes[i + 4 * (size_t)j + (size_t)s], tmp, &nesc);
    for (int s = 0; s < 4; s++) bw_commit(&w[s]);
  }
  for (; i < n; i++) {
    enc_one(h, &w[i & 3], codes[i], tmp, &nesc);
    bw_commit(&w[i & 3]);
  }
  size_t pos = 20;
  for (int s = 0; s < 4; s++) {
    bw_flush(&w[s]);
    uint32_t b = (uint32_t)w[s].pos;
    moesz_wr32le(out + 4 * s, b);
    memmove(out + pos, w[s].p, w[s].pos);
    pos += w[s].pos;
  }
  moesz_wr32le(out + 16, nesc);
  memmove(out + pos, tmp, 4 * (size_t)nesc);
  return pos + 4 * (size_t)nesc;
}

/* v reversed in its low l bits (l <= 16): four swap rounds, no loop. */
static inline unsigned rev_bits(unsigned v, int l) {
  v = ((v >> 1) & 0x5555u) | ((v & 0x5555u) << 1);
  v = ((v >> 2) & 0x3333u) | ((v & 0x3333u) << 2);
  v = ((v >> 4) & 0x0f0fu) | ((v & 0x0f0fu) << 4);
  v = ((v >> 8) & 0x00ffu) | ((v & 0x00ffu) << 8);
  return v >> (16 - l);
}

/* The same canonical codes as canonical() (shorter first, then by symbol),
 * visiting only the nsym listed symbols: a stream's table lists a few
 * hundred of the 4096, and the rest are zero. */
int huf_dec_init(huf_dec *d, const uint8_t *len, size_t nsym) {
  int count[HUF_MAXLEN + 1] = {0}, next[HUF_MAXLEN + 1] = {0};
  if (nsym > HUF_NSYM) return -1;
  for (size_t s = 0; s < nsym; s++) {
    if (len[s] > HUF_MAXLEN) return -1;
    count[len[s]]++;
  }
  uint64_t kraft = 0;
  for (int l = 1; l <= HUF_MAXLEN; l++) kraft += (uint64_t)count[l] << (HUF_MAXLEN - l);
  if (kraft > (1ull << HUF_MAXLEN)) return -1;       /* not a prefix code */
  count[0] = 0;
  for (int l = 1, c = 0; l <= HUF_MAXLEN; l++) { c = (c + count[l - 1]) << 1; next[l] = c; }
  /* a complete code covers every entry; otherwise the uncovered ones stay invalid (0) */
  if (kraft < (1ull << HUF_MAXLEN)) memset(d->e, 0, sizeof d->e);
  for (size_t s = 0; s < nsym; s++) {
    int l = len[s];
    if (!l) continue;
    uint16_t v = (uint16_t)(s << 4 | (size_t)l);
    for (unsigned r = rev_bits((unsigned)next[l]++, l); r < (1u << HUF_MAXLEN); r += 1u << l) d->e[r] = v;
  }
  d->nsym = nsym;
  d->pair = 0;
  return 0;
}

void huf_dec_values(huf_dec *d, const uint8_t *len, double step, moesz_dtype dt, moesz_dtype out) {
  d->vs = moesz_dtype_size(dt);
  d->pair = 0;
  d->step = step;
  d->dt = dt;
  d->out = out;
  /* only symbols with a code can be decoded: a few hundred at typical bounds */
  for (uint32_t s = 2; s < d->nsym; s++)
    if (len[s]) {
      uint32_t z = huf_code(s);
      codec_dequantize_nudged(&z, 1, step, dt, out, d->v + s * d->vs);
    }
}

/* Pair entries, filled code by code: the entries whose index starts with
 * the code of symbol s (length l) are rev(code) + (y << l) for the 2^(T - l)
 * values y of the bits after it, and their second half depends on y alone -
 * the same for every code of length l. So per length the table sec[] of
 * those second halves (a plain symbol whose code ends within the T - l bits:
 * its value, length and count 1; else 0) is built once from e[], and each
 * entry is the first code's part plus sec[y]: one load, add and store. */
void huf_dec_pairs(huf_dec *d, const uint8_t *len) {
  enum { T = HUF_PAIRBITS };
  uint32_t secv[1 << (T - 1)];   /* second halves: value << 16 */
  uint8_t secm[1 << (T - 1)];    /* second halves: length | 1 << 6, or 0 */
  int count[HUF_MAXLEN + 1] = {0}, next[HUF_MAXLEN + 1] = {0}, start[HUF_MAXLEN + 2] = {0};
  uint16_t order[HUF_NSYM];      /* the listed symbols with a code, by length then symbol */
  d->pair = 0;
  if (d->vs != 2) return;
  for (size_t s = 0; s < d->nsym; s++) count[len[s]]++;
  count[0] = 0;
  uint64_t kraft = 0;
  for (int l = 1; l <= HUF_MAXLEN; l++) {
    start[l + 1] = start[l] + count[l];
    if (l <= T) kraft += (uint64_t)count[l] << (T - l);
  }
  for (int l = 1, c = 0; l <= HUF_MAXLEN; l++) { c = (c + count[l - 1]) << 1; next[l] = c; }
  int at[HUF_MAXLEN + 1];
  memcpy(at, start, sizeof at);
  for (size_t s = 0; s < d->nsym; s++)
    if (len[s]) order[at[len[s]]++] = (uint16_t)s;
  /* entries no code of <= T bits starts (an incomplete code, or longer codes) decode through e[] */
  if (kraft < (1ull << T)) memset(d->pm, 0, sizeof d->pm);
  for (int l = 1; l <= T; l++) {
    if (!count[l]) continue;
    unsigned r = T - (unsigned)l, ny = 1u << r;
    for (unsigned y = 0; y < ny; y++) {
      unsigned e2 = d->e[y], l2 = e2 & 15, s2 = e2 >> 4;
      uint16_t h = 0;
      if (l2 && l2 <= r && s2 >= 2) memcpy(&h, d->v + 2 * s2, 2);
      else l2 = 0;
      secv[y] = (uint32_t)h << 16;
      secm[y] = (uint8_t)(l2 ? l2 | 1u << 6 : 0);
    }
    for (int k = start[l]; k < start[l + 1]; k++) {
      unsigned s1 = order[k], x0 = rev_bits((unsigned)next[l]++, l);
      uint32_t *pv = d->pv + x0;
      uint8_t *pm = d->pm + x0;
      if (s1 < 2) {   /* a rare symbol: through e[] */
        for (unsigned y = 0; y < ny; y++) pm[(size_t)y << l] = 0;
        continue;
      }
      uint16_t h;
      memcpy(&h, d->v + 2 * s1, 2);
      uint8_t fm = (uint8_t)(l | 1 << 6);
      size_t st = (size_t)1 << l;
      unsigned y = 0;
      for (; y + 4 <= ny; y += 4, pv += 4 * st, pm += 4 * st) {   /* most codes have runs of 2^(T - l) >= 4 */
        pv[0] = h | secv[y]; pv[st] = h | secv[y + 1]; pv[2 * st] = h | secv[y + 2]; pv[3 * st] = h | secv[y + 3];
        pm[0] = (uint8_t)(fm + secm[y]); pm[st] = (uint8_t)(fm + secm[y + 1]);
        pm[2 * st] = (uint8_t)(fm + secm[y + 2]); pm[3 * st] = (uint8_t)(fm + secm[y + 3]);
      }
      for (; y < ny; y++, pv += st, pm += st) { *pv = h | secv[y]; *pm = (uint8_t)(fm + secm[y]); }
    }
  }
  d->pair = 1;
}

double huf_pair_rate(const uint8_t *len, size_t nsym) {
  uint32_t count[16] = {0};
  for (size_t s = 2; s < nsym; s++) count[len[s] & 15]++;
  double p[HUF_MAXLEN + 1] = {0}, below[HUF_MAXLEN + 1] = {0}, r = 0;
  for (int l = 1; l <= HUF_MAXLEN; l++) {
    p[l] = (double)count[l] / (double)(1u << l);
    below[l] = below[l - 1] + p[l];
  }
  for (int l = 1; l < HUF_PAIRBITS; l++) r += p[l] * below[HUF_PAIRBITS - l];
  return r;
}

int huf_pairs_pay(const uint8_t *len, size_t nsym, uint64_t n) {
  double r = huf_pair_rate(len, nsym);
  return r > HUF_PAIR_RATE0 && (double)n * (r - HUF_PAIR_RATE0) * (r - HUF_PAIR_RATE0) >= HUF_PAIR_WORK;
}

typedef struct { const uint8_t *p, *end; uint64_t buf; int bits; } bitr;
/* Refill near the end of a stream: bytes one at a time, zeros past the end. */
static inline void br_refill(bitr *r) {
  if (r->end - r->p >= 8) {
    uint64_t v = moesz_rd64le(r->p);
    r->buf |= v << r->bits;
    r->p += (63 - r->bits) >> 3;
    r->bits |= 56;
  } else {
    while (r->bits <= 56 && r->p < r->end) { r->buf |= (uint64_t)*r->p++ << r->bits; r->bits += 8; }
    if (r->bits < HUF_MAXLEN) r->bits = HUF_MAXLEN;  /* past the end: zeros */
  }
}

typedef struct {
  const uint8_t *esc;
  uint32_t nesc, k;       /* escapes in the block, escapes used */
  uint32_t *vpos;
  size_t nv, kv;          /* verbatim markers expected, seen */
} rare_ctx;

/* The rare symbols: a verbatim marker (position noted; the chunk's verbatim
 * pass writes the value) or an escape (its code follows in esc[]). */
static inline __attribute__((always_inline)) int dec_rare(const huf_dec *d, rare_ctx *c, uint32_t sym, size_t i, uint8_t *dst) {
  if (sym == HUF_VERB) {
    if (c->kv >= c->nv) return -1;
    c->vpos[c->kv++] = (uint32_t)i;
    return 0;
  }
  if (c->k >= c->nesc) return -1;
  uint32_t z = moesz_rd32le(c->esc + 4 * (size_t)c->k++);
  codec_dequantize_nudged(&z, 1, d->step, d->dt, d->out, dst + i * d->vs);
  return 0;
}

/* One symbol from r into value i of dst: a table lookup gives the symbol and
 * its length, a second gives the delivered value. vs is a constant in each
 * caller, so the copy is one load and one store. 0 ok, -1 malformed. */
static inline __attribute__((always_inline)) int dec_sym(const huf_dec *d, rare_ctx *c, bitr *r, size_t i,
                                                         uint8_t *dst, size_t vs) {
  uint16_t e = d->e[r->buf & ((1u << HUF_MAXLEN) - 1)];
  unsigned l = e & 15, sym = e >> 4;
  r->buf >>= l;
  r->bits -= (int)l;
  if (__builtin_expect(sym < 2, 0)) return l ? dec_rare(d, c, sym, i, dst) : -1;
  memcpy(dst + i * vs, d->v + sym * vs, vs);
  return 0;
}

/* One symbol of stream state (B, K) into value I: as dec_sym(), with the
 * stream's bits in locals so the four chains stay in registers. */
#define DEC_LOCAL(B, K, I)                                                        \
  do {                                                                            \
    uint16_t e_ = tab[(B) & ((1u << HUF_MAXLEN) - 1)];                            \
    unsigned l_ = e_ & 15u, s_ = e_ >> 4;                                         \
    (B) >>= l_;                                                                   \
    (K) -= (int)l_;                                                               \
    if (__builtin_expect(s_ < 2, 0)) {                                            \
      if (!l_ || dec_rare(d, c, s_, (I), dst)) return -1;                         \
    } else                                                                        \
      memcpy(dst + (I) * vs, val + s_ * vs, vs);                                  \
  } while (0)
/* Refill of stream state (P, B, K) with 8 or more bytes left: >= 56 bits. */
#define REFILL_LOCAL(P, B, K)                                                     \
  do {                                                                            \
    (B) |= moesz_rd64le(P) << (K);                                                \
    (P) += (63 - (K)) >> 3;                                                       \
    (K) |= 56;                                                                    \
  } while (0)

static inline __attribute__((always_inline)) int dec_all(const huf_dec *d, rare_ctx *c, bitr *r, size_t n,
                                                         uint8_t *dst, size_t vs) {
  size_t i = 0;
  const uint16_t *tab = d->e;
  const uint8_t *val = d->v;
  /* Main loop: 16 values per round, one refill per stream (>= 56 bits), then
   * four symbols (<= 48 bits) from each of the four independent streams, in
   * value order (rare symbols record their positions in order). */
  const uint8_t *p0 = r[0].p, *p1 = r[1].p, *p2 = r[2].p, *p3 = r[3].p;
  uint64_t b0 = r[0].buf, b1 = r[1].buf, b2 = r[2].buf, b3 = r[3].buf;
  int k0 = r[0].bits, k1 = r[1].bits, k2 = r[2].bits, k3 = r[3].bits;
  while (i + 16 <= n && r[0].end - p0 >= 8 && r[1].end - p1 >= 8 && r[2].end - p2 >= 8 && r[3].end - p3 >= 8) {
    REFILL_LOCAL(p0, b0, k0);
    REFILL_LOCAL(p1, b1, k1);
    REFILL_LOCAL(p2, b2, k2);
    REFILL_LOCAL(p3, b3, k3);
    for (size_t j = 0; j < 16; j += 4) {
      DEC_LOCAL(b0, k0, i + j);
      DEC_LOCAL(b1, k1, i + j + 1);
      DEC_LOCAL(b2, k2, i + j + 2);
      DEC_LOCAL(b3, k3, i + j + 3);
    }
    i += 16;
  }
  r[0].p = p0; r[1].p = p1; r[2].p = p2; r[3].p = p3;
  r[0].buf = b0; r[1].buf = b1; r[2].buf = b2; r[3].buf = b3;
  r[0].bits = k0; r[1].bits = k1; r[2].bits = k2; r[3].bits = k3;
  for (; i < n; i++) {
    bitr *ri = &r[i & 3];
    if (ri->bits < HUF_MAXLEN) br_refill(ri);
    if (dec_sym(d, c, ri, i, dst, vs)) return -1;
  }
  return 0;
}
#undef DEC_LOCAL
#undef REFILL_LOCAL

/* ---- the pair decoder (16-bit values): each stream runs at its own pace ----
 * Stream s holds values s, s + 4, s + 8, ...; a lookup delivers one or two of
 * them, so the four streams advance independently, each with its own output
 * pointer (stride 4 values). Rare symbols (verbatim, escape) are noted per
 * stream as position << 1 | is_escape, and merged in value order at the end,
 * which is the order of the verbatim values and of esc[]. */
typedef struct {
  uint32_t r[4][HUF_PAIR_RARE];   /* [stream][k] position << 1 | (symbol == ESC) */
  uint32_t nr[4];
} pair_rare;

/* One symbol through e[] from bits b (the pair entry said 0): writes its
 * value at o, or notes a rare symbol at position pos. Returns the code's
 * length, -1 for no code or more rare symbols than the block declares.
 * Inlined: a call in the loop would push the bit buffers out of registers. */
static inline __attribute__((always_inline)) int pair_one(const huf_dec *d, pair_rare *pr, int s, uint64_t b, uint8_t *o,
                                                     size_t pos) {
  unsigned e = d->e[b & ((1u << HUF_MAXLEN) - 1)], l = e & 15, sym = e >> 4;
  if (!l) return -1;
  if (sym >= 2) { memcpy(o, d->v + 2 * sym, 2); return (int)l; }
  if (pr->nr[s] >= HUF_PAIR_RARE) return -1;
  pr->r[s][pr->nr[s]++] = (uint32_t)pos << 1 | (sym == HUF_ESC);
  return (int)l;
}

/* One pair lookup on stream s, bits B, output pointer O: both values are
 * stored (the second is overwritten by the stream's next value when only one
 * was decoded), then the bits consumed and the pointer advanced. B carries a
 * marker bit above its valid bits, so no bit count is kept per lookup. */
#define PAIR_STEP(S, B, O)                                                         \
  do {                                                                             \
    unsigned x_ = (unsigned)(B) & ((1u << HUF_PAIRBITS) - 1);                      \
    unsigned m_ = pm[x_];                                                          \
    uint32_t w_ = pv[x_];                                                          \
    uint16_t v1_ = (uint16_t)w_, v2_ = (uint16_t)(w_ >> 16);                       \
    memcpy((O), &v1_, 2);                                                          \
    memcpy((O) + 8, &v2_, 2);                                                      \
    if (__builtin_expect(m_ < 64, 0)) {                                            \
      int n_ = pair_one(d, &pr, (S), (B), (O), (size_t)((O) - o0) >> 1);          \
      if (n_ < 0) return -1;                                                       \
      (B) >>= n_;                                                                  \
      (O) += 8;                                                                    \
    } else {                                                                       \
      (B) >>= m_ & 63u;                                                            \
      (O) += 8 * (m_ >> 6);                                                        \
    }                                                                              \
  } while (0)
/* Refill of marked bits B from P (8 or more bytes left): the marker's
 * position is the bit count k; the bytes after the k bits are or-ed in, the
 * pointer moves by the whole bytes taken, and the marker goes above the
 * k | 56 valid bits. */
#define PAIR_REFILL(P, B)                                                          \
  do {                                                                             \
    unsigned k_ = 63u ^ (unsigned)__builtin_clzll(B), sh_;                         \
    (B) &= ~(1ull << k_);                                                          \
    (B) |= moesz_rd64le(P) << k_;                                                  \
    (P) += (63u - k_) >> 3;                                                        \
    sh_ = 63u - (k_ | 56u);                                                        \
    (B) = (((B) << sh_) | 1ull << 63) >> sh_;                                      \
  } while (0)
/* The bit count of marked bits b. */
static inline int marked_count(uint64_t b) { return 63 ^ __builtin_clzll(b); }

static __attribute__((noinline)) int dec_pairs(const huf_dec *d, rare_ctx *c, bitr *r, size_t n, uint8_t *o0) {
  const uint32_t *pv = d->pv;
  const uint8_t *pm = d->pm;
  pair_rare pr;
  pr.nr[0] = pr.nr[1] = pr.nr[2] = pr.nr[3] = 0;
  /* stream s ends at value s + 4 (ns - 1), ns = its count; the main loop runs
   * while every stream has 8 values left (4 lookups, up to 2 values each, and
   * the second store one past) and 8 bytes to read */
  size_t ns[4], j[4];                /* values of each stream; decoded so far */
  int ok = 1;
  for (int s = 0; s < 4; s++) {
    ns[s] = n > (size_t)s ? (n - (size_t)s + 3) / 4 : 0;
    j[s] = 0;
    if (ns[s] < 8) ok = 0;
  }
  uint8_t *o[4], *lim[4];
  for (int s = 0; s < 4; s++) {
    o[s] = ok ? o0 + 2 * (size_t)s : o0;   /* (not used unless ok) */
    lim[s] = ok ? o[s] + 8 * (ns[s] - 8) : o0;
  }
  uint8_t *o0_ = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
  const uint8_t *p0 = r[0].p, *p1 = r[1].p, *p2 = r[2].p, *p3 = r[3].p;
  uint64_t b0 = 1, b1 = 1, b2 = 1, b3 = 1;   /* no bits yet (the readers start empty): the marker alone */
  const uint8_t *q[4];              /* last refill position of each stream (8 bytes left) */
  for (int s = 0; s < 4; s++) q[s] = r[s].end - r[s].p >= 8 ? r[s].end - 8 : NULL;
  if (!q[0] || !q[1] || !q[2] || !q[3]) ok = 0;
  /* A round takes at most 8 values (64 output bytes) and 7 input bytes of
   * each stream, so the checks run once per batch of rounds that all start
   * within the limits. */
  while (ok) {
    size_t R = SIZE_MAX;
    uint8_t *oc[4] = {o0_, o1, o2, o3};
    const uint8_t *pc[4] = {p0, p1, p2, p3};
    for (int s = 0; s < 4; s++) {
      if (oc[s] > lim[s] || pc[s] > q[s]) { R = 0; break; }
      size_t ro = (size_t)(lim[s] - oc[s]) / 64 + 1, rp = (size_t)(q[s] - pc[s]) / 7 + 1;
      if (ro < R) R = ro;
      if (rp < R) R = rp;
    }
    if (!R) break;
    do {
      PAIR_REFILL(p0, b0);
      PAIR_REFILL(p1, b1);
      PAIR_REFILL(p2, b2);
      PAIR_REFILL(p3, b3);
      /* four lookups a stream: <= 4 x HUF_MAXLEN = 48 of the >= 56 bits */
      PAIR_STEP(0, b0, o0_); PAIR_STEP(1, b1, o1); PAIR_STEP(2, b2, o2); PAIR_STEP(3, b3, o3);
      PAIR_STEP(0, b0, o0_); PAIR_STEP(1, b1, o1); PAIR_STEP(2, b2, o2); PAIR_STEP(3, b3, o3);
      PAIR_STEP(0, b0, o0_); PAIR_STEP(1, b1, o1); PAIR_STEP(2, b2, o2); PAIR_STEP(3, b3, o3);
      PAIR_STEP(0, b0, o0_); PAIR_STEP(1, b1, o1); PAIR_STEP(2, b2, o2); PAIR_STEP(3, b3, o3);
    } while (--R);
  }
  /* then each stream alone, as long as it is within its limits */
  uint64_t bm[4] = {b0, b1, b2, b3};
  const uint8_t *pq[4] = {p0, p1, p2, p3};
  o[0] = o0_; o[1] = o1; o[2] = o2; o[3] = o3;
  for (int s = 0; ok && s < 4; s++) {
    uint64_t bs = bm[s];
    const uint8_t *ps = pq[s];
    uint8_t *os = o[s];
    while (os <= lim[s] && ps <= q[s]) {
      PAIR_REFILL(ps, bs);
      PAIR_STEP(s, bs, os); PAIR_STEP(s, bs, os); PAIR_STEP(s, bs, os); PAIR_STEP(s, bs, os);
    }
    bm[s] = bs; pq[s] = ps; o[s] = os;
  }
  for (int s = 0; s < 4; s++) {
    r[s].p = pq[s];
    r[s].bits = marked_count(bm[s]);
    r[s].buf = bm[s] & ~(1ull << r[s].bits);
    if (ok) j[s] = (size_t)(o[s] - o0 - 2 * s) / 8;
  }
  /* each stream's last values one symbol at a time (zeros past its end, as the single decoder reads) */
  for (int s = 0; s < 4; s++)
    for (; j[s] < ns[s]; j[s]++) {
      size_t pos = 4 * j[s] + (size_t)s;
      if (r[s].bits < HUF_MAXLEN) br_refill(&r[s]);
      int l = pair_one(d, &pr, s, r[s].buf, o0 + 2 * pos, pos);
      if (l < 0) return -1;
      r[s].buf >>= l;
      r[s].bits -= l;
    }
  /* rare symbols in value order: a four-way merge of the streams' ascending lists */
  uint32_t at[4] = {0, 0, 0, 0};
  for (;;) {
    int best = -1;
    for (int s = 0; s < 4; s++)
      if (at[s] < pr.nr[s] && (best < 0 || pr.r[s][at[s]] < pr.r[best][at[best]])) best = s;
    if (best < 0) break;
    uint32_t x = pr.r[best][at[best]++];
    if (dec_rare(d, c, x & 1 ? HUF_ESC : HUF_VERB, x >> 1, o0)) return -1;
  }
  return 0;
}
#undef PAIR_STEP
#undef PAIR_REFILL

int huf_decode(const huf_dec *d, const uint8_t *buf, size_t len, size_t n, void *dst, uint32_t *vpos, size_t nv) {
  if (len < 20) return -1;
  uint32_t sz[4], nesc;
  for (int s = 0; s < 4; s++) sz[s] = moesz_rd32le(buf + 4 * s);
  nesc = moesz_rd32le(buf + 16);
  size_t pos = 20;
  bitr r[4];
  for (int s = 0; s < 4; s++) {
    if (sz[s] > len - pos) return -1;
    r[s].p = buf + pos;
    r[s].end = buf + pos + sz[s];
    r[s].buf = 0;
    r[s].bits = 0;
    pos += sz[s];
  }
  if ((size_t)nesc > (len - pos) / 4 || (size_t)nesc > n) return -1;
  rare_ctx c = {.esc = buf + pos, .nesc = nesc, .vpos = vpos, .nv = nv};
  int rc = d->pair && d->vs == 2 && nv + nesc <= HUF_PAIR_RARE && n < (1u << 31) ? dec_pairs(d, &c, r, n, dst)
           : d->vs == 2                                           ? dec_all(d, &c, r, n, dst, 2)
                                                                  : dec_all(d, &c, r, n, dst, 4);
  return !rc && c.k == nesc && c.kv == nv ? 0 : -1;
}
