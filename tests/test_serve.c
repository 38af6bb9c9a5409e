/* tests/test_serve.c - the batched engine step and the HTTP server
 * (src/serve) on the bundled model, over loopback only: several sequences in
 * one step give the logits each gives alone; a completion at temperature 0
 * (whole or streamed) gives the text `moesz run` prints; prompt log-probs
 * (echo + logprobs) equal log-softmax of the engine's logits; bad requests
 * get 4xx with an OpenAI error object; a bounded load test (8 clients x 20
 * requests: streamed, whole, malformed, oversized, cut short) ends with no
 * 5xx, every answer as expected and resident memory flat; the openai Python
 * client and headless Chromium when they are installed. Every server here
 * is started in-process on a free port and stopped by the test. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "harness.h"
#include "harness_engine.h"
#include "moesz.h"

#define MODEL "models/moesz-mix-tiny"
#define PROMPT "Once upon a time"

/* ------------------------------------------------------- a tiny client */

typedef struct resp { int status; char *body; size_t len; } resp;

/* One HTTP/1.0 exchange (the server closes after answering); status -1 if
 * the connection failed. cut_after > 0: close after reading that many body
 * bytes (a client that goes away). */
static resp http(int port, const char *method, const char *path, const char *body, size_t blen, size_t cut_after) {
  resp r = {-1, NULL, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return r;
  struct timeval tv = {60, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return r; }
  char head[512];
  int hn = snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n", method, path, body ? blen : 0);
  if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn) { close(fd); return r; }
  for (size_t off = 0; body && off < blen;) {
    ssize_t k = send(fd, body + off, blen - off, MSG_NOSIGNAL);
    if (k <= 0) break;   /* the server may answer 413 and close before reading it all */
    off += (size_t)k;
  }
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
    ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
    if (k <= 0) break;
    len += (size_t)k;
    buf[len] = 0;
    char *hb = strstr(buf, "\r\n\r\n");
    if (cut_after && hb && len - (size_t)(hb + 4 - buf) >= cut_after) break;
  }
  close(fd);
  buf[len] = 0;
  char *hb = strstr(buf, "\r\n\r\n");
  if (sscanf(buf, "HTTP/1.%*d %d", &r.status) != 1 || !hb) { free(buf); r.status = -1; return r; }
  r.len = len - (size_t)(hb + 4 - buf);
  memmove(buf, hb + 4, r.len + 1);
  r.body = buf;
  return r;
}

static resp post(int port, const char *path, const char *json) { return http(port, "POST", path, json, strlen(json), 0); }

/* The text of a completion answer (choices[0].text or .message.content), malloc'd. */
static char *answer_text(const resp *r) {
  cJSON *j = r->body ? cJSON_Parse(r->body) : NULL;
  const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
  const cJSON *t = cJSON_GetObjectItem(c, "text");
  if (!t) t = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content");
  char *s = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
  cJSON_Delete(j);
  return s;
}

/* The text of a server-sent event stream (every event's text joined); NULL
 * unless it ends with "data: [DONE]" after an event with a finish_reason. */
static char *stream_text(const resp *r) {
  if (!r->body) return NULL;
  size_t cap = r->len + 1, n = 0;
  char *out = calloc(cap, 1);
  int fin = 0, done = 0;
  for (char *p = strstr(r->body, "data: "); p; p = strstr(p + 6, "data: ")) {
    if (!strncmp(p + 6, "[DONE]", 6)) { done = 1; break; }
    char *e = strstr(p, "\n\n");
    if (!e) break;
    cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(e - p - 6));
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItem(c, "text");
    if (!t) t = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content");
    if (cJSON_IsString(t) && n + strlen(t->valuestring) < cap) {
      memcpy(out + n, t->valuestring, strlen(t->valuestring));
      n += strlen(t->valuestring);
    }
    if (cJSON_IsString(cJSON_GetObjectItem(c, "finish_reason"))) fin = 1;
    cJSON_Delete(j);
  }
  if (!fin || !done) { free(out); return NULL; }
  return out;
}

static int is_error_object(const resp *r) {
  cJSON *j = r->body ? cJSON_Parse(r->body) : NULL;
  const cJSON *e = cJSON_GetObjectItem(j, "error");
  int ok = cJSON_IsString(cJSON_GetObjectItem(e, "message")) && cJSON_IsString(cJSON_GetObjectItem(e, "type"));
  cJSON_Delete(j);
  return ok;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb;
}

/* ------------------------------------------------------------- fixtures */

typedef struct srv { moesz_engine *e; moesz_tok *tok; moesz_server *s; moesz_cache *cache; int port; } srv;

/* msz: serve that container under a 2 MiB expert budget instead of MODEL's files. */
static int srv_open_from(srv *x, const moesz_serve_opts *o, const char *msz) {
  memset(x, 0, sizeof *x);
  moesz_engine_opts eo = {.threads = 2};
  moesz_error err = {0};
  moesz_cache_opts co = {.budget_bytes = 2u << 20, .policy = MOESZ_CACHE_LRU, .dtype = MOESZ_DT_COUNT};
  int rc = msz ? moesz_engine_open_msz(msz, &co, &eo, &x->e, &x->cache, &err) : moesz_engine_open(MODEL, &eo, &x->e, &err);
  if (rc || moesz_tok_load(MODEL, &x->tok, &err)) {
    fprintf(stderr, "  %s\n", err.msg);
    return -1;
  }
  moesz_serve_opts so = o ? *o : (moesz_serve_opts){0};
  so.port = 0;
  so.model_id = "tiny";
  if (moesz_serve_start(x->e, x->cache, x->tok, &so, &x->s, &err)) { fprintf(stderr, "  %s\n", err.msg); return -1; }
  x->port = moesz_serve_port(x->s);
  return 0;
}

static int srv_open(srv *x, const moesz_serve_opts *o) { return srv_open_from(x, o, NULL); }

static void srv_close(srv *x) {
  moesz_serve_stop(x->s);
  moesz_engine_close(x->e);
  if (x->tok) moesz_tok_free(x->tok);
}

/* ---------------------------------------------------------------- tests */

/* Four prompts of five tokens for the step tests, and two sets of four
 * sequences (set k on engine ek) with their logits [4, V] each. */
enum { NS = 4 };
static const int32_t STEP_PROMPTS[NS][5] = {{1, 50, 60, 70, 80}, {1, 7, 300, 9, 11}, {1, 2000, 33, 44, 55},
                                            {1, 900, 901, 902, 903}};
static void seq_sets(moesz_engine *e0, moesz_engine *e1, int V, moesz_seq *s[2][NS], float *lg[2]) {
  for (int k = 0; k < 2; k++) {
    lg[k] = malloc(sizeof(float) * (size_t)V * NS);
    for (int i = 0; i < NS; i++) CHECK_EQ_INT(moesz_seq_create(k ? e1 : e0, 32, &s[k][i], NULL), 0);
  }
}

/* A batched decode step of four sequences on two threads runs each layer's
 * routed experts as one region of the pool, one task per expert (their
 * products each too small to share out on this model: hidden 128, experts of
 * 256, at most 3 tokens an expert for 2^16 x 3 multiply-adds < 2^18); the
 * logits equal, bit for bit, those of an engine on one thread, whose experts
 * run one product after another. */
TEST(step_expert_tasks_same_results) {
  moesz_engine *e[2];
  for (int k = 0; k < 2; k++) {
    moesz_engine_opts eo = {.threads = 2 - k};
    if (moesz_engine_open(MODEL, &eo, &e[k], NULL)) { CHECK(0); return; }
  }
  int V = moesz_engine_vocab(e[0]);
  const int32_t (*p)[5] = STEP_PROMPTS;
  moesz_seq *s[2][NS];
  float *lg[2];
  seq_sets(e[0], e[1], V, s, lg);
  moesz_step_item it[NS];
  int32_t next[NS];
  for (int step = 0; step < 8; step++) {
    for (int k = 0; k < 2; k++) {
      for (int i = 0; i < NS; i++)
        it[i] = step < 5 ? (moesz_step_item){s[k][i], &p[i][step], 1, 0, lg[k] + (size_t)i * (size_t)V}
                         : (moesz_step_item){s[k][i], &next[i], 1, 0, lg[k] + (size_t)i * (size_t)V};
      CHECK_EQ_INT(moesz_engine_step(e[k], it, NS, NULL), 0);
    }
    CHECK_MSG(!memcmp(lg[0], lg[1], sizeof(float) * (size_t)V * NS), "step %d: two threads differ from one",
              step);
    for (int i = 0; i < NS; i++) next[i] = moesz_argmax(lg[0] + (size_t)i * (size_t)V, V);
  }
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < NS; i++) moesz_seq_free(s[k][i]);
    free(lg[k]);
    moesz_engine_close(e[k]);
  }
}

/* Two sibling engines (moesz_engine_open_sibling, one thread each) stepping
 * two halves of four sequences at the same time give, bit for bit, the
 * logits of the engine they were opened from stepping the same halves one
 * after the other: from the model's files, and from a container under a
 * budget that holds a fraction of the experts (both halves load and evict
 * through one cache at once). A provider that cannot take concurrent calls
 * is refused. */
typedef struct { moesz_engine *e; moesz_step_item *it; int n, rc; } half_arg;
static void *half_main(void *p) {
  half_arg *h = p;
  h->rc = moesz_engine_step(h->e, h->it, h->n, NULL);
  return NULL;
}

TEST(sibling_halves_same_results) {
  char msz[64];
  snprintf(msz, sizeof msz, "/tmp/moesz_test_sib_%d.msz", (int)getpid());
  CHECK_EQ_INT(harness_write_msz(MODEL, MOESZ_MSZ_CODEC, msz), 0);
  for (int src = 0; src < 2; src++) {
    moesz_engine *e, *sib[2] = {0};
    moesz_engine_opts eo = {.threads = 1};
    moesz_cache_opts co = {.budget_bytes = 3u << 20, .policy = MOESZ_CACHE_LFRU, .dtype = MOESZ_DT_COUNT,
                           .miss_threads = 2};
    co.store.mode = MOESZ_STORE_BUFFERED;
    moesz_cache *cache = NULL;
    if (src ? moesz_engine_open_msz(msz, &co, &eo, &e, &cache, NULL) : moesz_engine_open(MODEL, &eo, &e, NULL)) {
      CHECK(0);
      break;
    }
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(moesz_engine_open_sibling(e, 1, &sib[i], NULL), 0);
    if (!sib[0] || !sib[1]) { moesz_engine_close(sib[0]); moesz_engine_close(e); CHECK(0); break; }
    int V = moesz_engine_vocab(e);
    const int32_t (*p)[5] = STEP_PROMPTS;
    moesz_seq *s[2][NS];
    float *lg[2];
    seq_sets(e, e, V, s, lg);
    moesz_step_item it[2][NS];
    int32_t next[NS];
    for (int step = 0; step < 12; step++) {
      for (int k = 0; k < 2; k++)
        for (int i = 0; i < NS; i++)
          it[k][i] = (moesz_step_item){s[k][i], step < 5 ? &p[i][step] : &next[i], 1, 0, lg[k] + (size_t)i * (size_t)V};
      /* reference: the opening engine, one half after the other */
      CHECK_EQ_INT(moesz_engine_step(e, it[0], 2, NULL), 0);
      CHECK_EQ_INT(moesz_engine_step(e, it[0] + 2, 2, NULL), 0);
      /* the siblings, at once */
      half_arg h[2] = {{sib[0], it[1], 2, -1}, {sib[1], it[1] + 2, 2, -1}};
      pthread_t th;
      CHECK_EQ_INT(pthread_create(&th, NULL, half_main, &h[1]), 0);
      half_main(&h[0]);
      pthread_join(th, NULL);
      CHECK_EQ_INT(h[0].rc, 0);
      CHECK_EQ_INT(h[1].rc, 0);
      CHECK_MSG(!memcmp(lg[0], lg[1], sizeof(float) * (size_t)V * NS), "%s, step %d: siblings differ",
                src ? "container" : "model files", step);
      for (int i = 0; i < NS; i++) next[i] = moesz_argmax(lg[0] + (size_t)i * (size_t)V, V);
    }
    if (cache) {
      moesz_cache_stats cs;
      moesz_cache_stats_get(cache, &cs);
      CHECK_MSG(cs.misses > cs.budget_bytes / cs.expert_bytes, "the budget held every expert (%llu misses)",
                (unsigned long long)cs.misses);
      CHECK_MSG(cs.resident_bytes <= cs.budget_bytes, "resident %llu > budget %llu",
                (unsigned long long)cs.resident_bytes, (unsigned long long)cs.budget_bytes);
    }
    for (int k = 0; k < 2; k++) {
      for (int i = 0; i < NS; i++) moesz_seq_free(s[k][i]);
      free(lg[k]);
    }
    for (int i = 0; i < 2; i++) moesz_engine_close(sib[i]);
    moesz_engine_close(e);
  }
  unlink(msz);
  /* gpt-oss's own provider keeps per-call buffers: no siblings */
  moesz_engine *g;
  if (moesz_engine_open("tests/fixtures/gpt_oss", &(moesz_engine_opts){.threads = 2}, &g, NULL) == 0) {
    moesz_engine *sg = NULL;
    moesz_error err = {0};
    CHECK_EQ_INT(moesz_engine_open_sibling(g, 1, &sg, &err), MOESZ_E_UNSUPPORTED);
    CHECK(sg == NULL && strstr(err.msg, "several threads"));
    /* a server over it: two workers asked for are refused, the default falls back to one */
    moesz_tok *tok = NULL;
    if (moesz_tok_load(MODEL, &tok, NULL) == 0) {
      moesz_server *srv = NULL;
      moesz_serve_opts so = {.port = 0, .workers = 2};
      CHECK(moesz_serve_start(g, NULL, tok, &so, &srv, &err) != 0 && strstr(err.msg, "several threads"));
      moesz_serve_stop(srv);
      so.workers = 0;
      srv = NULL;
      CHECK_EQ_INT(moesz_serve_start(g, NULL, tok, &so, &srv, &err), 0);
      moesz_serve_stats st;
      if (srv) {
        moesz_serve_stats_get(srv, &st);
        CHECK_EQ_INT(st.workers, 1);
      }
      moesz_serve_stop(srv);
      moesz_tok_free(tok);
    } else CHECK(0);
    moesz_engine_close(g);
  } else CHECK_MSG(0, "gpt-oss fixture did not open");
}

/* Three sequences (different prompts and lengths) through batched steps give
 * the logits each gives alone through moesz_engine_forward, and a batched
 * decode step asks the provider for fewer experts than the sequences alone. */
TEST(step_matches_forward) {
  moesz_engine *e;
  moesz_engine_opts eo = {.threads = 2};
  if (moesz_engine_open(MODEL, &eo, &e, NULL)) { CHECK(0); return; }
  int V = moesz_engine_vocab(e);
  int32_t p[3][12] = {{1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150}, {1, 7, 300, 9}, {1, 2000, 33, 44, 55, 66, 77}};
  int np[3] = {12, 4, 7};
  moesz_seq *s[3];
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(moesz_seq_create(e, 64, &s[i], NULL), 0);
  float *lg = malloc(sizeof(float) * (size_t)V * 3), *ref = malloc(sizeof(float) * (size_t)V);
  moesz_step_item it[3];
  for (int i = 0; i < 3; i++) it[i] = (moesz_step_item){s[i], p[i], np[i], 0, lg + (size_t)i * (size_t)V};
  CHECK_EQ_INT(moesz_engine_step(e, it, 3, NULL), 0);
  int32_t next[3];
  double maxd = 0;
  uint64_t batched = 0, alone = 0;
  for (int step = 0; step < 6; step++) {
    for (int i = 0; i < 3; i++) next[i] = moesz_argmax(lg + (size_t)i * (size_t)V, V);
    for (int i = 0; i < 3; i++) it[i] = (moesz_step_item){s[i], &next[i], 1, 0, lg + (size_t)i * (size_t)V};
    moesz_engine_stats a, b;
    moesz_engine_stats_get(e, &a);
    CHECK_EQ_INT(moesz_engine_step(e, it, 3, NULL), 0);
    moesz_engine_stats_get(e, &b);
    batched += b.expert_gets - a.expert_gets;
  }
  /* replay each sequence alone with the same tokens and compare the last logits */
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(moesz_seq_pos(s[i]), np[i] + 6);
  }
  moesz_seq *t;
  CHECK_EQ_INT(moesz_seq_create(e, 64, &t, NULL), 0);
  for (int i = 0; i < 3; i++) {
    /* the tokens each sequence was fed: prompt, then argmax of each step */
    moesz_seq_reset(t);
    moesz_engine_reset(e);
    int32_t toks[32];
    memcpy(toks, p[i], sizeof(int32_t) * (size_t)np[i]);
    int n = np[i];
    CHECK_EQ_INT(moesz_engine_forward(e, toks, (size_t)n, 0, ref, NULL), 0);
    for (int step = 0; step < 6; step++) {
      int32_t nx = moesz_argmax(ref, V);
      moesz_engine_stats a, b;
      moesz_engine_stats_get(e, &a);
      CHECK_EQ_INT(moesz_engine_forward(e, &nx, 1, 0, ref, NULL), 0);
      moesz_engine_stats_get(e, &b);
      alone += b.expert_gets - a.expert_gets;
    }
    for (int v = 0; v < V; v++) {
      double d = fabs((double)ref[v] - lg[(size_t)i * (size_t)V + (size_t)v]);
      if (d > maxd) maxd = d;
    }
    CHECK_EQ_INT(moesz_argmax(ref, V), moesz_argmax(lg + (size_t)i * (size_t)V, V));
  }
  CHECK_MSG(maxd < 1e-3, "batched vs alone logits differ by %g", maxd);
  CHECK_MSG(batched < alone, "expert gets: batched %llu, alone %llu", (unsigned long long)batched,
            (unsigned long long)alone);
  /* refused steps move no position */
  int pos0 = moesz_seq_pos(s[0]);
  moesz_step_item twice[2] = {{s[0], next, 1, 0, lg}, {s[0], next, 1, 0, lg + V}};
  CHECK_EQ_INT(moesz_engine_step(e, twice, 2, NULL), MOESZ_E_ARG);
  int32_t *many = calloc(200, sizeof *many);
  moesz_step_item big = {t, many, 200, 0, lg};
  CHECK_EQ_INT(moesz_engine_step(e, &big, 1, NULL), MOESZ_E_RANGE);
  int32_t badid = V;
  moesz_step_item bad[2] = {{s[0], next, 1, 0, lg}, {s[1], &badid, 1, 0, lg + V}};
  CHECK_EQ_INT(moesz_engine_step(e, bad, 2, NULL), MOESZ_E_RANGE);
  CHECK_EQ_INT(moesz_seq_pos(s[0]), pos0);
  moesz_seq *huge;
  CHECK_EQ_INT(moesz_seq_create(e, moesz_engine_max_ctx(e) + 1, &huge, NULL), MOESZ_E_RANGE);
  free(many);
  moesz_seq_free(t);
  for (int i = 0; i < 3; i++) moesz_seq_free(s[i]);
  free(lg);
  free(ref);
  moesz_engine_close(e);
}

/* The same on every family's fixture (q/k/v bias, q/k norms per head and over
 * the projection, clip_qkv, shared experts, dense layers, DeepSeek-V3's
 * latent attention and sigmoid group routing, GLM's partial rotary, gpt-oss's
 * sinks, sliding windows (8 here, passed by the 12 tokens), biases and MXFP4
 * experts): two sequences of different lengths in one step, then two more
 * steps together, against each alone. */
TEST(step_matches_forward_families) {
  static const char *fams[] = {"llama", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek",
                               "deepseek_v3", "deepseek_v3_plain", "glm4_moe", "gpt_oss", "gpt_oss_mxfp4"};
  for (size_t f = 0; f < sizeof fams / sizeof *fams; f++) {
    char dir[128];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", fams[f]);
    moesz_engine *e;
    moesz_engine_opts eo = {.threads = 2};
    moesz_error err = {0};
    if (moesz_engine_open(dir, &eo, &e, &err)) { CHECK_MSG(0, "%s: %s", dir, err.msg); continue; }
    int V = moesz_engine_vocab(e);
    int32_t a[12], b[4];
    for (int i = 0; i < 12; i++) a[i] = (int32_t)((i * 7 + 3) % V);
    for (int i = 0; i < 4; i++) b[i] = (int32_t)((i * 5 + 1) % V);
    moesz_seq *sa, *sb;
    CHECK_EQ_INT(moesz_seq_create(e, 16, &sa, NULL), 0);
    CHECK_EQ_INT(moesz_seq_create(e, 16, &sb, NULL), 0);
    float *lg = malloc(sizeof(float) * 2 * (size_t)V), *ref = malloc(sizeof(float) * (size_t)V);
    moesz_step_item it[2] = {{sa, a, 9, 0, lg}, {sb, b, 2, 0, lg + V}};
    CHECK_EQ_INT(moesz_engine_step(e, it, 2, NULL), 0);
    it[0] = (moesz_step_item){sa, a + 9, 2, 0, lg};
    it[1] = (moesz_step_item){sb, b + 2, 1, 0, lg + V};
    CHECK_EQ_INT(moesz_engine_step(e, it, 2, NULL), 0);
    it[0] = (moesz_step_item){sa, a + 11, 1, 0, lg};
    it[1] = (moesz_step_item){sb, b + 3, 1, 0, lg + V};
    CHECK_EQ_INT(moesz_engine_step(e, it, 2, NULL), 0);
    double maxd = 0;
    for (int i = 0; i < 2; i++) {
      moesz_engine_reset(e);
      CHECK_EQ_INT(moesz_engine_forward(e, i ? b : a, i ? 4 : 12, 0, ref, NULL), 0);
      for (int v = 0; v < V; v++) {
        double dd = fabs((double)ref[v] - lg[(size_t)i * (size_t)V + (size_t)v]);
        if (dd > maxd) maxd = dd;
      }
    }
    CHECK_MSG(maxd < 1e-4, "%s: batched vs alone logits differ by %g", fams[f], maxd);
    moesz_seq_free(sa);
    moesz_seq_free(sb);
    free(lg);
    free(ref);
    moesz_engine_close(e);
  }
}

/* A completion at temperature 0, whole and streamed, is the text `moesz run`
 * prints for the same prompt; so are four at once. */
TEST(completion_matches_run) {
  const char *bin = getenv("MOESZ_BIN");
  if (!bin) SKIP("MOESZ_BIN not set (make check sets it)");
  char cmd[512], want[8192];
  snprintf(cmd, sizeof cmd, "%s run %s --prompt '" PROMPT "' --max-tokens 24 --temperature 0 --threads 2 2>/dev/null",
           bin, MODEL);
  CHECK_EQ_INT(harness_run_cmd(cmd, want, sizeof want), 0);
  size_t wl = strlen(want);
  if (wl && want[wl - 1] == '\n') want[--wl] = 0;   /* run ends the text with a newline */
  CHECK(wl > 10);
  srv x;
  if (srv_open(&x, NULL)) { CHECK(0); return; }
  const char *body = "{\"model\":\"tiny\",\"prompt\":\"" PROMPT "\",\"max_tokens\":24,\"temperature\":0}";
  resp r = post(x.port, "/v1/completions", body);
  CHECK_EQ_INT(r.status, 200);
  char *got = answer_text(&r);
  CHECK_MSG(got && !strcmp(got, want), "server \"%s\" vs run \"%s\"", got ? got : "(none)", want);
  cJSON *j = cJSON_Parse(r.body);
  const cJSON *u = cJSON_GetObjectItem(j, "usage");
  CHECK_EQ_INT(cJSON_GetObjectItem(u, "completion_tokens")->valuedouble, 24);
  CHECK_EQ_INT(cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble, 5);
  cJSON_Delete(j);
  free(got);
  free(r.body);
  /* streamed */
  r = post(x.port, "/v1/completions",
           "{\"prompt\":\"" PROMPT "\",\"max_tokens\":24,\"temperature\":0,\"stream\":true}");
  CHECK_EQ_INT(r.status, 200);
  got = stream_text(&r);
  CHECK_MSG(got && !strcmp(got, want), "stream \"%s\" vs run \"%s\"", got ? got : "(none)", want);
  free(got);
  free(r.body);
  /* a stop string cuts the text before it */
  r = post(x.port, "/v1/completions",
           "{\"prompt\":\"" PROMPT "\",\"max_tokens\":24,\"temperature\":0,\"stop\":[\" there\"]}");
  got = answer_text(&r);
  const char *cut = strstr(want, " there");
  CHECK(cut && got && strlen(got) == (size_t)(cut - want) && !strncmp(got, want, strlen(got)));
  free(got);
  free(r.body);
  /* chat answers with a message */
  r = post(x.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8}");
  CHECK_EQ_INT(r.status, 200);
  got = answer_text(&r);
  CHECK(got != NULL);
  free(got);
  free(r.body);
  r = post(x.port, "/v1/chat/completions",
           "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8,\"stream\":true}");
  got = stream_text(&r);
  CHECK(got != NULL);
  free(got);
  free(r.body);
  srv_close(&x);
}

typedef struct same_arg { int port; char *text; } same_arg;
static void *same_main(void *p) {
  same_arg *a = p;
  resp r = post(a->port, "/v1/completions", "{\"prompt\":\"" PROMPT "\",\"max_tokens\":24,\"temperature\":0}");
  a->text = r.status == 200 ? answer_text(&r) : NULL;
  free(r.body);
  return NULL;
}

/* Four identical greedy requests at once (decoded in the same steps) give
 * the text one gives alone, and the steps held more than one sequence; also
 * with two workers (two requests each, stepped at once on sibling engines). */
TEST(concurrent_greedy_identical) {
  for (int g = 1; g <= 2; g++) {
    srv x;
    moesz_serve_opts o = {.workers = g};
    if (srv_open(&x, &o)) { CHECK(0); return; }
    same_arg one = {x.port, NULL};
    same_main(&one);
    CHECK(one.text != NULL);
    moesz_serve_stats a, b;
    moesz_serve_stats_get(x.s, &a);
    CHECK_EQ_INT(a.workers, g);
    pthread_t th[4];
    same_arg args[4];
    for (int i = 0; i < 4; i++) { args[i] = (same_arg){x.port, NULL}; pthread_create(&th[i], NULL, same_main, &args[i]); }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    moesz_serve_stats_get(x.s, &b);
    for (int i = 0; i < 4; i++) {
      CHECK_MSG(args[i].text && one.text && !strcmp(args[i].text, one.text), "workers %d, request %d: \"%s\" vs \"%s\"",
                g, i, args[i].text ? args[i].text : "(none)", one.text ? one.text : "");
      free(args[i].text);
    }
    CHECK_MSG(b.step_seqs - a.step_seqs > b.steps - a.steps, "workers %d: no step held two sequences (%llu seqs in "
              "%llu steps)", g, (unsigned long long)(b.step_seqs - a.step_seqs), (unsigned long long)(b.steps - a.steps));
    free(one.text);
    srv_close(&x);
  }
  moesz_serve_opts bad = {.workers = 17};
  srv y;
  CHECK(srv_open(&y, &bad) != 0);
  srv_close(&y);
}

/* echo + logprobs: each prompt token's log-prob is log-softmax of the
 * engine's logits at the position before it; top_logprobs' best matches. */
TEST(echo_logprobs) {
  srv x;
  if (srv_open(&x, NULL)) { CHECK(0); return; }
  int32_t ids[6] = {1, 411, 1301, 264, 727, 29};
  resp r = post(x.port, "/v1/completions",
                "{\"prompt\":[1,411,1301,264,727,29],\"max_tokens\":0,\"echo\":true,\"logprobs\":1,\"temperature\":0}");
  CHECK_EQ_INT(r.status, 200);
  cJSON *j = cJSON_Parse(r.body);
  const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
  const cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "logprobs"), "token_logprobs");
  const cJSON *tk = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "logprobs"), "tokens");
  const cJSON *top = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "logprobs"), "top_logprobs");
  CHECK_EQ_INT(cJSON_GetArraySize(lp), 6);
  CHECK_EQ_INT(cJSON_GetArraySize(tk), 6);
  CHECK(cJSON_IsNull(cJSON_GetArrayItem(lp, 0)));
  /* the reference: a separate engine, every position's logits */
  moesz_engine *e;
  moesz_engine_opts eo = {.threads = 1};
  CHECK_EQ_INT(moesz_engine_open(MODEL, &eo, &e, NULL), 0);
  int V = moesz_engine_vocab(e);
  float *lg = malloc(sizeof(float) * 6 * (size_t)V);
  CHECK_EQ_INT(moesz_engine_forward(e, ids, 6, 1, lg, NULL), 0);
  for (int i = 1; i < 6; i++) {
    const float *row = lg + (size_t)(i - 1) * (size_t)V;
    double mx = row[0], sum = 0;
    for (int v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
    for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
    double want = row[ids[i]] - mx - log(sum);
    const cJSON *got = cJSON_GetArrayItem(lp, i);
    CHECK(cJSON_IsNumber(got));
    if (cJSON_IsNumber(got)) CHECK_NEAR(got->valuedouble, want, 2e-3);
    const cJSON *t = cJSON_GetArrayItem(top, i);
    CHECK(cJSON_IsObject(t) && t->child && cJSON_IsNumber(t->child));
    if (t && t->child) CHECK_NEAR(t->child->valuedouble, row[moesz_argmax(row, V)] - mx - log(sum), 2e-3);
  }
  free(lg);
  moesz_engine_close(e);
  cJSON_Delete(j);
  free(r.body);
  /* two prompts in one request: two choices */
  r = post(x.port, "/v1/completions", "{\"prompt\":[\"a b\",\"c d e\"],\"max_tokens\":2,\"temperature\":0}");
  CHECK_EQ_INT(r.status, 200);
  j = cJSON_Parse(r.body);
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")), 2);
  cJSON_Delete(j);
  free(r.body);
  srv_close(&x);
}

/* Malformed or out-of-range requests: 4xx with an OpenAI error object. */
TEST(bad_requests) {
  moesz_serve_opts o = {.body_max = 4096, .max_tokens = 64};
  srv x;
  if (srv_open(&x, &o)) { CHECK(0); return; }
  static const struct { const char *path, *method, *body; int status; } C[] = {
    {"/v1/completions", "POST", "{not json", 400},
    {"/v1/completions", "POST", "[1,2]", 400},
    {"/v1/completions", "POST", "{}", 400},
    {"/v1/completions", "POST", "{\"prompt\":5}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"max_tokens\":\"9\"}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"max_tokens\":1000}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"max_tokens\":-1}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"top_p\":0}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"stream\":1}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"stop\":[1]}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"logprobs\":9}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"n\":3}", 400},
    {"/v1/completions", "POST", "{\"prompt\":[1,99999]}", 400},
    {"/v1/completions", "POST", "{\"prompt\":[-1]}", 400},
    {"/v1/completions", "POST", "{\"prompt\":[]}", 400},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404},
    {"/v1/completions", "POST", "{\"prompt\":\"x\",\"model\":7}", 400},
    {"/v1/chat/completions", "POST", "{\"messages\":[]}", 400},
    {"/v1/chat/completions", "POST", "{\"messages\":[{\"role\":\"user\"}]}", 400},
    {"/v1/chat/completions", "POST", "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400},
    {"/v1/chat/completions", "POST", "{\"prompt\":\"x\"}", 400},
    {"/v1/completions", "GET", NULL, 405},
    {"/health", "POST", "{}", 405},
    {"/nope", "GET", NULL, 404},
  };
  for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
    resp r = http(x.port, C[i].method, C[i].path, C[i].body, C[i].body ? strlen(C[i].body) : 0, 0);
    CHECK_MSG(r.status == C[i].status, "%s %s %s: %d, want %d (%s)", C[i].method, C[i].path,
              C[i].body ? C[i].body : "", r.status, C[i].status, r.body ? r.body : "");
    CHECK_MSG(is_error_object(&r), "case %zu: no error object: %s", i, r.body ? r.body : "");
    free(r.body);
  }
  /* a context overflow, and a body over the limit */
  char *big = malloc(20000);
  memset(big, 'a', 19999);
  memcpy(big, "{\"prompt\":\"", 11);
  memcpy(big + 19997, "\"}", 3);
  resp r = post(x.port, "/v1/completions", big);
  CHECK_EQ_INT(r.status, 413);
  CHECK(is_error_object(&r));
  free(r.body);
  int n = snprintf(big, 20000, "{\"prompt\":[");
  for (int i = 0; i < 600; i++) n += snprintf(big + n, 20000 - (size_t)n, "%s5", i ? "," : "");
  snprintf(big + n, 20000 - (size_t)n, "],\"max_tokens\":1}");
  moesz_serve_stop(x.s);
  moesz_serve_opts o2 = {.max_tokens = 64, .model_id = "tiny"};
  moesz_error err = {0};
  CHECK_EQ_INT(moesz_serve_start(x.e, NULL, x.tok, &o2, &x.s, &err), 0);
  x.port = moesz_serve_port(x.s);
  r = post(x.port, "/v1/completions", big);
  CHECK_EQ_INT(r.status, 400);
  CHECK(r.body && strstr(r.body, "context"));
  free(r.body);
  free(big);
  /* the other endpoints */
  r = http(x.port, "GET", "/v1/models", NULL, 0, 0);
  CHECK(r.status == 200 && r.body && strstr(r.body, "\"tiny\""));
  free(r.body);
  r = http(x.port, "GET", "/health", NULL, 0, 0);
  CHECK_EQ_INT(r.status, 200);
  free(r.body);
  r = http(x.port, "GET", "/metrics", NULL, 0, 0);
  CHECK(r.status == 200 && r.body && strstr(r.body, "moesz_completion_tokens_total"));
  free(r.body);
  r = http(x.port, "GET", "/", NULL, 0, 0);
  CHECK(r.status == 200 && r.body && strstr(r.body, "/v1/experts"));
  free(r.body);
  r = http(x.port, "GET", "/v1/experts", NULL, 0, 0);
  cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rows")), moesz_engine_config(x.e)->n_layers);
  cJSON_Delete(j);
  free(r.body);
  moesz_serve_stats st;
  moesz_serve_stats_get(x.s, &st);
  CHECK_EQ_INT(st.errors_5xx, 0);
  srv_close(&x);
}


/* Likelihood scoring through the server as lm-evaluation-harness's
 * local-completions model does it (prompt = context + continuation ids,
 * echo, logprobs, max_tokens 0; sum of the continuation's log-probs) gives
 * the accuracy `moesz eval` gives on the first 24 COPA items, and each
 * log-likelihood within 2e-3. */
TEST(eval_through_server) {
  char path[512];
  snprintf(path, sizeof path, "%s/eval/copa.jsonl", harness_data_dir());
  FILE *f = fopen(path, "r");
  if (!f) SKIP("%s absent", path);
  srv x;
  if (srv_open(&x, NULL)) { CHECK(0); fclose(f); return; }
  moesz_engine *e;
  moesz_engine_opts eo = {.threads = 2};
  CHECK_EQ_INT(moesz_engine_open(MODEL, &eo, &e, NULL), 0);
  moesz_task_result want;
  CHECK_EQ_INT(moesz_eval_task(e, x.tok, path, 24, MOESZ_BOS_AUTO, 0, &want, NULL), 0);
  char line[4096];
  int n = 0, right = 0;
  double maxd = 0;
  while (n < 24 && fgets(line, sizeof line, f)) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *q = cJSON_GetObjectItem(j, "query"), *ch = cJSON_GetObjectItem(j, "choices");
    int gold = (int)cJSON_GetObjectItem(j, "gold")->valuedouble, nc = cJSON_GetArraySize(ch);
    /* every choice of the item in one request: a batch of prompts */
    size_t cap = 65536, bl = 0;
    char *body = malloc(cap);
    bl += (size_t)snprintf(body, cap, "{\"prompt\":[");
    size_t ncont[8];
    double ref[8];
    for (int c = 0; c < nc && c < 8; c++) {
      char cont[1024];
      snprintf(cont, sizeof cont, " %s", cJSON_GetArrayItem(ch, c)->valuestring);
      int32_t *ci, *wi;
      size_t cn, wn;
      CHECK_EQ_INT(moesz_eval_encode_pair(x.tok, q->valuestring, cont, MOESZ_BOS_AUTO, &ci, &cn, &wi, &wn, NULL), 0);
      ncont[c] = wn;
      CHECK_EQ_INT(moesz_eval_loglik(e, ci, cn, wi, wn, &ref[c], NULL, NULL), 0);
      bl += (size_t)snprintf(body + bl, cap - bl, "%s[", c ? "," : "");
      for (size_t k = 0; k < cn + wn; k++)
        bl += (size_t)snprintf(body + bl, cap - bl, "%s%d", k ? "," : "", k < cn ? ci[k] : wi[k - cn]);
      bl += (size_t)snprintf(body + bl, cap - bl, "]");
      free(ci);
      free(wi);
    }
    snprintf(body + bl, cap - bl, "],\"max_tokens\":0,\"echo\":true,\"logprobs\":1,\"temperature\":0}");
    resp r = post(x.port, "/v1/completions", body);
    CHECK_EQ_INT(r.status, 200);
    cJSON *a = r.body ? cJSON_Parse(r.body) : NULL;
    int best = -1;
    double bestll = 0;
    for (int c = 0; c < nc && c < 8; c++) {
      const cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "choices"), c),
                                                               "logprobs"), "token_logprobs");
      int tot = cJSON_GetArraySize(lp);
      double ll = 0;
      for (int k = tot - (int)ncont[c]; k < tot && k >= 0; k++) ll += cJSON_GetArrayItem(lp, k)->valuedouble;
      if (fabs(ll - ref[c]) > maxd) maxd = fabs(ll - ref[c]);
      if (best < 0 || ll > bestll) { best = c; bestll = ll; }
    }
    right += best == gold;
    n++;
    cJSON_Delete(a);
    free(r.body);
    free(body);
    cJSON_Delete(j);
  }
  fclose(f);
  CHECK_EQ_INT(n, (int)want.n);
  CHECK_MSG(fabs((double)right / n - want.acc) < 1e-9, "acc through the server %g, moesz eval %g", (double)right / n,
            want.acc);
  CHECK_MSG(maxd < 2e-3, "log-likelihoods differ by up to %g", maxd);
  printf("  copa (first %d): acc %.4f through the server, %.4f by moesz eval; max |d loglik| %.2g\n", n,
         (double)right / n, want.acc, maxd);
  moesz_engine_close(e);
  srv_close(&x);
}

/* --------------------------------------------------------- load test */

typedef struct load_arg { int port, id, bad, fivexx; } load_arg;

static void *load_main(void *p) {
  load_arg *a = p;
  char body[512];
  for (int i = 0; i < 20; i++) {
    int kind = (a->id + i) % 6;
    resp r;
    snprintf(body, sizeof body, "{\"prompt\":\"%s %d\",\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%d%s}",
             PROMPT, i, 4 + (i % 5), i, kind == 1 || kind == 4 ? ",\"stream\":true" : "");
    if (kind == 2) r = post(a->port, "/v1/completions", "{\"prompt\": [1, 2,");
    else if (kind == 3) {
      char *big = malloc(70000);
      memset(big, ' ', 69999);
      big[0] = '{';
      big[69998] = '}';
      big[69999] = 0;
      r = post(a->port, "/v1/completions", big);
      free(big);
    } else if (kind == 4) {
      /* a streaming client that reads one event and goes away */
      r = http(a->port, "POST", "/v1/completions", body, strlen(body), 1);
      if (r.status == 200) r.status = 0;   /* cut short: nothing to check */
    } else r = post(a->port, kind == 5 ? "/v1/chat/completions" : "/v1/completions",
                    kind == 5 ? "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5}" : body);
    int want = kind == 2 ? 400 : kind == 3 ? 413 : kind == 4 ? 0 : 200;
    if (r.status >= 500 || r.status < 0) a->fivexx++;
    if (r.status != want && !(r.status == 429)) a->bad++;
    if (want == 200 && r.status == 200 && kind == 1) {
      char *t = stream_text(&r);
      if (!t) a->bad++;
      free(t);
    }
    free(r.body);
  }
  return NULL;
}

static void load_mixed_with(int workers) {
  moesz_serve_opts o = {.body_max = 64 << 10, .max_tokens = 16, .max_batch = 8, .queue_max = 64, .workers = workers};
  srv x;
  if (srv_open(&x, &o)) { CHECK(0); return; }
  long rss[3] = {0};
  for (int round = 0; round < 3; round++) {
    pthread_t th[8];
    load_arg a[8];
    for (int i = 0; i < 8; i++) { a[i] = (load_arg){x.port, i + round, 0, 0}; pthread_create(&th[i], NULL, load_main, &a[i]); }
    int bad = 0, fivexx = 0;
    for (int i = 0; i < 8; i++) { pthread_join(th[i], NULL); bad += a[i].bad; fivexx += a[i].fivexx; }
    CHECK_EQ_INT(fivexx, 0);
    CHECK_EQ_INT(bad, 0);
    rss[round] = rss_kb();
    if (round == 0 && getenv("MOESZ_SERVE_QUICK")) break;
  }
  /* the server is idle again: every sequence ended, cancelled ones too */
  moesz_serve_stats st;
  for (int t = 0; t < 50; t++) {
    moesz_serve_stats_get(x.s, &st);
    if (!st.active && !st.queued) break;
    usleep(100000);
  }
  CHECK_EQ_INT(st.active, 0);
  CHECK_EQ_INT(st.queued, 0);
  CHECK_EQ_INT(st.errors_5xx, 0);
  CHECK_MSG(st.cancelled > 0, "no sequence was cancelled by a client going away");
  CHECK_MSG(st.step_seqs > st.steps, "steps never held two sequences");
  /* resident memory flat after the first round (AddressSanitizer keeps freed memory in quarantine) */
#if !defined(__SANITIZE_ADDRESS__)
  if (rss[2] > 0) CHECK_MSG(rss[2] - rss[1] < 8192, "RSS grew from %ld kB to %ld kB", rss[1], rss[2]);
#endif
  printf("  load, %d worker%s: %llu requests, %llu generated tokens in %llu steps (%.2f sequences per step), %llu "
         "cancelled; RSS %ld -> %ld -> %ld kB\n", workers, workers > 1 ? "s" : "", (unsigned long long)st.requests, (unsigned long long)st.completion_tokens,
         (unsigned long long)st.steps, (double)st.step_seqs / (double)(st.steps ? st.steps : 1),
         (unsigned long long)st.cancelled, rss[0], rss[1], rss[2]);
  srv_close(&x);
}

/* The load above on one scheduler worker and on two (each with its own
 * sibling engine, sharing the queue, the sequences and the model). */
TEST(load_mixed) {
  load_mixed_with(1);
  load_mixed_with(2);
}

/* The openai Python package as a client (skipped without it). */
TEST(openai_client) {
  char out[4096];
  if (harness_run_cmd("python3 -c 'import openai' 2>/dev/null && echo yes", out, sizeof out) != 0 || strncmp(out, "yes", 3))
    SKIP("python3 with the openai package not installed");
  srv x;
  if (srv_open(&x, NULL)) { CHECK(0); return; }
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "python3 - <<'EOF' 2>&1\n"
           "import openai\n"
           "c = openai.OpenAI(base_url='http://127.0.0.1:%d/v1', api_key='none')\n"
           "assert [m.id for m in c.models.list()] == ['tiny']\n"
           "r = c.completions.create(model='tiny', prompt='" PROMPT "', max_tokens=8, temperature=0)\n"
           "assert r.usage.completion_tokens == 8 and r.choices[0].text\n"
           "s = ''.join(ch.choices[0].text for ch in c.completions.create(model='tiny', prompt='" PROMPT "', "
           "max_tokens=8, temperature=0, stream=True))\n"
           "assert s == r.choices[0].text, (s, r.choices[0].text)\n"
           "m = c.chat.completions.create(model='tiny', messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=6)\n"
           "assert m.choices[0].message.role == 'assistant'\n"
           "try:\n"
           "    c.completions.create(model='other', prompt='x')\n"
           "    print('no error')\n"
           "except openai.NotFoundError:\n"
           "    print('ok')\n"
           "EOF", x.port);
  int rc = harness_run_cmd(cmd, out, sizeof out);
  CHECK_MSG(rc == 0 && strstr(out, "ok"), "openai client: rc %d: %s", rc, out);
  srv_close(&x);
}

typedef struct slow_arg { int port; } slow_arg;
static void *slow_main(void *p) {
  slow_arg *a = p;
  resp r = post(a->port, "/v1/completions", "{\"prompt\":\"" PROMPT "\",\"max_tokens\":400,\"temperature\":0.8}");
  free(r.body);
  return NULL;
}

/* Headless Chromium loads the page during a request; the DOM it ends with
 * has a row per layer (skipped without chromium). */
TEST(page_in_browser) {
  char out[1 << 16];
  const char *br = NULL;
  static const char *names[] = {"chromium", "chromium-browser", "google-chrome"};
  for (int i = 0; i < 3 && !br; i++) {
    char c[128];
    snprintf(c, sizeof c, "command -v %s >/dev/null 2>&1", names[i]);
    if (harness_run_cmd(c, out, sizeof out) == 0) br = names[i];
  }
  if (!br) SKIP("no chromium (Debian package chromium) installed");
  srv x;
  moesz_serve_opts o = {.max_tokens = 400};
  char msz[64];
  snprintf(msz, sizeof msz, "/tmp/moesz_test_serve_%d.msz", (int)getpid());
  CHECK_EQ_INT(harness_write_msz(MODEL, MOESZ_MSZ_CODEC, msz), 0);
  if (srv_open_from(&x, &o, msz)) { CHECK(0); unlink(msz); return; }
  pthread_t th;
  slow_arg a = {x.port};
  pthread_create(&th, NULL, slow_main, &a);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "timeout 60 %s --headless --no-sandbox --disable-gpu --virtual-time-budget=3000 "
           "--dump-dom http://127.0.0.1:%d/ 2>/dev/null", br, x.port);
  int rc = harness_run_cmd(cmd, out, sizeof out);
  CHECK_EQ_INT(rc, 0);
  int L = moesz_engine_config(x.e)->n_layers;
  for (int l = 0; l < L; l++) {
    char id[32];
    snprintf(id, sizeof id, "id=\"layer-%d\"", l);
    CHECK_MSG(strstr(out, id) != NULL, "no row %s in the DOM", id);
  }
  CHECK_MSG(strstr(out, "class=\"R\"") != NULL, "no resident expert shown");
  /* a screenshot beside the binary, as a build artefact */
  const char *bin = getenv("MOESZ_BIN");
  if (bin && strrchr(bin, '/')) {
    snprintf(cmd, sizeof cmd, "timeout 60 %s --headless --no-sandbox --disable-gpu --virtual-time-budget=3000 "
             "--window-size=1100,700 --screenshot=%.*s/serve_page.png http://127.0.0.1:%d/ >/dev/null 2>&1", br,
             (int)(strrchr(bin, '/') - bin), bin, x.port);
    CHECK_EQ_INT(harness_run_cmd(cmd, out, sizeof out), 0);
  }
  srv_close(&x);            /* ends the request still running (503), so the client returns */
  pthread_join(th, NULL);
  unlink(msz);
}

int main(void) {
  RUN(step_matches_forward);
  RUN(step_expert_tasks_same_results);
  RUN(sibling_halves_same_results);
  RUN(step_matches_forward_families);
  RUN(completion_matches_run);
  RUN(concurrent_greedy_identical);
  RUN(echo_logprobs);
  RUN(eval_through_server);
  RUN(bad_requests);
  RUN(load_mixed);
  RUN(openai_client);
  RUN(page_in_browser);
  return DONE();
}
