// Softmax backward over rows of length L: dx = y * (dy - sum(dy * y)), one
// block per row, the dot product reduced in double as the CPU backend does.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"

namespace mdps::cuda {

// y, dy, dx: [rows, L]; gridDim.x = rows; blockDim.x a multiple of 32. dx may
// be dy (the generic attention's backward), hence no __restrict__ on them.
MDPS_KERNEL void softmax_backward_kernel(const float* __restrict__ y, const float* dy, float* dx, int64_t L) {
  MDPS_SHARED(double, scratch, 32);
  const int64_t off = int64_t(blockIdx.x) * L;
  double s = 0;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += double(dy[off + i]) * y[off + i];
  const float fs = float(block_reduce(s, SumOp(), 0.0, scratch));
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) dx[off + i] = y[off + i] * (dy[off + i] - fs);
}

}  // namespace mdps::cuda
