// What every benchmark measures with: medians of timed runs, the peak RSS,
// the machine's name, and the sgemm ceiling of the BLAS the engine uses
// (the figure every forward is read against).
#pragma once
#include "engine/core/backend.h"
#include "kernels/cpu/cpu_util.h"
#include <algorithm>
#include <chrono>
#include <random>
#include <functional>
#include <string>
#include <vector>

namespace mdps::bench {

using Clock = std::chrono::steady_clock;

// The median of `runs` timed calls of f after `warmup` untimed ones, seconds.
double median_seconds(int warmup, int runs, const std::function<void()>& f);
double median_of(std::vector<double> v);
// The process's peak resident set so far, MB.
double peak_rss_mb();
// "<cpu model>, N hardware threads".
std::string machine_line();

// Large square sgemm through the engine's product (cpu::sgemm: OpenBLAS in
// fixed blocks over the pool): the ceiling every other figure is read against.
struct SgemmCeiling {
  int n;
  std::vector<float> a, b, c;
  explicit SgemmCeiling(int size = 1536) : n(size), a(size_t(n) * n), b(a.size()), c(a.size()) {
    (void)cpu_backend();  // its constructor keeps OpenBLAS on one thread (cpu::sgemm's blocks use the pool)
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (auto& x : a) x = d(rng);
    for (auto& x : b) x = d(rng);
  }
  double flop() const { return 2.0 * n * n * double(n); }
  // Seconds of one product.
  double once() {
    auto t0 = Clock::now();
    cpu::sgemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  // GFLOP/s of the best of `reps` products run back to back.
  double gflops(int reps) {
    double best = once();
    for (int i = 1; i < reps; ++i) best = std::min(best, once());
    return flop() / best / 1e9;
  }
};

// GFLOP/s of a large square sgemm through the engine's BLAS (median of 5).
double sgemm_ceiling_gflops();

}  // namespace mdps::bench
