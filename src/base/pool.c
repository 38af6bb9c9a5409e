/* base/pool.c - persistent pthread pool with dynamic task claiming. */
#include "base/pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct moesz_pool {
  int n;                    /* threads including the caller */
  pthread_t *th;            /* [n - 1] workers */
  pthread_mutex_t mu;
  pthread_cond_t cv_start, cv_done;
  unsigned long gen;        /* bumped per run */
  int busy;                 /* workers still inside the current run */
  int quit;
  moesz_pool_fn fn;
  void *ctx;
  size_t ntask;
  atomic_size_t next;
};

typedef struct { moesz_pool *p; int tid; } worker_arg;

static void drain(moesz_pool *p, int tid) {
  for (;;) {
    size_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->ntask) break;
    p->fn(p->ctx, i, tid);
  }
}

static void *worker(void *arg) {
  worker_arg wa = *(worker_arg *)arg;
  free(arg);
  moesz_pool *p = wa.p;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->gen == seen) pthread_cond_wait(&p->cv_start, &p->mu);
    if (p->quit) break;
    seen = p->gen;
    pthread_mutex_unlock(&p->mu);
    drain(p, wa.tid);
    pthread_mutex_lock(&p->mu);
    if (--p->busy == 0) pthread_cond_signal(&p->cv_done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

moesz_pool *moesz_pool_create(int nthreads) {
  if (nthreads <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = c > 0 ? (int)c : 1;
  }
  moesz_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_start, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  atomic_init(&p->next, 0);
  if (nthreads > 1) {
    p->th = calloc((size_t)nthreads - 1, sizeof *p->th);
    if (!p->th) { free(p); return NULL; }
    for (int i = 0; i < nthreads - 1; i++) {
      worker_arg *wa = malloc(sizeof *wa);
      if (!wa) { p->n = i + 1; break; }
      wa->p = p;
      wa->tid = i + 1;
      if (pthread_create(&p->th[i], NULL, worker, wa) != 0) { free(wa); p->n = i + 1; break; }
    }
  }
  return p;
}

void moesz_pool_destroy(moesz_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->cv_start);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n - 1; i++) pthread_join(p->th[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv_start);
  pthread_cond_destroy(&p->cv_done);
  free(p->th);
  free(p);
}

int moesz_pool_size(const moesz_pool *p) { return p ? p->n : 1; }

void moesz_pool_run(moesz_pool *p, size_t n, moesz_pool_fn fn, void *ctx) {
  if (!p || p->n == 1 || n <= 1) {
    for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->ntask = n;
  atomic_store(&p->next, 0);
  p->busy = p->n - 1;
  p->gen++;
  pthread_cond_broadcast(&p->cv_start);
  pthread_mutex_unlock(&p->mu);
  drain(p, 0);
  pthread_mutex_lock(&p->mu);
  while (p->busy > 0) pthread_cond_wait(&p->cv_done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
