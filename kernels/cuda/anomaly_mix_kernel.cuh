// The combined map before the blur: y = F + w P with w = eta max(F) / max(P)
// (0 when max(P) = 0), the maxima read from device memory, where the max
// reduction left them, so the host never waits for them.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// f, p, y: n floats (y may alias f); max_f, max_p: one float each; grid-stride.
MDPS_KERNEL void anomaly_mix_kernel(const float* f, const float* p, const float* __restrict__ max_f,
                                    const float* __restrict__ max_p, float eta, float* y, int64_t n) {
  const float w = anomaly_mix_weight(max_f[0], max_p[0], eta);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = f[i] + w * p[i];
}

}  // namespace mdps::cuda
