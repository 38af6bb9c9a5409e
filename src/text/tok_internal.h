/* text/tok_internal.h - the tokenizer's private state, shared by
 * tok_load.c (tokenizer.json -> tables), tok_encode.c (normalise,
 * pre-tokenise, BPE) and tok_decode.c (ids -> UTF-8, streaming).
 * Owned by src/text. */
#ifndef MOESZ_TOK_INTERNAL_H
#define MOESZ_TOK_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "moesz/text.h"

enum { PRE_SPLIT = 1, PRE_BYTELEVEL_REGEX };

typedef struct tok_pre {
  int kind;
  pcre2_code *re;            /* Split pattern, or the GPT-2 regex for ByteLevel(use_regex) */
  int invert;                /* Split: invert (matches are the gaps) */
} tok_pre;

typedef struct tok_added {
  char *content;
  uint32_t len;
  int32_t id;
  int special;
} tok_added;

typedef struct tok_template {
  int32_t pre[4], post[4];   /* special ids before / after $A */
  int npre, npost;
} tok_template;

struct moesz_tok {
  int32_t nvocab;            /* ids are [0, nvocab) */
  char **str;                /* [nvocab] token string (vocab's own spelling), NULL for holes */
  uint32_t *slen;            /* [nvocab] */
  uint8_t *is_special;       /* [nvocab] special added tokens */
  uint32_t *hslot;           /* string -> id + 1, open addressing, [hcap] */
  uint32_t hcap;
  uint64_t *mkey;            /* merges: (a << 32 | b) -> rank, merged id; [mcap], key ~0 = empty */
  uint32_t *mrank, *mout;
  uint32_t mcap;
  int byte_level;            /* bytes are mapped to GPT-2's printable code points */
  int byte_fallback;         /* unknown chars -> <0xNN> tokens */
  int32_t unk;               /* -1 if none */
  int fuse_unk, ignore_merges;
  int nfc;                   /* NFC normaliser */
  char *prepend;             /* Prepend normaliser ("▁"), NULL if none */
  char *repl_from, *repl_to; /* Replace normaliser (string pattern), NULL if none */
  tok_pre pre[8];
  int npre;
  int prefix_space;          /* ByteLevel add_prefix_space */
  tok_added *added;          /* [nadded], longest first within the same first byte */
  int nadded;
  int32_t added_first[257];  /* index range into added by first byte (first[b] .. first[b + 1]) */
  tok_template tmpl;
  int dec_byte_level, dec_replace, dec_byte_fallback, dec_strip;
  int32_t byte_id[256];      /* byte-level: id of the 1-char token of byte b; fallback: <0xNN>; -1 none */
  uint16_t byte_cp[256];     /* byte-level code point of byte b */
  int16_t cp_byte[512];      /* inverse, -1 if not a byte-level code point */
  int32_t bos, eos;
};

/* FNV-1a over bytes */
static inline uint32_t tok_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}
int32_t tok_lookup(const moesz_tok *t, const char *s, size_t n);
int tok_merge(const moesz_tok *t, int32_t a, int32_t b, uint32_t *rank, int32_t *out);
#endif
