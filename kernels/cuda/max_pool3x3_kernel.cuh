// The ResNet stem's nn.MaxPool2d(3, stride 2, padding 1), one output element
// per thread; the window is clipped to the image (padding never wins) and
// scanned in the CPU's order (kernels/shared/anomaly_map_arith.h), so the result and
// the treatment of NaN match the CPU's exactly.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// x: [planes, H, W] -> y: [planes, Ho, Wo]; n_out = planes * Ho * Wo; grid-stride.
MDPS_KERNEL void max_pool3x3_s2_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W,
                                       int64_t Ho, int64_t Wo, int64_t n_out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t plane = o / (Ho * Wo), i = o % (Ho * Wo);
    y[o] = max_pool3x3_s2_at(x + plane * H * W, H, W, i / Wo, i % Wo);
  }
}

}  // namespace mdps::cuda
