// 2x2 average pooling (floor of odd sizes, like torch's avg_pool2d(x, 2)) and
// its backward, one output element per thread, in the CPU backend's order of
// additions so the results agree bit for bit.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"

namespace mdps::cuda {

// x: [planes, H, W] -> y: [planes, H/2, W/2]; n_out = planes * Ho * Wo.
MDPS_KERNEL void avg_pool2_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W,
                                  int64_t n_out) {
  const int64_t Ho = H / 2, Wo = W / 2;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t j = o % Wo, i = (o / Wo) % Ho, p = o / (Wo * Ho);
    const float* r0 = x + p * H * W + 2 * i * W + 2 * j;
    const float* r1 = r0 + W;
    y[o] = (r0[0] + r0[1] + r1[0] + r1[1]) * 0.25f;
  }
}

// dx: [planes, H, W] from dy: [planes, H/2, W/2]; rows/columns the floor
// dropped get 0. n_in = planes * H * W.
MDPS_KERNEL void avg_pool2_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t H,
                                           int64_t W, int64_t n_in) {
  const int64_t Ho = H / 2, Wo = W / 2;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n_in; k += stride) {
    const int64_t w = k % W, h = (k / W) % H, p = k / (W * H);
    const int64_t i = h / 2, j = w / 2;
    dx[k] = (i < Ho && j < Wo) ? dy[(p * Ho + i) * Wo + j] * 0.25f : 0.f;
  }
}

}  // namespace mdps::cuda
