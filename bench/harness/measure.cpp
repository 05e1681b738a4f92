#include "bench/harness/measure.h"
#include "engine/core/common.h"
#include <cblas.h>
#include <sys/resource.h>
#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

namespace mdps::bench {

double median_seconds(int warmup, int runs, const std::function<void()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

std::string machine_line() {
  std::string cpu = "unknown cpu";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      std::string l(line);
      if (l.rfind("model name", 0) == 0) {
        cpu = l.substr(l.find(':') + 2);
        if (!cpu.empty() && cpu.back() == '\n') cpu.pop_back();
        break;
      }
    }
    std::fclose(f);
  }
  return cat(cpu, ", ", std::thread::hardware_concurrency(), " hardware threads");
}

double sgemm_ceiling_gflops() {
  SgemmCeiling c;
  c.once();  // warm-up
  double s = median_seconds(0, 5, [&] { c.once(); });
  return c.flop() / s / 1e9;
}

}  // namespace mdps::bench
