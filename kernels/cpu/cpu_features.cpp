// cpuid and xgetbv read once per process (x86-64 only; elsewhere nothing is
// supported).
#include "kernels/cpu/cpu_features.h"
#include <atomic>
#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace mdps::cpu {

namespace {

std::atomic<bool> g_forced_off{false};
std::atomic<bool> g_amx_forced_off{false};

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

// The OS saves the SSE and AVX state: XCR0 bits 1 and 2.
bool os_saves_ymm() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0x6u) == 0x6u;
}

bool detect_avx512f() {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & (1u << 16)) && os_saves_zmm();
}

bool detect_avx2_fma() {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7 || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 12))) return false;  // FMA
  __cpuid_count(7, 0, a, b, c, d);
  return (b & (1u << 5)) && os_saves_ymm();  // AVX2
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

bool detect_amx_bf16() {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;  // AMX-BF16, AMX-TILE
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA
  // The tile data is dynamically enabled state: ask for it once per process.
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}
#else
bool detect_avx512f() { return false; }
bool detect_avx2_fma() { return false; }
bool detect_avx512_bf16() { return false; }
bool detect_amx_bf16() { return false; }
#endif

}  // namespace

bool has_avx512f() {
  static const bool hw = detect_avx512f();
  return hw;
}

bool has_avx2_fma() {
  static const bool hw = detect_avx2_fma();
  return hw;
}

bool has_avx512_bf16() {
  static const bool hw = detect_avx512_bf16();
  return hw && !g_forced_off.load(std::memory_order_relaxed);
}

void force_no_avx512_bf16(bool off) { g_forced_off.store(off, std::memory_order_relaxed); }

bool has_amx_bf16() {
  static const bool hw = detect_amx_bf16();
  return hw && has_avx512_bf16() && !g_amx_forced_off.load(std::memory_order_relaxed);
}

void force_no_amx(bool off) { g_amx_forced_off.store(off, std::memory_order_relaxed); }

}  // namespace mdps::cpu
