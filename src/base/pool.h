/* base/pool.h - a small persistent thread pool (pthreads) for data-parallel
 * loops: moesz_pool_run(pool, n, fn, ctx) calls fn(ctx, i, tid) for i in
 * [0, n) on the pool's threads plus the caller and returns when all are done.
 * A pool with 1 thread runs everything on the caller. Owned by src/base. */
#ifndef MOESZ_BASE_POOL_H
#define MOESZ_BASE_POOL_H
#include <stddef.h>

typedef struct moesz_pool moesz_pool;
typedef void (*moesz_pool_fn)(void *ctx, size_t i, int tid);

/* nthreads <= 0 means the number of online CPUs. NULL on failure. */
moesz_pool *moesz_pool_create(int nthreads);
void moesz_pool_destroy(moesz_pool *p);
int moesz_pool_size(const moesz_pool *p);
/* Runs fn over [0, n); tasks are claimed dynamically (one atomic counter).
 * Not reentrant: one run at a time per pool. p == NULL runs serially. */
void moesz_pool_run(moesz_pool *p, size_t n, moesz_pool_fn fn, void *ctx);
#endif
