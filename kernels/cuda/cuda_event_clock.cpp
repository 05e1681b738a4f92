#include "kernels/cuda/cuda_event_clock.h"
#include <cuda_runtime.h>

namespace mdps::cuda {

namespace {
void check(cudaError_t e, const char* what) {
  MDPS_CHECK(e == cudaSuccess, "CUDA event clock: ", what, ": ", cudaGetErrorString(e));
}
cudaEvent_t ev(void* p) { return static_cast<cudaEvent_t>(p); }
}  // namespace

CudaEventClock::~CudaEventClock() {
  for (void* e : events_) cudaEventDestroy(ev(e));  // errors at exit are not worth reporting
}

int64_t CudaEventClock::mark() {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ == events_.size()) {
    if (events_.size() >= kMaxMarks) return -1;
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
  }
  check(cudaEventRecord(ev(events_[used_]), stream_), "cudaEventRecord");
  return int64_t(used_++);
}

double CudaEventClock::elapsed_ns(int64_t from, int64_t to) {
  std::lock_guard<std::mutex> lock(mu_);
  MDPS_CHECK(from >= 0 && to >= from && size_t(to) < used_, "CUDA event clock: marks ", from, " and ", to,
             " were not recorded since the last clear (", used_, " were)");
  check(cudaEventSynchronize(ev(events_[size_t(to)])), "cudaEventSynchronize");
  float ms = 0.f;
  check(cudaEventElapsedTime(&ms, ev(events_[size_t(from)]), ev(events_[size_t(to)])), "cudaEventElapsedTime");
  return double(ms) * 1e6;
}

void CudaEventClock::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  used_ = 0;
}

}  // namespace mdps::cuda
