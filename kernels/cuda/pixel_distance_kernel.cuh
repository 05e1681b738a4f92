// The anomaly map's pixel term, one output pixel per thread: the mean over
// the three channels of |normalised a - normalised b| (the authors' order, in
// kernels/shared/anomaly_map_arith.h, shared with the CPU: bit-equal under emulation).
// The normalised images are never stored.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// a, b: [N, 3, H, W] -> y: [N, 1, H, W]; n_out = N * hw; grid-stride.
MDPS_KERNEL void pixel_distance_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                       float* __restrict__ y, int64_t hw, int64_t n_out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t at = (o / hw) * 3 * hw + o % hw;
    y[o] = pixel_distance_at(a + at, b + at, hw);
  }
}

}  // namespace mdps::cuda
