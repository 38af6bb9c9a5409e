/* base/xxh.h - the XXH3 checksums of containers, codec streams and compute
 * layouts, from libxxhash: on x86-64 through its run-time dispatch to the
 * widest vector unit the CPU has (SSE2, AVX2, AVX-512; the same hash values),
 * which hashes a blob from memory about 1.25x and one in cache about 2.3x as
 * fast as the plain entry points on AVX2. Owned by src/base. */
#ifndef MOESZ_BASE_XXH_H
#define MOESZ_BASE_XXH_H
#include <xxhash.h>
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif
#endif
#endif
