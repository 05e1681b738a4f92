// The arithmetic of one MDPS sampling step, per element, shared by the CPU
// backend and the CUDA kernel (MDPS_HD): masked epsilon fusion (eq. 17),
// x0_hat, and the DDIM update, in one pass over memory.
#pragma once
#include "engine/core/common.h"
#include <math.h>

namespace mdps {

struct StepCoeffs {
  float sqrt_a = 1.f;        // sqrt(abar_t)
  float sqrt_1ma = 0.f;      // sqrt(1 - abar_t)
  float sqrt_a_next = 1.f;   // sqrt(abar_s)
  float dir = 0.f;           // sqrt(1 - abar_s - sigma^2): weight of eps in x_s
  float sigma = 0.f;         // DDIM noise scale (eta * the DDPM posterior std)
  float guidance = 0.f;      // rho * sqrt(1 - abar_t): multiplies the guidance gradient
};

// The guidance's per-group normalisation d / ||d||: the factor 1 / sqrt of the
// group's sum of squares, 0 for a zero difference (no NaN from 0 / 0).
MDPS_HD float inverse_norm(float sum_sq) {
  const float norm = sqrtf(sum_sq);
  return norm > 0.f ? 1.f / norm : 0.f;
}

// x: x_t, y: the observed image, eps: eps_theta(x_t, t), grad: the guidance
// gradient, m: mask (1 = anomalous, resampled; 0 = normal, kept at y), z: fresh
// noise. Writes x_s and x0_hat. With m = 0 the normal-region epsilon
// (x - sqrt_a y)/sqrt_1ma makes x0_hat exactly y: written as (1-m) y + m x0_m
// so that it holds bit for bit, not only up to rounding.
MDPS_HD void mdps_step_element(float x, float y, float eps, float grad, float m, float z, const StepCoeffs& c,
                               float* x_next, float* x0_hat) {
  float eps_m = eps + c.guidance * grad;
  float eps_n = (x - c.sqrt_a * y) / c.sqrt_1ma;
  float eps_phi = (1.f - m) * eps_n + m * eps_m;
  float x0_m = (x - c.sqrt_1ma * eps_m) / c.sqrt_a;
  float x0 = m == 1.f ? x0_m : (m == 0.f ? y : (1.f - m) * y + m * x0_m);
  *x0_hat = x0;
  *x_next = c.sqrt_a_next * x0 + c.dir * eps_phi + c.sigma * z;
}

// The authors' masked variant: before each step the normal region of x_t is
// replaced by a fresh forward-noising of y with one fixed z.
MDPS_HD float replace_normal_element(float x, float y, float z_fixed, float m, float sqrt_a, float sqrt_1ma) {
  return m != 0.f ? x : sqrt_a * y + sqrt_1ma * z_fixed;
}

}  // namespace mdps
