// ImageNet normalisation of images in [-1, 1] before the feature extractor,
// one element per thread: ((v + 1) / 2 - mean_c) / std_c through
// kernels/shared/anomaly_map_arith.h, the CPU's arithmetic, so the two agree bit for
// bit under emulation.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// x, y: [N, 3, H, W] (y may alias x); n = N * 3 * hw; grid-stride.
MDPS_KERNEL void imagenet_normalise_kernel(const float* x, float* y, int64_t hw, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = imagenet_normalised(x[i], (i / hw) % 3);
}

}  // namespace mdps::cuda
