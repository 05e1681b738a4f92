#include "kernels/cuda/device_allocator.h"
#include "engine/common.h"
#include <cuda_runtime.h>

namespace mdps::cuda {

size_t CachingAllocator::round_size(size_t bytes) {
  // 512 B granules below 1 MiB, 1 MiB granules above: little waste for the
  // many small activations, few distinct lists for the large ones.
  constexpr size_t kSmall = 512, kLarge = size_t(1) << 20;
  if (bytes < kLarge) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    live_[p] = size;
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation && cached_ > 0) {
    cudaGetLastError();
    // The cache holds memory another size could use: give it back and retry.
    cudaDeviceSynchronize();
    for (auto& [sz, blocks] : free_)
      for (void* b : blocks) cudaFree(b);
    free_.clear();
    cached_ = 0;
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(cat("CUDA cudaMalloc of ", bytes, " bytes: ", cudaGetErrorString(e)));
  }
  live_[p] = size;
  return p;
}

void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  MDPS_CHECK(it != live_.end(), "CUDA allocator: free of a pointer it did not allocate");
  free_[it->second].push_back(p);
  cached_ += it->second;
  live_.erase(it);
}

void CachingAllocator::release(CUstream_st* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  cudaStreamSynchronize(stream);
  for (auto& [sz, blocks] : free_)
    for (void* b : blocks) cudaFree(b);
  free_.clear();
  cached_ = 0;
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

CachingAllocator::~CachingAllocator() {
  // Blocks still live belong to tensors that outlive the backend (statics at
  // exit); the process is ending, so only the cache is returned.
  for (auto& [sz, blocks] : free_)
    for (void* b : blocks) cudaFree(b);
}

}  // namespace mdps::cuda
