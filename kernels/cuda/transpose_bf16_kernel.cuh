// The layout changes around cuDNN's fused attention (--precision bf16,
// kernels/cuda/cudnn_attention.cpp). The authors' QKV attention holds each
// head's q, k, v (and the output) as float32 [channels, tokens]; cuDNN's SDPA
// wants bfloat16 [tokens, channels] (the head dimension contiguous). So: one
// batched transpose per direction, cast on the way, x [n, R, C] -> y [n, C, R].
// 32 x 32 tiles pass through shared memory (one column of padding against bank
// conflicts), so that both the reads and the writes are coalesced; the tile
// holds float32, exact for either side. Rounding is kernels/shared/bf16.h's, as in
// every other bf16 cast.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/bf16.h"

namespace mdps::cuda {

constexpr unsigned kTransposeTile = 32;  // blockDim.x, and the tile's side
constexpr unsigned kTransposeRows = 8;   // blockDim.y: each thread moves tile / rows values

MDPS_DEVICE float transpose_load(float v) { return v; }
MDPS_DEVICE float transpose_load(uint16_t h) { return float_from_bf16(h); }
MDPS_DEVICE void transpose_store(float v, float& out) { out = v; }
MDPS_DEVICE void transpose_store(float v, uint16_t& out) { out = bf16_from_float(v); }

// Block (x, y) moves the tile at rows [32 y, 32 y + 32), columns [32 x, 32 x + 32)
// of every matrix z, z + gridDim.z, ... (the loop is uniform across the block,
// so its barriers are too).
template <typename In, typename Out>
MDPS_DEVICE void transpose_tiles(const In* __restrict__ x, Out* __restrict__ y, int64_t n, int64_t R, int64_t C) {
  MDPS_SHARED(float, tile, kTransposeTile * (kTransposeTile + 1));
  const int64_t r0 = int64_t(blockIdx.y) * kTransposeTile, c0 = int64_t(blockIdx.x) * kTransposeTile;
  for (int64_t b = blockIdx.z; b < n; b += gridDim.z) {
    const In* xb = x + b * R * C;
    Out* yb = y + b * R * C;
    for (unsigned i = threadIdx.y; i < kTransposeTile; i += blockDim.y) {
      const int64_t r = r0 + i, c = c0 + threadIdx.x;
      if (r < R && c < C) tile[i * (kTransposeTile + 1) + threadIdx.x] = transpose_load(xb[r * C + c]);
    }
    __syncthreads();
    for (unsigned i = threadIdx.y; i < kTransposeTile; i += blockDim.y) {
      const int64_t c = c0 + i, r = r0 + threadIdx.x;  // y[b, c, r] = x[b, r, c]
      if (c < C && r < R) transpose_store(tile[threadIdx.x * (kTransposeTile + 1) + i], yb[c * R + r]);
    }
    __syncthreads();  // the next matrix reuses the tile
  }
}

MDPS_KERNEL void transpose_to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n,
                                          int64_t R, int64_t C) {
  transpose_tiles(x, y, n, R, C);
}

MDPS_KERNEL void transpose_from_bf16_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, int64_t n,
                                            int64_t R, int64_t C) {
  transpose_tiles(x, y, n, R, C);
}

}  // namespace mdps::cuda
