// The cores' arithmetic peak, measured: `mdps bench peak`, and the
// denominator of `forward_of_peak` in `mdps bench unet|sampler`.
//
// FP32: independent fused multiply-add chains on the widest vector unit the
// CPU has (AVX-512, else AVX2+FMA, else scalar) and this build's kernels use
// (an AVX2 build, -march=x86-64-v3, measures AVX2 on an AVX-512 CPU: its
// kernels run 8-float vectors there), enough chains to cover the
// FMA latency, on 1 thread and on N threads at once (one chain set per
// thread). BF16: the AVX512-BF16 dot-product instruction (vdpbf16ps: 2 FLOP
// per bf16 pair, float32 accumulation) where the CPU has it, and AMX's
// tdpbf16ps on tiles (six accumulator tiles) where it has that. The kernel is
// chosen at run time from cpuid, whatever -march the binary was built with.
#pragma once
#include "engine/core/backend.h"
#include <string>

namespace mdps::bench {

struct PeakResult {
  std::string isa;            // the unit measured: "avx512", "avx2", "scalar"
  std::string cpu_isa;        // the CPU's widest (wider than isa in a build for a narrower unit)
  int threads = 1;
  double fp32_gflops_1 = 0;   // one thread
  double fp32_gflops_n = 0;   // `threads` threads together
  bool has_bf16 = false;
  double bf16_gflops_1 = 0, bf16_gflops_n = 0;  // 0 without AVX512-BF16
  bool has_amx = false;
  double amx_gflops_1 = 0, amx_gflops_n = 0;    // AMX tdpbf16ps; 0 without AMX-BF16
};

// Runs each kernel for about `seconds` per measurement (best of 3).
PeakResult measure_peak(int threads, double seconds = 0.2);
// FP32 FMA peak of `threads` threads, GFLOP/s (what forward_of_peak divides by).
double fp32_peak_gflops(int threads);
// The BF16 peak of `threads` threads, GFLOP/s: AMX's tdpbf16ps where the CPU
// has it (what --precision bf16 runs on there), else vdpbf16ps; 0 without either.
double bf16_peak_gflops(int threads);
// The peak that the products of `p` run against (bf16: the BF16 dot-product
// peak, else fp32): the denominator of forward_of_peak.
inline double precision_peak_gflops(Precision p, int threads) {
  return p == Precision::BF16 ? bf16_peak_gflops(threads) : fp32_peak_gflops(threads);
}

// `mdps bench peak`: the table, and with json one JSON object on the last line.
void bench_peak(int threads, bool json);

}  // namespace mdps::bench
