#include "bench/harness/peak.h"
#include "bench/harness/measure.h"
#include "engine/core/backend.h"
#include "engine/core/common.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/cpu_features.h"
#include <immintrin.h>
#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

namespace mdps::bench {
namespace {

// Each kernel runs `iters` rounds of kChains independent FMAs on registers
// and returns a value that depends on every chain, so nothing is optimised
// away. kChains covers a 4-cycle FMA latency on two FMA ports (8 in flight)
// with room to spare.
constexpr int kChains = 12;

// The sum of the 16 lanes (through memory: GCC 12's _mm512_reduce_add_ps
// warns about its own undefined upper halves).
__attribute__((target("avx512f"))) float lane_sum(__m512 s) {
  float out[16];
  _mm512_storeu_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

__attribute__((target("avx512f"))) float fma_avx512(long iters) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return lane_sum(s);
}

__attribute__((target("avx2,fma"))) float fma_avx2(long iters) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(float(c) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

float fma_scalar(long iters) {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = float(c) * 1e-3f;
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = __builtin_fmaf(acc[c], 0.999999f, 1e-7f);
  float t = 0;
  for (float v : acc) t += v;
  return t;
}

// vdpbf16ps: each of the 16 float lanes adds two bf16 products.
__attribute__((target("avx512f,avx512bf16"))) float dot_bf16(long iters) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c) * 1e-3f);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);  // 1, ~6e-8
  for (long i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return lane_sum(s);
}

// tdpbf16ps: six accumulator tiles of 16 x 16 floats, each adding a 16 x 32
// by 32 x 16 bf16 product (16384 FLOP) per instruction.
float dot_amx(long iters) {
  static const cpu::AmxTileConfig cfg;
  alignas(64) uint16_t ones[512];
  alignas(64) float out[256];
  for (auto& v : ones) v = 0x3380;  // ~6e-8: the sums stay finite
  cpu::amx_configure(cfg);
  MDPS_AMX_ZERO(0);
  MDPS_AMX_ZERO(1);
  MDPS_AMX_ZERO(2);
  MDPS_AMX_ZERO(3);
  MDPS_AMX_ZERO(4);
  MDPS_AMX_ZERO(5);
  MDPS_AMX_LOAD(6, ones, 64);
  MDPS_AMX_LOAD(7, ones, 64);
  for (long i = 0; i < iters; ++i) {
    MDPS_AMX_DP(0, 6, 7);
    MDPS_AMX_DP(1, 6, 7);
    MDPS_AMX_DP(2, 6, 7);
    MDPS_AMX_DP(3, 6, 7);
    MDPS_AMX_DP(4, 6, 7);
    MDPS_AMX_DP(5, 6, 7);
  }
  MDPS_AMX_STORE(0, out, 64);
  cpu::amx_release();
  return out[0];
}
constexpr double kAmxFlopPerIter = 6.0 * 16 * 16 * 32 * 2;

struct Kernel {
  float (*run)(long);
  double flop_per_iter;  // per round of kChains instructions
};

// Seconds for `iters` rounds on each of `threads` threads at once (the
// slowest thread's time).
double timed(const Kernel& k, long iters, int threads) {
  std::vector<double> secs(size_t(threads), 0.0);
  std::vector<float> sink(size_t(threads), 0.f);
  auto body = [&](int t) {
    auto t0 = Clock::now();
    sink[size_t(t)] = k.run(iters);
    secs[size_t(t)] = std::chrono::duration<double>(Clock::now() - t0).count();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  body(0);
  for (auto& th : pool) th.join();
  volatile float keep = 0;
  for (float v : sink) keep = keep + v;
  (void)keep;
  return *std::max_element(secs.begin(), secs.end());
}

// GFLOP/s of `threads` threads: iterations sized to about `seconds`, best of 3.
double gflops(const Kernel& k, int threads, double seconds) {
  long iters = 1 << 16;
  double s = timed(k, iters, 1);
  while (s < seconds / 8 && iters < (1L << 40)) {
    iters *= 4;
    s = timed(k, iters, 1);
  }
  iters = std::max(1L, long(double(iters) * seconds / std::max(s, 1e-9)));
  double best = 1e30;
  for (int r = 0; r < 3; ++r) best = std::min(best, timed(k, iters, threads));
  return k.flop_per_iter * double(iters) * threads / best / 1e9;
}

// The widest unit this build's kernels are compiled for: the convolutions'
// Winograd and the attention take their vector width from the compiler
// (kernels/cpu/attention_tiles.h), so an AVX2 build runs 8-float vectors on
// an AVX-512 CPU, and its forward is measured against the AVX2 peak.
constexpr const char* kBuildIsa =
#if defined(__AVX512F__)
    "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    "avx2";
#else
    "";  // no FMA unit of its own: measured on the CPU's widest, as before
#endif

// The CPU's widest unit with FMA: "avx512", "avx2" or "scalar".
std::string cpu_widest() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  return "scalar";
}

// The unit the peak is measured on: the CPU's widest, capped at the build's.
Kernel fp32_kernel(std::string& isa) {
  isa = cpu_widest();
  if (isa == "avx512" && std::string(kBuildIsa) == "avx2") isa = "avx2";
  if (isa == "avx512") return {fma_avx512, 2.0 * 16 * kChains};
  if (isa == "avx2") return {fma_avx2, 2.0 * 8 * kChains};
  return {fma_scalar, 2.0 * kChains};
}

bool cpu_has_bf16_dot() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

}  // namespace

PeakResult measure_peak(int threads, double seconds) {
  MDPS_CHECK(threads >= 1, "bench peak: --threads must be >= 1, got ", threads);
  PeakResult r;
  r.threads = threads;
  const Kernel k = fp32_kernel(r.isa);
  r.cpu_isa = cpu_widest();
  r.fp32_gflops_1 = gflops(k, 1, seconds);
  r.fp32_gflops_n = threads == 1 ? r.fp32_gflops_1 : gflops(k, threads, seconds);
  r.has_bf16 = cpu_has_bf16_dot();
  if (r.has_bf16) {
    const Kernel b{dot_bf16, 4.0 * 16 * kChains};  // 16 lanes x 2 pairs x (mul + add)
    r.bf16_gflops_1 = gflops(b, 1, seconds);
    r.bf16_gflops_n = threads == 1 ? r.bf16_gflops_1 : gflops(b, threads, seconds);
  }
  r.has_amx = cpu::has_amx_bf16();
  if (r.has_amx) {
    const Kernel m{dot_amx, kAmxFlopPerIter};
    r.amx_gflops_1 = gflops(m, 1, seconds);
    r.amx_gflops_n = threads == 1 ? r.amx_gflops_1 : gflops(m, threads, seconds);
  }
  return r;
}

double fp32_peak_gflops(int threads) {
  std::string isa;
  return gflops(fp32_kernel(isa), std::max(1, threads), 0.1);
}

double bf16_peak_gflops(int threads) {
  if (cpu::has_amx_bf16()) return gflops(Kernel{dot_amx, kAmxFlopPerIter}, std::max(1, threads), 0.1);
  if (!cpu_has_bf16_dot()) return 0;
  return gflops(Kernel{dot_bf16, 4.0 * 16 * kChains}, std::max(1, threads), 0.1);
}

void bench_peak(int threads, bool json) {
  if (threads <= 0) threads = cpu_backend().threads();
  const PeakResult r = measure_peak(threads);
  std::printf("mdps bench peak: %s (%s)\n", r.isa.c_str(), machine_line().c_str());
  if (r.cpu_isa != r.isa)
    std::printf("  note             the CPU has %s; this build's kernels stop at %s, so its peak is measured there\n",
                r.cpu_isa.c_str(), r.isa.c_str());
  std::printf("  fp32 FMA         %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", r.fp32_gflops_1,
              r.fp32_gflops_n, r.threads);
  if (r.has_bf16)
    std::printf("  bf16 dot (vdpbf16ps) %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", r.bf16_gflops_1,
                r.bf16_gflops_n, r.threads);
  else
    std::printf("  bf16 dot         not available (no AVX512-BF16)\n");
  if (r.has_amx)
    std::printf("  bf16 AMX (tdpbf16ps) %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", r.amx_gflops_1,
                r.amx_gflops_n, r.threads);
  else
    std::printf("  bf16 AMX         not available (no AMX-BF16, or the OS withholds the tile state)\n");
  if (json) {
    const std::string b1 = r.has_bf16 ? cat(r.bf16_gflops_1) : "null", bn = r.has_bf16 ? cat(r.bf16_gflops_n) : "null";
    const std::string m1 = r.has_amx ? cat(r.amx_gflops_1) : "null", mn = r.has_amx ? cat(r.amx_gflops_n) : "null";
    std::printf("{\"isa\": \"%s\", \"cpu_isa\": \"%s\", \"threads\": %d, \"fp32_peak_gflops_1\": %.3f, "
                "\"fp32_peak_gflops\": %.3f, \"bf16_peak_gflops_1\": %s, \"bf16_peak_gflops\": %s, "
                "\"amx_bf16_peak_gflops_1\": %s, \"amx_bf16_peak_gflops\": %s}\n",
                r.isa.c_str(), r.cpu_isa.c_str(), r.threads, r.fp32_gflops_1, r.fp32_gflops_n, b1.c_str(), bn.c_str(),
                m1.c_str(), mn.c_str());
  }
}

}  // namespace mdps::bench
