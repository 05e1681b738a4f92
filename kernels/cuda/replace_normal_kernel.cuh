// The authors' masked variant: the normal region of x_t replaced (in place) by
// a forward-noising of y with one fixed z; arithmetic from kernels/shared/mdps_step.h.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/mdps_step.h"

namespace mdps::cuda {

// x, y, z_fixed: n elements of [N,C,H,W]; mask [N,1,H,W]; chw = C*H*W, hw = H*W.
MDPS_KERNEL void replace_normal_kernel(float* __restrict__ x, const float* __restrict__ y,
                                       const float* __restrict__ z_fixed, const float* __restrict__ mask,
                                       float sqrt_a, float sqrt_1ma, int64_t n, int64_t chw, int64_t hw) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = replace_normal_element(x[i], y[i], z_fixed[i], mask[(i / chw) * hw + i % hw], sqrt_a, sqrt_1ma);
}

}  // namespace mdps::cuda
