/* serve/serve.c - owns the server object: options and their bounds, start
 * (scheduler thread, then the HTTP daemon) and stop (the scheduler ends what
 * runs, so waiting connections answer, then the daemon joins them), the
 * counters, and the choice of chat format from a chat template. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/util.h"
#include "serve/serve_internal.h"

moesz_chat_format moesz_serve_chat_format(const char *t) {
  if (!t) return MOESZ_CHAT_PLAIN;
  if (strstr(t, "<|im_start|>")) return MOESZ_CHAT_CHATML;
  if (strstr(t, "[INST]")) return MOESZ_CHAT_LLAMA2;
  return MOESZ_CHAT_PLAIN;
}

static int id_ok(const char *s) {
  if (!*s || strlen(s) >= 128) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("._/:-+", *s)))
      return 0;
  return 1;
}

int moesz_serve_start(moesz_engine *e, moesz_cache *cache, const moesz_tok *tok, const moesz_serve_opts *o,
                      moesz_server **out, moesz_error *err) {
  if (!e || !tok || !out) return moesz_error_set(err, MOESZ_E_ARG, "serve: NULL engine, tokenizer or output");
  *out = NULL;
  moesz_serve_opts op = {0};
  if (o) op = *o;
  if (!op.host) op.host = "127.0.0.1";
  if (!op.model_id) op.model_id = "moesz";
  if (!op.max_batch) op.max_batch = 8;
  if (!op.queue_max) op.queue_max = 64;
  if (!op.max_tokens) op.max_tokens = 512;
  if (!op.body_max) op.body_max = 1u << 20;
  if (!op.max_prompts) op.max_prompts = 32;
  if (op.idle_timeout_s <= 0) op.idle_timeout_s = 60;
  if (op.workers < 0 || op.workers > 16) return moesz_error_set(err, MOESZ_E_ARG, "serve: workers %d (1..16)", op.workers);
  if (op.port < 0 || op.port > 65535) return moesz_error_set(err, MOESZ_E_ARG, "serve: port %d", op.port);
  if (op.max_batch < 1 || op.max_batch > 64) return moesz_error_set(err, MOESZ_E_ARG, "serve: max batch %d (1..64)", op.max_batch);
  if (op.queue_max < 1 || op.queue_max > 4096) return moesz_error_set(err, MOESZ_E_ARG, "serve: queue %d (1..4096)", op.queue_max);
  if (op.max_tokens < 1 || op.max_tokens > (1 << 20)) return moesz_error_set(err, MOESZ_E_ARG, "serve: max tokens %d", op.max_tokens);
  if (op.max_prompts < 1 || op.max_prompts > 1024) return moesz_error_set(err, MOESZ_E_ARG, "serve: max prompts %d", op.max_prompts);
  if (op.body_max < 1024 || op.body_max > (256u << 20)) return moesz_error_set(err, MOESZ_E_ARG, "serve: body limit %zu (1 KiB..256 MiB)", op.body_max);
  if (!id_ok(op.model_id)) return moesz_error_set(err, MOESZ_E_ARG, "serve: model id \"%s\" (letters, digits, ._/:-+)", op.model_id);
  if (op.ctx < 0 || op.ctx > moesz_engine_max_ctx(e))
    return moesz_error_set(err, MOESZ_E_ARG, "serve: context %d (the engine holds %d)", op.ctx, moesz_engine_max_ctx(e));
  moesz_server *s = calloc(1, sizeof *s);
  if (!s) return moesz_error_set(err, MOESZ_E_NOMEM, "server");
  s->e = e;
  s->cache = cache;
  s->tok = tok;
  s->o = op;
  s->o.chat_template = NULL;
  snprintf(s->model_id, sizeof s->model_id, "%s", op.model_id);
  s->chat = moesz_serve_chat_format(op.chat_template);
  s->vocab = moesz_engine_vocab(e);
  s->eos = moesz_tok_eos(tok) >= 0 ? moesz_tok_eos(tok) : moesz_engine_config(e)->eos_id;
  s->ctx = op.ctx ? op.ctx : moesz_engine_max_ctx(e);
  s->cap = moesz_engine_step_capacity(e);
  s->t_start = (double)time(NULL);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work, NULL);
  pthread_cond_init(&s->progress, NULL);
  pthread_cond_init(&s->done, NULL);
  int rc = serve_sched_start(s, err);
  if (!rc) rc = serve_http_start(s, err);
  if (rc) { moesz_serve_stop(s); return rc; }
  *out = s;
  return MOESZ_OK;
}

int moesz_serve_port(const moesz_server *s) { return s->port; }

void moesz_serve_stop(moesz_server *s) {
  if (!s) return;
  serve_sched_stop(s);     /* ends every sequence: waiting connections answer */
  serve_http_stop(s);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work);
  pthread_cond_destroy(&s->progress);
  pthread_cond_destroy(&s->done);
  free(s);
}

void moesz_serve_stats_get(moesz_server *s, moesz_serve_stats *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->st;
  pthread_mutex_unlock(&s->mu);
}
