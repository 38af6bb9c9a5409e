/* serve/serve_internal.h - what the server's files share: one generation
 * request (a sequence: its prompt, sampling options, output so far and
 * state), the server object, the scheduler's entry points (sched.c), the
 * HTTP side (http.c) and the page and metrics writers (page.c).
 *
 * Ownership: the HTTP thread of a connection creates a request and hands it
 * to the scheduler (queued); only the scheduler moves its state, feeds it
 * and writes its output; the HTTP side reads the output under the server's
 * mutex and only sets `cancel`. Both hold a reference; the last to drop it
 * frees the request. */
#ifndef MOESZ_SERVE_INTERNAL_H
#define MOESZ_SERVE_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "moesz/serve.h"

enum { RQ_QUEUED = 0, RQ_ACTIVE, RQ_DONE };
enum { FIN_NONE = 0, FIN_STOP, FIN_LENGTH, FIN_CANCEL, FIN_ERROR };

#define SERVE_MAX_STOP 4
#define SERVE_TOP_LOGPROBS 5

typedef struct serve_req {
  /* set by the HTTP side before queueing, then read-only */
  int32_t *prompt;            /* [n_prompt] */
  int n_prompt;
  int max_tokens;
  float temperature, top_p;
  uint64_t seed;
  char *stop[SERVE_MAX_STOP]; /* stop strings (owned), n_stop of them */
  int n_stop;
  int logprobs;               /* -1: none; k >= 0: the chosen token's log-prob + top k */
  int echo;                   /* prompt log-probs (logprobs >= 0) and prompt text */
  int stream;                 /* its text is sent as it grows: the scheduler wakes `progress` per step */
  /* scheduler-owned while RQ_ACTIVE; read by HTTP under the mutex once RQ_DONE
   * (gen/gen_len/emit_len: under the mutex at any time) */
  int state, finish;
  atomic_int cancel;          /* set by the HTTP side: client gone */
  int refs;                   /* under the server mutex */
  moesz_seq *seq;
  moesz_sampler sm;
  moesz_tok_stream *ts;
  int fed;                    /* prompt tokens fed */
  int32_t last;               /* token to feed next (decode phase) */
  int n_gen;
  int32_t *gen_ids;           /* [max_tokens] */
  float *gen_lp;              /* [max_tokens] log-prob of each generated token */
  float *prompt_lp;           /* [n_prompt] (echo + logprobs), [0] unused */
  int32_t *top_id;            /* [(n_prompt + max_tokens) * SERVE_TOP_LOGPROBS] top tokens per position */
  float *top_lp;              /* same shape: their log-probs */
  char *gen;                  /* generated text (after stop handling); gen_len bytes */
  size_t gen_len, gen_cap;
  size_t emit_len;            /* bytes of gen that can be sent (held back: a possible stop prefix) */
  char errmsg[200];
} serve_req;

/* A scheduler worker: a thread that batches its own active requests, one
 * engine step for all of them at a time (sched.c). */
typedef struct serve_worker {
  struct moesz_server *s;
  moesz_engine *sib;          /* its sibling engine (one thread); NULL with one worker */
  pthread_t th;
  int started;
  serve_req **act;            /* [max_batch] its active requests */
  int n_act;
  moesz_step_item *items;     /* [max_batch] one step's items */
  serve_req **who;            /* [max_batch] the request of each item */
  int *kind;                  /* [max_batch] item rows of a prompt chunk, 0 = a decode row */
  float *lbuf;                /* [cap, vocab] logits of one step */
  double tps_ewma;            /* its completion tokens / s, smoothed over steps (0 while idle) */
} serve_worker;

struct moesz_server {
  moesz_engine *e;
  serve_worker *w;            /* [n_workers] */
  int n_workers;
  int solo;                   /* a worker steps on e (with all its threads) right now */
  moesz_cache *cache;
  const moesz_tok *tok;
  moesz_serve_opts o;
  char model_id[128];
  moesz_chat_format chat;
  int vocab, eos, ctx, cap;   /* cap: tokens per engine step */
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  pthread_cond_t work;        /* scheduler: something queued / cancelled / quit */
  pthread_cond_t progress;    /* HTTP side: a streamed request's output moved, or a request ended */
  pthread_cond_t done;        /* HTTP side: a request ended (whole answers wait on this only) */
  int quit;
  serve_req **queue;          /* [queue_max] FIFO */
  int qhead, qlen;
  int n_act;                  /* active requests, all workers */
  moesz_seq **free_seqs;      /* [max_batch] sequences kept for reuse */
  int n_free;
  moesz_serve_stats st;
  uint64_t ids;               /* response ids */
  double t_start;
  double tps_ewma;            /* completion tokens / s, smoothed over steps */
};

/* sched.c */
int  serve_sched_start(moesz_server *s, moesz_error *err);
void serve_sched_stop(moesz_server *s);
/* Queues r (refs: one for the caller, one for the scheduler); 0, or 429
 * when the queue is full, 503 when the server stops. */
int  serve_submit(moesz_server *s, serve_req *r);
void serve_req_put(moesz_server *s, serve_req *r);   /* drops one reference (mutex not held) */
serve_req *serve_req_new(void);
int  serve_req_buffers(serve_req *r, moesz_error *err);   /* after prompt / max_tokens are set */

/* http.c */
enum { EP_NONE = 0, EP_COMPLETIONS, EP_CHAT };
typedef struct gen_req {      /* one parsed generation request */
  int ep, stream, n;          /* n prompts */
  int queued;                 /* r[0 .. queued-1] were handed to the scheduler */
  serve_req **r;              /* [n] */
  char **echo_text;           /* [n] prompt text for echo (owned) */
  char id[48];
  long created;
} gen_req;
/* Parses and validates a request body for endpoint ep (EP_COMPLETIONS or
 * EP_CHAT) into *out (reads s->tok, s->o, s->vocab, s->ctx, s->chat,
 * s->model_id only); 0, or the HTTP status to answer with why (and *code,
 * the OpenAI error code or NULL) set. */
unsigned serve_parse_gen(moesz_server *s, int ep, const char *body, size_t len, gen_req **out, const char **code,
                         char *why, size_t wn);
/* Drops g's requests (cancelling queued ones when cancel != 0) and frees g. */
void serve_gen_free(moesz_server *s, gen_req *g, int cancel);

int  serve_http_start(moesz_server *s, moesz_error *err);
void serve_http_stop(moesz_server *s);

/* page.c */
extern const char serve_page_html[];
/* Prometheus text / the page's JSON into a malloc'd string (NULL: out of memory). */
char *serve_metrics_text(moesz_server *s);
char *serve_experts_json(moesz_server *s);
/* A copy of s (n bytes) with invalid UTF-8 replaced by U+FFFD; NUL-terminated. */
char *serve_utf8_clean(const char *s, size_t n);
#endif
