/* cli/common.c - helpers shared by the subcommand files. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

int moesz_cli_fail(const char *cmd, const moesz_error *e) {
  fprintf(stderr, "moesz %s: %s\n", cmd, e && e->msg[0] ? e->msg : "failed");
  return 1;
}

int moesz_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--")) break;
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
  }
  return 0;
}

int moesz_cli_parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

long long moesz_cli_parse_bytes(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return -1;
  while (isspace((unsigned char)*end)) end++;
  double mul = 1;
  if (*end) {
    char u = (char)toupper((unsigned char)*end);
    int bin = end[1] == 'i' || end[1] == 'I';
    double k = bin ? 1024.0 : 1000.0;
    if (u == 'K') mul = k; else if (u == 'M') mul = k * k; else if (u == 'G') mul = k * k * k;
    else if (u == 'B' && !end[1]) mul = 1; else return -1;
    const char *rest = end + 1 + (bin ? 1 : 0);
    if (*rest == 'B' || *rest == 'b') rest++;
    if (*rest) return -1;
  }
  double r = v * mul;
  if (r > 9.2e18) return -1;
  return (long long)r;
}

int moesz_cli_tok_load(const char *model, moesz_tok **out, moesz_error *err) {
  *out = NULL;
  if (!moesz_engine_is_msz(model)) return moesz_tok_load(model, out, err);
  moesz_msz *c;
  int rc = moesz_msz_open(model, &c, err);
  if (rc) return rc;
  const void *data;
  size_t len;
  rc = moesz_msz_file(c, "tokenizer.json", &data, &len, err);
  if (!rc) rc = moesz_tok_load_json(data, len, out, err);
  moesz_msz_close(c);
  return rc;
}
