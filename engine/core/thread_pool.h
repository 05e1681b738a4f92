// One pool of worker threads for the CPU backend. parallel_for splits a range
// into contiguous chunks, one per thread; the calling thread takes a share,
// and a nested call runs inline (no oversubscription).
#pragma once
#include <cstdint>
#include <functional>

namespace mdps {

class ThreadPool {
 public:
  static ThreadPool& global();
  // Number of threads including the caller; <= 0 means all cores.
  void set_threads(int n);
  int threads() const;
  // f(begin, end) over [0, n), each chunk at least `grain` long.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& f, int64_t grain = 1);

 private:
  ThreadPool();
  ~ThreadPool();
  struct Impl;
  Impl* impl_;
};

inline void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& f, int64_t grain = 1) {
  ThreadPool::global().parallel_for(n, f, grain);
}

}  // namespace mdps
