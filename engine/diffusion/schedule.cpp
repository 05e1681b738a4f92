#include "engine/diffusion/schedule.h"
#include "engine/core/common.h"

namespace mdps {

NoiseSchedule::NoiseSchedule(int steps, double beta_start, double beta_end) {
  MDPS_CHECK(steps >= 2, "noise schedule needs at least 2 steps, got ", steps);
  // torch.linspace(beta_start, beta_end, steps) then cumprod(1 - beta); kept in
  // double so float32 consumers see correctly rounded values.
  abar_.resize(size_t(steps));
  double prod = 1.0;
  for (int i = 0; i < steps; ++i) {
    double beta = beta_start + (beta_end - beta_start) * double(i) / double(steps - 1);
    prod *= 1.0 - beta;
    abar_[size_t(i)] = prod;
  }
}

double NoiseSchedule::alpha_bar(int t) const {
  if (t < 0) return 1.0;
  MDPS_CHECK(t < steps(), "timestep ", t, " is beyond the schedule's ", steps(), " steps");
  return abar_[size_t(t)];
}

}  // namespace mdps
