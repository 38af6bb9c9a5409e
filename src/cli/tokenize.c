/* cli/tokenize.c - `moesz tokenize`: encode or decode with a tokenizer.json. */
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/cli.h"

static const char *USAGE =
  "usage: moesz tokenize TOKENIZER (--text TEXT | --file FILE | --decode IDS) [options]\n\n"
  "TOKENIZER is a tokenizer.json or a model folder holding one.\n"
  "  --text TEXT     encode TEXT\n"
  "  --file FILE     encode the contents of FILE\n"
  "  --decode IDS    decode comma or space separated ids to text\n"
  "  --special       apply the post-processor (e.g. add BOS) when encoding\n"
  "  --ids           print ids only (space separated); default prints id<TAB>token lines\n"
  "  --count         print only the number of tokens\n";

int moesz_cli_tokenize(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *path = NULL, *text = NULL, *file = NULL, *dec = NULL;
  int special = 0, ids_only = 0, count = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--text") && i + 1 < argc) text = argv[++i];
    else if (!strcmp(a, "--file") && i + 1 < argc) file = argv[++i];
    else if (!strcmp(a, "--decode") && i + 1 < argc) dec = argv[++i];
    else if (!strcmp(a, "--special")) special = 1;
    else if (!strcmp(a, "--ids")) ids_only = 1;
    else if (!strcmp(a, "--count")) count = 1;
    else if (a[0] == '-' && a[1]) { fprintf(stderr, "moesz tokenize: bad option '%s'\n\n%s", a, USAGE); return 2; }
    else if (!path) path = a;
    else { fprintf(stderr, "moesz tokenize: unexpected argument '%s'\n", a); return 2; }
  }
  if (!path || (!!text + !!file + !!dec) != 1) { fputs(USAGE, stderr); return 2; }
  moesz_error e = {0};
  moesz_tok *t;
  if (moesz_tok_load(path, &t, &e)) return moesz_cli_fail("tokenize", &e);
  int status = 0;
  if (dec) {
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (const char *p = dec; ids && *p;) {
      char *end;
      long v = strtol(p, &end, 10);
      if (end == p) { fprintf(stderr, "moesz tokenize: bad id list near '%s'\n", p); free(ids); moesz_tok_free(t); return 2; }
      if (n == cap) { int32_t *ni = realloc(ids, 2 * cap * sizeof *ni); if (!ni) break; ids = ni; cap *= 2; }
      ids[n++] = (int32_t)v;
      p = end;
      while (*p == ',' || *p == ' ') p++;
    }
    char *out;
    size_t len;
    if (moesz_tok_decode(t, ids, n, 0, &out, &len, &e)) status = moesz_cli_fail("tokenize", &e);
    else { fwrite(out, 1, len, stdout); putchar('\n'); free(out); }
    free(ids);
  } else {
    char *buf = NULL;
    size_t len = 0;
    if (file) {
      if (moesz_file_read_all(file, 1u << 30, &buf, &len, &e)) { moesz_tok_free(t); return moesz_cli_fail("tokenize", &e); }
      text = buf;
    } else len = strlen(text);
    int32_t *ids;
    size_t n;
    if (moesz_tok_encode(t, text, len, special, &ids, &n, &e)) status = moesz_cli_fail("tokenize", &e);
    else if (count) printf("%zu\n", n);
    else if (ids_only) { for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]); putchar('\n'); }
    else for (size_t i = 0; i < n; i++) {
      char *s;
      size_t sl;
      moesz_tok_decode(t, &ids[i], 1, 0, &s, &sl, NULL);
      printf("%d\t%s\n", ids[i], s ? s : "");
      free(s);
    }
    if (!status) free(ids);
    free(buf);
  }
  moesz_tok_free(t);
  return status;
}
