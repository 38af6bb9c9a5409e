/* cli/cli.h - what the subcommand files share: their entry points (one file
 * per subcommand, src/cli/<name>.c defines moesz_cli_<name>) and small
 * printing helpers. Only argument parsing and printing live in src/cli. */
#ifndef MOESZ_CLI_H
#define MOESZ_CLI_H
#include <stdio.h>
#include "moesz.h"

/* Each returns the process exit status: 0 ok, 1 runtime failure, 2 usage. */
int moesz_cli_inspect(int argc, char **argv);
int moesz_cli_compress(int argc, char **argv);
int moesz_cli_decompress(int argc, char **argv);
int moesz_cli_merge(int argc, char **argv);
int moesz_cli_resmoe(int argc, char **argv);
int moesz_cli_run(int argc, char **argv);
int moesz_cli_ppl(int argc, char **argv);
int moesz_cli_eval(int argc, char **argv);
int moesz_cli_sweep(int argc, char **argv);
int moesz_cli_codec(int argc, char **argv);
int moesz_cli_synth(int argc, char **argv);
int moesz_cli_tokenize(int argc, char **argv);
int moesz_cli_serve(int argc, char **argv);

/* `moesz inspect X.msz`: the container's summary (inspect_msz.c). */
int moesz_cli_inspect_msz(const char *path, int json);

/* `moesz compress --method resmoe` options (compress_resmoe.c): fills o and
 * layers[MOESZ_MAX_LAYERS]; keep / spec may be NULL (defaults); 0 or 2. */
int moesz_cli_compress_resmoe(const moesz_config *c, const char *residual, const char *keep, const char *base,
                              const char *spec, moesz_resmoe_opts *o, uint8_t *layers);

/* `moesz compress --target-kl / --target-ppl-rise` (compress_policy.c). */
typedef struct moesz_cli_policy {
  double target;           /* KL nats/token, or relative perplexity rise */
  int ppl;                 /* 1: the target is a perplexity rise */
  const char *calib;       /* calibration text */
  const char *ebs;         /* candidate bounds "a,b,..." or NULL (default list) */
  const char *dir;         /* sweep folder or NULL (OUT.policy) */
  size_t limit;            /* calibration tokens kept, 0 = all */
  size_t ctx;              /* window */
  int tries;
} moesz_cli_policy;
/* Runs the policy over m with container options mo (writes out); 0, 1 or 2. */
int moesz_cli_compress_policy(moesz_model *m, const char *out, const moesz_msz_opts *mo, const moesz_cli_policy *a,
                              int json);

/* The tokenizer of a model: MODEL/tokenizer.json, the tokenizer.json
 * embedded in a .msz container, or a tokenizer.json path. */
int moesz_cli_tok_load(const char *model, moesz_tok **out, moesz_error *err);

/* Interrupts (signals.c): SIGINT, SIGTERM and SIGHUP remove the temporaries
 * of the outputs registered with moesz_cli_output, then end the process with
 * that signal. Start once in main, before any thread; 0 on success. */
int moesz_cli_signals_start(void);
/* Registers an output path (file or folder) of this run, and removes (with a
 * note on stderr) "<path>.tmp.<pid>" temporaries of processes that are gone. */
void moesz_cli_output(const char *path);

/* Prints "moesz CMD: MSG" on stderr and returns 1. */
int moesz_cli_fail(const char *cmd, const moesz_error *e);
/* True if argv holds -h or --help before any "--". */
int moesz_cli_wants_help(int argc, char **argv);
/* Parses a byte size with optional K/M/G/KiB/MiB/GiB suffix; -1 on error. */
long long moesz_cli_parse_bytes(const char *s);
/* A whole decimal integer in [lo, hi] into *out; -1 (out untouched) otherwise. */
int moesz_cli_parse_long(const char *s, long lo, long hi, long *out);
#endif
