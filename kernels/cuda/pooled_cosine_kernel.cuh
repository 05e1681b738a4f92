// The perceptual term's per-layer distance, fused: 3x3 mean pooling (zero
// padding, count includes the padding) of both feature maps and 1 - cosine
// similarity over channels, one output pixel per thread. The pooled maps are
// never stored; each thread walks the channels in order with a double
// accumulator, exactly as the CPU's cosine_distance(mean_pool3x3(a),
// mean_pool3x3(b)) does (kernels/shared/anomaly_map_arith.h), so the two agree bit for
// bit under emulation. Neighbouring threads read neighbouring pixels of the
// same channel, so the 9-point windows coalesce and hit in L1.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// a, b: [N, C, H, W] -> y: [N, 1, H, W]; n_out = N * H * W; grid-stride.
MDPS_KERNEL void pooled_cosine_distance_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                               float* __restrict__ y, int64_t C, int64_t H, int64_t W,
                                               int64_t n_out, float eps) {
  const int64_t HW = H * W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t n = o / HW, i = o % HW, h = i / W, w = i % W;
    CosineDistance d;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t plane = (n * C + c) * HW;
      d.add(mean_pool3x3_at(a + plane, H, W, h, w), mean_pool3x3_at(b + plane, H, W, h, w));
    }
    y[o] = d.value(eps);
  }
}

}  // namespace mdps::cuda
