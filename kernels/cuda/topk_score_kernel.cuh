// The image score of an anomaly map from its k largest values (spec section
// 5): the authors' sum of the k largest entries of a softmax over all pixels,
// or the paper's mean of the k largest values. One block per map:
//   1. radix select of the k-th largest value on order-preserving 32-bit keys,
//      most significant byte first (4 passes, a 256-bin shared histogram
//      each), which yields the threshold T and how many copies of T belong to
//      the top k (ties);
//   2. the values above T gathered into shared memory (fewer than k), the
//      copies of T appended, and the k sorted descending by a bitonic sort;
//   3. thread 0 adds the k terms in that descending order: the CPU's order
//      (std::partial_sort then a loop), so the sums are bit-equal.
// The softmax's maximum is order-free; its denominator (sum of exp over the
// map) is a block reduction in double, a different order than the CPU's
// running sum, so the authors' score agrees to about 1e-13 relative, not bit
// for bit. k is clamped to the map size; min(k, n) must fit kTopKCapacity.
// Maps are assumed finite (a NaN has no place in the CPU's sort either).
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/shared/anomaly_map_arith.h"
#include "kernels/shared/float_bits.h"
#include <math.h>
#include <stdint.h>

namespace mdps::cuda {

// The most values one block sorts in shared memory (a power of two): 8 KiB
// of keys and 16 KiB of terms.
constexpr int kTopKCapacity = 2048;

// A bijection float -> uint32 under which unsigned order is float order
// (negative floats reversed below the positive ones; -0 just under +0).
MDPS_DEVICE uint32_t float_order_key(float f) {
  const uint32_t u = float_bits(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
MDPS_DEVICE float float_from_order_key(uint32_t key) {
  return float_from_bits((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// maps: [gridDim.x, n], one block per map; k >= 1 with min(k, n) <=
// kTopKCapacity; blockDim.x a multiple of 32. out[map]: the score, in double.
MDPS_KERNEL void topk_score_kernel(const float* __restrict__ maps, int64_t n, int k, bool softmax,
                                   double* __restrict__ out) {
  MDPS_SHARED(unsigned, hist, 256);
  MDPS_SHARED(uint32_t, keys, kTopKCapacity);
  MDPS_SHARED(double, terms, kTopKCapacity);
  MDPS_SHARED(int64_t, chosen, 2);  // the digit of the k-th largest, and its rank among that digit's values
  MDPS_SHARED(unsigned, gathered, 1);
  MDPS_SHARED(float, max_scratch, 32);
  MDPS_SHARED(double, sum_scratch, 32);
  const float* v = maps + int64_t(blockIdx.x) * n;
  const int64_t kk = int64_t(k) < n ? int64_t(k) : n;
  const int64_t tid = threadIdx.x, nt = blockDim.x;

  // 1. Radix select. Invariant: the kk-th largest value's key starts with
  // `prefix` (the bits under `mask`), and it is the `rank`-th largest of the
  // values that do.
  uint32_t prefix = 0, mask = 0;
  int64_t rank = kk;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int64_t d = tid; d < 256; d += nt) hist[d] = 0;
    __syncthreads();
    for (int64_t i = tid; i < n; i += nt) {
      const uint32_t key = float_order_key(v[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      // From the top digit down until the digits seen hold `rank` values.
      int64_t above = 0;
      int d = 255;
      while (d > 0 && above + hist[d] < rank) above += hist[d--];
      chosen[0] = d;
      chosen[1] = rank - above;
    }
    __syncthreads();
    prefix |= uint32_t(chosen[0]) << shift;
    mask |= 255u << shift;
    rank = chosen[1];
  }
  // Now prefix is the threshold's key and `rank` the number of its copies in
  // the top kk; the other kk - rank values lie strictly above it.
  const uint32_t threshold = prefix;
  const int64_t n_above = kk - rank;

  // 2. Gather (slot order is arbitrary on a GPU; the sort removes it), the
  // threshold's copies, and padding to a power of two with key 0, which
  // sorts last.
  if (tid == 0) gathered[0] = 0;
  __syncthreads();
  for (int64_t i = tid; i < n; i += nt) {
    const uint32_t key = float_order_key(v[i]);
    if (key > threshold) keys[atomicAdd(&gathered[0], 1u)] = key;
  }
  int64_t padded = 1;
  while (padded < kk) padded <<= 1;
  for (int64_t i = n_above + tid; i < padded; i += nt) keys[i] = i < kk ? threshold : 0u;

  // Bitonic sort, descending: stage (size, half) compares i with i ^ half.
  for (int64_t size = 2; size <= padded; size <<= 1)
    for (int64_t half = size >> 1; half > 0; half >>= 1) {
      __syncthreads();
      for (int64_t i = tid; i < padded; i += nt) {
        const int64_t j = i ^ half;
        if (j < i) continue;
        const uint32_t a = keys[i], b = keys[j];
        if ((i & size) == 0 ? a < b : a > b) {
          keys[i] = b;
          keys[j] = a;
        }
      }
    }
  __syncthreads();

  // 3. The softmax's maximum and denominator over the whole map.
  double max_v = 0, denominator = 1;
  if (softmax) {
    float m = -INFINITY;
    for (int64_t i = tid; i < n; i += nt) m = v[i] > m ? v[i] : m;
    max_v = block_reduce(m, MaxOp(), -INFINITY, max_scratch);
    double s = 0;
    for (int64_t i = tid; i < n; i += nt) s += softmax_term(v[i], max_v);
    denominator = block_reduce(s, SumOp(), 0.0, sum_scratch);
  }
  for (int64_t i = tid; i < kk; i += nt) {
    const float x = float_from_order_key(keys[i]);
    terms[i] = softmax ? softmax_term(x, max_v) : double(x);
  }
  __syncthreads();
  if (tid == 0) {
    double s = 0;
    for (int64_t i = 0; i < kk; ++i) s += terms[i];
    out[blockIdx.x] = softmax ? s / denominator : s / double(kk);
  }
}

}  // namespace mdps::cuda
