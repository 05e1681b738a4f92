// cpuid and xgetbv read once per process (x86-64 only; elsewhere nothing is
// supported).
#include "kernels/cpu/cpu_features.h"
#include <atomic>
#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace mdps::cpu {

namespace {

std::atomic<bool> g_forced_off{false};

#if defined(__x86_64__) || defined(__i386__)
// The OS saves the SSE, AVX and AVX-512 (opmask, upper zmm halves, zmm16-31)
// state across context switches: XCR0 bits 1, 2 and 5-7.
bool os_saves_zmm() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xe6u) == 0xe6u;
}

bool detect_avx512_bf16() {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  const bool f = b & (1u << 16), bw = b & (1u << 30);
  if (!f || !bw || a < 1) return false;  // a: the highest subleaf of leaf 7
  __cpuid_count(7, 1, a, b, c, d);
  return (a & (1u << 5)) && os_saves_zmm();
}
#else
bool detect_avx512_bf16() { return false; }
#endif

}  // namespace

bool has_avx512_bf16() {
  static const bool hw = detect_avx512_bf16();
  return hw && !g_forced_off.load(std::memory_order_relaxed);
}

void force_no_avx512_bf16(bool off) { g_forced_off.store(off, std::memory_order_relaxed); }

}  // namespace mdps::cpu
