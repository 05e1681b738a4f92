// Sums accumulated in double: along rows (sum_hw: one block per row), down
// columns (the linear bias gradient: one thread per column, rows in order),
// and over a whole tensor in two deterministic stages (per-block partials,
// then one block adds them) into a 1-element device tensor, so nothing waits.
// The whole-tensor maximum takes the same two stages.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// out[r] = sum_i x[r * L + i]; gridDim.x = rows; blockDim.x a multiple of 32.
MDPS_KERNEL void row_sum_kernel(const float* __restrict__ x, float* __restrict__ out, int64_t L) {
  MDPS_SHARED(double, scratch, 32);
  const float* xr = x + int64_t(blockIdx.x) * L;
  double s = 0;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += xr[i];
  s = block_reduce(s, SumOp(), 0.0, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = float(s);
}

// out[c] = sum_r x[r * cols + c]; neighbouring threads read neighbouring columns.
MDPS_KERNEL void column_sum_kernel(const float* __restrict__ x, float* __restrict__ out, int64_t rows,
                                   int64_t cols) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += stride) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
    out[c] = float(s);
  }
}

// Stage 1: partial[b] = sum over block b's grid-stride share of x (or x^2).
MDPS_KERNEL void sum_partials_kernel(const float* __restrict__ x, int64_t n, bool squares,
                                     double* __restrict__ partial) {
  MDPS_SHARED(double, scratch, 32);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    s += squares ? v * v : v;
  }
  s = block_reduce(s, SumOp(), 0.0, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2 (one block): out[0] = sum of the partials.
MDPS_KERNEL void sum_finish_kernel(const double* __restrict__ partial, int64_t parts, float* __restrict__ out) {
  MDPS_SHARED(double, scratch, 32);
  double s = 0;
  for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
  s = block_reduce(s, SumOp(), 0.0, scratch);
  if (threadIdx.x == 0) out[0] = float(s);
}

// The maximum as the CPU takes it (max_of: m unless m < v). Exact in any
// order for numbers; a NaN may be kept or passed over depending on where it
// falls, as with any parallel max.
struct MaxOfOp {
  MDPS_DEVICE float operator()(float a, float b) const { return max_of(a, b); }
};

// Stage 1: partial[b] = the largest value of block b's grid-stride share of x
// (-inf for a block that has none).
MDPS_KERNEL void max_partials_kernel(const float* __restrict__ x, int64_t n, float* __restrict__ partial) {
  MDPS_SHARED(float, scratch, 32);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  float m = -INFINITY;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) m = max_of(m, x[i]);
  m = block_reduce(m, MaxOfOp(), -INFINITY, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = m;
}

// Stage 2 (one block): out[0] = the largest partial.
MDPS_KERNEL void max_finish_kernel(const float* __restrict__ partial, int64_t parts, float* __restrict__ out) {
  MDPS_SHARED(float, scratch, 32);
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < parts; i += blockDim.x) m = max_of(m, partial[i]);
  m = block_reduce(m, MaxOfOp(), -INFINITY, scratch);
  if (threadIdx.x == 0) out[0] = m;
}

}  // namespace mdps::cuda
