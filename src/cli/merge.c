/* cli/merge.c - `moesz merge`: part containers (compress --layers) -> one container. */
#include <getopt.h>
#include <string.h>
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz merge PART.msz [PART.msz ...] -o OUT.msz\n\n"
    "Joins the parts of a split compression (`moesz compress MODEL --layers A-B -o PART.msz`, one\n"
    "per layer range, on any machines) into one container, byte for byte the container one\n"
    "`moesz compress` run over all layers writes with the same options. The parts (any order) must\n"
    "come from the same model (same embedded files, dense tensors and sources) and hold disjoint\n"
    "layer ranges that cover every MoE layer. The result is checked as `moesz run` opens a\n"
    "container before it is renamed into place. See docs/CONTAINER.md \"Parts\".\n\n"
    "  -o, --output FILE      output container (written to a temporary file, then renamed)\n");
}

int moesz_cli_merge(int argc, char **argv) {
  static const struct option opts[] = {
    {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *out = NULL;
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1;) {
    switch (ch) {
      case 'o': out = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind >= argc || !out) { usage(stderr); return 2; }
  moesz_error e = {0};
  moesz_cli_output(out);
  if (moesz_msz_merge((const char *const *)argv + optind, argc - optind, out, &e)) return moesz_cli_fail("merge", &e);
  printf("wrote %s from %d parts\n", out, argc - optind);
  return 0;
}
