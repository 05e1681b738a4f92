// The CUDA backend's group normalisation (+SiLU) and its backward; the CPU's are in
// kernels/cpu/group_norm.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;
using cuda::Scratch;

void CudaBackend::group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                                  bool silu, Tensor& y, Tensor& mean, Tensor& rstd) {
  OpRange range("group_norm");
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  cuda::launch_group_norm(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), N, groups,
                          C / groups, HW, eps, silu, stream_);
}

void CudaBackend::group_norm_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                           const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                           Tensor* dgamma, Tensor* dbeta) {
  OpRange range("group_norm_backward");
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  if (N == 0) {  // no samples: zero parameter gradients
    if (dgamma) fill(*dgamma, 0.f);
    if (dbeta) fill(*dbeta, 0.f);
    return;
  }
  Scratch<double> sums(*alloc_, size_t(2 * N * C));
  cuda::launch_group_norm_backward(dy.data(), x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), N,
                                   groups, C / groups, HW, silu, dx ? dx->data() : nullptr, sums.get(),
                                   sums.get() + N * C, dgamma ? dgamma->data() : nullptr,
                                   dbeta ? dbeta->data() : nullptr, stream_);
}

}  // namespace mdps
