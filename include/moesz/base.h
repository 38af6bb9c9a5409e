/* moesz/base.h - status codes, error reports, version, small shared types.
 * Owned by src/base. */
#ifndef MOESZ_BASE_H
#define MOESZ_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define MOESZ_VERSION "0.1.0"

typedef enum moesz_status {
  MOESZ_OK = 0,
  MOESZ_E_IO = -1,          /* open/read/write/mmap/rename failed */
  MOESZ_E_FORMAT = -2,      /* malformed, truncated or lying input */
  MOESZ_E_NOMEM = -3,       /* allocation failed or size overflow */
  MOESZ_E_ARG = -4,         /* invalid argument from the caller */
  MOESZ_E_UNSUPPORTED = -5, /* valid input we do not handle (arch, dtype) */
  MOESZ_E_CHECKSUM = -6,    /* stored checksum does not match the data */
  MOESZ_E_RANGE = -7,       /* value or index out of range */
  MOESZ_E_NOTFOUND = -8,    /* missing file, tensor or key */
  MOESZ_E_INTERNAL = -9     /* a bug: an invariant did not hold */
} moesz_status;

/* Error report filled by failing calls. Pass NULL when not interested. */
typedef struct moesz_error {
  int code;       /* moesz_status of the failure */
  char msg[512];  /* "what: why" message, NUL-terminated */
} moesz_error;

/* Fills e (if non-NULL) and returns code, so `return moesz_error_set(...)`. */
int moesz_error_set(moesz_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with context ("reading X: <old msg>"). */
int moesz_error_wrap(moesz_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *moesz_status_str(int code);

#endif
