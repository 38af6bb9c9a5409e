/* cli/run.c - `moesz run MODEL --prompt TEXT | --prompt-ids IDS [options]`:
 * generates text with the inference engine, streaming it to stdout (or the
 * generated ids with --print-ids), prompt and generation speed on stderr.
 * Argument parsing and printing only; the work is in src/infer and src/text. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/cli.h"
#include "moesz/infer.h"
#include "moesz/text.h"

static int tok_load(const char *path, moesz_tok **out, moesz_error *err) {
  return moesz_cli_tok_load(path, out, err);
}

static const char *USAGE =
    "usage: moesz run MODEL (--prompt TEXT | --prompt-ids 1,2,3) [options]\n\n"
    "Generates a continuation of the prompt with MODEL (a Hugging Face model folder:\n"
    "config.json + safetensors) and streams it to stdout; prompt and generation speed\n"
    "(tokens/s) go to stderr.\n\n"
    "  --prompt TEXT        prompt text (needs tokenizer.json in MODEL; BOS is added as\n"
    "                       the tokenizer's post-processor says)\n"
    "  --prompt-ids IDS     prompt as token ids, comma or space separated (no tokenizer\n"
    "                       needed)\n"
    "  --print-ids          print the generated ids (space separated, one line) on stdout\n"
    "                       instead of text\n"
    "  --max-tokens N       tokens to generate (default 128)\n"
    "  --temperature T      0 = greedy (default 0.8)\n"
    "  --top-p P            nucleus sampling mass (default 0.95; 1 = off)\n"
    "  --seed S             sampler seed (default 0)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --ctx N              KV cache length (default min(config max positions, 4096))\n"
    "  --ignore-eos         keep generating after the end-of-sequence token\n"
    "\nServing from a .msz container (moesz compress): dense weights stay resident, experts\n"
    "are decoded on demand into a budgeted cache:\n"
    "  --mem BYTES          expert cache budget, e.g. 64MiB, 1.5GB (default: unlimited)\n"
    "  --cache POLICY       lru (default) | lfu | lfru\n"
    "  --prefetch           predict the next MoE layer's experts and decode them ahead\n"
    "  --cache-dtype T      expert dtype in the cache: stored (default: the original dtype, or the\n"
    "                       compute layout for a --codec compute container) | f32 | bf16 | f16 |\n"
    "                       compute (needs a --codec compute container; bf16/f16 are refused there:\n"
    "                       its bound holds in f32)\n"
    "  --stats FORMAT       print cache statistics at the end on stderr: text | json\n"
    "  -h, --help           this text\n";

static int usage_err(const char *msg, const char *arg) {
  fprintf(stderr, "moesz run: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", USAGE);
  return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_float(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

/* "1,2, 3" -> ids; -1 on a malformed list. */
static int parse_ids(const char *s, int32_t **ids, size_t *n) {
  size_t cap = 16, k = 0;
  int32_t *v = malloc(cap * sizeof *v);
  if (!v) return -1;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
    if (!*p) break;
    char *end;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (errno || end == p || x < INT32_MIN || x > INT32_MAX ||
        (*end && *end != ',' && *end != ' ' && *end != '\t' && *end != '\n')) { free(v); return -1; }
    if (k == cap) {
      int32_t *nv = realloc(v, 2 * cap * sizeof *v);
      if (!nv) { free(v); return -1; }
      v = nv;
      cap *= 2;
    }
    v[k++] = (int32_t)x;
    p = end;
  }
  if (!k) { free(v); return -1; }
  *ids = v;
  *n = k;
  return 0;
}

static void print_cache_stats(moesz_cache *k, const char *fmt, size_t tokens, double secs, uint64_t budget) {
  moesz_cache_stats s;
  moesz_cache_stats_get(k, &s);
  double hit = s.gets ? (double)(s.hits + s.prefetch_waits) / (double)s.gets : 0;
  if (!strcmp(fmt, "json")) {
    fprintf(stderr, "{\"tokens\":%zu,\"seconds\":%.4f,\"tokens_per_s\":%.3f,\"budget_bytes\":%llu,"
            "\"expert_gets\":%llu,\"hits\":%llu,\"misses\":%llu,\"prefetch_waits\":%llu,\"hit_rate\":%.4f,"
            "\"prefetch_issued\":%llu,\"prefetch_used\":%llu,\"prefetch_wasted\":%llu,\"evictions\":%llu,"
            "\"over_budget\":%llu,\"bytes_read\":%llu,\"bytes_decoded\":%llu,\"peak_bytes\":%llu,"
            "\"stall_s\":%.4f,\"decode_s\":%.4f}\n",
            tokens, secs, secs > 0 ? (double)tokens / secs : 0, (unsigned long long)budget,
            (unsigned long long)s.gets, (unsigned long long)s.hits, (unsigned long long)s.misses,
            (unsigned long long)s.prefetch_waits, hit, (unsigned long long)s.prefetch_issued,
            (unsigned long long)s.prefetch_used, (unsigned long long)s.prefetch_wasted,
            (unsigned long long)s.evictions, (unsigned long long)s.over_budget, (unsigned long long)s.bytes_read,
            (unsigned long long)s.bytes_decoded, (unsigned long long)s.peak_bytes, s.stall_seconds, s.decode_seconds);
  } else {
    fprintf(stderr, "expert cache: %llu requests, hit rate %.1f%% (%llu hits, %llu waited on prefetch, %llu misses), "
            "%llu evictions%s\n", (unsigned long long)s.gets, 100 * hit, (unsigned long long)s.hits,
            (unsigned long long)s.prefetch_waits, (unsigned long long)s.misses, (unsigned long long)s.evictions,
            s.over_budget ? " (budget below one layer's active experts)" : "");
    fprintf(stderr, "  moved %.2f MB compressed -> %.2f MB decoded, peak resident %.2f MB, stall %.3f s, decode %.3f s\n",
            (double)s.bytes_read / 1e6, (double)s.bytes_decoded / 1e6, (double)s.peak_bytes / 1e6, s.stall_seconds,
            s.decode_seconds);
    if (s.prefetch_issued)
      fprintf(stderr, "  prefetch: %llu issued, %llu used, %llu evicted unused\n", (unsigned long long)s.prefetch_issued,
              (unsigned long long)s.prefetch_used, (unsigned long long)s.prefetch_wasted);
  }
}

int moesz_cli_run(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *prompt = NULL, *prompt_ids = NULL;
  long max_tokens = 128, threads = 0, ctx = 0, seed = 0;
  double temperature = 0.8, top_p = 0.95;
  int print_ids = 0, ignore_eos = 0;
  moesz_cache_opts co = {.budget_bytes = 0, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT};
  const char *stats = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_val = i + 1 < argc;
#define NEED_VAL() do { if (!has_val) return usage_err("missing value for", a); } while (0)
    if (!strcmp(a, "--prompt")) { NEED_VAL(); prompt = argv[++i]; }
    else if (!strcmp(a, "--prompt-ids")) { NEED_VAL(); prompt_ids = argv[++i]; }
    else if (!strcmp(a, "--print-ids")) print_ids = 1;
    else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
    else if (!strcmp(a, "--prefetch")) co.prefetch = 1;
    else if (!strcmp(a, "--mem")) {
      NEED_VAL();
      long long b = moesz_cli_parse_bytes(argv[++i]);
      if (b < 0) return usage_err("bad --mem (bytes, e.g. 64MiB)", argv[i]);
      co.budget_bytes = (uint64_t)b;
    } else if (!strcmp(a, "--cache")) {
      NEED_VAL();
      if (moesz_cache_policy_parse(argv[++i], &co.policy)) return usage_err("bad --cache (lru, lfu, lfru)", argv[i]);
    } else if (!strcmp(a, "--cache-dtype")) {
      NEED_VAL();
      const char *t = argv[++i];
      if (!strcmp(t, "stored")) co.dtype = MOESZ_DT_COUNT;
      else if (!strcmp(t, "f32")) co.dtype = MOESZ_DT_F32;
      else if (!strcmp(t, "bf16")) co.dtype = MOESZ_DT_BF16;
      else if (!strcmp(t, "f16")) co.dtype = MOESZ_DT_F16;
      else if (!strcmp(t, "compute")) co.dtype = MOESZ_VIEW_CL;
      else return usage_err("bad --cache-dtype (stored, f32, bf16, f16, compute)", t);
    } else if (!strcmp(a, "--stats")) {
      NEED_VAL();
      stats = argv[++i];
      if (strcmp(stats, "text") && strcmp(stats, "json")) return usage_err("bad --stats (text, json)", stats);
    }
    else if (!strcmp(a, "--max-tokens")) {
      NEED_VAL();
      if (parse_int(argv[++i], 0, 1 << 24, &max_tokens)) return usage_err("bad --max-tokens", argv[i]);
    } else if (!strcmp(a, "--threads")) {
      NEED_VAL();
      if (parse_int(argv[++i], 0, 1024, &threads)) return usage_err("bad --threads", argv[i]);
    } else if (!strcmp(a, "--ctx")) {
      NEED_VAL();
      if (parse_int(argv[++i], 1, 1 << 24, &ctx)) return usage_err("bad --ctx", argv[i]);
    } else if (!strcmp(a, "--seed")) {
      NEED_VAL();
      if (parse_int(argv[++i], 0, LONG_MAX, &seed)) return usage_err("bad --seed", argv[i]);
    } else if (!strcmp(a, "--temperature")) {
      NEED_VAL();
      if (parse_float(argv[++i], 0, 100, &temperature)) return usage_err("bad --temperature", argv[i]);
    } else if (!strcmp(a, "--top-p")) {
      NEED_VAL();
      if (parse_float(argv[++i], 0, 1, &top_p)) return usage_err("bad --top-p", argv[i]);
    } else if (a[0] == '-' && a[1]) return usage_err("unknown option", a);
    else if (!model) model = a;
    else return usage_err("unexpected argument", a);
#undef NEED_VAL
  }
  if (!model) return usage_err("missing MODEL", NULL);
  if (!prompt == !prompt_ids) return usage_err("give exactly one of --prompt and --prompt-ids", NULL);

  moesz_error err = {0};
  int32_t *ids = NULL;
  size_t n_ids = 0;
  if (prompt_ids && parse_ids(prompt_ids, &ids, &n_ids))
    return usage_err("bad --prompt-ids (comma separated integers)", prompt_ids);

  /* tokenizer: required for --prompt and for text output */
  moesz_tok *tok = NULL;
  if (prompt || !print_ids) {
    int rc = tok_load(model, &tok, &err);
    if (rc && prompt) { free(ids); return moesz_cli_fail("run", &err); }
    if (rc) {
      fprintf(stderr, "moesz run: no tokenizer (%s); printing ids\n", err.msg);
      print_ids = 1;
    }
  }
  if (prompt) {
    if (moesz_tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids, &err)) {
      if (tok) moesz_tok_free(tok);
      return moesz_cli_fail("run", &err);
    }
    if (n_ids == 0) {
      if (tok) moesz_tok_free(tok);
      free(ids);
      fprintf(stderr, "moesz run: the prompt encodes to no tokens\n");
      return 1;
    }
  }

  moesz_engine_opts o = {.threads = (int)threads, .max_ctx = (int)ctx};
  moesz_engine *e = NULL;
  moesz_cache *cache = NULL;
  int is_msz = moesz_engine_is_msz(model);
  if (!is_msz && (co.budget_bytes || co.prefetch || stats))
    fprintf(stderr, "moesz run: note: --mem/--prefetch/--stats apply to .msz containers; %s is served from its files\n", model);
  if (is_msz ? moesz_engine_open_msz(model, &co, &o, &e, &cache, &err) : moesz_engine_open(model, &o, &e, &err)) {
    if (tok) moesz_tok_free(tok);
    free(ids);
    return moesz_cli_fail("run", &err);
  }
  int V = moesz_engine_vocab(e), eos = moesz_engine_config(e)->eos_id, status = 0;
  if (tok && moesz_tok_eos(tok) >= 0) eos = moesz_tok_eos(tok);
  float *logits = malloc(sizeof(float) * (size_t)V);
  int32_t *gen = malloc(sizeof(int32_t) * (size_t)(max_tokens > 0 ? max_tokens : 1));
  moesz_tok_stream *ts = tok && !print_ids ? moesz_tok_stream_new(tok) : NULL;
  moesz_sampler sm;
  moesz_sampler_init(&sm, (float)temperature, (float)top_p, (uint64_t)seed);
  if (!logits || !gen || (tok && !print_ids && !ts)) {
    fprintf(stderr, "moesz run: out of memory\n");
    status = 1;
    goto done;
  }
  double t0 = moesz_time_now();
  if (moesz_engine_forward(e, ids, n_ids, 0, logits, &err)) { status = moesz_cli_fail("run", &err); goto done; }
  double t1 = moesz_time_now();
  long n_gen = 0, n_fwd = 0;
  const char *stop = NULL;
  while (n_gen < max_tokens) {
    int32_t next = moesz_sampler_sample(&sm, logits, V);
    if (next < 0) { fprintf(stderr, "moesz run: sampler failed\n"); status = 1; break; }
    if (next == eos && !ignore_eos) { stop = "end of sequence"; break; }
    gen[n_gen++] = next;
    if (ts) {
      char buf[256];
      size_t len = 0;
      if (moesz_tok_stream_put(ts, next, buf, sizeof buf, &len) == 0 && len) {
        fwrite(buf, 1, len, stdout);
        fflush(stdout);
      }
    }
    if (n_gen == max_tokens) break;
    if (moesz_engine_pos(e) >= moesz_engine_max_ctx(e)) { stop = "context full"; break; }
    if (moesz_engine_forward(e, &next, 1, 0, logits, &err)) { status = moesz_cli_fail("run", &err); break; }
    n_fwd++;
  }
  double t2 = moesz_time_now();
  if (print_ids) {
    for (long i = 0; i < n_gen; i++) printf(i ? " %d" : "%d", (int)gen[i]);
    printf("\n");
  } else {
    printf("\n");
  }
  fflush(stdout);
  double tp = t1 - t0, tg = t2 - t1;
  fprintf(stderr, "prompt: %zu tokens, %.3f s, %.2f tok/s; generated: %ld tokens, %.3f s, %.2f tok/s%s%s\n",
          n_ids, tp, tp > 0 ? (double)n_ids / tp : 0.0, n_gen, tg,
          tg > 0 && n_fwd > 0 ? (double)n_fwd / tg : 0.0, stop ? "; stopped: " : "",
          stop ? stop : "");
  if (cache && stats) print_cache_stats(cache, stats, n_ids + (size_t)n_fwd, tp + tg, co.budget_bytes);
done:
  moesz_sampler_free(&sm);
  if (ts) moesz_tok_stream_free(ts);
  moesz_engine_close(e);
  if (tok) moesz_tok_free(tok);
  free(logits);
  free(gen);
  free(ids);
  return status;
}
