/* bench/serve_client.c - a light load generator for `moesz serve`: C clients
 * threads, each sending REQS completions of MAX_TOKENS tokens (temperature
 * 0.8, its own seeds) one after another over loopback; prints the generated
 * tokens (from each answer's usage) and the wall time, so the clients cost
 * little CPU next to the server (bench/serve_batch.sh).
 *
 *   serve_client PORT CLIENTS REQS MAX_TOKENS RUN_ID
 * Output: "tokens SECONDS failures" on one line. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct arg { int port, id, reqs, max_tokens, run; long tokens; int fail; } arg;

static long one(int port, const char *body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
  char req[1024];
  int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) { close(fd); return -1; }
  char buf[1 << 16];
  size_t len = 0;
  for (ssize_t k; len + 1 < sizeof buf && (k = recv(fd, buf + len, sizeof buf - len - 1, 0)) > 0;) len += (size_t)k;
  close(fd);
  buf[len] = 0;
  const char *u = strstr(buf, "\"completion_tokens\":");
  if (strncmp(buf, "HTTP/1.0 200", 12) && strncmp(buf, "HTTP/1.1 200", 12)) return -1;
  return u ? strtol(u + 20, NULL, 10) : -1;
}

static void *client(void *p) {
  arg *a = p;
  char body[256];
  for (int r = 0; r < a->reqs; r++) {
    snprintf(body, sizeof body, "{\"prompt\":\"Once upon a time, a little %d said\",\"max_tokens\":%d,"
             "\"temperature\":0.8,\"seed\":%d}", a->id, a->max_tokens, a->id * 1000 + a->run * 100 + r);
    long t = one(a->port, body);
    if (t < 0) a->fail++;
    else a->tokens += t;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: serve_client PORT CLIENTS REQS MAX_TOKENS RUN_ID\n");
    return 2;
  }
  int port = atoi(argv[1]), nc = atoi(argv[2]), reqs = atoi(argv[3]), mt = atoi(argv[4]), run = atoi(argv[5]);
  if (nc < 1 || nc > 256 || reqs < 1 || mt < 1) { fprintf(stderr, "serve_client: bad arguments\n"); return 2; }
  pthread_t th[256];
  arg a[256];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < nc; i++) {
    a[i] = (arg){port, i + 1, reqs, mt, run, 0, 0};
    pthread_create(&th[i], NULL, client, &a[i]);
  }
  long tokens = 0;
  int fail = 0;
  for (int i = 0; i < nc; i++) { pthread_join(th[i], NULL); tokens += a[i].tokens; fail += a[i].fail; }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%ld %.6f %d\n", tokens, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), fail);
  return fail ? 1 : 0;
}
