/* cli/serve.c - `moesz serve MODEL|OUT.msz [options]`: opens the engine (and
 * the expert cache for a container), the tokenizer and the chat template,
 * starts the OpenAI-compatible server (src/serve) and waits for SIGINT /
 * SIGTERM (or --exit-after). Argument parsing and printing only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "base/util.h"
#include "cli/cli.h"
#include "moesz/serve.h"

static const char *USAGE =
    "usage: moesz serve MODEL|OUT.msz [options]\n\n"
    "Serves MODEL over an OpenAI-compatible HTTP API (docs/SERVE.md): POST /v1/completions,\n"
    "POST /v1/chat/completions (stream: true as server-sent events; echo + logprobs for\n"
    "likelihood scoring), GET /v1/models, /health, /metrics (Prometheus), /v1/experts and / (a\n"
    "live page of the expert cache). Concurrent requests are decoded together, one batched\n"
    "engine step for all of them. Stops on SIGINT / SIGTERM.\n\n"
    "  --host ADDR          numeric IPv4 address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N             TCP port (default 8080; 0 = any free port, printed)\n"
    "  --model-id NAME      the model's name in /v1/models and requests (default: MODEL's file name)\n"
    "  --max-batch N        sequences decoded at once (default 8, 1..64)\n"
    "  --workers N          scheduler workers (1..16; default 2 with two or more threads, else 1):\n"
    "                       each batches its share of the requests on its own thread, so their\n"
    "                       steps run at once (docs/SERVE.md \"Workers\"); 1: one batched step for all\n"
    "                       requests on --threads threads\n"
    "  --queue N            requests waiting beyond those before 429 (default 64)\n"
    "  --max-tokens N       most tokens one request may generate (default 512)\n"
    "  --ctx N              context per sequence, prompt + generated (default min(config max\n"
    "                       positions, 4096))\n"
    "  --max-body BYTES     largest request body (default 1MiB)\n"
    "  --threads N          worker threads (default: all cores)\n"
    "  --fast-dot[=16|8]    compute-layout experts: x rounded to 16 bits per group; =8: 2- and 4-bit groups\n"
    "                       also against 8-bit x (a lone sequence's 4-bit rows, products of 5 or more\n"
    "                       tokens); with AVX512_BF16, BF16 weights against\n"
    "                       BF16 x from 2 tokens on (see moesz run --help)\n"
    "  --exit-after S       stop by itself after S seconds (tests, benchmarks)\n"
    "\nServing from a .msz container (as moesz run; docs/RUNTIME.md):\n"
    "  --mem BYTES|auto     expert cache budget (default unlimited)\n"
    "  --cache POLICY       lru (default) | lfu | lfru\n"
    "  --prefetch           predict the next MoE layer's experts and decode them ahead\n"
    "  --store MODE         direct | buffered | mmap (default: direct under --mem, mmap without)\n"
    "  -h, --help           this text\n";

static int usage_err(const char *msg, const char *arg) {
  fprintf(stderr, "moesz serve: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", USAGE);
  return 2;
}

/* The chat_template of MODEL's tokenizer_config.json (folder or embedded in
 * the container); NULL if there is none. */
static char *chat_template(const char *model) {
  char *txt = NULL, *out = NULL;
  size_t len = 0;
  if (moesz_engine_is_msz(model)) {
    moesz_msz *c;
    if (moesz_msz_open(model, &c, NULL)) return NULL;
    const void *d;
    if (!moesz_msz_file(c, "tokenizer_config.json", &d, &len, NULL) && (txt = malloc(len + 1))) {
      memcpy(txt, d, len);
      txt[len] = 0;
    }
    moesz_msz_close(c);
  } else {
    char p[4200];
    if (moesz_path_join(p, sizeof p, model, "tokenizer_config.json") ||
        moesz_file_read_all(p, 16u << 20, &txt, &len, NULL))
      return NULL;
  }
  if (!txt) return NULL;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
  if (cJSON_IsString(t)) out = strdup(t->valuestring);
  cJSON_Delete(j);
  return out;
}

int moesz_cli_serve(int argc, char **argv) {
  if (moesz_cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
  const char *model = NULL, *model_id = NULL;
  long port = 8080, workers = 0, max_batch = 8, queue = 64, max_tokens = 512, ctx = 0, threads = 0, exit_after = 0;
  long long body = 1 << 20;
  const char *host = "127.0.0.1";
  moesz_cache_opts co = {.budget_bytes = 0, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT};
  int store_given = 0, fast_dot = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_val = i + 1 < argc;
#define NEED_VAL() do { if (!has_val) return usage_err("missing value for", a); } while (0)
#define INTOPT(flag, var, lo, hi) else if (!strcmp(a, flag)) { NEED_VAL(); \
      if (moesz_cli_parse_long(argv[++i], lo, hi, &var)) return usage_err("bad " flag, argv[i]); }
    if (!strcmp(a, "--host")) { NEED_VAL(); host = argv[++i]; }
    INTOPT("--port", port, 0, 65535)
    INTOPT("--max-batch", max_batch, 1, 64)
    INTOPT("--workers", workers, 1, 16)
    INTOPT("--queue", queue, 1, 4096)
    INTOPT("--max-tokens", max_tokens, 1, 1 << 20)
    INTOPT("--ctx", ctx, 1, 1 << 24)
    INTOPT("--threads", threads, 0, 1024)
    INTOPT("--exit-after", exit_after, 1, 1L << 30)
    else if (!strcmp(a, "--model-id")) { NEED_VAL(); model_id = argv[++i]; }
    else if (!strcmp(a, "--max-body")) {
      NEED_VAL();
      body = moesz_cli_parse_bytes(argv[++i]);
      if (body < 1024 || body > (256LL << 20)) return usage_err("bad --max-body (1KiB..256MiB)", argv[i]);
    } else if (!strcmp(a, "--prefetch")) co.prefetch = 1;
    else if (!strcmp(a, "--fast-dot") || !strcmp(a, "--fast-dot=16")) fast_dot = 1;
    else if (!strcmp(a, "--fast-dot=8")) fast_dot = 2;
    else if (!strcmp(a, "--mem")) {
      NEED_VAL();
      if (!strcmp(argv[++i], "auto")) co.budget_auto = 1;
      else {
        long long b = moesz_cli_parse_bytes(argv[i]);
        if (b < 0) return usage_err("bad --mem (bytes, e.g. 64MiB, or auto)", argv[i]);
        co.budget_bytes = (uint64_t)b;
      }
    } else if (!strcmp(a, "--cache")) {
      NEED_VAL();
      if (moesz_cache_policy_parse(argv[++i], &co.policy)) return usage_err("bad --cache (lru, lfu, lfru)", argv[i]);
    } else if (!strcmp(a, "--store")) {
      NEED_VAL();
      if (moesz_store_mode_parse(argv[++i], &co.store.mode)) return usage_err("bad --store (direct, buffered, mmap)", argv[i]);
      store_given = 1;
    } else if (a[0] == '-' && a[1]) return usage_err("unknown option", a);
    else if (!model) model = a;
    else return usage_err("unexpected argument", a);
#undef INTOPT
#undef NEED_VAL
  }
  if (!model) return usage_err("missing MODEL", NULL);
  char idbuf[128];
  if (!model_id) {
    size_t n = strlen(model);
    while (n > 1 && model[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && model[b - 1] != '/') b--;
    snprintf(idbuf, sizeof idbuf, "%.*s", (int)(n - b), model + b);
    model_id = idbuf;
  }
  moesz_error err = {0};
  moesz_tok *tok = NULL;
  if (moesz_cli_tok_load(model, &tok, &err)) return moesz_cli_fail("serve", &err);
  /* without a budget every expert stays resident: serve them from the mapping (as moesz run) */
  if (!store_given && !co.budget_bytes && !co.budget_auto) co.store.mode = MOESZ_STORE_MMAP;
  moesz_engine_opts o = {.threads = (int)threads, .max_ctx = (int)ctx, .fast_dot = fast_dot};
  co.miss_threads = threads > 0 ? (int)threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  moesz_engine *e = NULL;
  moesz_cache *cache = NULL;
  int is_msz = moesz_engine_is_msz(model);
  if (!is_msz && (co.budget_bytes || co.budget_auto || co.prefetch || store_given))
    fprintf(stderr, "moesz serve: note: --mem/--prefetch/--store apply to .msz containers; %s is served from its "
            "files\n", model);
  if (is_msz ? moesz_engine_open_msz(model, &co, &o, &e, &cache, &err) : moesz_engine_open(model, &o, &e, &err)) {
    moesz_tok_free(tok);
    return moesz_cli_fail("serve", &err);
  }
  if (cache && co.budget_auto) fprintf(stderr, "moesz serve: --mem auto: %s\n", moesz_cache_budget_note(cache));
  char *tmpl = chat_template(model);
  moesz_serve_opts so = {.host = host, .port = (int)port, .model_id = model_id, .chat_template = tmpl,
                         .max_batch = (int)max_batch, .queue_max = (int)queue, .max_tokens = (int)max_tokens,
                         .ctx = (int)ctx, .body_max = (size_t)body, .workers = (int)workers};
  moesz_server *srv = NULL;
  int status = 0;
  if (moesz_serve_start(e, cache, tok, &so, &srv, &err)) status = moesz_cli_fail("serve", &err);
  else {
    static const char *fmt[] = {"plain", "chatml", "llama2"};
    moesz_serve_stats st0;
    moesz_serve_stats_get(srv, &st0);
    fprintf(stderr, "moesz serve: %s as \"%s\" on http://%s:%d/ (chat format %s, batch %ld, context %d, %d worker%s)\n",
            model, model_id, host, moesz_serve_port(srv), fmt[moesz_serve_chat_format(tmpl)], max_batch,
            ctx ? (int)ctx : moesz_engine_max_ctx(e), st0.workers, st0.workers > 1 ? "s" : "");
    /* SIGINT / SIGTERM end the process (src/cli/signals.c); --exit-after stops cleanly */
    if (exit_after > 0) {
      for (long t = 0; t < exit_after * 10; t++) usleep(100000);
      moesz_serve_stats st;
      moesz_serve_stats_get(srv, &st);
      fprintf(stderr, "moesz serve: stopping after %ld s: %llu requests, %llu prompt + %llu generated tokens, "
              "%llu engine steps (%.2f tokens per step)\n", exit_after, (unsigned long long)st.requests,
              (unsigned long long)st.prompt_tokens, (unsigned long long)st.completion_tokens,
              (unsigned long long)st.steps, st.steps ? (double)st.step_rows / (double)st.steps : 0.0);
    } else {
      for (;;) pause();
    }
    moesz_serve_stop(srv);
  }
  free(tmpl);
  moesz_engine_close(e);
  moesz_tok_free(tok);
  return status;
}
