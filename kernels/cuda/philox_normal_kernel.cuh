// Standard normal draws from the Philox stream (kernels/shared/philox.h): element i of
// dst is philox::normal_at(seed, stream, offset + i). Each thread computes one
// Philox block (four normals) and writes those of its lanes inside the range,
// so a range starting or ending inside a block needs no special case.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/philox.h"

namespace mdps::cuda {

// n >= 1.
MDPS_KERNEL void philox_normal_kernel(float* __restrict__ dst, int64_t n, uint64_t seed, uint64_t stream,
                                      uint64_t offset) {
  const uint64_t first = offset >> 2;
  const uint64_t end = offset + uint64_t(n);
  const uint64_t nblocks = ((end - 1) >> 2) - first + 1;
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t b = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks; b += stride) {
    float z[4];
    philox::normals_of_block(seed, stream, first + b, z);
    const uint64_t base = (first + b) << 2;
    for (int k = 0; k < 4; ++k) {
      const uint64_t idx = base + uint64_t(k);
      if (idx >= offset && idx < end) dst[idx - offset] = z[k];
    }
  }
}

}  // namespace mdps::cuda
