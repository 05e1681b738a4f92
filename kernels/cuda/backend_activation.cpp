// The CUDA backend's SiLU and the row softmax, with their backward ops; the CPU's are in
// kernels/cpu/activation.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include <algorithm>

namespace mdps {

using cuda::OpRange;

void CudaBackend::silu_impl(const Tensor& x, Tensor& y) {
  elementwise(cuda::EwOp::Silu, &x, nullptr, y, 0.f, 0.f, 1, 1);
}

void CudaBackend::silu_backward_impl(const Tensor& x, const Tensor& dy, Tensor& dx) {
  elementwise(cuda::EwOp::SiluBackward, &x, &dy, dx, 0.f, 0.f, 1, std::max<int64_t>(1, x.numel()));
}

void CudaBackend::softmax_impl(const Tensor& x, Tensor& y) {
  OpRange range("softmax");
  const int64_t L = x.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax(x.data(), y.data(), x.numel() / L, L, stream_);
}

void CudaBackend::softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) {
  OpRange range("softmax_backward");
  const int64_t L = y.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax_backward(y.data(), dy.data(), dx.data(), y.numel() / L, L, stream_);
}

}  // namespace mdps
