// AMX tile registers for the bf16 kernels (kernels/cpu/conv_bf16.cpp) and the
// peak bench (bench/harness/peak.cpp): a configuration of eight 16-row,
// 64-byte tiles, and the instructions by tile number. Inline assembly rather
// than GCC 12's intrinsics: their loads and stores carry no "memory" clobber,
// so the compiler could move plain accesses of the same buffers across them.
// Only for code that runs after cpu::has_amx_bf16() (cpu_features.h) said yes.
#pragma once
#include <cstdint>

namespace mdps::cpu {

// Palette 1, every tile 16 rows of 64 bytes (16 floats, or 32 bf16, or 16
// bf16 pairs). ldtilecfg is per thread: each thread loads it before its tiles.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  AmxTileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

inline void amx_configure(const AmxTileConfig& c) { __asm__ volatile("ldtilecfg %0" ::"m"(c)); }
inline void amx_release() { __asm__ volatile("tilerelease" ::); }

}  // namespace mdps::cpu

// tmm<t> = 16 rows of 64 bytes from base, rows `stride` bytes apart (and back).
#define MDPS_AMX_LOAD(t, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(int64_t(stride)) : "memory")
#define MDPS_AMX_STORE(t, base, stride) \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(int64_t(stride)) : "memory")
#define MDPS_AMX_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
// tmm<c>[16 x 16 float] += tmm<a>[16 x 32 bf16] . tmm<b>[16 bf16 pairs x 16 columns]
#define MDPS_AMX_DP(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
