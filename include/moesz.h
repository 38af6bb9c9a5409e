/* moesz.h - public C API of libmoesz.
 *
 * moesz makes Mixture-of-Experts language models cheap to store, move and run
 * when memory is short: error-bounded expert compression, ResMoE barycenter
 * residuals, and serving with experts in a byte-budgeted cache.
 *
 * Conventions: every fallible function returns an int status (MOESZ_OK == 0,
 * negative moesz_status codes on failure) and fills an optional moesz_error
 * with a human-readable message. Handles are opaque; there is no global
 * mutable state, so independent handles may be used from different threads.
 * The API is split by module into include/moesz/<module>.h. */
#ifndef MOESZ_H
#define MOESZ_H

#include "moesz/base.h"
#include "moesz/tensor.h"
#include "moesz/model.h"
#include "moesz/codec.h"
#include "moesz/container.h"
#include "moesz/runtime.h"
#include "moesz/resmoe.h"
#include "moesz/text.h"
#include "moesz/infer.h"
#include "moesz/eval.h"
#include "moesz/serve.h"

#endif
