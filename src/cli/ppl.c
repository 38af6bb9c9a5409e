/* cli/ppl.c - `moesz ppl MODEL FILE`: perplexity with sliding windows, and
 * with --ref OTHER, KL(ref || model) and top-1 agreement. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/cli.h"

static const char *USAGE =
  "usage: moesz ppl MODEL FILE [--ctx 512] [--stride 256] [--ref OTHER] [options]\n\n"
  "Perplexity of MODEL (a model folder or .msz container) on the text in FILE, with sliding windows\n"
  "as in the Hugging Face perplexity guide (each window scores only the tokens the previous one did\n"
  "not). With --ref, also the mean KL(ref || model) per scored token and top-1 agreement: the usual\n"
  "way to judge a compressed model against its original.\n\n"
  "  --ctx N            window length in tokens (default 512)\n"
  "  --stride N         window step (default 256)\n"
  "  --ref OTHER        reference model (same vocabulary)\n"
  "  --tokenizer PATH   tokenizer.json (default: MODEL's)\n"
  "  --ids              FILE holds token ids (whitespace or comma separated) instead of text\n"
  "  --limit-tokens N   score only the first N tokens\n"
  "  --threads N        threads per engine (default: all cores)\n"
  "  --fast-dot[=8]     compute-layout experts: x rounded to 16 bits per group; =8: 2- and 4-bit groups\n"
  "                     also against x rounded to 8 bits (decode's 4-bit rows, products of 5 or\n"
  "                     more tokens); with AVX512_BF16, BF16 weights\n"
  "                     against x rounded to BF16 from 2 tokens on (see moesz run --help)\n"
  "  --decode           MODEL reads each window a token at a time, as generation does (the decode\n"
  "                     kernels); the reference still a window at a time\n"
  "  --json             one JSON object on stdout\n";

static int read_ids(const char *path, int32_t **ids, size_t *n, moesz_error *e) {
  char *buf;
  size_t len;
  int rc = moesz_file_read_all(path, 1u << 30, &buf, &len, e);
  if (rc) return rc;
  size_t cap = 1024, k = 0;
  int32_t *v = malloc(cap * sizeof *v);
  for (char *p = buf; v && *p;) {
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (!*p) break;
    char *end;
    long x = strtol(p, &end, 10);
    if (end == p) { free(v); free(buf); return moesz_error_set(e, MOESZ_E_FORMAT, "%s: not a list of ids near '%.10s'", path, p); }
    if (k == cap) { int32_t *nv = realloc(v, 2 * cap * sizeof *nv); if (!nv) break; v = nv; cap *= 2; }
    v[k++] = (int32_t)x;
    p = end;
  }
  free(buf);
  *ids = v;
  *n = k;
  return v ? MOESZ_OK : moesz_error_set(e, MOESZ_E_NOMEM, "out of memory");
}

int moesz_cli_ppl(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *file = NULL, *ref = NULL, *tokp = NULL;
  long ctx = 512, stride = 256, limit = 0, threads = 0;
  int json = 0, as_ids = 0, fast_dot = 0, decode = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int hv = i + 1 < argc;
    if (!strcmp(a, "--ctx") && hv) ctx = atol(argv[++i]);
    else if (!strcmp(a, "--stride") && hv) stride = atol(argv[++i]);
    else if (!strcmp(a, "--ref") && hv) ref = argv[++i];
    else if (!strcmp(a, "--tokenizer") && hv) tokp = argv[++i];
    else if (!strcmp(a, "--limit-tokens") && hv) limit = atol(argv[++i]);
    else if (!strcmp(a, "--threads") && hv) threads = atol(argv[++i]);
    else if (!strcmp(a, "--ids")) as_ids = 1;
    else if (!strcmp(a, "--fast-dot") || !strcmp(a, "--fast-dot=16")) fast_dot = 1;
    else if (!strcmp(a, "--fast-dot=8")) fast_dot = 2;
    else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--decode")) decode = 1;
    else if (a[0] == '-' && a[1]) { fprintf(stderr, "moesz ppl: bad option '%s'\n\n%s", a, USAGE); return 2; }
    else if (!model) model = a;
    else if (!file) file = a;
    else { fprintf(stderr, "moesz ppl: unexpected argument '%s'\n", a); return 2; }
  }
  if (!model || !file) { fputs(USAGE, stderr); return 2; }
  if (ctx < 2 || stride < 1 || stride > ctx || limit < 0) { fprintf(stderr, "moesz ppl: need --ctx >= 2 and 1 <= --stride <= --ctx\n"); return 2; }
  moesz_error e = {0};
  int32_t *ids = NULL;
  size_t n = 0;
  if (as_ids) {
    if (read_ids(file, &ids, &n, &e)) return moesz_cli_fail("ppl", &e);
  } else {
    moesz_tok *t;
    if (moesz_cli_tok_load(tokp ? tokp : model, &t, &e)) return moesz_cli_fail("ppl", &e);
    char *txt;
    size_t len;
    int rc = moesz_file_read_all(file, 1u << 30, &txt, &len, &e);
    if (!rc && len == 0) rc = moesz_error_set(&e, MOESZ_E_FORMAT, "%s is empty", file);
    if (!rc) rc = moesz_tok_encode(t, txt, len, 0, &ids, &n, &e);
    if (!rc && !json) fprintf(stderr, "%s: %zu bytes -> %zu tokens\n", file, len, n);
    if (rc == MOESZ_OK || txt) free(txt);
    moesz_tok_free(t);
    if (rc) return moesz_cli_fail("ppl", &e);
  }
  if (limit && (size_t)limit < n) n = (size_t)limit;
  moesz_engine_opts o = {.threads = (int)threads, .max_ctx = (int)ctx, .fast_dot = fast_dot};
  moesz_engine *en = NULL, *er = NULL;
  int status = 0;
  if (moesz_engine_open(model, &o, &en, &e) || (ref && moesz_engine_open(ref, &o, &er, &e))) {
    status = moesz_cli_fail("ppl", &e);
  } else {
    moesz_ppl_result r;
    if ((decode ? moesz_eval_ppl_decode : moesz_eval_ppl)(en, er, ids, n, (size_t)ctx, (size_t)stride, isatty(2), &r, &e))
      status = moesz_cli_fail("ppl", &e);
    else if (json) {
      printf("{\"model\":\"%s\",\"file\":\"%s\",\"ctx\":%ld,\"stride\":%ld,\"tokens\":%zu,\"nll\":%.6f,\"ppl\":%.6f",
             model, file, ctx, stride, r.tokens, r.nll, r.ppl);
      if (er) printf(",\"ref\":\"%s\",\"ref_ppl\":%.6f,\"kl\":%.8f,\"top1\":%.6f", ref, r.ref_ppl, r.kl, r.top1);
      printf(",\"seconds\":%.3f,\"tokens_per_s\":%.2f}\n", r.seconds, (double)r.tokens * (er ? 2 : 1) / r.seconds);
    } else {
      printf("perplexity %.4f over %zu tokens (%.4f nats/token), ctx %ld stride %ld, %.1f s (%.0f tok/s)\n", r.ppl,
             r.tokens, r.nll / (double)r.tokens, ctx, stride, r.seconds, (double)r.tokens / r.seconds);
      if (er) printf("reference perplexity %.4f; KL(ref || model) %.6f nats/token; top-1 agreement %.2f%%\n", r.ref_ppl, r.kl, 100 * r.top1);
    }
  }
  moesz_engine_close(en);
  moesz_engine_close(er);
  free(ids);
  return status;
}
