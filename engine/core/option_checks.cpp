#include "engine/core/option_checks.h"
#include <cmath>
#include <sched.h>
#include <thread>

namespace mdps {

void check_threads(int64_t n, const std::string& what) {
  MDPS_USAGE_CHECK(n >= 0 && n <= kMaxThreads, what, " ", n, ": give 0 (all ", available_cpus(),
                   " CPUs this process may use) or 1..", kMaxThreads, " worker threads");
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

void check_steps(int64_t steps, const std::string& what) {
  MDPS_USAGE_CHECK(steps >= 1 && steps <= kMaxSteps, what, " ", steps, ": the run must have 1..", kMaxSteps,
                   " steps");
}

int64_t steps_for_epochs(int64_t epochs, int64_t images, int64_t batch) {
  MDPS_USAGE_CHECK(epochs >= 1, "--epochs ", epochs, " must be positive");
  MDPS_CHECK(images >= 1 && batch >= 1, "--epochs: no training images");
  int64_t total = 0;
  MDPS_USAGE_CHECK(!__builtin_mul_overflow(epochs, images, &total) && total <= kMaxSteps * batch, "--epochs ",
                   epochs, ": ", epochs, " passes over ", images, " images are more than ", kMaxSteps,
                   " steps of batch ", batch);
  return (total + batch - 1) / batch;
}

void check_non_negative(double v, const std::string& what) {
  MDPS_USAGE_CHECK(std::isfinite(v) && v >= 0, what, " must be a finite number >= 0, got ", v);
}

}  // namespace mdps
