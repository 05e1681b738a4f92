// 2x nearest-neighbour upsampling and its backward (the sum of each 2x2
// block, added pairwise by rows as the CPU backend does), one output element
// per thread.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"

namespace mdps::cuda {

// x: [planes, H, W] -> y: [planes, 2H, 2W]; n_out = planes * 4 * H * W.
MDPS_KERNEL void upsample_nearest2_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W,
                                          int64_t n_out) {
  const int64_t W2 = 2 * W, H2 = 2 * H;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t w = o % W2, h = (o / W2) % H2, p = o / (W2 * H2);
    y[o] = x[(p * H + h / 2) * W + w / 2];
  }
}

// dx: [planes, H, W] from dy: [planes, 2H, 2W]; n_in = planes * H * W.
MDPS_KERNEL void upsample_nearest2_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t H,
                                                   int64_t W, int64_t n_in) {
  const int64_t W2 = 2 * W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n_in; k += stride) {
    const int64_t j = k % W, i = (k / W) % H, p = k / (W * H);
    const float* y0 = dy + (p * 2 * H + 2 * i) * W2 + 2 * j;
    const float* y1 = y0 + W2;
    dx[k] = (y0[0] + y0[1]) + (y1[0] + y1[1]);
  }
}

}  // namespace mdps::cuda
