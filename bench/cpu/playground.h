// What the CPU kernel playground programs (bench/cpu/README.md) share: the
// timing (median of repeated runs after a warm-up) and the error measure
// against their double-precision references.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

namespace mdps::playground {

// The median of `reps` runs of f in milliseconds, after one untimed run
// (page faults, packed buffers).
inline double median_ms(int reps, const std::function<void()>& f) {
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ||got - ref|| / ||ref|| over ref's length.
inline double rel_l2(const float* got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(got[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace mdps::playground
