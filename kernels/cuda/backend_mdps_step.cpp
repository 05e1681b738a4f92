// The CUDA backend's the fused MDPS step and the known-region replacement; the CPU's are in
// kernels/cpu/mdps_step.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;

void CudaBackend::mdps_step_impl(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad,
                                 const Tensor* mask, const Tensor* z, const StepCoeffs& c, Tensor& x_next,
                                 Tensor* x0_hat) {
  OpRange range("mdps_step");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_mdps_step(x.data(), y.data(), eps.data(), grad ? grad->data() : nullptr,
                         mask ? mask->data() : nullptr, z ? z->data() : nullptr, c, x_next.data(),
                         x0_hat ? x0_hat->data() : nullptr, x.numel(), x.dim(1) * hw, hw, stream_);
}

void CudaBackend::replace_normal_impl(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask,
                                      float sqrt_a, float sqrt_1ma) {
  OpRange range("replace_normal");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_replace_normal(x.data(), y.data(), z_fixed.data(), mask.data(), sqrt_a, sqrt_1ma, x.numel(),
                              x.dim(1) * hw, hw, stream_);
}

}  // namespace mdps
