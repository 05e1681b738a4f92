// The trace's device clock on CUDA (engine/core/trace.h): a mark is a CUDA event
// recorded on the backend's stream, so an op's device time is the time
// between the events recorded before and after its launches, as Nsight would
// measure it on that stream. Events are created on first use and reused after
// every trace::start(); at most kMaxMarks are kept per trace (later marks
// return -1 and those ops get no device time).
#pragma once
#include "engine/core/trace.h"
#include "kernels/cuda/launchers.h"
#include <mutex>
#include <vector>

namespace mdps::cuda {

class CudaEventClock final : public trace::DeviceClock {
 public:
  static constexpr size_t kMaxMarks = size_t(1) << 20;
  explicit CudaEventClock(Stream stream) : stream_(stream) {}
  ~CudaEventClock() override;
  CudaEventClock(const CudaEventClock&) = delete;
  CudaEventClock& operator=(const CudaEventClock&) = delete;

  int64_t mark() override;
  double elapsed_ns(int64_t from, int64_t to) override;
  void clear() override;

 private:
  Stream stream_;
  std::mutex mu_;
  std::vector<void*> events_;  // cudaEvent_t, created on demand
  size_t used_ = 0;
};

}  // namespace mdps::cuda
