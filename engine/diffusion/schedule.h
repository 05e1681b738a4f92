// The DDIM noise schedule (spec section 1): linear betas 1e-4..0.02 over 1000
// steps, abar[t] = prod_{i<=t} (1 - beta_i), and abar[-1] = 1.
#pragma once
#include <vector>

namespace mdps {

class NoiseSchedule {
 public:
  explicit NoiseSchedule(int steps = 1000, double beta_start = 1e-4, double beta_end = 0.02);
  int steps() const { return int(abar_.size()); }
  // abar at integer t in [-1, steps-1]; t = -1 gives 1 (the value after the last step).
  double alpha_bar(int t) const;

 private:
  std::vector<double> abar_;
};

}  // namespace mdps
