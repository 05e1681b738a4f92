// The CUDA backend's same-shape elementwise arithmetic and the per-(sample, channel) bias with its
// reduction; the CPU's are in kernels/cpu/elementwise.cpp, the checks every backend shares in
// engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include <algorithm>

namespace mdps {

using cuda::OpRange;

void CudaBackend::elementwise(cuda::EwOp op, const Tensor* a, const Tensor* b, Tensor& y, float alpha, float beta,
                              int64_t b_div, int64_t b_mod) {
  cuda::launch_elementwise(op, a ? a->data() : nullptr, b ? b->data() : nullptr, y.data(), alpha, beta, y.numel(),
                           b_div, b_mod, stream_);
}

void CudaBackend::scale_by_inverse_sqrt_impl(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  OpRange range("scale_by_inverse_sqrt");
  // Every element reads b[(i / n) % 1] = sum_sq[0].
  elementwise(cuda::EwOp::ScaleByInverseSqrt, &x, &sum_sq, y, 0.f, 0.f, std::max<int64_t>(1, x.numel()), 1);
}

void CudaBackend::add_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Add, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}

void CudaBackend::sub_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Sub, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}

void CudaBackend::mul_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Mul, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}

void CudaBackend::scale_impl(const Tensor& x, float alpha, Tensor& y) {
  elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1);
}

void CudaBackend::axpby_impl(float alpha, const Tensor& x, float beta, Tensor& y) {
  // As in BLAS (and the CPU), beta == 0 does not read y: it may be a fresh
  // buffer from the cache holding NaN bits, and 0 * NaN is NaN.
  if (beta == 0.f) {
    elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1);
    return;
  }
  elementwise(cuda::EwOp::Axpby, &x, &y, y, alpha, beta, 1, std::max<int64_t>(1, x.numel()));
}

void CudaBackend::add_channel_bias_impl(const Tensor& x, const Tensor& v, Tensor& y) {
  // [N, C, ...] as on the CPU: v[n, c] repeats over the trailing elements.
  const int64_t NC = x.dim(0) * x.dim(1), hw = std::max<int64_t>(1, NC != 0 ? x.numel() / NC : 0);
  elementwise(cuda::EwOp::Add, &x, &v, y, 0.f, 0.f, hw, std::max<int64_t>(1, v.numel()));
}

void CudaBackend::sum_hw_impl(const Tensor& dy, Tensor& dv) {
  OpRange range("sum_hw");
  const int64_t N = dy.dim(0), C = dy.dim(1);
  const int64_t HW = N * C != 0 ? dy.numel() / (N * C) : 0;
  cuda::launch_row_sum(dy.data(), dv.data(), N * C, HW, stream_);
}

}  // namespace mdps
