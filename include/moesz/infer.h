/* moesz/infer.h - public API of the infer module (see docs/ARCHITECTURE.md). */
#ifndef MOESZ_INFER_H
#define MOESZ_INFER_H
#include "moesz/base.h"

#endif
