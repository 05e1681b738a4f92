// One Adam / AdamW step per element, operation by operation as the CPU
// backend (kernels/cpu/adam.cpp, torch.optim.Adam's single-tensor path); the
// step-dependent scalars are computed once on the host (adam_scalars).
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "engine/core/backend.h"
#include <math.h>

namespace mdps::cuda {

struct AdamScalars {
  float neg_step_size, bc2_sqrt, eps, wd, w1, b2, w2, decay;
  bool coupled_wd, apply_decay;
};

// The same double-precision scalar arithmetic as the CPU backend.
inline AdamScalars adam_scalars(const AdamParams& p, int64_t step) {
  const double lr = p.lr, b1 = p.beta1, b2 = p.beta2, wd = p.weight_decay;
  const double bc1 = 1.0 - std::pow(b1, double(step));
  const double bc2 = 1.0 - std::pow(b2, double(step));
  AdamScalars s;
  s.neg_step_size = float(-(lr / bc1));
  s.bc2_sqrt = float(std::sqrt(bc2));
  s.eps = p.eps;
  s.wd = float(wd);
  s.w1 = float(1.0 - b1);
  s.b2 = float(b2);
  s.w2 = float(1.0 - b2);
  s.decay = float(1.0 - lr * wd);
  s.coupled_wd = !p.decoupled && wd != 0.0;
  s.apply_decay = p.decoupled && wd != 0.0;
  return s;
}

// One element's step, in place (also the playground's vectorised candidate's).
MDPS_DEVICE void adam_element(float& param, float grad, float& m, float& v, const AdamScalars& s) {
  float pi = param;
  if (s.apply_decay) pi = pi * s.decay;
  float g = grad;
  if (s.coupled_wd) g = g + s.wd * pi;
  float mi = m;
  mi = s.w1 < 0.5f ? mi + s.w1 * (g - mi) : g - (g - mi) * (1.f - s.w1);
  float vi = v * s.b2;
  vi = vi + s.w2 * g * g;
  const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
  param = pi + s.neg_step_size * mi / denom;
  m = mi;
  v = vi;
}

MDPS_KERNEL void adam_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                             float* __restrict__ v, AdamScalars s, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    adam_element(param[i], grad[i], m[i], v[i], s);
}

}  // namespace mdps::cuda
