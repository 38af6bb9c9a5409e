/* moesz/resmoe.h - public API of the resmoe module (see docs/ARCHITECTURE.md). */
#ifndef MOESZ_RESMOE_H
#define MOESZ_RESMOE_H
#include "moesz/base.h"

#endif
