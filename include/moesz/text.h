/* moesz/text.h - tokenizers (src/text): Hugging Face tokenizer.json BPE, both
 * byte-level (GPT-2 / GPT-NeoX / Qwen / DeepSeek style: regex pre-tokenizers,
 * NFC) and sentencepiece-style (Metaspace normaliser, byte fallback, as in
 * Llama-2 / Mistral), with added and special tokens, the template
 * post-processor (BOS), decoding, and streaming decoding that holds back
 * partial UTF-8. Ids equal those of the `tokenizers` package. */
#ifndef MOESZ_TEXT_H
#define MOESZ_TEXT_H
#include "moesz/base.h"

typedef struct moesz_tok moesz_tok;

/* path: a tokenizer.json file, or a model folder holding tokenizer.json. */
int moesz_tok_load(const char *path, moesz_tok **out, moesz_error *err);
/* The same from tokenizer.json text in memory (e.g. embedded in a .msz). */
int moesz_tok_load_json(const char *json, size_t len, moesz_tok **out, moesz_error *err);
void moesz_tok_free(moesz_tok *t);
/* Encodes len bytes of UTF-8 (invalid bytes are encoded as their byte-level
 * or byte-fallback tokens, not rejected). add_special applies the template
 * post-processor (e.g. BOS). Caller frees *ids. */
int moesz_tok_encode(const moesz_tok *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                     moesz_error *err);
/* Decodes ids to UTF-8 (caller frees *out, NUL-terminated). Ids outside the
 * vocabulary -> MOESZ_E_RANGE. skip_special drops special tokens. */
int moesz_tok_decode(const moesz_tok *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                     moesz_error *err);
int moesz_tok_bos(const moesz_tok *t);   /* -1 if none */
int moesz_tok_eos(const moesz_tok *t);   /* -1 if none */
size_t moesz_tok_vocab_size(const moesz_tok *t);
/* Id of a token string (vocab or added), -1 if absent. */
int moesz_tok_id(const moesz_tok *t, const char *token);

/* Streaming decode for generation: put() one id at a time; the bytes that
 * form complete UTF-8 so far are written to buf (cap bytes). */
typedef struct moesz_tok_stream moesz_tok_stream;
moesz_tok_stream *moesz_tok_stream_new(const moesz_tok *t);
int moesz_tok_stream_put(moesz_tok_stream *s, int32_t id, char *buf, size_t cap, size_t *len);
void moesz_tok_stream_free(moesz_tok_stream *s);
#endif
