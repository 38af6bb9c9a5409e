/* base/bytes.h - the one set of little-endian integer readers and writers
 * every on-disk format uses (codec streams, .msz containers): fixed byte
 * order whatever the host's, unaligned access allowed. On little-endian hosts
 * each compiles to a plain load or store. Owned by src/base. */
#ifndef MOESZ_BASE_BYTES_H
#define MOESZ_BASE_BYTES_H
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define MOESZ_LE16(x) __builtin_bswap16(x)
#define MOESZ_LE32(x) __builtin_bswap32(x)
#define MOESZ_LE64(x) __builtin_bswap64(x)
#else
#define MOESZ_LE16(x) (x)
#define MOESZ_LE32(x) (x)
#define MOESZ_LE64(x) (x)
#endif

static inline uint16_t moesz_rd16le(const void *p) { uint16_t v; memcpy(&v, p, 2); return MOESZ_LE16(v); }
static inline uint32_t moesz_rd32le(const void *p) { uint32_t v; memcpy(&v, p, 4); return MOESZ_LE32(v); }
static inline uint64_t moesz_rd64le(const void *p) { uint64_t v; memcpy(&v, p, 8); return MOESZ_LE64(v); }
static inline void moesz_wr16le(void *p, uint16_t v) { v = MOESZ_LE16(v); memcpy(p, &v, 2); }
static inline void moesz_wr32le(void *p, uint32_t v) { v = MOESZ_LE32(v); memcpy(p, &v, 4); }
static inline void moesz_wr64le(void *p, uint64_t v) { v = MOESZ_LE64(v); memcpy(p, &v, 8); }
/* An IEEE double as its 8 bytes, little-endian. */
static inline double moesz_rdf64le(const void *p) { uint64_t b = moesz_rd64le(p); double d; memcpy(&d, &b, 8); return d; }
static inline void moesz_wrf64le(void *p, double d) { uint64_t b; memcpy(&b, &d, 8); moesz_wr64le(p, b); }
/* Converts n u32 words between host and little-endian order in place (a
 * no-op on little-endian hosts). */
static inline void moesz_le32_words(uint32_t *w, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  for (size_t i = 0; i < n; i++) w[i] = __builtin_bswap32(w[i]);
#else
  (void)w; (void)n;
#endif
}
#endif
