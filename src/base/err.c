/* base/err.c - owns moesz_error: formatting and wrapping of error reports. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "moesz/base.h"

int moesz_error_set(moesz_error *e, int code, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->code = code;
  return code;
}

int moesz_error_wrap(moesz_error *e, int code, const char *fmt, ...) {
  if (!e) return code;
  char prefix[256], old[sizeof e->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  old[sizeof old - 1] = 0;
  size_t pl = strlen(prefix);
  if (pl > sizeof e->msg - 3) pl = sizeof e->msg - 3;
  memcpy(e->msg, prefix, pl);
  e->msg[pl] = ':';
  e->msg[pl + 1] = ' ';
  size_t room = sizeof e->msg - pl - 3, ol = strlen(old);
  if (ol > room) ol = room;
  memcpy(e->msg + pl + 2, old, ol);
  e->msg[pl + 2 + ol] = 0;
  e->code = code;
  return code;
}

const char *moesz_status_str(int code) {
  switch (code) {
    case MOESZ_OK: return "ok";
    case MOESZ_E_IO: return "I/O error";
    case MOESZ_E_FORMAT: return "malformed input";
    case MOESZ_E_NOMEM: return "out of memory";
    case MOESZ_E_ARG: return "invalid argument";
    case MOESZ_E_UNSUPPORTED: return "unsupported";
    case MOESZ_E_CHECKSUM: return "checksum mismatch";
    case MOESZ_E_RANGE: return "out of range";
    case MOESZ_E_NOTFOUND: return "not found";
    case MOESZ_E_INTERNAL: return "internal error";
    default: return "unknown error";
  }
}
