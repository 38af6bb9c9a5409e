/* base/pool.c - persistent pthread pool with dynamic task claiming. Between
 * runs a worker spins for a short while (POOL_SPIN pauses, some tens of
 * microseconds) on the run counter before it sleeps on the condition
 * variable, and the caller spins as long on the workers still busy: a decode
 * step runs tens of short regions a token, and a futex wake-up per region
 * costs more than the spin. */
#include "base/pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_RELAX() _mm_pause()
#else
#define POOL_RELAX() atomic_signal_fence(memory_order_seq_cst)
#endif
#ifndef POOL_SPIN
#define POOL_SPIN 2000
#endif

struct moesz_pool {
  int n;                    /* threads including the caller */
  pthread_t *th;            /* [n - 1] workers */
  pthread_mutex_t mu;
  pthread_cond_t cv_start, cv_done;
  atomic_ulong gen;         /* bumped per run (under mu; read by spinning workers) */
  atomic_int busy;          /* workers still inside the current run */
  atomic_int quit;
  int sleepers;             /* workers waiting on cv_start (under mu) */
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
  for (;;) {
    for (int s = 0; s < POOL_SPIN && atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
                    !atomic_load_explicit(&p->quit, memory_order_relaxed); s++)
      POOL_RELAX();
    if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->quit)) {
      pthread_mutex_lock(&p->mu);
      while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen) {
        p->sleepers++;
        pthread_cond_wait(&p->cv_start, &p->mu);
        p->sleepers--;
      }
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->quit)) break;
    seen = atomic_load_explicit(&p->gen, memory_order_acquire);
    drain(p, wa.tid);
    if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->cv_done);
      pthread_mutex_unlock(&p->mu);
    }
  }
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
  atomic_init(&p->gen, 0);
  atomic_init(&p->busy, 0);
  atomic_init(&p->quit, 0);
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
  atomic_store(&p->quit, 1);
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
  p->fn = fn;
  p->ctx = ctx;
  p->ntask = n;
  atomic_store(&p->next, 0);
  atomic_store(&p->busy, p->n - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  if (p->sleepers) pthread_cond_broadcast(&p->cv_start);
  pthread_mutex_unlock(&p->mu);
  drain(p, 0);
  for (int s = 0; s < POOL_SPIN && atomic_load_explicit(&p->busy, memory_order_acquire) > 0; s++) POOL_RELAX();
  if (atomic_load_explicit(&p->busy, memory_order_acquire) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
}
