// Group norm backward, optionally through a fused SiLU (the pre-activation is
// recomputed from x, mean and rstd, as the CPU backend does). Two kernels:
//  1. one block per (sample, group): per channel, sum dz and sum dz*xhat by
//     block reductions in double (stored for the parameter gradients), then,
//     when dx is wanted, dx = rstd (gamma dz - mean(gamma dz) - xhat mean(gamma dz xhat));
//  2. one thread per channel: dgamma, dbeta = sums over the samples, in order.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/block_reduce.cuh"
#include <math.h>

namespace mdps::cuda {

// The gradient reaching the affine output: dy, or dy * silu'(z) when fused.
MDPS_DEVICE float gn_dz(float dy, float x, float mu, float gr, float beta, bool silu) {
  if (!silu) return dy;
  const float z = (x - mu) * gr + beta;
  const float sg = 1.f / (1.f + expf(-z));
  return dy * sg * (1.f + z * (1.f - sg));
}

// x, dy, dx: [N, C, HW], C = groups * cg; mean, rstd: [N * groups];
// sum_dz, sum_dzx: [N * C] (written); dx may be null. gridDim.x = N * groups.
MDPS_KERNEL void group_norm_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ gamma, const float* __restrict__ beta,
                                            const float* __restrict__ mean, const float* __restrict__ rstd,
                                            int groups, int64_t cg, int64_t hw, bool silu, float* __restrict__ dx,
                                            double* __restrict__ sum_dz, double* __restrict__ sum_dzx) {
  MDPS_SHARED(double, scratch, 32);
  const int64_t ng = blockIdx.x;
  const int64_t n = ng / groups, c0 = (ng % groups) * cg, C = int64_t(groups) * cg;
  const int64_t len = cg * hw;
  const float mu = mean[ng], r = rstd[ng];
  const float* xg = x + ng * len;
  const float* dyg = dy + ng * len;
  double g1 = 0, g2 = 0;  // over the group: sum gamma*dz, sum gamma*dz*xhat
  for (int64_t cl = 0; cl < cg; ++cl) {
    const int64_t c = c0 + cl;
    const float gr = r * gamma[c];
    const float* xc = xg + cl * hw;
    const float* dyc = dyg + cl * hw;
    double s1 = 0, sx = 0;
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
      const float dz = gn_dz(dyc[i], xc[i], mu, gr, beta[c], silu);
      s1 += dz;
      sx += double(dz) * xc[i];
    }
    s1 = block_reduce(s1, SumOp(), 0.0, scratch);
    sx = block_reduce(sx, SumOp(), 0.0, scratch);
    // sum dz*xhat = rstd * (sum dz*x - mean * sum dz)
    const double s2 = double(r) * (sx - double(mu) * s1);
    if (threadIdx.x == 0) {
      sum_dz[n * C + c] = s1;
      sum_dzx[n * C + c] = s2;
    }
    g1 += s1 * gamma[c];
    g2 += s2 * gamma[c];
  }
  if (!dx) return;
  const double m1 = len ? g1 / double(len) : 0.0, m2 = len ? g2 / double(len) : 0.0;
  const float fm1 = float(m1 * r), fm2 = float(m2 * r);
  float* dxg = dx + ng * len;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t c = c0 + i / hw;
    const float dz = gn_dz(dyg[i], xg[i], mu, r * gamma[c], beta[c], silu);
    const float xh = (xg[i] - mu) * r;
    dxg[i] = dz * (gamma[c] * r) - fm1 - xh * fm2;
  }
}

// dgamma[c] = sum_n sum_dzx[n, c], dbeta[c] = sum_n sum_dz[n, c]; either may be null.
MDPS_KERNEL void group_norm_param_grad_kernel(const double* __restrict__ sum_dz, const double* __restrict__ sum_dzx,
                                              int64_t N, int64_t C, float* __restrict__ dgamma,
                                              float* __restrict__ dbeta) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += stride) {
    double sg = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) {
      sg += sum_dzx[n * C + c];
      sb += sum_dz[n * C + c];
    }
    if (dgamma) dgamma[c] = float(sg);
    if (dbeta) dbeta[c] = float(sb);
  }
}

}  // namespace mdps::cuda
