// The CUDA backend's channel concatenation/split, 2x2 average pooling and 2x nearest upsampling,
// with their backward ops; the CPU's are in kernels/cpu/layout.cpp, the checks every backend shares
// in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;

void CudaBackend::concat_channels_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("concat_channels");
  const int64_t N = a.dim(0), Ca = a.dim(1), H = a.dim(2), W = a.dim(3), Cb = b.dim(1);
  cuda::launch_copy_channels(const_cast<float*>(a.data()), Ca, y.data(), Ca + Cb, 0, N, H * W, true, stream_);
  cuda::launch_copy_channels(const_cast<float*>(b.data()), Cb, y.data(), Ca + Cb, Ca, N, H * W, true, stream_);
}

void CudaBackend::split_channels_impl(const Tensor& y, Tensor* a, Tensor* b) {
  OpRange range("split_channels");
  const int64_t N = y.dim(0), C = y.dim(1), H = y.dim(2), W = y.dim(3);
  // The public op has matched the outputs' channels to the input's.
  const int64_t Ca = a ? a->dim(1) : C - b->dim(1);
  float* Y = const_cast<float*>(y.data());
  if (a) cuda::launch_copy_channels(a->data(), Ca, Y, C, 0, N, H * W, false, stream_);
  if (b) cuda::launch_copy_channels(b->data(), C - Ca, Y, C, Ca, N, H * W, false, stream_);
}

void CudaBackend::avg_pool2_impl(const Tensor& x, Tensor& y) {
  OpRange range("avg_pool2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  cuda::launch_avg_pool2(x.data(), y.data(), N * C, H, W, stream_);
}

void CudaBackend::avg_pool2_backward_impl(const Tensor& dy, Tensor& dx) {
  OpRange range("avg_pool2_backward");
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  cuda::launch_avg_pool2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}

void CudaBackend::upsample_nearest2_impl(const Tensor& x, Tensor& y) {
  OpRange range("upsample_nearest2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  cuda::launch_upsample_nearest2(x.data(), y.data(), N * C, H, W, stream_);
}

void CudaBackend::upsample_nearest2_backward_impl(const Tensor& dy, Tensor& dx) {
  OpRange range("upsample_nearest2_backward");
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  cuda::launch_upsample_nearest2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}

}  // namespace mdps
