// The CUDA backend's device memory: the caching allocator
// (kernels/cuda/caching_allocator.h, tested without a GPU) over cudaMalloc /
// cudaFree on one device.
#pragma once
#include "kernels/cuda/caching_allocator.h"

struct CUstream_st;

namespace mdps::cuda {

// cudaMalloc / cudaFree; synchronize() waits for the whole device (the
// allocator's callers queue work on the backend's stream and libraries may
// use their own).
class CudaDeviceMemory final : public DeviceMemory {
 public:
  explicit CudaDeviceMemory(int device) : device_(device) {}
  void* malloc(size_t bytes) override;
  void free(void* p) override;
  void synchronize() override;
  std::string name() const override;

 private:
  int device_;
};

}  // namespace mdps::cuda
