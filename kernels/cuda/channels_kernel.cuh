// Channel concatenation and its backward (split) as one copy between a
// [N, Cs, HW] tensor and channels [c_off, c_off + Cs) of a [N, Cd, HW] one.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"

namespace mdps::cuda {

// to_dst: dst[n, c_off + c, i] = src[n, c, i]; otherwise the reverse
// (src is then written). n_src = N * Cs * HW elements, grid-stride.
MDPS_KERNEL void copy_channels_kernel(float* src, int64_t Cs, float* dst, int64_t Cd, int64_t c_off, int64_t hw,
                                      int64_t n_src, bool to_dst) {
  const int64_t block = Cs * hw;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_src; i += stride) {
    const int64_t n = i / block, rest = i - n * block;
    const int64_t j = (n * Cd + c_off) * hw + rest;
    if (to_dst) dst[j] = src[i];
    else src[i] = dst[j];
  }
}

}  // namespace mdps::cuda
