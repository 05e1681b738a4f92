// The casts of `--precision bf16`: the products' float32 inputs to bfloat16
// (round to nearest even, kernels/shared/bf16.h) before cuBLAS / cuDNN, and cuDNN's
// bfloat16 outputs back to float32. One element per thread, grid-stride.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/bf16.h"

namespace mdps::cuda {

MDPS_KERNEL void float_to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = bf16_from_float(x[i]);
}

MDPS_KERNEL void bf16_to_float_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = float_from_bf16(x[i]);
}

}  // namespace mdps::cuda
