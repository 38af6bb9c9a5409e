/* cli/eval.c - `moesz eval MODEL --task FILE.jsonl`: task accuracy scored as
 * lm-evaluation-harness scores it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

static const char *USAGE =
  "usage: moesz eval MODEL --task FILE.jsonl [--limit N] [--bos auto|yes|no] [--json] [--threads N] [--ctx N]\n\n"
  "Multiple-choice tasks ({query, choices, gold}: PIQA, ARC, BoolQ, COPA) report acc and acc_norm\n"
  "(log-likelihood per character of the choice); partial-context tasks ({context_options,\n"
  "continuation, gold}: WinoGrande) report acc; cloze tasks ({context, continuation}: LAMBADA)\n"
  "report greedy exact-match accuracy and perplexity. Scored as lm-evaluation-harness 0.4.x does: the\n"
  "continuation follows the context after one space, trailing context whitespace moves to the\n"
  "continuation, an empty context is scored after BOS (EOS when the tokenizer has none). Standard\n"
  "errors are sample std / sqrt(n).\n\n"
  "  --bos MODE   auto (default, as the harness: BOS when the tokenizer's post-processor adds it)\n"
  "               | yes (always, once) | no (never; the scoring of earlier moesz versions)\n"
  "  --limit N    first N items (0: all)\n";

int moesz_cli_eval(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *task = NULL;
  moesz_bos_mode bos = MOESZ_BOS_AUTO;
  long limit = 0, threads = 0, ctx = 0;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int hv = i + 1 < argc;
    if (!strcmp(a, "--task") && hv) task = argv[++i];
    else if (!strcmp(a, "--limit") && hv) limit = atol(argv[++i]);
    else if (!strcmp(a, "--bos") && hv) {
      if (moesz_bos_mode_parse(argv[++i], &bos)) { fprintf(stderr, "moesz eval: bad --bos '%s' (auto, yes, no)\n", argv[i]); return 2; }
    }
    else if (!strcmp(a, "--threads") && hv) threads = atol(argv[++i]);
    else if (!strcmp(a, "--ctx") && hv) ctx = atol(argv[++i]);
    else if (!strcmp(a, "--json")) json = 1;
    else if (a[0] == '-' && a[1]) { fprintf(stderr, "moesz eval: bad option '%s'\n\n%s", a, USAGE); return 2; }
    else if (!model) model = a;
    else { fprintf(stderr, "moesz eval: unexpected argument '%s'\n", a); return 2; }
  }
  if (!model || !task || limit < 0) { fputs(USAGE, stderr); return 2; }
  moesz_error e = {0};
  moesz_tok *t;
  if (moesz_cli_tok_load(model, &t, &e)) return moesz_cli_fail("eval", &e);
  moesz_engine_opts o = {.threads = (int)threads, .max_ctx = (int)ctx};
  moesz_engine *en;
  if (moesz_engine_open(model, &o, &en, &e)) { moesz_tok_free(t); return moesz_cli_fail("eval", &e); }
  moesz_task_result r;
  int status = 0;
  if (moesz_eval_task(en, t, task, (size_t)limit, bos, isatty(2), &r, &e)) status = moesz_cli_fail("eval", &e);
  else if (json) {
    static const char *BOS[] = {"auto", "yes", "no"};
    printf("{\"model\":\"%s\",\"task\":\"%s\",\"bos\":\"%s\",\"n\":%zu,\"acc\":%.6f,\"acc_stderr\":%.6f", model, task,
           BOS[bos], r.n, r.acc, r.acc_stderr);
    if (r.cloze) printf(",\"ppl\":%.6f", r.ppl);
    else printf(",\"acc_norm\":%.6f,\"acc_norm_stderr\":%.6f", r.acc_norm, r.acc_norm_stderr);
    printf(",\"seconds\":%.2f}\n", r.seconds);
  } else {
    printf("%s: %zu items, acc %.4f +- %.4f", task, r.n, r.acc, r.acc_stderr);
    if (r.cloze) printf(", perplexity %.3f", r.ppl);
    else printf(", acc_norm %.4f +- %.4f", r.acc_norm, r.acc_norm_stderr);
    printf(" (%.1f s)\n", r.seconds);
  }
  moesz_engine_close(en);
  moesz_tok_free(t);
  return status;
}
