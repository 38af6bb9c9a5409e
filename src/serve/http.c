/* serve/http.c - owns the HTTP side of the server on libmicrohttpd (one
 * thread per connection): routing, request bodies under a size cap, JSON
 * request parsing and validation (OpenAI completions and chat completions),
 * chat formatting, answers (whole JSON or server-sent events), OpenAI-style
 * error objects, and noticing a client that went away (its sequence is
 * cancelled). The generation itself runs on the scheduler (sched.c). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "base/util.h"
#include "serve/serve_internal.h"

typedef struct conn {
  moesz_server *s;
  char *body;
  size_t len, cap;
  int too_big, answered;
} conn;

/* ------------------------------------------------------------ answering */

static enum MHD_Result answer(moesz_server *s, struct MHD_Connection *c, unsigned status, const char *type,
                              const char *body, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  pthread_mutex_lock(&s->mu);
  s->st.requests++;
  if (status >= 500) s->st.errors_5xx++;
  else if (status >= 400) s->st.errors_4xx++;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static enum MHD_Result answer_json(moesz_server *s, struct MHD_Connection *c, unsigned status, cJSON *j) {
  char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (!txt) return answer(s, c, 500, "text/plain", "out of memory\n", 14);
  enum MHD_Result ok = answer(s, c, status, "application/json", txt, strlen(txt));
  free(txt);
  return ok;
}

/* {"error": {"message", "type", "param", "code"}} as the OpenAI API answers. */
static enum MHD_Result fail(moesz_server *s, struct MHD_Connection *c, unsigned status, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result fail(moesz_server *s, struct MHD_Connection *c, unsigned status, const char *code,
                            const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  char *clean = serve_utf8_clean(msg, strlen(msg));
  cJSON_AddStringToObject(e, "message", clean ? clean : "error");
  free(clean);
  cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error" : status == 429 ? "rate_limit_exceeded"
                                                                                     : "invalid_request_error");
  cJSON_AddNullToObject(e, "param");
  if (code) cJSON_AddStringToObject(e, "code", code);
  else cJSON_AddNullToObject(e, "code");
  return answer_json(s, c, status, o);
}

/* A client that closed its end (checked while its answer is being made). */
static int client_gone(int fd) {
  if (fd < 0) return 0;
  struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return 0;
  if (p.revents & (POLLERR | POLLHUP | POLLRDHUP)) return 1;
  char ch;
  return recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int conn_fd(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? ci->connect_fd : -1;
}

/* ------------------------------------------------------------- requests */

void serve_gen_free(moesz_server *s, gen_req *g, int cancel) {
  for (int i = 0; i < g->n; i++) {
    if (!g->r[i]) continue;
    if (cancel) {
      atomic_store(&g->r[i]->cancel, 1);
      pthread_mutex_lock(&s->mu);
      pthread_cond_broadcast(&s->work);
      pthread_mutex_unlock(&s->mu);
    }
    if (i >= g->queued) g->r[i]->refs = 1;   /* never queued: ours alone */
    serve_req_put(s, g->r[i]);
  }
  for (int i = 0; g->echo_text && i < g->n; i++) free(g->echo_text[i]);
  free(g->echo_text);
  free(g->r);
  free(g);
}

static int is_int(const cJSON *j, double lo, double hi) {
  return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) && j->valuedouble >= lo &&
         j->valuedouble <= hi;
}

/* Fills r's prompt from a string (encoded with the tokenizer's specials,
 * as `moesz run --prompt` does) or an array of token ids. */
static int set_prompt(moesz_server *s, serve_req *r, const cJSON *p, char **echo, char *why, size_t wn) {
  if (cJSON_IsString(p)) {
    size_t n = 0;
    if (moesz_tok_encode(s->tok, p->valuestring, strlen(p->valuestring), 1, &r->prompt, &n, NULL)) {
      snprintf(why, wn, "prompt cannot be tokenized");
      return -1;
    }
    if (n > (size_t)s->ctx) { snprintf(why, wn, "prompt of %zu tokens: the context is %d", n, s->ctx); return -1; }
    r->n_prompt = (int)n;
    *echo = strdup(p->valuestring);
  } else if (cJSON_IsArray(p)) {
    int n = cJSON_GetArraySize(p);
    if (n > s->ctx) { snprintf(why, wn, "prompt of %d tokens: the context is %d", n, s->ctx); return -1; }
    r->prompt = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!r->prompt) { snprintf(why, wn, "out of memory"); return -1; }
    int i = 0;
    for (const cJSON *t = p->child; t; t = t->next, i++) {
      if (!is_int(t, 0, s->vocab - 1)) {
        snprintf(why, wn, "prompt token %d: not a token id in [0, %d)", i, s->vocab);
        return -1;
      }
      r->prompt[i] = (int32_t)t->valuedouble;
    }
    r->n_prompt = n;
    char *txt = NULL;
    size_t len = 0;
    if (n && moesz_tok_decode(s->tok, r->prompt, (size_t)n, 0, &txt, &len, NULL) == 0) {
      *echo = serve_utf8_clean(txt, len);
      free(txt);
    } else *echo = strdup("");
  } else {
    snprintf(why, wn, "prompt must be a string, an array of strings, an array of token ids or an array of those");
    return -1;
  }
  if (!*echo) { snprintf(why, wn, "out of memory"); return -1; }
  if (r->n_prompt <= 0) { snprintf(why, wn, "the prompt is empty (no tokens)"); return -1; }
  return 0;
}

static int sbuf_add(char **b, size_t *len, size_t *cap, const char *s) {
  size_t n = strlen(s);
  if (*len + n + 1 > *cap) {
    size_t c = *cap ? *cap * 2 : 256;
    while (c < *len + n + 1) c *= 2;
    char *nb = realloc(*b, c);
    if (!nb) return -1;
    *b = nb;
    *cap = c;
  }
  memcpy(*b + *len, s, n + 1);
  *len += n;
  return 0;
}

/* messages -> prompt text in the model's chat format (docs/SERVE.md). */
static char *chat_text(moesz_server *s, const cJSON *msgs, char *why, size_t wn) {
  char *b = NULL;
  size_t len = 0, cap = 0;
  int bad = 0, i = 0;
  const char *sys = NULL;
  for (const cJSON *m = msgs->child; m; m = m->next, i++) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
      snprintf(why, wn, "messages[%d]: needs string \"role\" and \"content\"", i);
      free(b);
      return NULL;
    }
    const char *ro = role->valuestring, *co = content->valuestring;
    if (strcmp(ro, "system") && strcmp(ro, "user") && strcmp(ro, "assistant")) {
      snprintf(why, wn, "messages[%d]: role must be system, user or assistant", i);
      free(b);
      return NULL;
    }
    switch (s->chat) {
    case MOESZ_CHAT_CHATML:
      bad |= sbuf_add(&b, &len, &cap, "<|im_start|>") | sbuf_add(&b, &len, &cap, ro) |
             sbuf_add(&b, &len, &cap, "\n") | sbuf_add(&b, &len, &cap, co) |
             sbuf_add(&b, &len, &cap, "<|im_end|>\n");
      break;
    case MOESZ_CHAT_LLAMA2:
      if (!strcmp(ro, "system")) { sys = co; break; }
      if (!strcmp(ro, "user")) {
        bad |= sbuf_add(&b, &len, &cap, "[INST] ");
        if (sys) {
          bad |= sbuf_add(&b, &len, &cap, "<<SYS>>\n") | sbuf_add(&b, &len, &cap, sys) |
                 sbuf_add(&b, &len, &cap, "\n<</SYS>>\n\n");
          sys = NULL;
        }
        bad |= sbuf_add(&b, &len, &cap, co) | sbuf_add(&b, &len, &cap, " [/INST]");
      } else bad |= sbuf_add(&b, &len, &cap, " ") | sbuf_add(&b, &len, &cap, co) | sbuf_add(&b, &len, &cap, " </s>");
      break;
    default:
      bad |= sbuf_add(&b, &len, &cap, !strcmp(ro, "system") ? "System: " : !strcmp(ro, "user") ? "User: "
                                                                                              : "Assistant: ") |
             sbuf_add(&b, &len, &cap, co) | sbuf_add(&b, &len, &cap, "\n\n");
    }
  }
  if (!i) { snprintf(why, wn, "messages must not be empty"); free(b); return NULL; }
  if (s->chat == MOESZ_CHAT_CHATML) bad |= sbuf_add(&b, &len, &cap, "<|im_start|>assistant\n");
  else if (s->chat == MOESZ_CHAT_PLAIN) bad |= sbuf_add(&b, &len, &cap, "Assistant:");
  else bad |= sbuf_add(&b, &len, &cap, "");
  if (bad) { free(b); snprintf(why, wn, "out of memory"); return NULL; }
  return b;
}

unsigned serve_parse_gen(moesz_server *s, int ep, const char *body, size_t len, gen_req **out, const char **code,
                          char *why, size_t wn) {
  *out = NULL;
  *code = NULL;
  cJSON *j = cJSON_ParseWithLength(body, len);
  if (!j) { snprintf(why, wn, "the body is not valid JSON"); return 400; }
  unsigned st = 400;
  gen_req *g = NULL;
  char *ctext = NULL;
  if (!cJSON_IsObject(j)) { snprintf(why, wn, "the body must be a JSON object"); goto done; }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  if (model && !cJSON_IsNull(model)) {
    if (!cJSON_IsString(model)) { snprintf(why, wn, "model must be a string"); goto done; }
    if (strcmp(model->valuestring, s->model_id)) {
      snprintf(why, wn, "The model '%.200s' does not exist (this server has '%s')", model->valuestring, s->model_id);
      *code = "model_not_found";
      st = 404;
      goto done;
    }
  }
#define FIELD(name) const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, #name); \
  if (cJSON_IsNull(name)) name = NULL
  FIELD(max_tokens); FIELD(max_completion_tokens); FIELD(temperature); FIELD(top_p); FIELD(seed); FIELD(stop);
  FIELD(stream); FIELD(echo); FIELD(logprobs); FIELD(n); FIELD(prompt); FIELD(messages);
#undef FIELD
  if (!max_tokens) max_tokens = max_completion_tokens;
  if (max_tokens && !is_int(max_tokens, 0, s->o.max_tokens)) {
    snprintf(why, wn, "max_tokens must be an integer in [0, %d]", s->o.max_tokens);
    goto done;
  }
  if (temperature && !(cJSON_IsNumber(temperature) && temperature->valuedouble >= 0 && temperature->valuedouble <= 2)) {
    snprintf(why, wn, "temperature must be a number in [0, 2]");
    goto done;
  }
  if (top_p && !(cJSON_IsNumber(top_p) && top_p->valuedouble > 0 && top_p->valuedouble <= 1)) {
    snprintf(why, wn, "top_p must be a number in (0, 1]");
    goto done;
  }
  if (seed && !is_int(seed, -9.007199254740992e15, 9.007199254740992e15)) {
    snprintf(why, wn, "seed must be an integer");
    goto done;
  }
  if (stream && !cJSON_IsBool(stream)) { snprintf(why, wn, "stream must be a boolean"); goto done; }
  if (echo && !cJSON_IsBool(echo)) { snprintf(why, wn, "echo must be a boolean"); goto done; }
  if (n && !is_int(n, 1, 1)) { snprintf(why, wn, "n: only 1 is supported"); goto done; }
  if (ep == EP_COMPLETIONS && logprobs && !is_int(logprobs, 0, SERVE_TOP_LOGPROBS)) {
    snprintf(why, wn, "logprobs must be an integer in [0, %d]", SERVE_TOP_LOGPROBS);
    goto done;
  }
  if (ep == EP_CHAT && logprobs && !cJSON_IsFalse(logprobs)) {
    snprintf(why, wn, "logprobs is not supported on chat completions (use /v1/completions)");
    goto done;
  }
  if (ep == EP_CHAT && echo && cJSON_IsTrue(echo)) { snprintf(why, wn, "echo is a completions option"); goto done; }
  char *stops[SERVE_MAX_STOP];
  int nstop = 0;
  if (stop) {
    if (cJSON_IsString(stop)) { if (*stop->valuestring) stops[nstop++] = stop->valuestring; }
    else if (cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= SERVE_MAX_STOP) {
      for (const cJSON *t = stop->child; t; t = t->next) {
        if (!cJSON_IsString(t) || !*t->valuestring || strlen(t->valuestring) > 256) {
          snprintf(why, wn, "stop: each entry must be a non-empty string of at most 256 bytes");
          goto done;
        }
        stops[nstop++] = t->valuestring;
      }
    } else {
      snprintf(why, wn, "stop must be a string or an array of at most %d strings", SERVE_MAX_STOP);
      goto done;
    }
  }
  /* the prompts */
  const cJSON *plist[1] = {NULL};
  int np = 1, multi = 0;
  if (ep == EP_CHAT) {
    if (!cJSON_IsArray(messages)) { snprintf(why, wn, "messages must be an array of {role, content}"); goto done; }
    if (!(ctext = chat_text(s, messages, why, wn))) goto done;
  } else {
    if (!prompt) { snprintf(why, wn, "prompt is required"); goto done; }
    /* an array of strings or of id arrays is a batch of prompts */
    if (cJSON_IsArray(prompt) && prompt->child && (cJSON_IsString(prompt->child) || cJSON_IsArray(prompt->child))) {
      multi = 1;
      np = cJSON_GetArraySize(prompt);
      if (np > s->o.max_prompts) {
        snprintf(why, wn, "at most %d prompts in one request", s->o.max_prompts);
        goto done;
      }
    } else plist[0] = prompt;
  }
  if (stream && cJSON_IsTrue(stream) && np > 1) { snprintf(why, wn, "stream takes one prompt"); goto done; }
  g = calloc(1, sizeof *g);
  if (!g || !(g->r = calloc((size_t)np, sizeof *g->r)) || !(g->echo_text = calloc((size_t)np, sizeof *g->echo_text))) {
    snprintf(why, wn, "out of memory");
    st = 500;
    goto done;
  }
  g->ep = ep;
  g->n = np;
  g->stream = stream && cJSON_IsTrue(stream);
  const cJSON *pi = multi ? prompt->child : NULL;
  for (int i = 0; i < np; i++, pi = pi ? pi->next : NULL) {
    serve_req *r = g->r[i] = serve_req_new();
    if (!r) { snprintf(why, wn, "out of memory"); st = 500; goto done; }
    if (ep == EP_CHAT) {
      cJSON *tmp = cJSON_CreateString(ctext);
      int bad = !tmp || set_prompt(s, r, tmp, &g->echo_text[i], why, wn);
      cJSON_Delete(tmp);
      if (bad) goto done;
    } else {
      const cJSON *p = multi ? pi : plist[0];
      if (multi && cJSON_IsArray(p) && p->child && !cJSON_IsNumber(p->child)) {
        snprintf(why, wn, "prompt[%d]: an array of token ids expected", i);
        goto done;
      }
      if (set_prompt(s, r, p, &g->echo_text[i], why, wn)) goto done;
    }
    r->max_tokens = max_tokens ? (int)max_tokens->valuedouble : (ep == EP_CHAT ? s->o.max_tokens : 16);
    if (r->max_tokens > s->o.max_tokens) r->max_tokens = s->o.max_tokens;
    if (r->n_prompt + r->max_tokens > s->ctx) {
      snprintf(why, wn, "This model's context is %d tokens; the prompt (%d) + max_tokens (%d) exceed it", s->ctx,
               r->n_prompt, r->max_tokens);
      *code = "context_length_exceeded";
      goto done;
    }
    r->temperature = temperature ? (float)temperature->valuedouble : 1.0f;
    r->top_p = top_p ? (float)top_p->valuedouble : 1.0f;
    r->seed = seed ? (uint64_t)(int64_t)seed->valuedouble : (uint64_t)i;
    r->echo = echo && cJSON_IsTrue(echo);
    r->logprobs = logprobs && ep == EP_COMPLETIONS ? (int)logprobs->valuedouble : -1;
    for (int k = 0; k < nstop; k++) {
      if (!(r->stop[r->n_stop] = strdup(stops[k]))) { snprintf(why, wn, "out of memory"); st = 500; goto done; }
      r->n_stop++;
    }
    if (s->chat == MOESZ_CHAT_CHATML && ep == EP_CHAT && r->n_stop < SERVE_MAX_STOP &&
        (r->stop[r->n_stop] = strdup("<|im_end|>")))
      r->n_stop++;
    if (serve_req_buffers(r, NULL)) { snprintf(why, wn, "out of memory"); st = 500; goto done; }
  }
  st = 0;
done:
  free(ctext);
  cJSON_Delete(j);
  if (st && g) { serve_gen_free(s, g, 0); g = NULL; }
  *out = g;
  return st;
}

/* ------------------------------------------------------------- answers */

static const char *finish_name(int f) { return f == FIN_LENGTH ? "length" : f == FIN_STOP ? "stop" : NULL; }

static char *tok_text(moesz_server *s, int32_t id) {
  char *t = NULL;
  size_t n = 0;
  if (moesz_tok_decode(s->tok, &id, 1, 0, &t, &n, NULL)) return strdup("");
  char *c = serve_utf8_clean(t, n);
  free(t);
  return c ? c : strdup("");
}

static cJSON *top_obj(moesz_server *s, const serve_req *r, size_t pos) {
  if (r->logprobs <= 0 || !r->top_id) return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  int k = r->logprobs < SERVE_TOP_LOGPROBS ? r->logprobs : SERVE_TOP_LOGPROBS;
  for (int a = 0; a < k; a++) {
    size_t at = pos * SERVE_TOP_LOGPROBS + (size_t)a;
    char *t = tok_text(s, r->top_id[at]);
    if (t && !cJSON_GetObjectItemCaseSensitive(o, t)) cJSON_AddNumberToObject(o, t, r->top_lp[at]);
    free(t);
  }
  return o;
}

/* The completions "logprobs" object: tokens, token_logprobs, top_logprobs,
 * text_offset; with echo the prompt's tokens first (the first has null). */
static cJSON *logprobs_obj(moesz_server *s, const serve_req *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON *tk = cJSON_AddArrayToObject(o, "tokens"), *lp = cJSON_AddArrayToObject(o, "token_logprobs");
  cJSON *tp = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
  size_t at = 0;
  for (int i = 0; r->echo && i < r->n_prompt; i++) {
    char *t = tok_text(s, r->prompt[i]);
    cJSON_AddItemToArray(tk, cJSON_CreateString(t ? t : ""));
    cJSON_AddItemToArray(lp, i ? cJSON_CreateNumber(r->prompt_lp[i]) : cJSON_CreateNull());
    cJSON_AddItemToArray(tp, i ? top_obj(s, r, (size_t)i) : cJSON_CreateNull());
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    at += t ? strlen(t) : 0;
    free(t);
  }
  for (int i = 0; i < r->n_gen; i++) {
    char *t = tok_text(s, r->gen_ids[i]);
    cJSON_AddItemToArray(tk, cJSON_CreateString(t ? t : ""));
    cJSON_AddItemToArray(lp, cJSON_CreateNumber(r->gen_lp[i]));
    cJSON_AddItemToArray(tp, top_obj(s, r, (size_t)(r->n_prompt + i)));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    at += t ? strlen(t) : 0;
    free(t);
  }
  return o;
}

static cJSON *head(moesz_server *s, gen_req *g, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", g->id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)g->created);
  cJSON_AddStringToObject(o, "model", s->model_id);
  return o;
}

static cJSON *whole_answer(moesz_server *s, gen_req *g) {
  cJSON *o = head(s, g, g->ep == EP_CHAT ? "chat.completion" : "text_completion");
  cJSON *ch = cJSON_AddArrayToObject(o, "choices");
  long pt = 0, ct = 0;
  for (int i = 0; i < g->n; i++) {
    serve_req *r = g->r[i];
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", i);
    char *gen = serve_utf8_clean(r->gen, r->gen_len);
    if (g->ep == EP_CHAT) {
      cJSON *m = cJSON_AddObjectToObject(c, "message");
      cJSON_AddStringToObject(m, "role", "assistant");
      cJSON_AddStringToObject(m, "content", gen ? gen : "");
    } else {
      size_t el = r->echo ? strlen(g->echo_text[i]) : 0, gl = gen ? strlen(gen) : 0;
      char *t = malloc(el + gl + 1);
      if (t) {
        memcpy(t, r->echo ? g->echo_text[i] : "", el);
        memcpy(t + el, gen ? gen : "", gl);
        t[el + gl] = 0;
      }
      cJSON_AddStringToObject(c, "text", t ? t : "");
      free(t);
      if (r->logprobs >= 0) cJSON_AddItemToObject(c, "logprobs", logprobs_obj(s, r));
      else cJSON_AddNullToObject(c, "logprobs");
    }
    free(gen);
    cJSON_AddStringToObject(c, "finish_reason", finish_name(r->finish) ? finish_name(r->finish) : "stop");
    cJSON_AddItemToArray(ch, c);
    pt += r->n_prompt;
    ct += r->n_gen;
  }
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)pt);
  cJSON_AddNumberToObject(u, "completion_tokens", (double)ct);
  cJSON_AddNumberToObject(u, "total_tokens", (double)(pt + ct));
  return o;
}

/* -------------------------------------------------------------- streams */

typedef struct sse {
  moesz_server *s;
  gen_req *g;
  int fd;
  size_t sent;                /* bytes of the request's text sent */
  int started, ended;
  char *pend;                 /* an event not yet handed over */
  size_t plen, poff;
} sse;

/* One SSE event with text (or the final one with finish_reason and usage). */
static char *sse_event(moesz_server *s, gen_req *g, const char *text, const char *fin, int first) {
  cJSON *o = head(s, g, g->ep == EP_CHAT ? "chat.completion.chunk" : "text_completion");
  cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  if (g->ep == EP_CHAT) {
    cJSON *d = cJSON_AddObjectToObject(c, "delta");
    if (first) cJSON_AddStringToObject(d, "role", "assistant");
    if (text) cJSON_AddStringToObject(d, "content", text);
  } else {
    cJSON_AddStringToObject(c, "text", text ? text : "");
    cJSON_AddNullToObject(c, "logprobs");
  }
  if (fin) cJSON_AddStringToObject(c, "finish_reason", fin);
  else cJSON_AddNullToObject(c, "finish_reason");
  cJSON_AddItemToArray(ch, c);
  if (fin) {
    serve_req *r = g->r[0];
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", r->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + r->n_gen);
  }
  char *j = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!j) return NULL;
  size_t n = strlen(j);
  char *e = malloc(n + 32);
  if (e) snprintf(e, n + 32, "data: %s\n\n%s", j, fin ? "data: [DONE]\n\n" : "");
  free(j);
  return e;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  sse *x = cls;
  moesz_server *s = x->s;
  serve_req *r = x->g->r[0];
  for (;;) {
    if (x->pend) {
      size_t n = x->plen - x->poff < max ? x->plen - x->poff : max;
      memcpy(buf, x->pend + x->poff, n);
      x->poff += n;
      if (x->poff == x->plen) { free(x->pend); x->pend = NULL; }
      return (ssize_t)n;
    }
    if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    pthread_mutex_lock(&s->mu);
    while (r->state != RQ_DONE && r->emit_len <= x->sent && !s->quit) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100000000;
      if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
      pthread_cond_timedwait(&s->progress, &s->mu, &ts);
      if (r->state != RQ_DONE && r->emit_len <= x->sent && client_gone(x->fd)) {
        atomic_store(&r->cancel, 1);
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
      }
    }
    char *text = NULL;
    if (r->emit_len > x->sent) {
      text = serve_utf8_clean(r->gen + x->sent, r->emit_len - x->sent);
      x->sent = r->emit_len;
    }
    int done = r->state == RQ_DONE, fin = r->finish;
    pthread_mutex_unlock(&s->mu);
    if (done && (fin == FIN_ERROR || fin == FIN_CANCEL)) {
      free(text);
      /* the stream has begun: say so in-band, then end */
      cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
      cJSON_AddStringToObject(e, "message", fin == FIN_ERROR ? r->errmsg : "the server is stopping");
      cJSON_AddStringToObject(e, "type", "server_error");
      char *j = cJSON_PrintUnformatted(o);
      cJSON_Delete(o);
      if (j) {
        size_t n = strlen(j);
        x->pend = malloc(n + 16);
        if (x->pend) { x->plen = (size_t)snprintf(x->pend, n + 16, "data: %s\n\n", j); x->poff = 0; }
        free(j);
      }
      x->ended = 1;
      if (fin == FIN_ERROR) {
        pthread_mutex_lock(&s->mu);
        s->st.errors_5xx++;
        pthread_mutex_unlock(&s->mu);
      }
      continue;
    }
    if (text && *text) {
      x->pend = sse_event(s, x->g, text, NULL, !x->started);
      x->started = 1;
    } else if (done) {
      x->pend = sse_event(s, x->g, NULL, finish_name(fin) ? finish_name(fin) : "stop", !x->started);
      x->ended = 1;
    }
    free(text);
    if (x->pend) x->plen = strlen(x->pend), x->poff = 0;
    else if (done) return MHD_CONTENT_READER_END_WITH_ERROR;   /* out of memory */
  }
}

static void sse_free(void *cls) {
  sse *x = cls;
  serve_gen_free(x->s, x->g, 1);   /* a stream cut short cancels its sequence */
  free(x->pend);
  free(x);
}

/* ------------------------------------------------------------- handlers */

static enum MHD_Result do_generate(moesz_server *s, struct MHD_Connection *c, int ep, conn *k) {
  if (k->too_big)
    return fail(s, c, 413, NULL, "the request body exceeds %zu bytes", s->o.body_max);
  gen_req *g;
  const char *code;
  char why[400];
  unsigned st = serve_parse_gen(s, ep, k->body ? k->body : "", k->len, &g, &code, why, sizeof why);
  if (st) return fail(s, c, st, code, "%s", why);
  pthread_mutex_lock(&s->mu);
  unsigned long long id = ++s->ids;
  pthread_mutex_unlock(&s->mu);
  snprintf(g->id, sizeof g->id, "%s-%llu", ep == EP_CHAT ? "chatcmpl" : "cmpl", id);
  g->created = (long)time(NULL);
  for (int i = 0; i < g->n; i++) {
    g->r[i]->stream = g->stream;
    int rc = serve_submit(s, g->r[i]);
    if (!rc) g->queued++;
    if (rc) {
      serve_gen_free(s, g, 1);
      return rc == 429 ? fail(s, c, 429, NULL, "too many requests waiting (%d); try again", s->o.queue_max)
                       : fail(s, c, 503, NULL, "the server is stopping");
    }
  }
  int fd = conn_fd(c);
  if (g->stream) {
    sse *x = calloc(1, sizeof *x);
    if (!x) { serve_gen_free(s, g, 1); return fail(s, c, 500, NULL, "out of memory"); }
    x->s = s;
    x->g = g;
    x->fd = fd;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, x, sse_free);
    if (!r) { sse_free(x); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&s->mu);
    s->st.requests++;
    pthread_mutex_unlock(&s->mu);
    return ok;
  }
  /* whole answer: wait for every prompt, watching the client */
  pthread_mutex_lock(&s->mu);
  for (;;) {
    int left = 0;
    for (int i = 0; i < g->n; i++) left += g->r[i]->state != RQ_DONE;
    if (!left) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&s->done, &s->mu, &ts);
    if (client_gone(fd)) {
      pthread_mutex_unlock(&s->mu);
      serve_gen_free(s, g, 1);
      return MHD_NO;      /* nobody to answer: close */
    }
  }
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < g->n; i++)
    if (g->r[i]->finish == FIN_ERROR || g->r[i]->finish == FIN_CANCEL) {
      char msg[220];
      snprintf(msg, sizeof msg, "%s", g->r[i]->finish == FIN_ERROR ? g->r[i]->errmsg : "the server is stopping");
      int err = g->r[i]->finish == FIN_ERROR;
      serve_gen_free(s, g, 0);
      return fail(s, c, err ? 500 : 503, NULL, "%s", msg);
    }
  cJSON *o = whole_answer(s, g);
  serve_gen_free(s, g, 0);
  return answer_json(s, c, 200, o);
}

static enum MHD_Result do_models(moesz_server *s, struct MHD_Connection *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "id", s->model_id);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", (double)(long)s->t_start);
  cJSON_AddStringToObject(m, "owned_by", "moesz");
  cJSON_AddItemToArray(d, m);
  return answer_json(s, c, 200, o);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  moesz_server *s = cls;
  conn *k = *con_cls;
  int post = !strcmp(method, "POST");
  if (!k) {
    if (!(k = calloc(1, sizeof *k))) return MHD_NO;
    k->s = s;
    *con_cls = k;
    if (post) {
      const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
      if (cl && strtoull(cl, NULL, 10) > s->o.body_max) {
        k->answered = 1;
        return fail(s, c, 413, NULL, "the request body exceeds %zu bytes", s->o.body_max);
      }
    }
    return MHD_YES;
  }
  if (*upload_size) {
    if (!k->answered && !k->too_big) {
      if (k->len + *upload_size > s->o.body_max) {
        k->too_big = 1;
        free(k->body);
        k->body = NULL;
        k->len = 0;
      } else {
        if (k->len + *upload_size + 1 > k->cap) {
          size_t cap = k->cap ? k->cap * 2 : 4096;
          while (cap < k->len + *upload_size + 1) cap *= 2;
          char *b = realloc(k->body, cap);
          if (!b) return MHD_NO;
          k->body = b;
          k->cap = cap;
        }
        memcpy(k->body + k->len, upload, *upload_size);
        k->len += *upload_size;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (k->answered) return MHD_YES;
  k->answered = 1;
  int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  int ep = !strcmp(url, "/v1/completions") ? EP_COMPLETIONS : !strcmp(url, "/v1/chat/completions") ? EP_CHAT : 0;
  if (ep) {
    if (!post) return fail(s, c, 405, NULL, "%s takes POST", url);
    return do_generate(s, c, ep, k);
  }
  int known = !strcmp(url, "/") || !strcmp(url, "/health") || !strcmp(url, "/v1/models") ||
              !strcmp(url, "/metrics") || !strcmp(url, "/v1/experts");
  if (!known) return fail(s, c, 404, NULL, "no such endpoint: %.200s", url);
  if (!get) return fail(s, c, 405, NULL, "%s takes GET", url);
  if (!strcmp(url, "/health")) return answer(s, c, 200, "application/json", "{\"status\":\"ok\"}", 15);
  if (!strcmp(url, "/v1/models")) return do_models(s, c);
  char *txt = !strcmp(url, "/metrics") ? serve_metrics_text(s) : !strcmp(url, "/v1/experts") ? serve_experts_json(s)
                                                                                             : NULL;
  if (!strcmp(url, "/")) return answer(s, c, 200, "text/html; charset=utf-8", serve_page_html, strlen(serve_page_html));
  if (!txt) return fail(s, c, 500, NULL, "out of memory");
  enum MHD_Result ok = answer(s, c, 200, !strcmp(url, "/metrics") ? "text/plain; version=0.0.4" : "application/json",
                              txt, strlen(txt));
  free(txt);
  return ok;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls; (void)c; (void)toe;
  conn *k = *con_cls;
  if (!k) return;
  free(k->body);
  free(k);
  *con_cls = NULL;
}

int serve_http_start(moesz_server *s, moesz_error *err) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)s->o.port);
  if (inet_pton(AF_INET, s->o.host, &a.sin_addr) != 1)
    return moesz_error_set(err, MOESZ_E_ARG, "--host %s: not a numeric IPv4 address", s->o.host);
  unsigned limit = (unsigned)(s->o.queue_max + s->o.max_batch + 16);
  s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)s->o.port,
                          NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                          MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT,
                          (unsigned)(s->o.idle_timeout_s > 0 ? s->o.idle_timeout_s : 60),
                          MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
  if (!s->d)
    return moesz_error_set(err, MOESZ_E_IO, "cannot listen on %s:%d (%s)", s->o.host, s->o.port,
                           errno ? strerror(errno) : "address in use?");
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : s->o.port;
  return MOESZ_OK;
}

void serve_http_stop(moesz_server *s) {
  if (s->d) MHD_stop_daemon(s->d);
  s->d = NULL;
}
