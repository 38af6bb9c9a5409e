/* cli/synth.c - `moesz synth`: random-weight checkpoints of real shapes. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
    "usage: moesz synth --like FAMILY -o DIR [options]\n"
    "       moesz synth --like FAMILY --msz -o OUT.msz [--method M --codec P --eb X] [options]\n\n"
    "Writes a random-weight checkpoint (config.json + model.safetensors) with the real shapes of a\n"
    "model family, for scale and speed tests. Weights ~ N(0, std^2), norms 1; deterministic per seed.\n\n"
    "  --like FAMILY        mixtral (8x7B), olmoe (1B-7B), qwen3_moe (30B-A3B), qwen2_moe (A2.7B),\n"
    "                       deepseek (MoE-16B), llama (2-7B), deepseek_v3 (V3/R1: MLA, sigmoid group\n"
    "                       routing), glm4_moe (GLM-4.5: partial rotary, q/k norm, sigmoid routing),\n"
    "                       gpt_oss (20b: experts in MXFP4 as published, the rest in --dtype; not\n"
    "                       with --msz); for deepseek_v3 / glm4_moe --hidden scales the dense-layer\n"
    "                       width too, the MLA / head dims stay those of the real model, and with\n"
    "                       --layers only the first layer is dense (3 as published otherwise)\n"
    "  -o, --output DIR     output folder (written beside itself, renamed into place at the end)\n"
    "  --force              replace an existing model folder DIR (refused otherwise when not empty)\n"
    "  --layers N           override the layer count (real models are large: use a few layers)\n"
    "  --experts N --top-k K --hidden D --expert-width N --vocab V --heads H --kv-heads H\n"
    "                       override other shape values (--top-k above the experts, or experts\n"
    "                       for a dense family, is an error; the family's default top-k is\n"
    "                       lowered to a smaller --experts)\n"
    "  --dtype T            bf16 (default) | f32 | f16\n"
    "  --std X              weight standard deviation (default 0.02)\n"
    "  --seed S             random seed (default 0)\n"
    "  --msz                write a compressed container to -o instead of a folder, streaming: one\n"
    "                       expert matrix generated while the previous one is encoded, so a full-size\n"
    "                       model never exists uncompressed; byte for byte what `synth` to a folder\n"
    "                       then `compress` with the same options writes\n"
    "  --method M           sz (default) | zstd | raw          (with --msz; as `compress`)\n"
    "  --codec P            entropy (default) | fast | compute (with --msz --method sz)\n"
    "  --eb X               absolute error bound (default 1e-3; with --msz)\n"
    "  --threads N          codec threads (default: all cores; with --msz)\n"
    "  --progress / -q      force the progress bar (with ETA, on stderr) on / off (default: on when\n"
    "                       stderr is a tty)\n");
}

int moesz_cli_synth(int argc, char **argv) {
  enum { LAYERS = 1000, EXPERTS, TOPK, HIDDEN, WIDTH, VOCAB, HEADS, KVH, DTYPE, STD, SEED, FORCE, MSZ, METHOD, CODEC, EB,
         THREADS, PROGRESS };
  static const struct option opts[] = {
    {"like", required_argument, 0, 'l'}, {"output", required_argument, 0, 'o'},
    {"layers", required_argument, 0, LAYERS}, {"experts", required_argument, 0, EXPERTS},
    {"top-k", required_argument, 0, TOPK}, {"hidden", required_argument, 0, HIDDEN},
    {"expert-width", required_argument, 0, WIDTH}, {"vocab", required_argument, 0, VOCAB},
    {"heads", required_argument, 0, HEADS}, {"kv-heads", required_argument, 0, KVH},
    {"dtype", required_argument, 0, DTYPE}, {"std", required_argument, 0, STD},
    {"seed", required_argument, 0, SEED}, {"force", no_argument, 0, FORCE}, {"msz", no_argument, 0, MSZ},
    {"method", required_argument, 0, METHOD}, {"codec", required_argument, 0, CODEC}, {"eb", required_argument, 0, EB},
    {"threads", required_argument, 0, THREADS}, {"progress", no_argument, 0, PROGRESS}, {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *method = NULL, *codec = NULL;
  double eb = 1e-3;
  int msz = 0, threads = 0, progress = isatty(2), eb_set = 0;
  moesz_synth_opts o;
  memset(&o, 0, sizeof o);
  o.dtype = MOESZ_DT_BF16;
  const char *out = NULL;
  optind = 1;
  for (int ch; (ch = getopt_long(argc, argv, "l:o:qh", opts, NULL)) != -1;) {
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
      case MSZ: msz = 1; break;
      case METHOD: bad_int = 0; method = optarg; break;
      case CODEC: bad_int = 0; codec = optarg; break;
      case EB:
        bad_int = 0;
        eb = strtod(optarg, &end);
        eb_set = 1;
        if (end == optarg || *end || !(eb >= 0) || !isfinite(eb)) {
          fprintf(stderr, "moesz synth: bad --eb '%s' (a number >= 0; 0 is lossless)\n", optarg);
          return 2;
        }
        break;
      case THREADS:
        bad_int = 0;
        if (*end || v < 0 || v > 1024) { fprintf(stderr, "moesz synth: bad --threads '%s'\n", optarg); return 2; }
        threads = (int)v;
        break;
      case PROGRESS: progress = 1; break;
      case 'q': progress = 0; break;
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
  if (!msz && (method || codec || eb_set || threads)) {
    fprintf(stderr, "moesz synth: --method, --codec, --eb and --threads need --msz\n");
    return 2;
  }
  moesz_error e = {0};
  moesz_cli_output(out);
  if (msz) {
    moesz_msz_opts mo;
    memset(&mo, 0, sizeof mo);
    if (!method || !strcmp(method, "sz")) mo.method = MOESZ_MSZ_CODEC;
    else if (!strcmp(method, "zstd")) mo.method = MOESZ_MSZ_ZSTD;
    else if (!strcmp(method, "raw")) mo.method = MOESZ_MSZ_RAW;
    else { fprintf(stderr, "moesz synth: unknown --method '%s' (sz, zstd, raw)\n", method); return 2; }
    if (codec && mo.method != MOESZ_MSZ_CODEC) { fprintf(stderr, "moesz synth: --codec needs --method sz\n"); return 2; }
    const char *pipe = codec ? codec : "entropy";
    if (!strcmp(pipe, "compute")) {
      mo.method = MOESZ_MSZ_COMPUTE;
      pipe = "entropy";   /* pipeline unused */
      if (!(eb > 0)) { fprintf(stderr, "moesz synth: --codec compute needs a bound > 0\n"); return 2; }
    }
    if (moesz_msz_codec_options(pipe, "abs", &mo) != 0) {
      fprintf(stderr, "moesz synth: unknown --codec '%s' (entropy, fast, compute)\n", pipe);
      return 2;
    }
    mo.eb = eb;
    mo.threads = threads;
    mo.progress = progress;
    moesz_msz_summary s;
    if (moesz_msz_synth_write(&o, out, &mo, &s, &e)) return moesz_cli_fail("synth", &e);
    double ratio = s.expert_stored_bytes ? (double)s.expert_raw_bytes / (double)s.expert_stored_bytes : 0;
    printf("wrote %s (%s-shaped, random weights): %.2f MB (experts %.2f MB -> %.2f MB, %.3fx; dense %.2f MB) in %.2f s\n",
           out, o.like, (double)s.total_bytes / 1e6, (double)s.expert_raw_bytes / 1e6,
           (double)s.expert_stored_bytes / 1e6, ratio, (double)s.dense_bytes / 1e6, s.seconds);
    return 0;
  }

  if (moesz_synth_write(&o, out, &e)) return moesz_cli_fail("synth", &e);
  printf("wrote %s (%s-shaped, random weights)\n", out, o.like);
  return 0;
}
