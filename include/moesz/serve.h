/* moesz/serve.h - the OpenAI-compatible HTTP server (src/serve): completions
 * and chat completions (streamed as server-sent events or whole), prompt
 * log-probs for likelihood scoring, the model list, health, Prometheus
 * metrics and a live page of the expert cache, on libmicrohttpd; a scheduler
 * thread that runs every active request's next tokens through one batched
 * engine step (continuous batching) with a KV cache per request. See
 * docs/SERVE.md. */
#ifndef MOESZ_SERVE_H
#define MOESZ_SERVE_H
#include "moesz/base.h"
#include "moesz/infer.h"
#include "moesz/runtime.h"
#include "moesz/text.h"

typedef struct moesz_serve_opts {
  const char *host;         /* address to listen on (default "127.0.0.1"); numeric IPv4 */
  int port;                 /* 0 = any free port (see moesz_serve_port) */
  const char *model_id;     /* the name /v1/models lists and requests may give (default "moesz") */
  const char *chat_template;/* the model's chat template text (tokenizer_config.json), NULL = none */
  int max_batch;            /* sequences decoded at once (default 8, 1..64) */
  int queue_max;            /* requests waiting for a sequence beyond those (default 64) */
  int max_tokens;           /* cap on a request's max_tokens (default 512) */
  int ctx;                  /* context per sequence, prompt + generated (0 = the engine's) */
  size_t body_max;          /* request body bytes (default 1 MiB) */
  int max_prompts;          /* prompts in one completions request (default 32) */
  double idle_timeout_s;    /* connection idle timeout (default 60) */
  int workers;              /* scheduler workers (1..16; 0 = 2 when e runs on two or more threads and
                               its provider allows siblings, else 1): each batches its own share of
                               the requests, one step at a time; with two or more each has a sibling
                               engine of one thread (moesz_engine_open_sibling: the engine's provider
                               must allow it), and a worker alone with requests steps on e */
} moesz_serve_opts;

typedef struct moesz_server moesz_server;

/* Starts the scheduler thread and the HTTP daemon. e, tok and cache (NULL
 * for a model without a cache) stay the caller's and must outlive the
 * server; from now until moesz_serve_stop only the scheduler uses e.
 * MOESZ_E_ARG for bad options, MOESZ_E_IO when the address cannot be bound. */
int  moesz_serve_start(moesz_engine *e, moesz_cache *cache, const moesz_tok *tok, const moesz_serve_opts *o,
                       moesz_server **out, moesz_error *err);
int  moesz_serve_port(const moesz_server *s);     /* the port bound */
/* Stops accepting, cancels what runs, joins the threads, frees. NULL ok. */
void moesz_serve_stop(moesz_server *s);

typedef struct moesz_serve_stats {
  uint64_t requests;          /* HTTP requests answered */
  uint64_t errors_4xx, errors_5xx;
  uint64_t completions;       /* generation requests finished (any reason) */
  uint64_t cancelled;         /* sequences cancelled (client gone) */
  uint64_t prompt_tokens, completion_tokens;
  uint64_t steps;             /* engine steps */
  uint64_t step_rows;         /* tokens over all steps */
  uint64_t step_seqs;         /* sequences over all steps */
  double busy_seconds;        /* wall time inside engine steps, summed over the workers */
  int active, queued;         /* sequences now running / waiting */
  int workers;                /* scheduler workers running (see moesz_serve_opts.workers) */
} moesz_serve_stats;
void moesz_serve_stats_get(moesz_server *s, moesz_serve_stats *out);

/* The chat formats the server knows (docs/SERVE.md "Chat format"): picked
 * from the chat template's markers; PLAIN without a template. */
typedef enum { MOESZ_CHAT_PLAIN = 0, MOESZ_CHAT_CHATML, MOESZ_CHAT_LLAMA2 } moesz_chat_format;
moesz_chat_format moesz_serve_chat_format(const char *chat_template);
#endif
