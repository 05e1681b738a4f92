// Softmax over rows of length L: one block per row; the maximum and the sum of
// exponentials by block reductions, the exponentials recomputed in the last
// pass instead of stored (one read more, no scratch row).
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"
#include <math.h>

namespace mdps::cuda {

// x, y: [rows, L]; gridDim.x = rows; blockDim.x a multiple of 32. y may be x
// (the generic attention's softmax(w, w)), hence no __restrict__.
MDPS_KERNEL void softmax_kernel(const float* x, float* y, int64_t L) {
  MDPS_SHARED(float, scratch, 32);
  const float* xr = x + int64_t(blockIdx.x) * L;
  float* yr = y + int64_t(blockIdx.x) * L;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) mx = xr[i] > mx ? xr[i] : mx;
  mx = block_reduce(mx, MaxOp(), -INFINITY, scratch);
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += expf(xr[i] - mx);
  const float inv = 1.f / block_reduce(s, SumOp(), 0.f, scratch);
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) yr[i] = expf(xr[i] - mx) * inv;
}

}  // namespace mdps::cuda
