// What the CPU this process runs on can do, read once from cpuid (and the
// operating system's saved register state), for the kernels that dispatch at
// run time: to code compiled for a wider instruction set than the build's
// (bf16), or to the register tiles that fit the vector unit (conv_tiles.h).
#pragma once

namespace mdps::cpu {

// AVX512F and the OS saves the zmm registers (the fp32 kernels' widest unit).
bool has_avx512f();
// AVX2 and FMA, and the OS saves the ymm registers.
bool has_avx2_fma();

// AVX512-BF16 (vdpbf16ps: bfloat16 pairs multiplied and added into float32
// lanes) with AVX512F/BW, and the OS saves the zmm registers: cpuid leaf 7
// subleaf 1 EAX bit 5 (GCC 12 has no __builtin_cpu_supports("avx512bf16")).
// False while a test has forced it off (below).
bool has_avx512_bf16();

// Test hook: while forced off, has_avx512_bf16() answers false whatever the
// CPU, so the refusal of --precision bf16 can be tested on any machine.
void force_no_avx512_bf16(bool off);

// AMX with BF16 tiles (tdpbf16ps): cpuid leaf 7 EDX bits 22 and 24, the OS
// enables the tile state (XCR0 bits 17 and 18) and grants this process its
// use (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+; asked once). True only
// where has_avx512_bf16() is too (the small convolutions take that path);
// false while either is forced off.
bool has_amx_bf16();
// Test hook: while forced off, has_amx_bf16() answers false (the bf16
// kernels then take the AVX512-BF16 path), so both paths can be tested.
void force_no_amx(bool off);

}  // namespace mdps::cpu
