/* fuzz/fuzz_serve_request.c - libFuzzer target for the server's request
 * parser (src/serve/http.c serve_parse_gen): byte 0 picks the endpoint
 * (completions or chat) and the chat format, the rest is the request body.
 * Uses the bundled model's tokenizer (run from the repository root). Any
 * input must be refused with a 4xx and a message, or parse into requests
 * whose prompts and limits hold. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moesz.h"
#include "serve/serve_internal.h"

static moesz_server *server(void) {
  static moesz_server *s;
  static moesz_tok *tok;
  if (s) return s;
  if (moesz_tok_load("models/moesz-mix-tiny/tokenizer.json", &tok, NULL)) __builtin_trap();
  s = calloc(1, sizeof *s);
  s->tok = tok;
  s->o.max_tokens = 64;
  s->o.max_prompts = 4;
  s->o.body_max = 1 << 20;
  s->vocab = (int)moesz_tok_vocab_size(tok);
  s->ctx = 96;
  snprintf(s->model_id, sizeof s->model_id, "tiny");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work, NULL);
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  moesz_server *s = server();
  s->chat = (moesz_chat_format)(data[0] % 3);
  int ep = data[0] & 4 ? EP_CHAT : EP_COMPLETIONS;
  gen_req *g = NULL;
  const char *code;
  char why[400] = "";
  unsigned st = serve_parse_gen(s, ep, (const char *)data + 1, size - 1, &g, &code, why, sizeof why);
  if (st) {
    if (g || st < 400 || st > 599 || !why[0]) __builtin_trap();
    return 0;
  }
  if (!g || g->n < 1 || g->n > s->o.max_prompts) __builtin_trap();
  for (int i = 0; i < g->n; i++) {
    serve_req *r = g->r[i];
    if (r->n_prompt < 1 || r->n_prompt + r->max_tokens > s->ctx || r->max_tokens > s->o.max_tokens) __builtin_trap();
    for (int k = 0; k < r->n_prompt; k++)
      if (r->prompt[k] < 0 || r->prompt[k] >= s->vocab) __builtin_trap();
  }
  serve_gen_free(s, g, 0);
  return 0;
}
