/* moesz/codec.h - public API of the codec module (see docs/ARCHITECTURE.md). */
#ifndef MOESZ_CODEC_H
#define MOESZ_CODEC_H
#include "moesz/base.h"

#endif
