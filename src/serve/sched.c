/* serve/sched.c - owns the request scheduler: a FIFO of waiting requests,
 * up to max_batch active ones, each with its own sequence (KV cache) and
 * sampler, and the workers: threads that each take their share of the
 * requests and run them together, on a sibling engine of one thread (or,
 * alone with requests, on the server's engine). Each engine step takes
 * every decoding request's last token plus chunks of the prompts still to
 * read (continuous batching: a request joins or leaves between steps), so a
 * MoE layer fetches each expert once for all tokens routed to it. After a
 * step it records prompt log-probs, samples, applies stop strings, and
 * wakes the HTTP side (once per step). A cancelled request (client gone) leaves at the next
 * step boundary; its sequence is kept for the next request. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "serve/serve_internal.h"

serve_req *serve_req_new(void) {
  serve_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->logprobs = -1;
  atomic_init(&r->cancel, 0);
  return r;
}

int serve_req_buffers(serve_req *r, moesz_error *err) {
  size_t g = (size_t)(r->max_tokens > 0 ? r->max_tokens : 1), np = (size_t)r->n_prompt;
  r->gen_ids = malloc(g * sizeof *r->gen_ids);
  r->gen_lp = malloc(g * sizeof *r->gen_lp);
  r->gen_cap = 256;
  r->gen = malloc(r->gen_cap);
  int bad = !r->gen_ids || !r->gen_lp || !r->gen;
  if (r->echo && r->logprobs >= 0) {
    r->prompt_lp = calloc(np, sizeof *r->prompt_lp);
    bad |= !r->prompt_lp;
  }
  if (r->logprobs > 0) {
    r->top_id = calloc((np + g) * SERVE_TOP_LOGPROBS, sizeof *r->top_id);
    r->top_lp = calloc((np + g) * SERVE_TOP_LOGPROBS, sizeof *r->top_lp);
    bad |= !r->top_id || !r->top_lp;
  }
  if (bad) return moesz_error_set(err, MOESZ_E_NOMEM, "request buffers");
  r->gen[0] = 0;
  return MOESZ_OK;
}

static void req_free(serve_req *r) {
  if (!r) return;
  free(r->prompt);
  for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
  moesz_sampler_free(&r->sm);
  if (r->ts) moesz_tok_stream_free(r->ts);
  moesz_seq_free(r->seq);
  free(r->gen_ids); free(r->gen_lp); free(r->prompt_lp); free(r->top_id); free(r->top_lp); free(r->gen);
  free(r);
}

void serve_req_put(moesz_server *s, serve_req *r) {
  if (!r) return;
  pthread_mutex_lock(&s->mu);
  int last = --r->refs <= 0;
  pthread_mutex_unlock(&s->mu);
  if (last) req_free(r);
}

int serve_submit(moesz_server *s, serve_req *r) {
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  if (s->quit) rc = 503;
  else if (s->qlen >= s->o.queue_max) rc = 429;
  else {
    r->refs = 2;
    r->state = RQ_QUEUED;
    s->queue[(s->qhead + s->qlen) % s->o.queue_max] = r;
    s->qlen++;
    s->st.queued = s->qlen;
    pthread_cond_broadcast(&s->work);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---------------------------------------------------------- one request */

/* Ends r (mutex held): its sequence goes back to the pool, waiters are
 * woken. The caller then takes r out of its list and calls unref(). */
static void finish(moesz_server *s, serve_req *r, int why) {
  r->finish = why;
  r->state = RQ_DONE;
  r->emit_len = r->gen_len;
  if (why == FIN_CANCEL) s->st.cancelled++;
  s->st.completions++;
  if (r->seq) {
    if (s->n_free < s->o.max_batch) { moesz_seq_reset(r->seq); s->free_seqs[s->n_free++] = r->seq; }
    else moesz_seq_free(r->seq);
    r->seq = NULL;
  }
  pthread_cond_broadcast(&s->progress);
  pthread_cond_broadcast(&s->done);
}

/* Drops the scheduler's reference (mutex held). */
static void unref(serve_req *r) {
  if (--r->refs <= 0) req_free(r);
}

/* log-softmax of x[n] at index i, and (optionally) the k most likely ids and
 * their log-probs (largest first, lowest id on ties). */
static float log_prob(const float *x, int n, int32_t i, int k, int32_t *top_id, float *top_lp) {
  float mx = x[0];
  for (int j = 1; j < n; j++) if (x[j] > mx) mx = x[j];
  double sum = 0;
  for (int j = 0; j < n; j++) sum += exp((double)x[j] - mx);
  double lz = mx + log(sum);
  for (int a = 0; a < k; a++) {
    int best = -1;
    for (int j = 0; j < n; j++) {
      int used = 0;
      for (int b = 0; b < a && !used; b++) used = top_id[b] == j;
      if (!used && (best < 0 || x[j] > x[best])) best = j;
    }
    top_id[a] = best;
    top_lp[a] = (float)(x[best] - lz);
  }
  return (float)(x[i] - lz);
}

static int append(serve_req *r, const char *b, size_t n) {
  if (r->gen_len + n + 1 > r->gen_cap) {
    size_t cap = r->gen_cap * 2;
    while (cap < r->gen_len + n + 1) cap *= 2;
    char *g = realloc(r->gen, cap);
    if (!g) return -1;
    r->gen = g;
    r->gen_cap = cap;
  }
  memcpy(r->gen + r->gen_len, b, n);
  r->gen_len += n;
  r->gen[r->gen_len] = 0;
  return 0;
}

/* After new text: cut at a stop string (1 if one was found), else hold back
 * the longest tail that may still become one. */
static int apply_stop(serve_req *r, size_t before) {
  size_t maxl = 0;
  for (int i = 0; i < r->n_stop; i++) {
    size_t l = strlen(r->stop[i]);
    if (l > maxl) maxl = l;
    size_t from = before >= l ? before - l + 1 : 0;
    char *p = r->gen_len >= l ? memmem(r->gen + from, r->gen_len - from, r->stop[i], l) : NULL;
    if (p) {
      r->gen_len = (size_t)(p - r->gen);
      r->gen[r->gen_len] = 0;
      return 1;
    }
  }
  size_t hold = 0;
  for (size_t h = maxl > 0 ? maxl - 1 : 0; h > 0 && !hold; h--) {
    if (h > r->gen_len) continue;
    for (int i = 0; i < r->n_stop && !hold; i++)
      if (!strncmp(r->stop[i], r->gen + r->gen_len - h, h)) hold = h;
  }
  r->emit_len = r->gen_len - hold;
  return 0;
}

/* Samples r's next token from logits lg (mutex held); finishes r when done. */
static void next_token(moesz_server *s, serve_req *r, const float *lg) {
  if (r->n_gen >= r->max_tokens) { finish(s, r, FIN_LENGTH); return; }
  int32_t t = moesz_sampler_sample(&r->sm, lg, s->vocab);
  if (t < 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "sampler failed");
    finish(s, r, FIN_ERROR);
    return;
  }
  if (r->logprobs >= 0) {
    size_t at = (size_t)(r->n_prompt + r->n_gen) * SERVE_TOP_LOGPROBS;
    int k = r->logprobs < SERVE_TOP_LOGPROBS ? r->logprobs : SERVE_TOP_LOGPROBS;
    r->gen_lp[r->n_gen] = log_prob(lg, s->vocab, t, k, r->top_id ? r->top_id + at : NULL,
                                   r->top_lp ? r->top_lp + at : NULL);
  }
  if (t == s->eos) { finish(s, r, FIN_STOP); return; }
  r->gen_ids[r->n_gen++] = t;
  s->st.completion_tokens++;
  char buf[256];
  size_t len = 0, before = r->gen_len;
  if (moesz_tok_stream_put(r->ts, t, buf, sizeof buf, &len) == 0 && len && append(r, buf, len)) {
    snprintf(r->errmsg, sizeof r->errmsg, "out of memory");
    finish(s, r, FIN_ERROR);
    return;
  }
  if (apply_stop(r, before)) { finish(s, r, FIN_STOP); return; }
  if (r->n_gen >= r->max_tokens || moesz_seq_pos(r->seq) >= s->ctx) { finish(s, r, FIN_LENGTH); return; }
  r->last = t;   /* the waiters are woken once per step, after every request's token */
}

/* Makes r active (mutex held): a sequence, a sampler, a text stream. */
static int activate(moesz_server *s, serve_req *r) {
  moesz_error err = {0};
  if (s->n_free) r->seq = s->free_seqs[--s->n_free];
  else if (moesz_seq_create(s->e, s->ctx, &r->seq, &err)) {
    snprintf(r->errmsg, sizeof r->errmsg, "%.190s", err.msg);
    return -1;
  }
  moesz_sampler_init(&r->sm, r->temperature, r->top_p, r->seed);
  r->ts = moesz_tok_stream_new(s->tok);
  if (!r->ts) { snprintf(r->errmsg, sizeof r->errmsg, "out of memory"); return -1; }
  r->state = RQ_ACTIVE;
  s->st.prompt_tokens += (uint64_t)r->n_prompt;
  return 0;
}

/* ------------------------------------------------------------- the loop */

/* Picks the engine for w's next step (mutex held): a worker alone with
 * requests steps on the server's engine with all its threads; otherwise on
 * its own sibling (one thread), so the workers' steps run at once, one per
 * core. */
static moesz_engine *step_engine(moesz_server *s, serve_worker *w) {
  if (s->n_workers == 1) return s->e;
  int others = 0;
  for (int i = 0; i < s->n_workers; i++) others += &s->w[i] != w && s->w[i].n_act > 0;
  if (!others && !s->solo) {
    s->solo = 1;
    return s->e;
  }
  return w->sib;
}

/* The most requests a worker may hold (mutex held): its share of all
 * active and waiting ones, rounded up, so concurrent requests spread over
 * the workers. */
static int share(const moesz_server *s) {
  int total = s->qlen;
  for (int i = 0; i < s->n_workers; i++) total += s->w[i].n_act;
  int q = (total + s->n_workers - 1) / s->n_workers;
  return q < 1 ? 1 : q;
}

static void *sched_main(void *arg) {
  serve_worker *w = arg;
  moesz_server *s = w->s;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    /* leave: cancelled requests; at quit, everything */
    for (int i = 0; i < w->n_act;) {
      serve_req *r = w->act[i];
      if (s->quit || atomic_load(&r->cancel)) {
        finish(s, r, FIN_CANCEL);
        w->act[i] = w->act[--w->n_act];
        s->n_act--;
        unref(r);
      } else i++;
    }
    int mine = share(s);
    while (s->qlen && (s->quit || (s->n_act < s->o.max_batch && w->n_act < mine))) {
      serve_req *r = s->queue[s->qhead];
      s->qhead = (s->qhead + 1) % s->o.queue_max;
      s->qlen--;
      if (s->quit || atomic_load(&r->cancel)) { finish(s, r, FIN_CANCEL); unref(r); continue; }
      if (activate(s, r)) { finish(s, r, FIN_ERROR); unref(r); continue; }
      w->act[w->n_act++] = r;
      s->n_act++;
    }
    s->st.queued = s->qlen;
    s->st.active = s->n_act;
    if (s->quit) break;
    if (!w->n_act) {
      w->tps_ewma = 0;
      pthread_cond_wait(&s->work, &s->mu);
      continue;
    }
    /* one step: decoders first (one row each), then prompt chunks */
    int ni = 0, rows = 0, lrows = 0;
    for (int i = 0; i < w->n_act; i++) {
      serve_req *r = w->act[i];
      if (r->fed < r->n_prompt) continue;
      w->items[ni] = (moesz_step_item){r->seq, &r->last, 1, 0, w->lbuf + (size_t)lrows * (size_t)s->vocab};
      w->who[ni] = r;
      w->kind[ni++] = 0;
      rows++;
      lrows++;
    }
    for (int i = 0; i < w->n_act && rows < s->cap; i++) {
      serve_req *r = w->act[i];
      if (r->fed >= r->n_prompt) continue;
      int n = r->n_prompt - r->fed, all = r->echo && r->logprobs >= 0;
      if (n > s->cap - rows) n = s->cap - rows;
      w->items[ni] = (moesz_step_item){r->seq, r->prompt + r->fed, n, all,
                                       w->lbuf + (size_t)lrows * (size_t)s->vocab};
      w->who[ni] = r;
      w->kind[ni++] = n;
      rows += n;
      lrows += all ? n : 1;
    }
    moesz_engine *e = step_engine(s, w);
    pthread_mutex_unlock(&s->mu);
    moesz_error err = {0};
    double t0 = moesz_time_now();
    int rc = moesz_engine_step(e, w->items, ni, &err);
    double dt = moesz_time_now() - t0;
    pthread_mutex_lock(&s->mu);
    if (e == s->e && s->n_workers > 1) s->solo = 0;
    s->st.steps++;
    s->st.step_rows += (uint64_t)rows;
    s->st.step_seqs += (uint64_t)ni;
    s->st.busy_seconds += dt;
    uint64_t gen0 = s->st.completion_tokens;
    for (int k = 0; k < ni; k++) {
      serve_req *r = w->who[k];
      if (rc) {
        snprintf(r->errmsg, sizeof r->errmsg, "%.190s", err.msg);
        r->finish = FIN_ERROR;
        continue;
      }
      const float *lg = w->items[k].logits;
      if (w->kind[k]) {   /* a prompt chunk */
        int n = w->kind[k];
        if (w->items[k].all_logits) {
          for (int j = 0; j < n; j++) {
            int p = r->fed + j + 1;   /* the row predicts prompt token p */
            if (p >= r->n_prompt) break;
            size_t at = (size_t)p * SERVE_TOP_LOGPROBS;
            int kk = r->logprobs < SERVE_TOP_LOGPROBS ? r->logprobs : SERVE_TOP_LOGPROBS;
            r->prompt_lp[p] = log_prob(lg + (size_t)j * (size_t)s->vocab, s->vocab, r->prompt[p], kk,
                                       r->top_id ? r->top_id + at : NULL, r->top_lp ? r->top_lp + at : NULL);
          }
          lg += (size_t)(n - 1) * (size_t)s->vocab;
        }
        r->fed += n;
        if (r->fed < r->n_prompt) continue;
      }
      next_token(s, r, lg);
    }
    /* streamed answers are sent as they grow; whole answers wait for `done` (finish()) */
    int streamed = 0;
    for (int k = 0; k < ni; k++) streamed |= w->who[k]->stream;
    if (streamed) pthread_cond_broadcast(&s->progress);
    /* requests that finished (or failed) leave the active set */
    for (int i = 0; i < w->n_act;) {
      serve_req *r = w->act[i];
      if (r->state == RQ_DONE || r->finish == FIN_ERROR) {
        if (r->state != RQ_DONE) finish(s, r, FIN_ERROR);
        w->act[i] = w->act[--w->n_act];
        s->n_act--;
        unref(r);
      } else i++;
    }
    if (dt > 0) {
      double tps = (double)(s->st.completion_tokens - gen0) / dt;
      w->tps_ewma = w->tps_ewma == 0 ? tps : 0.9 * w->tps_ewma + 0.1 * tps;
      s->tps_ewma = 0;
      for (int i = 0; i < s->n_workers; i++) s->tps_ewma += s->w[i].tps_ewma;
    }
  }
  s->st.active = 0;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int serve_sched_start(moesz_server *s, moesz_error *err) {
  s->queue = calloc((size_t)s->o.queue_max, sizeof *s->queue);
  s->free_seqs = calloc((size_t)s->o.max_batch, sizeof *s->free_seqs);
  /* auto: two workers where the engine has two threads to give them */
  s->n_workers = s->o.workers ? s->o.workers : moesz_engine_threads(s->e) >= 2 ? 2 : 1;
  s->w = calloc((size_t)s->n_workers, sizeof *s->w);
  if (!s->queue || !s->free_seqs || !s->w) return moesz_error_set(err, MOESZ_E_NOMEM, "scheduler buffers");
  for (int i = 0; i < s->n_workers; i++) {
    serve_worker *w = &s->w[i];
    w->s = s;
    w->act = calloc((size_t)s->o.max_batch, sizeof *w->act);
    w->items = calloc((size_t)s->o.max_batch, sizeof *w->items);
    w->who = calloc((size_t)s->o.max_batch, sizeof *w->who);
    w->kind = calloc((size_t)s->o.max_batch, sizeof *w->kind);
    w->lbuf = malloc((size_t)s->cap * (size_t)s->vocab * sizeof(float));
    if (!w->act || !w->items || !w->who || !w->kind || !w->lbuf)
      return moesz_error_set(err, MOESZ_E_NOMEM, "scheduler buffers");
    if (s->n_workers > 1) {
      int rc = moesz_engine_open_sibling(s->e, 1, &w->sib, err);
      if (rc == MOESZ_E_UNSUPPORTED && !s->o.workers) {   /* auto: one worker then */
        s->n_workers = 1;
        if (err) memset(err, 0, sizeof *err);
        break;
      }
      if (rc) return moesz_error_wrap(err, rc, "serve: %d workers", s->n_workers);
    }
  }
  s->st.workers = s->n_workers;
  for (int i = 0; i < s->n_workers; i++) {
    if (pthread_create(&s->w[i].th, NULL, sched_main, &s->w[i]))
      return moesz_error_set(err, MOESZ_E_NOMEM, "scheduler thread");
    s->w[i].started = 1;
  }
  return MOESZ_OK;
}

void serve_sched_stop(moesz_server *s) {
  pthread_mutex_lock(&s->mu);
  s->quit = 1;
  pthread_cond_broadcast(&s->work);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; s->w && i < s->n_workers; i++)
    if (s->w[i].started) {
      pthread_join(s->w[i].th, NULL);
      s->w[i].started = 0;
    }
  for (int i = 0; i < s->n_free; i++) moesz_seq_free(s->free_seqs[i]);
  s->n_free = 0;
  for (int i = 0; s->w && i < s->n_workers; i++) {
    serve_worker *w = &s->w[i];
    moesz_engine_close(w->sib);
    free(w->act); free(w->items); free(w->who); free(w->kind); free(w->lbuf);
  }
  free(s->w); free(s->queue); free(s->free_seqs);
  s->w = NULL; s->queue = NULL; s->free_seqs = NULL;
  s->n_workers = 0;
}
