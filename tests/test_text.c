/* tests/test_text.c - tokenizers against ids from the `tokenizers` package
 * (tests/fixtures/text/, made by tools/make_tok_fixtures.py) on every
 * shared tokenizer and text file: 100% id match, decode(encode(x)) == x,
 * hard strings with and without special tokens, HF decodes, streaming
 * decode, and malformed tokenizer files. */
#include "harness.h"
#include "moesz.h"
#include "base/util.h"

static char *unhex(const char *h, size_t *n) {
  if (!strcmp(h, "-")) { *n = 0; return calloc(1, 1); }
  size_t l = strlen(h) / 2;
  char *o = malloc(l + 1);
  for (size_t i = 0; i < l; i++) { unsigned v; sscanf(h + 2 * i, "%2x", &v); o[i] = (char)v; }
  o[l] = 0;
  *n = l;
  return o;
}

static int parse_ids(char *s, int32_t *ids, int cap) {
  int n = 0;
  for (char *tk = strtok(s, " \n"); tk && n < cap; tk = strtok(NULL, " \n")) ids[n++] = atoi(tk);
  return n;
}

static int same(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Lines of a shared text file, split on '\n' (cached: one file at a time). */
typedef struct { char name[320]; char *buf; char **line; size_t n; } textfile;
static int load_text(textfile *tf, const char *name) {
  if (!strcmp(tf->name, name)) return 0;
  free(tf->buf); free(tf->line);
  memset(tf, 0, sizeof *tf);
  char p[1024];
  snprintf(p, sizeof p, "%s/text/%s", harness_data_dir(), name);
  size_t len;
  if (moesz_file_read_all(p, 64u << 20, &tf->buf, &len, NULL)) return -1;
  size_t cnt = 1;
  for (size_t i = 0; i < len; i++) cnt += tf->buf[i] == '\n';
  tf->line = malloc(cnt * sizeof *tf->line);
  tf->line[tf->n++] = tf->buf;
  for (size_t i = 0; i < len; i++)
    if (tf->buf[i] == '\n') { tf->buf[i] = 0; tf->line[tf->n++] = tf->buf + i + 1; }
  snprintf(tf->name, sizeof tf->name, "%s", name);
  return 0;
}

static void check_tokenizer(const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/tokenizers/%s.tokenizer.json", harness_data_dir(), name);
  moesz_tok *t;
  moesz_error e = {0};
  if (moesz_tok_load(p, &t, &e)) { CHECK_MSG(0, "%s: %s", name, e.msg); return; }
  snprintf(p, sizeof p, "tests/fixtures/text/%s.txt", name);
  FILE *f = fopen(p, "r");
  CHECK(f != NULL);
  if (!f) { moesz_tok_free(t); return; }
  static char row[1 << 20];
  static int32_t want[1 << 16];
  textfile tf;
  memset(&tf, 0, sizeof tf);
  int lines = 0, bad_ids = 0, bad_rt = 0, strings = 0, bad_str = 0, bad_dec = 0, bad_stream = 0;
  while (fgets(row, sizeof row, f)) {
    char kind = row[0], a[300], b[1 << 12];
    if (kind == 'L') {
      int idx, off;
      if (sscanf(row, "L %299s %d %n", a, &idx, &off) < 2 || load_text(&tf, a) || (size_t)idx >= tf.n) { bad_ids++; continue; }
      int nw = parse_ids(row + off, want, 1 << 16);
      const char *line = tf.line[idx];
      int32_t *ids;
      size_t n;
      if (moesz_tok_encode(t, line, strlen(line), 0, &ids, &n, &e)) { bad_ids++; continue; }
      if (!same(ids, n, want, (size_t)nw)) {
        if (bad_ids < 2) fprintf(stderr, "  %s %s:%d: ids differ (%zu vs %d)\n", name, a, idx, n, nw);
        bad_ids++;
      }
      char *back;
      size_t bl;
      if (moesz_tok_decode(t, ids, n, 0, &back, &bl, &e) || bl != strlen(line) || memcmp(back, line, bl)) bad_rt++;
      /* streaming gives the same bytes (modulo the decoder's leading Strip) */
      moesz_tok_stream *s = moesz_tok_stream_new(t);
      char *acc = malloc(bl + 64), chunk[256];
      size_t al = 0, cl;
      for (size_t i = 0; i < n; i++)
        if (!moesz_tok_stream_put(s, ids[i], chunk, sizeof chunk, &cl) && al + cl <= bl + 63) { memcpy(acc + al, chunk, cl); al += cl; }
      size_t lead = al > bl ? al - bl : 0;
      bad_stream += !(al >= bl && !memcmp(acc + lead, back ? back : "", bl));
      moesz_tok_stream_free(s);
      free(acc);
      free(back);
      free(ids);
      lines++;
    } else if (kind == 'S') {
      int sp, off;
      if (sscanf(row, "S %4095s %d %n", b, &sp, &off) < 2) continue;
      size_t len;
      char *txt = unhex(b, &len);
      int nw = parse_ids(row + off, want, 1 << 16);
      int32_t *ids;
      size_t n;
      if (moesz_tok_encode(t, txt, len, sp, &ids, &n, &e) || !same(ids, n, want, (size_t)nw)) {
        if (bad_str < 3) fprintf(stderr, "  %s: string %.40s (special %d) differs\n", name, txt, sp);
        bad_str++;
      } else free(ids);
      free(txt);
      strings++;
    } else if (kind == 'D') {
      int off;
      if (sscanf(row, "D %4095s %n", b, &off) < 1) continue;
      size_t len;
      char *txt = unhex(b, &len);
      int nw = parse_ids(row + off, want, 1 << 16);
      char *out;
      size_t ol;
      if (moesz_tok_decode(t, want, (size_t)nw, 0, &out, &ol, &e) || ol != len || memcmp(out, txt, len)) {
        if (bad_dec < 3) fprintf(stderr, "  %s: decode of %.40s differs\n", name, txt);
        bad_dec++;
      }
      free(out);
      free(txt);
    }
  }
  fclose(f);
  free(tf.buf);
  free(tf.line);
  CHECK_MSG(lines >= 300, "%s: only %d lines checked", name, lines);
  CHECK_MSG(bad_ids == 0, "%s: %d of %d lines with different ids", name, bad_ids, lines);
  CHECK_MSG(bad_rt == 0, "%s: %d lines do not round-trip", name, bad_rt);
  CHECK_MSG(bad_stream == 0, "%s: %d lines stream differently", name, bad_stream);
  CHECK_MSG(bad_str == 0, "%s: %d of %d hard strings differ", name, bad_str, strings);
  CHECK_MSG(bad_dec == 0, "%s: %d decodes differ", name, bad_dec);
  int32_t bogus = (int32_t)moesz_tok_vocab_size(t) + 5;
  char *out;
  size_t ol;
  CHECK_EQ_INT(moesz_tok_decode(t, &bogus, 1, 0, &out, &ol, &e), MOESZ_E_RANGE);
  moesz_tok_free(t);
}

#define NEED_DATA() do { char p_[1024]; snprintf(p_, sizeof p_, "%s/tokenizers", harness_data_dir()); \
    if (!moesz_path_is_dir(p_)) SKIP("shared data not found at %s (set MOESZ_DATA)", harness_data_dir()); } while (0)

TEST(olmoe_gpt_neox_matches_tokenizers) { NEED_DATA(); check_tokenizer("olmoe-gpt-neox"); }
TEST(qwen3_matches_tokenizers) { NEED_DATA(); check_tokenizer("qwen3"); }
TEST(deepseek_v3_matches_tokenizers) { NEED_DATA(); check_tokenizer("deepseek-v3"); }
TEST(llama2_matches_tokenizers) { NEED_DATA(); check_tokenizer("llama2"); }

TEST(bad_tokenizer_files_rejected) {
  moesz_tok *t;
  moesz_error e = {0};
  const char *bad[] = {
    "", "{", "[]", "{\"model\":{}}",
    "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}",
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Lowercase\"}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = moesz_tok_load_json(bad[i], strlen(bad[i]), &t, &e);
    CHECK_MSG(rc != MOESZ_OK, "accepted: %s", bad[i]);
    if (!rc) moesz_tok_free(t);
  }
  CHECK_EQ_INT(moesz_tok_load_json(bad[4], strlen(bad[4]), &t, &e), MOESZ_E_UNSUPPORTED);
  CHECK(strstr(e.msg, "WordPiece") != NULL);
  CHECK_EQ_INT(moesz_tok_load("/nonexistent/tokenizer.json", &t, &e), MOESZ_E_NOTFOUND);
  /* a tiny valid one: merges apply, unknown bytes and invalid UTF-8 do not crash */
  const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<unk>\":3},\"merges\":[\"a b\"],\"unk_token\":\"<unk>\"}}";
  CHECK_EQ_INT(moesz_tok_load_json(ok, strlen(ok), &t, &e), MOESZ_OK);
  int32_t *ids;
  size_t n;
  CHECK_EQ_INT(moesz_tok_encode(t, "abzab\xff", 6, 0, &ids, &n, &e), MOESZ_OK);
  CHECK(n == 4 && ids[0] == 2 && ids[1] == 3 && ids[2] == 2 && ids[3] == 3);
  free(ids);
  moesz_tok_free(t);
}

int main(void) {
  RUN(olmoe_gpt_neox_matches_tokenizers);
  RUN(qwen3_matches_tokenizers);
  RUN(deepseek_v3_matches_tokenizers);
  RUN(llama2_matches_tokenizers);
  RUN(bad_tokenizer_files_rejected);
  return DONE();
}
