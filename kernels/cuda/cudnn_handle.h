// The backend's one cuDNN handle, bound to its stream, shared by the
// convolutions (cudnn_conv.cpp) and the fused attention (cudnn_attention.cpp).
// Created on first use, so a machine whose cuDNN cannot load still runs
// every other op; a failed creation is retried on the next use.
#pragma once
#include <mutex>

struct CUstream_st;

namespace mdps::cuda {

class CudnnHandle {
 public:
  explicit CudnnHandle(CUstream_st* stream) : stream_(stream) {}
  ~CudnnHandle();
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;

  // The cudnnHandle_t; throws mdps::Error naming the failing call.
  void* get();

 private:
  CUstream_st* stream_;
  std::mutex mu_;
  void* handle_ = nullptr;
};

}  // namespace mdps::cuda
