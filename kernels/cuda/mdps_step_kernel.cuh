// The fused MDPS step: masked epsilon fusion, x0_hat and the DDIM update in one
// pass over memory. The arithmetic is kernels/shared/mdps_step.h, shared with the CPU.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/mdps_step.h"

namespace mdps::cuda {

// x, y, eps, x_next: n elements of [N,C,H,W]; grad, z, x0_hat may be null;
// mask is [N,1,H,W] (null = all ones), chw = C*H*W, hw = H*W.
MDPS_KERNEL void mdps_step_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                  const float* __restrict__ eps, const float* __restrict__ grad,
                                  const float* __restrict__ mask, const float* __restrict__ z, StepCoeffs c,
                                  float* __restrict__ x_next, float* __restrict__ x0_hat, int64_t n, int64_t chw,
                                  int64_t hw) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float m = mask ? mask[(i / chw) * hw + i % hw] : 1.f;
    float xn, x0;
    mdps_step_element(x[i], y[i], eps[i], grad ? grad[i] : 0.f, m, z ? z[i] : 0.f, c, &xn, &x0);
    x_next[i] = xn;
    if (x0_hat) x0_hat[i] = x0;
  }
}

}  // namespace mdps::cuda
