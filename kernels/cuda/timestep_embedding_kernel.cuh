// Sinusoidal timestep embedding, one thread per (sample, frequency) pair; the
// arithmetic is kernels/shared/timestep_embedding.h, shared with the CPU backend.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/timestep_embedding.h"

namespace mdps::cuda {

// t: [N]; y: [N, dim], half = dim / 2; an odd dim's last column is zeroed.
// Grid-stride over N * (half + dim % 2) work items.
MDPS_KERNEL void timestep_embedding_kernel(const float* __restrict__ t, float* __restrict__ y, int64_t N,
                                           int64_t dim) {
  const int64_t half = dim / 2, per_row = half + dim % 2, n_items = N * per_row;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n_items; k += stride) {
    const int64_t n = k / per_row, i = k % per_row;
    float* row = y + n * dim;
    if (i == half) {
      row[dim - 1] = 0.f;
      continue;
    }
    timestep_embedding_pair(t[n], timestep_frequency(i, half), &row[i], &row[half + i]);
  }
}

}  // namespace mdps::cuda
