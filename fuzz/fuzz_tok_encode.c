/* fuzz/fuzz_tok_encode.c - libFuzzer target for encoding: arbitrary bytes
 * (invalid UTF-8 included) through a byte-level BPE tokenizer with a regex
 * pre-tokenizer and NFC, and through a byte-fallback Metaspace one; decode
 * must give back the input for the byte-level one. */
#include <stdlib.h>
#include <string.h>
#include "moesz.h"

static const char *BYTELEVEL =
  "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3,\"\\u0120a\":4,\"<s>\":5},"
  "\"merges\":[\"a b\",\"\\u0120 a\"]},\"normalizer\":{\"type\":\"NFC\"},"
  "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
  "\"decoder\":{\"type\":\"ByteLevel\"},\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true}]}";
static const char *META =
  "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"<0x41>\":1,\"\\u2581\":2,\"a\":3,\"\\u2581a\":4},"
  "\"merges\":[\"\\u2581 a\"],\"byte_fallback\":true,\"unk_token\":\"<unk>\"},"
  "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
  "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
  "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
  "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *defs[2] = {BYTELEVEL, META};
  for (int k = 0; k < 2; k++) {
    moesz_tok *t;
    if (moesz_tok_load_json(defs[k], strlen(defs[k]), &t, NULL)) abort();
    int32_t *ids;
    size_t n;
    if (!moesz_tok_encode(t, (const char *)data, size, k, &ids, &n, NULL)) {
      char *out;
      size_t len;
      if (!moesz_tok_decode(t, ids, n, 1, &out, &len, NULL)) free(out);
      free(ids);
    }
    moesz_tok_free(t);
  }
  return 0;
}
