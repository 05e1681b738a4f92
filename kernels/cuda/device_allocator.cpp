#include "kernels/cuda/device_allocator.h"
#include <cuda_runtime.h>

namespace mdps::cuda {

void* CudaDeviceMemory::malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaSuccess) return p;
  cudaGetLastError();  // clear it: an out-of-memory is not sticky
  if (e == cudaErrorMemoryAllocation) return nullptr;
  throw Error(cat(name(), ": cudaMalloc of ", bytes, " bytes: ", cudaGetErrorString(e)));
}

void CudaDeviceMemory::free(void* p) { cudaFree(p); }  // at exit errors are not worth reporting

void CudaDeviceMemory::synchronize() {
  const cudaError_t e = cudaDeviceSynchronize();
  MDPS_CHECK(e == cudaSuccess, name(), ": cudaDeviceSynchronize: ", cudaGetErrorString(e));
}

std::string CudaDeviceMemory::name() const { return cat("CUDA device ", device_); }

}  // namespace mdps::cuda
