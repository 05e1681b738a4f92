// Shared by the kernel playground programs (bench/cuda/*.cu, llm.c dev/cuda
// style): error checks, command-line options, CUDA-event timing, validation
// against the CPU reference and the report line. Every program:
//   <kernel> [VERSION] [--peak-gbs GBS] [--<size> N ...]
// VERSION 0 (default) runs every version; --peak-gbs is the device's memory
// bandwidth (H100 SXM about 3350, H200 about 4800, A100 80GB about 2039),
// which turns achieved GB/s into a fraction of peak.
// The helpers, in order:
//   BENCH_CHECK(call)          a CUDA error ends the program
//   block_sizes()              the swept block sizes, 64..1024
//   Options, parse()           VERSION, --peak-gbs and the --<size> N options
//   random_floats()            deterministic inputs
//   to_device(), device_buffer(), to_host()
//   max_threads(kernel)        the most threads per block a kernel allows
//   over_thread_limit()        prints the "skipped" line of a block size beyond it
//   median_ms(launch)          the median of timed launches (CUDA events)
//   validate()                 |got - ref| <= tol * max(1, |ref|) everywhere
//   validate_abs()             |got - ref| <= tol everywhere
//   report()                   the line of one (version, block size)
//   launched()                 after a launch: a refused configuration is skipped
//   time_if_valid()            launch once, check, validate; FAIL or time and report
//   time_if_launched_and_valid()  the same, a refused configuration skipped
//   print_device()
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace bench {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s:%d: %s: %s\n", file, line, what, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define BENCH_CHECK(call) ::bench::check((call), #call, __FILE__, __LINE__)

// The block sizes every version is swept over: multiples of the warp size,
// which the block reductions require.
inline const std::vector<int>& block_sizes() {
  static const std::vector<int> b{64, 128, 256, 512, 1024};
  return b;
}

struct Options {
  int version = 0;
  double peak_gbs = 0;
  std::map<std::string, int64_t> sizes;
  int64_t size(const std::string& name, int64_t fallback) const {
    auto it = sizes.find(name);
    return it == sizes.end() ? fallback : it->second;
  }
};

inline Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0 && i + 1 < argc) {
      const std::string key = a.substr(2), value = argv[++i];
      if (key == "peak-gbs") o.peak_gbs = std::atof(value.c_str());
      else o.sizes[key] = std::atoll(value.c_str());
    } else if (!a.empty() && a[0] >= '0' && a[0] <= '9') {
      o.version = std::atoi(a.c_str());
    } else {
      std::fprintf(stderr, "usage: %s [VERSION] [--peak-gbs GBS] [--SIZE N ...]\n", argv[0]);
      std::exit(2);
    }
  }
  return o;
}

// Deterministic inputs in [lo, hi) (a 64-bit LCG; the values need no quality).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * float(double(s >> 40) / double(1ull << 24));
  }
  return v;
}

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  BENCH_CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  BENCH_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
T* device_buffer(size_t n) {
  T* d = nullptr;
  BENCH_CHECK(cudaMalloc(&d, n * sizeof(T)));
  BENCH_CHECK(cudaMemset(d, 0xff, n * sizeof(T)));  // NaN floats: unwritten outputs fail validation
  return d;
}
template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  BENCH_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// The most threads per block `kernel` can be launched with (its registers may
// forbid 1024): larger sizes of the sweep are skipped, not failed.
template <typename Kernel>
int max_threads(Kernel kernel) {
  cudaFuncAttributes a{};
  BENCH_CHECK(cudaFuncGetAttributes(&a, kernel));
  return a.maxThreadsPerBlock;
}

// True, after printing the skip line, when `block` is more than the `limit`
// threads (max_threads) the version's kernel allows.
inline bool over_thread_limit(int version, int block, int limit) {
  if (block <= limit) return false;
  std::printf("version %d block %d: skipped (the kernel allows at most %d threads)\n", version, block, limit);
  return true;
}

// Median time in ms of `reps` launches after `warmup`, by CUDA events.
template <typename Launch>
float median_ms(Launch launch, int warmup = 5, int reps = 20) {
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch();
  BENCH_CHECK(cudaGetLastError());
  std::vector<float> t(static_cast<size_t>(reps));
  for (auto& ms : t) {
    BENCH_CHECK(cudaEventRecord(start));
    launch();
    BENCH_CHECK(cudaEventRecord(stop));
    BENCH_CHECK(cudaEventSynchronize(stop));
    BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  }
  BENCH_CHECK(cudaEventDestroy(start));
  BENCH_CHECK(cudaEventDestroy(stop));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

namespace detail {
// Every error(got, ref) within tol; prints the worst element and FAIL
// otherwise ("what_error" names the measure in that line). NaN fails.
template <typename Error>
bool validate_by(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double tol,
                 const char* what_error, Error error) {
  if (got.size() != ref.size()) {
    std::printf("%s: FAIL (%zu values, expected %zu)\n", what, got.size(), ref.size());
    return false;
  }
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = error(double(got[i]), double(ref[i]));
    if (!(err <= worst)) {
      worst = std::isnan(err) ? INFINITY : err;
      at = i;
    }
  }
  if (worst > tol) {
    std::printf("%s: FAIL at %zu: %.9g vs %.9g (%s %.3g > %.3g)\n", what, at, double(got[at]), double(ref[at]),
                what_error, worst, tol);
    return false;
  }
  return true;
}
}  // namespace detail

// Every element within tol * max(1, |ref|) of the reference; prints the
// worst element and FAIL otherwise. NaN (an unwritten output) fails.
inline bool validate(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  return detail::validate_by(what, got, ref, tol, "error", [](double g, double r) {
    return std::fabs(g - r) / std::max(1.0, std::fabs(r));
  });
}

// The tests' max_abs_diff criterion: every |got - ref| <= tol (absolute);
// prints the worst element and FAIL otherwise. NaN fails.
inline bool validate_abs(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  return detail::validate_by(what, got, ref, tol, "|error|", [](double g, double r) { return std::fabs(g - r); });
}

// One line per (version, block size): time, GB/s (bytes / time) and, when
// the peak is known, its fraction; GFLOP/s when flops > 0.
inline void report(int version, int block, float ms, double bytes, double flops, const Options& o) {
  const double gbs = bytes / (double(ms) * 1e-3) / 1e9;
  std::printf("version %d  block %4d  %9.4f ms  %8.1f GB/s", version, block, double(ms), gbs);
  if (o.peak_gbs > 0) std::printf("  %5.1f%% of peak", 100.0 * gbs / o.peak_gbs);
  if (flops > 0) std::printf("  %8.1f GFLOP/s", flops / (double(ms) * 1e-3) / 1e9);
  std::printf("\n");
}

// After a launch: a configuration the device refuses (too many registers for
// the block, say) prints a skip line and returns false; otherwise waits for
// the launch, and a fault inside the kernel is fatal.
inline bool launched(int version, int block) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    std::printf("version %d block %d: launch failed (%s), skipped\n", version, block, cudaGetErrorString(e));
    return false;
  }
  BENCH_CHECK(cudaDeviceSynchronize());
  return true;
}

namespace detail {
template <typename Launch>
void report_if(bool valid, int version, int block, Launch launch, double bytes, double flops, const Options& o) {
  if (!valid) {
    std::printf("version %d block %d: FAIL, not timed\n", version, block);
    return;
  }
  report(version, block, median_ms(launch), bytes, flops, o);
}
}  // namespace detail

// One (version, block size) of a sweep, its outputs reset by the caller:
// launch() once, any CUDA error fatal; then valid() (the outputs against the
// reference) false prints FAIL and the version is not timed, true times
// launch() (median_ms) and prints the report line.
template <typename Launch, typename Valid>
void time_if_valid(int version, int block, Launch launch, Valid valid, double bytes, double flops, const Options& o) {
  launch();
  BENCH_CHECK(cudaGetLastError());
  BENCH_CHECK(cudaDeviceSynchronize());
  detail::report_if(valid(), version, block, launch, bytes, flops, o);
}

// time_if_valid, except that a launch configuration the device refuses
// (launched()) is skipped, not fatal.
template <typename Launch, typename Valid>
void time_if_launched_and_valid(int version, int block, Launch launch, Valid valid, double bytes, double flops,
                                const Options& o) {
  launch();
  if (!launched(version, block)) return;
  detail::report_if(valid(), version, block, launch, bytes, flops, o);
}

inline void print_device() {
  int dev = 0;
  cudaDeviceProp p{};
  BENCH_CHECK(cudaGetDevice(&dev));
  BENCH_CHECK(cudaGetDeviceProperties(&p, dev));
  std::printf("device %d: %s, sm_%d%d, %d SMs\n", dev, p.name, p.major, p.minor, p.multiProcessorCount);
}

}  // namespace bench
