// 2-D convolutions (forward, data and filter gradients, bias) through cuDNN's
// convolution API, NCHW, on the backend's stream: float32 with FP32 math (the
// default), float32 with TF32 tensor cores, or bfloat16 (inputs cast to bf16,
// float accumulation, the bf16 result cast back to float32; bias and its
// gradient in float32). Per shape, a plan holds the descriptors and the algorithms, chosen
// once by cuDNN's heuristics (cudnnGet*Algorithm_v7; deterministic algorithms
// and workspaces under 1 GiB preferred; each direction runs with the math type
// of its chosen entry, FMA only under fp32) and cached; workspaces come from
// the caching allocator. The cuDNN handle (cudnn_handle.h, shared with the
// fused attention) is created on first use.
#pragma once
#include "kernels/cuda/device_allocator.h"
#include "kernels/cuda/cudnn_handle.h"
#include <array>
#include <map>
#include <memory>
#include <mutex>

namespace mdps::cuda {

struct ConvShape {
  int N, Ci, H, W, Co, KH, KW, Ho, Wo, stride, pad;
};

class CudnnConv {
 public:
  CudnnConv(CudnnHandle& handle, CUstream_st* stream, CachingAllocator& alloc);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // y = conv(x, w) (+ b[Co] when b is not null).
  void forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y);
  // dx = the data gradient (overwritten).
  void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx);
  // dw = the filter gradient, db (may be null) = dy summed over (n, h, w); overwritten.
  void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db);

  // FP32: plain FMA (the default); TF32: TF32 tensor cores on float32 data;
  // BF16: bfloat16 data through tensor cores, float accumulation. Drops the
  // plans built so far, which carry the data and math types.
  enum class Math { FP32, TF32, BF16 };
  void set_math(Math m);

  // Plans built so far (one per distinct shape), for tests and diagnostics.
  size_t plans() const;

 private:
  struct Plan;
  Plan& plan(const ConvShape& s);

  CudnnHandle& handle_;
  CUstream_st* stream_;
  CachingAllocator& alloc_;
  Math math_ = Math::FP32;
  mutable std::mutex mu_;
  std::map<std::array<int, 9>, std::unique_ptr<Plan>> plans_;
};

}  // namespace mdps::cuda
