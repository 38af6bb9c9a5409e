/* cli/synth.c - `moesz synth`: random-weight checkpoints of real shapes. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz synth --like FAMILY -o DIR [options]\n\n"
    "Writes a random-weight checkpoint (config.json + model.safetensors) with the real shapes of a\n"
    "model family, for scale and speed tests. Weights ~ N(0, std^2), norms 1; deterministic per seed.\n\n"
    "  --like FAMILY        mixtral (8x7B), olmoe (1B-7B), qwen3_moe (30B-A3B), qwen2_moe (A2.7B),\n"
    "                       deepseek (MoE-16B), llama (2-7B), deepseek_v3 (V3/R1: MLA, sigmoid group\n"
    "                       routing), glm4_moe (GLM-4.5: partial rotary, q/k norm, sigmoid routing);\n"
    "                       for deepseek_v3 / glm4_moe --hidden scales the dense-layer width too, the\n"
    "                       MLA / head dims stay those of the real model, and with --layers only\n"
    "                       the first layer is dense (3 as published otherwise)\n"
    "  -o, --output DIR     output folder (written beside itself, renamed into place at the end)\n"
    "  --force              replace an existing model folder DIR (refused otherwise when not empty)\n"
    "  --layers N           override the layer count (real models are large: use a few layers)\n"
    "  --experts N --top-k K --hidden D --expert-width N --vocab V --heads H --kv-heads H\n"
    "                       override other shape values (--top-k above the experts, or experts\n"
    "                       for a dense family, is an error; the family's default top-k is\n"
    "                       lowered to a smaller --experts)\n"
    "  --dtype T            bf16 (default) | f32 | f16\n"
    "  --std X              weight standard deviation (default 0.02)\n"
    "  --seed S             random seed (default 0)\n");
}

int moesz_cli_synth(int argc, char **argv) {
  enum { LAYERS = 1000, EXPERTS, TOPK, HIDDEN, WIDTH, VOCAB, HEADS, KVH, DTYPE, STD, SEED, FORCE };
  static const struct option opts[] = {
    {"like", required_argument, 0, 'l'}, {"output", required_argument, 0, 'o'},
    {"layers", required_argument, 0, LAYERS}, {"experts", required_argument, 0, EXPERTS},
    {"top-k", required_argument, 0, TOPK}, {"hidden", required_argument, 0, HIDDEN},
    {"expert-width", required_argument, 0, WIDTH}, {"vocab", required_argument, 0, VOCAB},
    {"heads", required_argument, 0, HEADS}, {"kv-heads", required_argument, 0, KVH},
    {"dtype", required_argument, 0, DTYPE}, {"std", required_argument, 0, STD},
    {"seed", required_argument, 0, SEED}, {"force", no_argument, 0, FORCE}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  moesz_synth_opts o;
  memset(&o, 0, sizeof o);
  o.dtype = MOESZ_DT_BF16;
  const char *out = NULL;
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "l:o:h", opts, NULL)) != -1;) {
    char *end = NULL;
    long v = optarg ? strtol(optarg, &end, 10) : 0;
    int bad_int = optarg && (*end || v < 1 || v > 1 << 20);
    switch (ch) {
      case 'l': o.like = optarg; break;
      case 'o': out = optarg; break;
      case LAYERS: o.layers = (int)v; break;
      case EXPERTS: o.experts = (int)v; break;
      case TOPK: o.top_k = (int)v; break;
      case HIDDEN: o.hidden = (int)v; break;
      case WIDTH: o.expert_width = (int)v; break;
      case VOCAB: o.vocab = (int)v; break;
      case HEADS: o.heads = (int)v; break;
      case KVH: o.kv_heads = (int)v; break;
      case DTYPE:
        bad_int = 0;
        if (!strcmp(optarg, "bf16")) o.dtype = MOESZ_DT_BF16;
        else if (!strcmp(optarg, "f32")) o.dtype = MOESZ_DT_F32;
        else if (!strcmp(optarg, "f16")) o.dtype = MOESZ_DT_F16;
        else { fprintf(stderr, "moesz synth: bad --dtype '%s' (bf16, f32, f16)\n", optarg); return 2; }
        break;
      case STD:
        bad_int = 0;
        o.std = strtod(optarg, &end);
        if (*end || !(o.std > 0)) { fprintf(stderr, "moesz synth: bad --std '%s'\n", optarg); return 2; }
        break;
      case FORCE: o.force = 1; break;
      case SEED: bad_int = 0; o.seed = strtoull(optarg, &end, 10); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (bad_int && ch >= LAYERS && ch <= KVH) { fprintf(stderr, "moesz synth: bad value '%s'\n", optarg); return 2; }
  }
  if (!o.like || !out || optind != argc) { usage(stderr); return 2; }
  if (!strcmp(o.like, "llama") && (o.experts || o.top_k)) {
    fprintf(stderr, "moesz synth: llama is a dense family: --experts and --top-k do not apply\n");
    return 2;
  }
  moesz_error e = {0};
  moesz_cli_output(out);
  if (moesz_synth_write(&o, out, &e)) return moesz_cli_fail("synth", &e);
  printf("wrote %s (%s-shaped, random weights)\n", out, o.like);
  return 0;
}
