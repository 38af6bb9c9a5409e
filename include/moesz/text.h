/* moesz/text.h - public API of the text module (see docs/ARCHITECTURE.md). */
#ifndef MOESZ_TEXT_H
#define MOESZ_TEXT_H
#include "moesz/base.h"

#endif
