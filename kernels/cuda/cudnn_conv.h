// 2-D convolutions (forward, data and filter gradients, bias) through cuDNN's
// convolution API, NCHW float32 with FP32 math (no TF32), on the backend's
// stream. Per shape, a plan holds the descriptors and the algorithms, chosen
// once by cuDNN's heuristics (cudnnGet*Algorithm_v7, deterministic algorithms
// preferred) and cached; workspaces come from the caching allocator. The cuDNN
// handle is created on first use, so a machine whose cuDNN cannot load still
// runs every other op.
#pragma once
#include "kernels/cuda/device_allocator.h"
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
  CudnnConv(CUstream_st* stream, CachingAllocator& alloc);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // y = conv(x, w) (+ b[Co] when b is not null).
  void forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y);
  // dx = the data gradient (overwritten).
  void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx);
  // dw = the filter gradient, db (may be null) = dy summed over (n, h, w); overwritten.
  void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db);

  // Let cuDNN use TF32 tensor cores (true) or plain FMA (false, the default);
  // drops the plans built so far, which carry the math type.
  void set_tf32(bool on);

  // Plans built so far (one per distinct shape), for tests and diagnostics.
  size_t plans() const;

 private:
  struct Plan;
  Plan& plan(const ConvShape& s);
  void* handle();

  CUstream_st* stream_;
  CachingAllocator& alloc_;
  void* handle_ = nullptr;  // cudnnHandle_t
  bool tf32_ = false;
  mutable std::mutex mu_;
  std::map<std::array<int, 9>, std::unique_ptr<Plan>> plans_;
};

}  // namespace mdps::cuda
