/* cli/main.c - the moesz binary: dispatches to one file per subcommand. */
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

typedef int (*cmd_fn)(int, char **);

/* Weak references: a subcommand whose file is not built reports so instead
 * of failing the link. */
#pragma weak moesz_cli_inspect
#pragma weak moesz_cli_compress
#pragma weak moesz_cli_decompress
#pragma weak moesz_cli_merge
#pragma weak moesz_cli_resmoe
#pragma weak moesz_cli_run
#pragma weak moesz_cli_ppl
#pragma weak moesz_cli_eval
#pragma weak moesz_cli_sweep
#pragma weak moesz_cli_codec
#pragma weak moesz_cli_synth
#pragma weak moesz_cli_tokenize
#pragma weak moesz_cli_serve

static const struct { const char *name; cmd_fn fn; const char *help; } CMDS[] = {
  {"inspect", moesz_cli_inspect, "architecture, layers, experts, parameter counts, tensor statistics"},
  {"compress", moesz_cli_compress, "write the compressed .msz container"},
  {"decompress", moesz_cli_decompress, "container back to safetensors + config"},
  {"merge", moesz_cli_merge, "join part containers (compress --layers) into one"},
  {"resmoe", moesz_cli_resmoe, "ResMoE barycenter + residual transform (and baselines)"},
  {"run", moesz_cli_run, "generate text"},
  {"ppl", moesz_cli_ppl, "perplexity of a text file; KL and top-1 agreement against --ref"},
  {"eval", moesz_cli_eval, "multiple-choice / cloze task accuracy"},
  {"sweep", moesz_cli_sweep, "layer sensitivity study: error bound x layer group"},
  {"codec", moesz_cli_codec, "error-bounded codec tools (codec bench)"},
  {"synth", moesz_cli_synth, "random-weight checkpoints of real shapes"},
  {"tokenize", moesz_cli_tokenize, "encode/decode text with a tokenizer.json"},
  {"serve", moesz_cli_serve, "OpenAI-compatible HTTP server with batched decoding"},
};
#define NCMDS (sizeof CMDS / sizeof CMDS[0])

static void usage(FILE *f) {
  fprintf(f, "moesz %s - compress, store and serve Mixture-of-Experts models\n\n"
             "usage: moesz COMMAND [ARGS...]   (moesz COMMAND --help for details)\n\ncommands:\n",
          MOESZ_VERSION);
  for (size_t i = 0; i < NCMDS; i++)
    if (CMDS[i].fn) fprintf(f, "  %-11s %s\n", CMDS[i].name, CMDS[i].help);
}

int main(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return 2; }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) { printf("moesz %s\n", MOESZ_VERSION); return 0; }
  if (moesz_cli_signals_start()) fprintf(stderr, "moesz: note: cannot watch for interrupts; an interrupted run "
                                         "may leave OUT.tmp.<pid> behind\n");
  for (size_t i = 0; i < NCMDS; i++) {
    if (strcmp(argv[1], CMDS[i].name)) continue;
    if (!CMDS[i].fn) {
      fprintf(stderr, "moesz: command '%s' is not available in this build\n", argv[1]);
      return 2;
    }
    return CMDS[i].fn(argc - 1, argv + 1);
  }
  fprintf(stderr, "moesz: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
