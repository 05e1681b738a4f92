// Warp and block reductions through warp shuffles and one 32-element shared
// scratch array; used by the normalisation, softmax and sum kernels. Generic in
// the element type so sums that must not lose digits accumulate in double.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"

namespace mdps::cuda {

struct SumOp {
  template <typename T>
  MDPS_DEVICE T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename T>
  MDPS_DEVICE T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

template <typename T, typename Op>
MDPS_DEVICE T warp_reduce(T v, Op op) {
  for (int off = warpSize / 2; off > 0; off >>= 1) v = op(v, __shfl_down_sync(MDPS_FULL_MASK, v, off));
  return v;
}

// The reduction over the block, returned to every thread. blockDim.x must be a
// multiple of 32 (full-warp shuffles); `identity` pads the missing warps;
// `scratch` is a __shared__ array of 32 T the caller owns.
template <typename T, typename Op>
MDPS_DEVICE T block_reduce(T v, Op op, T identity, T* scratch) {
  const int lane = int(threadIdx.x % warpSize), warp = int(threadIdx.x / warpSize);
  const int nwarps = int(blockDim.x / warpSize);
  v = warp_reduce(v, op);
  // The previous call's readers must be done with scratch before it is reused.
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_reduce(lane < nwarps ? scratch[lane] : identity, op);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  return scratch[0];
}

}  // namespace mdps::cuda
