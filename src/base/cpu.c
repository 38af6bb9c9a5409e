/* base/cpu.c - CPU feature detection (see cpu.h). */
#include "base/cpu.h"
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

int moesz_cpu_avx2(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
  if (!fma || !osxsave || !avx || !f16c) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return 0;              /* XMM and YMM state saved by the OS */
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return (b >> 5) & 1;                      /* AVX2 */
}
#else
int moesz_cpu_avx2(void) { return 0; }
#endif
