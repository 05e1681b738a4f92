#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/replace_normal_kernel.cuh"

namespace mdps::cuda {

void launch_replace_normal(float* x, const float* y, const float* z_fixed, const float* mask, float sqrt_a,
                           float sqrt_1ma, int64_t n, int64_t chw, int64_t hw, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(replace_normal_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, z_fixed, mask, sqrt_a,
                                                                                sqrt_1ma, n, chw, hw);
  check_launch("replace_normal");
}

}  // namespace mdps::cuda
