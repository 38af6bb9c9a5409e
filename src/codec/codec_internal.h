/* codec/codec_internal.h - what the codec's files share: the quantizer
 * (quant.c), the Huffman stage (huff.c), the fixed-length block stage
 * (pack.c) and the stream driver (stream.c). Owned by src/codec. */
#ifndef MOESZ_CODEC_INTERNAL_H
#define MOESZ_CODEC_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "moesz/codec.h"

#define CODEC_QMAX 1073741823.0      /* |q| beyond this is stored verbatim */
#define HUF_MAXLEN 12                /* longest Huffman code: one table lookup */
#define HUF_NSYM 4096
#define HUF_VERB 0                   /* symbol for a value stored verbatim (entropy pipeline) */
#define HUF_ESC 1                    /* symbol for codes beyond the alphabet (raw u32 follows) */
#define HUF_NCODE 2047               /* codes 0..2046 (plain or nudged) have symbols of their own */
#define CODE_VERB 0xffffffffu        /* the code array's marker for a verbatim value */
/* Flag on a code: deliver x' rounded to the stream's out
 * dtype in the other direction than nearest - one grid step from the nearest
 * value, towards x'. When nearest rounding misses the bound but x' itself
 * meets it, this always lands within the bound (docs/CODEC.md), for the cost
 * of a rarer symbol instead of a verbatim value. */
#define CODE_NUDGE 0x80000000u
/* Symbol of a code: VERB, 2 + (zigzag code << 1 | nudged) - so small codes,
 * nudged or not, have small symbols and the table stays short - or ESC. */
static inline uint32_t huf_sym(uint32_t z) {
  if (z == CODE_VERB) return HUF_VERB;
  uint32_t c = z & ~CODE_NUDGE;
  return c < HUF_NCODE ? 2 + (c << 1 | z >> 31) : HUF_ESC;
}
/* The code (with its nudge flag) of a symbol >= 2. */
static inline uint32_t huf_code(uint32_t sym) { return (sym - 2) >> 1 | ((sym - 2) & 1) << 31; }

static inline uint32_t zz_enc(int32_t q) { return ((uint32_t)q << 1) ^ (uint32_t)(q >> 31); }
static inline int32_t zz_dec(uint32_t z) { return (int32_t)(z >> 1) ^ -(int32_t)(z & 1); }

/* The F32 value x' of code q: the one formula encoder and decoder share. */
static inline float codec_value(int32_t q, double step) { return (float)((double)q * step); }
/* A nudge on 16-bit (BF16/F16) bits h whose value g is the nearest rounding
 * of f: one grid step towards f (sign-magnitude, so +-1 on the bits). */
static inline uint16_t codec_nudge16(uint16_t h, float g, float f) {
  return g == f ? h : (uint16_t)(__builtin_fabsf(g) > __builtin_fabsf(f) ? h - 1 : h + 1);
}
/* Position k of a fast chunk's nudge list (pw = 2 or 4 bytes, little-endian). */
static inline uint32_t codec_pos_at(const uint8_t *p, uint32_t k, size_t pw) {
  if (pw == 2) return (uint32_t)p[2 * (size_t)k] | (uint32_t)p[2 * (size_t)k + 1] << 8;
  return (uint32_t)p[4 * (size_t)k] | (uint32_t)p[4 * (size_t)k + 1] << 8 | (uint32_t)p[4 * (size_t)k + 2] << 16 |
         (uint32_t)p[4 * (size_t)k + 3] << 24;
}

/* The absolute bound of mode (abs / rel / std over the finite values of src). */
double codec_eb_absolute(const void *src, moesz_dtype dt, size_t n, moesz_eb_mode mode, double eb);

/* Quantizes n values: codes[i] (zigzag, with CODE_NUDGE where nearest
 * rounding to out misses and the other rounding meets) for values whose
 * delivery in out_dtype meets the bound, CODE_VERB for the rest (NaN, Inf,
 * -0, |q| out of range, bound missed). With hist (HUF_NSYM counts, zeroed by
 * the caller), also counts the Huffman symbols. Returns the number of
 * verbatim values. */
size_t codec_quantize(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double step, double eb,
                      uint32_t *codes, uint64_t *hist);
/* Dequantizes zigzag codes into dst as dt from a stream checked in out -
 * the exact inverse the encoder checked: x' rounded to dt, and for dt F32
 * with a 16-bit out, x' rounded to out and widened. simd: moesz_cpu_avx2(),
 * asked once by the caller (cpuid is slow in virtual machines). */
void codec_dequantize(const uint32_t *codes, size_t n, double step, moesz_dtype dt, moesz_dtype out, void *dst,
                      int simd);
/* The same for codes that may carry CODE_NUDGE: a nudged code is delivered
 * nudged when dt is the stream's 16-bit out dtype or F32, plainly otherwise. */
void codec_dequantize_nudged(const uint32_t *codes, size_t n, double step, moesz_dtype dt, moesz_dtype out,
                             void *dst);
/* The index of the first finite value of src (n values of dtype in) whose
 * nearest out value is farther than eb from it - a value no out value can
 * deliver within the bound - or n if there is none; *x and *y get that value
 * and its nearest out value. */
size_t codec_first_undeliverable(const void *src, moesz_dtype in, moesz_dtype out, size_t n, double eb, double *x,
                                 double *y);
/* Writes value i of src (dtype in) into dst[j] as dtype out. */
void codec_put_value(const void *src, moesz_dtype in, size_t i, void *dst, moesz_dtype out, size_t j);

/* Huffman (huff.c). lengths[HUF_NSYM] from a histogram, max HUF_MAXLEN bits,
 * optimal for the limit. 0 ok, -1 out of memory. */
int huf_lengths(const uint64_t *hist, uint8_t *len);
typedef struct huf_enc { uint16_t code[HUF_NSYM]; uint8_t len[HUF_NSYM]; } huf_enc;
void huf_enc_init(huf_enc *h, const uint8_t *len);
/* Encodes symbols of codes into 4 interleaved streams; escapes go to esc[].
 * out must hold huf_enc_bound(n) bytes. Returns bytes written. */
size_t huf_enc_bound(size_t n);
size_t huf_encode(const huf_enc *h, const uint32_t *codes, size_t n, uint8_t *out);
/* Pair table: indexed by the next HUF_PAIRBITS bits, it gives the 16-bit
 * values (vs = 2) of the one or two plain symbols whose codes end within
 * those bits (two when both fit), so one lookup delivers up to two values:
 * pv[] the two values (first in the low half), pm[] the bits consumed (bits
 * 0-3) and the values delivered (bits 6-7: 1 or 2; 0 = decode one symbol
 * through e[]: a rare symbol, a code longer than HUF_PAIRBITS or no code).
 * Two arrays (20 KB) rather than one of 8-byte entries, which would take
 * 32 KB, all of a typical L1 data cache, for a table read at random. */
#define HUF_PAIRBITS 12
/* Decoder: e[] maps the next HUF_MAXLEN bits to sym << 4 | len (len 0 =
 * invalid); v[] maps a symbol to its delivered value in dt (vs bytes). */
typedef struct huf_dec {
  uint16_t e[1 << HUF_MAXLEN];
  uint8_t v[HUF_NSYM * 4];
  size_t vs;
  double step;
  moesz_dtype dt, out;          /* decoded dtype; the stream's out dtype (nudges) */
  size_t nsym;                  /* symbols listed: len[s] = 0 for s >= nsym */
  int pair;                     /* 1: pv[], pm[] are built for these e[], v[] */
  uint32_t pv[1 << HUF_PAIRBITS]; /* pair table [2^HUF_PAIRBITS]: two values */
  uint8_t pm[1 << HUF_PAIRBITS];  /* pair table [2^HUF_PAIRBITS]: bits consumed | values delivered << 6 */
} huf_dec;
/* Builds e[] from the code lengths len[0..nsym) (symbols from nsym on have
 * none). 0 ok, -1 a length beyond HUF_MAXLEN or not a prefix code. */
int huf_dec_init(huf_dec *d, const uint8_t *len, size_t nsym);
/* Fills d's value table (the symbols with a code in len, after
 * huf_dec_init) for codes delivered as dt at quantizer step, from a stream
 * whose bound holds in out. */
void huf_dec_values(huf_dec *d, const uint8_t *len, double step, moesz_dtype dt, moesz_dtype out);
/* Builds d's pair table from the code lengths len (as given to
 * huf_dec_init), e[] and v[] (after huf_dec_values; 16-bit
 * values only, else nothing is built). huf_decode then decodes with it,
 * unless a block has more than HUF_PAIR_RARE verbatim and escaped values,
 * same values either way. */
#define HUF_PAIR_RARE 64
void huf_dec_pairs(huf_dec *d, const uint8_t *len);
/* The share of pair lookups that deliver two values, as the code lengths
 * len[0..nsym) predict (a symbol of length l taken to have probability
 * 2^-l): sum over plain symbol pairs whose lengths add up to at most
 * HUF_PAIRBITS of 2^-(l1 + l2). */
double huf_pair_rate(const uint8_t *len, size_t nsym);
/* Whether decoding n values with the code lengths len[0..nsym) pays for the
 * pair table's build. Measured on this model's experts and moesz codec
 * bench's array (bench/huf_pairs.sh, bench/results/codec.md): the pair loop
 * is no faster than the single-symbol one below a predicted rate of about
 * 0.45 and saves a share of its decode time that grows faster than the rate
 * above it (0.03 at 0.53, 0.09 at 0.70, 0.27-0.32 at 0.88-0.99), at least
 * (rate - 0.45)^2; the build costs what 3300-3500 values take to decode.
 * So pairs when n (rate - HUF_PAIR_RATE0)^2 >= HUF_PAIR_WORK: from about
 * 12000 values at rate 0.97, 46000 at 0.72. */
#define HUF_PAIR_RATE0 0.45
#define HUF_PAIR_WORK 3300.0
int huf_pairs_pay(const uint8_t *len, size_t nsym, uint64_t n);
/* Decodes n values from buf[0..len) straight into dst (d's dtype); the
 * positions of VERB symbols go to vpos (exactly nv of them, else malformed)
 * and are left for the caller to fill (their contents are unspecified).
 * 0 ok, -1 malformed. */
int huf_decode(const huf_dec *d, const uint8_t *buf, size_t len, size_t n, void *dst, uint32_t *vpos, size_t nv);

/* Fixed-length blocks of 256 codes (pack.c). */
size_t pack_bound(size_t n);
size_t pack_encode(const uint32_t *codes, size_t n, uint8_t *out);
/* Decodes n values into dst as dt (stream checked in out), a block at a
 * time (unpack, dequantize), delivering the nn codes at the ascending
 * positions npos (pw = 2 or 4 bytes each, validated by the caller) nudged. */
int pack_decode(const uint8_t *buf, size_t len, size_t n, double step, moesz_dtype dt, moesz_dtype out,
                const uint8_t *npos, uint32_t nn, size_t pw, void *dst);
#endif
