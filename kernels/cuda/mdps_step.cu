#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/mdps_step_kernel.cuh"

namespace mdps::cuda {

void launch_mdps_step(const float* x, const float* y, const float* eps, const float* grad, const float* mask,
                      const float* z, const StepCoeffs& c, float* x_next, float* x0_hat, int64_t n, int64_t chw,
                      int64_t hw, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(mdps_step_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, eps, grad, mask, z, c, x_next,
                                                                           x0_hat, n, chw, hw);
  check_launch("mdps_step");
}

}  // namespace mdps::cuda
