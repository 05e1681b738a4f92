// Group norm forward (PyTorch semantics: biased variance, eps inside the
// root), optionally fused with SiLU. One block per (sample, group); two block
// reductions (mean, then squared deviations: no cancellation), then one pass
// that normalises, applies the per-channel affine and the activation.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"
#include <math.h>

namespace mdps::cuda {

// x, y: [N, C, HW] with C = groups * cg; mean, rstd: [N * groups];
// gridDim.x = N * groups; blockDim.x a multiple of 32.
MDPS_KERNEL void group_norm_kernel(const float* __restrict__ x, const float* __restrict__ gamma,
                                   const float* __restrict__ beta, float* __restrict__ y, float* __restrict__ mean,
                                   float* __restrict__ rstd, int groups, int64_t cg, int64_t hw, float eps,
                                   bool silu) {
  MDPS_SHARED(float, scratch, 32);
  const int64_t ng = blockIdx.x;
  const int64_t len = cg * hw;
  const float* xg = x + ng * len;
  float* yg = y + ng * len;
  const float inv_len = 1.f / float(len);

  float s = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += xg[i];
  const float mu = block_reduce(s, SumOp(), 0.f, scratch) * inv_len;
  float q = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const float d = xg[i] - mu;
    q += d * d;
  }
  const float var = block_reduce(q, SumOp(), 0.f, scratch) * inv_len;
  const float r = 1.f / sqrtf(var + eps);
  if (threadIdx.x == 0) {
    mean[ng] = mu;
    rstd[ng] = r;
  }
  const int64_t c0 = (ng % groups) * cg;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t c = c0 + i / hw;
    // (x - mu) first: exact near the mean, where x * a + (beta - mu * a) loses
    // digits to cancellation once rstd is large (groups of near-equal values).
    const float v = (xg[i] - mu) * (r * gamma[c]) + beta[c];
    yg[i] = silu ? v / (1.f + expf(-v)) : v;
  }
}

}  // namespace mdps::cuda
