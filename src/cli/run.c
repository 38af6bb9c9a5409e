/* cli/run.c - `moesz run MODEL --prompt TEXT | --prompt-ids IDS [options]`:
 * generates text with the inference engine, streaming it to stdout (or the
 * generated ids with --print-ids), prompt and generation speed on stderr.
 * Argument parsing and printing only; the work is in src/infer and src/text. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
    "  --fast-dot[=16|8]    compute-layout experts: round x to 16 bits per 256 columns (half the\n"
    "                       multiplies; |x error| <= 2^-16 of the block's largest |x|) instead of\n"
    "                       splitting it exactly (the f32 product up to rounding; default); =8:\n"
    "                       2- and 4-bit groups also against x rounded to 8 bits per 128 columns (byte\n"
    "                       multiplies, as llama.cpp's Q8 activations; |x error| <= 2^-8 of the\n"
    "                       block's largest |x|): rows of 2- or 4-bit groups in decode, and products of 5\n"
    "                       or more tokens (prompts);\n"
    "                       on CPUs with AVX512_BF16 also BF16 weights against x rounded to BF16\n"
    "                       in products of 2 or more tokens (vdpbf16ps, as llama.cpp multiplies\n"
    "                       BF16 models; one token keeps the exact matvec, which is faster)\n"
    "  --ctx N              KV cache length (default min(config max positions, 4096))\n"
    "  --ignore-eos         keep generating after the end-of-sequence token\n"
    "\nServing from a .msz container (moesz compress): dense weights stay resident, experts\n"
    "are read from the file on demand and decoded into a budgeted cache (docs/RUNTIME.md):\n"
    "  --mem BYTES          expert cache budget, e.g. 64MiB, 1.5GB (default, and 0: unlimited); counts\n"
    "                       experts in flight and prefetched; a prompt streams its experts\n"
    "                       through it. auto: MemAvailable - dense weights - I/O buffers -\n"
    "                       routers - max(512 MiB, MemAvailable / 8), within [one expert,\n"
    "                       every expert]; printed on stderr\n"
    "  --cache POLICY       lru (default) | lfu | lfru\n"
    "  --prefetch           predict the next MoE layer's experts and decode them ahead\n"
    "  --cache-dtype T      expert dtype in the cache: stored (default: the original dtype, or the\n"
    "                       compute layout for a --codec compute container) | f32 | bf16 | f16 |\n"
    "                       compute (needs a --codec compute container; bf16/f16 are refused there:\n"
    "                       its bound holds in f32; f16 refuses an expert with |x| > 65504)\n"
    "  --store MODE         where expert blobs are read from: direct (pread with O_DIRECT where\n"
    "                       the file system allows it, else buffered, with a note) | buffered\n"
    "                       (pread through the page cache) | mmap (the container's mapping: the\n"
    "                       in-memory path; compute layouts are used in place, not copied).\n"
    "                       Default: direct under --mem, mmap without a budget\n"
    "  --link-gbps X        pace every expert read like a link of X GB/s (1e9 bytes/s;\n"
    "                       0.001-10000; default: unthrottled), prefetch included\n"
    "  --link-latency-us Y  add Y microseconds to every read request (0-1e7; default 0)\n"
    "  --cache-state FILE   warm start: if FILE exists, take its request frequencies and load\n"
    "                       the hottest experts that fit in the budget before the prompt; at\n"
    "                       exit, save the cache's frequencies to FILE\n"
    "  --stats FORMAT       print cache statistics at the end on stderr: text | json\n"
    "                       (stall time split into link wait + read, decode and waiting on\n"
    "                       prefetch; compute = forward time - stall; peak RSS)\n"
    "  -h, --help           this text\n";

static int usage_err(const char *msg, const char *arg) {
  fprintf(stderr, "moesz run: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", USAGE);
  return 2;
}

static int parse_float(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n'; }

/* "1,2, 3" or "1 2 3" -> ids: integers separated by one comma and/or blanks;
 * an empty item ("1,,2", a leading or trailing comma) or nothing at all is
 * malformed (-1). */
static int parse_ids(const char *s, int32_t **ids, size_t *n) {
  size_t cap = 16, k = 0;
  int32_t *v = malloc(cap * sizeof *v);
  if (!v) return -1;
  const char *p = s;
  for (;;) {
    while (is_blank(*p)) p++;
    if (!*p) break;
    char *end;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (errno || end == p || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',' && !is_blank(*end))) {
      free(v);
      return -1;
    }
    while (is_blank(*end)) end++;
    if (*end == ',') {                  /* a comma must be followed by another id */
      end++;
      const char *q = end;
      while (is_blank(*q)) q++;
      if (!*q || *q == ',') { free(v); return -1; }
    }
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

/* VmHWM of this process in bytes (0 if /proc is unreadable). */
static unsigned long long peak_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

static void print_cache_stats(moesz_cache *k, const char *fmt, size_t tokens, double secs, double fwd_secs,
                              uint64_t budget, uint64_t dense_bytes) {
  moesz_cache_stats s;
  moesz_cache_stats_get(k, &s);
  double hit = s.gets ? (double)(s.hits + s.prefetch_waits) / (double)s.gets : 0;
  double compute = fwd_secs - s.stall_seconds;
  if (compute < 0) compute = 0;
  const moesz_store_stats *io = &s.store;
  if (!strcmp(fmt, "json")) {
    fprintf(stderr, "{\"tokens\":%zu,\"seconds\":%.4f,\"tokens_per_s\":%.3f,\"budget_bytes\":%llu,"
            "\"expert_gets\":%llu,\"hits\":%llu,\"misses\":%llu,\"prefetch_waits\":%llu,\"hit_rate\":%.4f,"
            "\"prefetch_issued\":%llu,\"prefetch_used\":%llu,\"prefetch_wasted\":%llu,\"prefetch_refused\":%llu,"
            "\"prefetch_failed\":%llu,\"evictions\":%llu,"
            "\"over_budget\":%llu,\"bytes_read\":%llu,\"bytes_decoded\":%llu,\"peak_bytes\":%llu,"
            "\"expert_bytes\":%llu,\"stall_s\":%.4f,\"stall_link_s\":%.4f,\"stall_decode_s\":%.4f,"
            "\"stall_prefetch_s\":%.4f,\"compute_s\":%.4f,\"decode_s\":%.4f,\"link_wait_s\":%.4f,\"read_s\":%.4f,"
            "\"reads\":%llu,\"bytes_io\":%llu,\"direct\":%d,\"block\":%zu,\"io_buffer_bytes\":%llu,"
            "\"dense_bytes\":%llu,\"peak_rss_bytes\":%llu,\"preloaded\":%llu}\n",
            tokens, secs, secs > 0 ? (double)tokens / secs : 0, (unsigned long long)budget,
            (unsigned long long)s.gets, (unsigned long long)s.hits, (unsigned long long)s.misses,
            (unsigned long long)s.prefetch_waits, hit, (unsigned long long)s.prefetch_issued,
            (unsigned long long)s.prefetch_used, (unsigned long long)s.prefetch_wasted,
            (unsigned long long)s.prefetch_refused, (unsigned long long)s.prefetch_failed,
            (unsigned long long)s.evictions, (unsigned long long)s.over_budget, (unsigned long long)s.bytes_read,
            (unsigned long long)s.bytes_decoded, (unsigned long long)s.peak_bytes, (unsigned long long)s.expert_bytes,
            s.stall_seconds, s.stall_link_seconds, s.stall_decode_seconds, s.stall_prefetch_seconds, compute,
            s.decode_seconds, s.link_wait_seconds, s.read_seconds, (unsigned long long)io->reads,
            (unsigned long long)io->bytes_io, io->direct, io->block, (unsigned long long)io->buffer_bytes,
            (unsigned long long)dense_bytes, peak_rss(), (unsigned long long)s.preloaded);
  } else {
    fprintf(stderr, "expert cache: %llu requests, hit rate %.1f%% (%llu hits, %llu waited on prefetch, %llu misses), "
            "%llu evictions%s\n", (unsigned long long)s.gets, 100 * hit, (unsigned long long)s.hits,
            (unsigned long long)s.prefetch_waits, (unsigned long long)s.misses, (unsigned long long)s.evictions,
            s.over_budget ? " (budget below one layer's active experts)" : "");
    fprintf(stderr, "  moved %.2f MB compressed -> %.2f MB decoded, peak resident %.2f MB, stall %.3f s, decode %.3f s\n",
            (double)s.bytes_read / 1e6, (double)s.bytes_decoded / 1e6, (double)s.peak_bytes / 1e6, s.stall_seconds,
            s.decode_seconds);
    fprintf(stderr, "  stall %.3f s = link %.3f + decode %.3f + waiting on prefetch %.3f (+ %.3f other); compute %.3f s\n",
            s.stall_seconds, s.stall_link_seconds, s.stall_decode_seconds, s.stall_prefetch_seconds,
            s.stall_seconds - s.stall_link_seconds - s.stall_decode_seconds - s.stall_prefetch_seconds, compute);
    fprintf(stderr, "  store: %llu reads, %.2f MB from the file (%s), link wait %.3f s, read %.3f s, I/O buffers %.2f MB; "
            "peak RSS %.2f MB (dense %.2f MB + budget %.2f MB)\n",
            (unsigned long long)io->reads, (double)io->bytes_io / 1e6, io->direct ? "O_DIRECT" : "buffered or mapped",
            s.link_wait_seconds, s.read_seconds, (double)io->buffer_bytes / 1e6, (double)peak_rss() / 1e6,
            (double)dense_bytes / 1e6, (double)budget / 1e6);
    if (s.prefetch_issued)
      fprintf(stderr, "  prefetch: %llu issued, %llu used, %llu evicted unused, %llu refused (no room), %llu failed\n",
              (unsigned long long)s.prefetch_issued, (unsigned long long)s.prefetch_used,
              (unsigned long long)s.prefetch_wasted, (unsigned long long)s.prefetch_refused,
              (unsigned long long)s.prefetch_failed);
  }
}

/* Background prefetch failures are said on stderr whatever --stats is. */
static void warn_prefetch_failures(moesz_cache *k) {
  moesz_cache_stats s;
  moesz_cache_stats_get(k, &s);
  if (s.prefetch_failed)
    fprintf(stderr, "moesz run: warning: %llu background prefetches failed; first: %s\n",
            (unsigned long long)s.prefetch_failed, s.prefetch_error);
}

int moesz_cli_run(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *prompt = NULL, *prompt_ids = NULL;
  long max_tokens = 128, threads = 0, ctx = 0, seed = 0;
  double temperature = 0.8, top_p = 0.95;
  int print_ids = 0, ignore_eos = 0;
  moesz_cache_opts co = {.budget_bytes = 0, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT};
  int store_given = 0, fast_dot = 0;
  const char *stats = NULL, *state = NULL;
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
      if (!strcmp(argv[++i], "auto")) co.budget_auto = 1;
      else {
        long long b = moesz_cli_parse_bytes(argv[i]);
        if (b < 0) return usage_err("bad --mem (bytes, e.g. 64MiB, or auto)", argv[i]);
        co.budget_bytes = (uint64_t)b;
        co.budget_auto = 0;
      }
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
    } else if (!strcmp(a, "--store")) {
      NEED_VAL();
      if (moesz_store_mode_parse(argv[++i], &co.store.mode)) return usage_err("bad --store (direct, buffered, mmap)", argv[i]);
      store_given = 1;
    } else if (!strcmp(a, "--link-gbps") || !strcmp(a, "--link-latency-us")) {
      NEED_VAL();
      int gbps = !strcmp(a, "--link-gbps");
      double v;
      moesz_error le = {0};
      if (parse_float(argv[++i], -1e300, 1e300, &v)) return usage_err(gbps ? "bad --link-gbps (GB/s)" : "bad --link-latency-us (microseconds)", argv[i]);
      if (gbps && v <= 0) return usage_err("bad --link-gbps: must be > 0 (leave it out for an unthrottled link)", argv[i]);
      if (moesz_store_check_link(gbps ? v : 0, gbps ? 0 : v, &le)) return usage_err(le.msg, argv[i]);
      if (gbps) co.store.link_gbps = v;
      else co.store.link_latency_us = v;
    } else if (!strcmp(a, "--cache-state")) {
      NEED_VAL();
      state = argv[++i];
    } else if (!strcmp(a, "--stats")) {
      NEED_VAL();
      stats = argv[++i];
      if (strcmp(stats, "text") && strcmp(stats, "json")) return usage_err("bad --stats (text, json)", stats);
    }
    else if (!strcmp(a, "--max-tokens")) {
      NEED_VAL();
      if (moesz_cli_parse_long(argv[++i], 0, 1 << 24, &max_tokens)) return usage_err("bad --max-tokens", argv[i]);
    } else if (!strcmp(a, "--fast-dot") || !strcmp(a, "--fast-dot=16")) {
      fast_dot = 1;
    } else if (!strcmp(a, "--fast-dot=8")) {
      fast_dot = 2;
    } else if (!strcmp(a, "--threads")) {
      NEED_VAL();
      if (moesz_cli_parse_long(argv[++i], 0, 1024, &threads)) return usage_err("bad --threads", argv[i]);
    } else if (!strcmp(a, "--ctx")) {
      NEED_VAL();
      if (moesz_cli_parse_long(argv[++i], 1, 1 << 24, &ctx)) return usage_err("bad --ctx", argv[i]);
    } else if (!strcmp(a, "--seed")) {
      NEED_VAL();
      if (moesz_cli_parse_long(argv[++i], 0, LONG_MAX, &seed)) return usage_err("bad --seed", argv[i]);
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

  /* without a budget every expert stays resident: serve them from the mapping */
  if (!store_given && !co.budget_bytes && !co.budget_auto) co.store.mode = MOESZ_STORE_MMAP;
  moesz_engine_opts o = {.threads = (int)threads, .max_ctx = (int)ctx, .fast_dot = fast_dot};
  co.miss_threads = threads > 0 ? (int)threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  moesz_engine *e = NULL;
  moesz_cache *cache = NULL;
  int is_msz = moesz_engine_is_msz(model);
  if (!is_msz && (co.budget_bytes || co.budget_auto || co.prefetch || stats || co.store.link_gbps > 0 ||
                  co.store.link_latency_us > 0 || store_given || state))
    fprintf(stderr, "moesz run: note: --mem/--prefetch/--stats/--store/--link-*/--cache-state apply to .msz "
            "containers; %s is served from its files\n", model);
  if (is_msz ? moesz_engine_open_msz(model, &co, &o, &e, &cache, &err) : moesz_engine_open(model, &o, &e, &err)) {
    if (tok) moesz_tok_free(tok);
    free(ids);
    return moesz_cli_fail("run", &err);
  }
  if (cache && co.budget_auto) {
    moesz_cache_stats cs;
    moesz_cache_stats_get(cache, &cs);
    co.budget_bytes = cs.budget_bytes;
    fprintf(stderr, "moesz run: --mem auto: %s\n", moesz_cache_budget_note(cache));
  }
  if (state && is_msz && !cache) fprintf(stderr, "moesz run: note: --cache-state applies to models with routed experts\n");
  if (state && cache && access(state, F_OK) == 0) {
    int n = 0;
    uint64_t bytes = 0;
    double ts0 = moesz_time_now();
    if (moesz_cache_state_load(cache, state, &n, &bytes, &err)) {
      moesz_engine_close(e);
      if (tok) moesz_tok_free(tok);
      free(ids);
      return moesz_cli_fail("run", &err);
    }
    fprintf(stderr, "moesz run: cache state %s: preloaded %d experts (%.2f MB) in %.3f s\n", state, n,
            (double)bytes / 1e6, moesz_time_now() - ts0);
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
  if (cache && stats) {
    moesz_engine_stats es;
    moesz_engine_stats_get(e, &es);
    const moesz_st *dst = moesz_engine_model(e)->st;
    uint64_t dense = 0;
    for (size_t i = 0; dst && i < moesz_st_count(dst); i++) dense += moesz_st_at(dst, i)->nbytes;
    print_cache_stats(cache, stats, n_ids + (size_t)n_fwd, tp + tg, es.seconds, co.budget_bytes, dense);
  }
  if (cache && state && !status) {
    if (moesz_cache_state_save(cache, state, &err)) status = moesz_cli_fail("run", &err);
    else fprintf(stderr, "moesz run: cache state saved to %s\n", state);
  }
  if (cache && *moesz_store_note(moesz_cache_store(cache)))
    fprintf(stderr, "moesz run: note: %s\n", moesz_store_note(moesz_cache_store(cache)));
done:
  if (cache) warn_prefetch_failures(cache);
  moesz_sampler_free(&sm);
  if (ts) moesz_tok_stream_free(ts);
  moesz_engine_close(e);
  if (tok) moesz_tok_free(tok);
  free(logits);
  free(gen);
  free(ids);
  return status;
}
