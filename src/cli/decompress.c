/* cli/decompress.c - `moesz decompress`: .msz container -> model folder. */
#include <getopt.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz decompress IN.msz -o OUT_DIR [--force] [--progress|--quiet]\n\n"
    "Writes a Hugging Face model folder (config.json, tokenizer files, model.safetensors with the\n"
    "original tensor names, shapes and dtypes) that transformers loads. Every blob's checksum is\n"
    "verified; lossy experts come back within their recorded error bound.\n\n"
    "The folder is written as OUT_DIR.tmp.<pid> beside OUT_DIR and renamed to OUT_DIR only when\n"
    "everything is written and verified: a failure leaves no OUT_DIR (or the old one untouched).\n"
    "  -o, --output DIR  output folder; an existing non-empty DIR is refused\n"
    "  --force           replace an existing model folder DIR (one atomic swap; its old contents\n"
    "                    are deleted afterwards). A folder holding IN.msz is always refused.\n");
}

int moesz_cli_decompress(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"progress", no_argument, 0, 'p'},
                                       {"quiet", no_argument, 0, 'q'}, {"force", no_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *out = NULL;
  int progress = isatty(2), force = 0;
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1;) {
    switch (ch) {
      case 'o': out = optarg; break;
      case 'p': progress = 1; break;
      case 'q': progress = 0; break;
      case 'f': force = 1; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1 || !out) { usage(stderr); return 2; }
  moesz_error e = {0};
  const char *in = argv[optind];
  if (moesz_output_check(out, 1, &in, 1, "output", &e)) return moesz_cli_fail("decompress", &e);
  moesz_cli_output(out);
  moesz_msz *c;
  if (moesz_msz_open(in, &c, &e)) return moesz_cli_fail("decompress", &e);
  int rc = moesz_msz_export(c, out, force, progress, &e);
  moesz_msz_close(c);
  if (rc) return moesz_cli_fail("decompress", &e);
  printf("wrote %s\n", out);
  return 0;
}
