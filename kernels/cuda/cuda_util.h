// Helpers shared by the CUDA backend's op files (kernels/cuda/backend_<family>.cpp,
// as kernels/cpu/cpu_util.h serves kernels/cpu/<family>.cpp): status checks of
// the CUDA runtime and cuBLAS, the NVTX range of one op, scratch device memory
// for one op, and cuBLAS/cuDNN's int sizes.
#pragma once
#include "engine/core/common.h"
#include "kernels/cuda/device_allocator.h"
#include "kernels/cuda/launch.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <climits>
#include <cstddef>
#include <cstdint>

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define MDPS_HAVE_NVTX 1
#endif

namespace mdps::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  MDPS_CHECK(e == cudaSuccess, "CUDA ", what, ": ", cudaGetErrorString(e));
}
inline void check_cublas(cublasStatus_t s, const char* what) {
  MDPS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS ", what, ": status ", int(s));
}

// An NVTX range for the lifetime of one op (nothing without NVTX), so Nsight
// Systems shows the op names on the timeline.
class OpRange {
 public:
  explicit OpRange(const char* name) {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~OpRange() {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePop();
#endif
  }
  OpRange(const OpRange&) = delete;
  OpRange& operator=(const OpRange&) = delete;
};

// Scratch device memory for one op, back to the cache when the op returns;
// stream order keeps it owned by the queued kernels that use it.
template <typename T>
class Scratch {
 public:
  Scratch(CachingAllocator& a, size_t count)
      : a_(a), p_(static_cast<T*>(count ? a.allocate(count * sizeof(T)) : nullptr)) {}
  ~Scratch() { a_.free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p_; }

 private:
  CachingAllocator& a_;
  T* p_;
};

// cuBLAS and cuDNN take int sizes.
inline int to_int(int64_t v, const char* what) {
  MDPS_CHECK(v >= 0 && v <= INT_MAX, what, ": ", v, " exceeds the int range of cuDNN/cuBLAS");
  return int(v);
}
inline cublasHandle_t cublas_handle(void* h) { return static_cast<cublasHandle_t>(h); }

}  // namespace mdps::cuda
