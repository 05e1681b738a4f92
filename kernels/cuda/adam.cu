#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/adam_kernel.cuh"

namespace mdps::cuda {

void launch_adam(float* param, const float* grad, float* m, float* v, const AdamParams& p, int64_t step, int64_t n,
                 Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(adam_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(param, grad, m, v, adam_scalars(p, step), n);
  check_launch("adam");
}

}  // namespace mdps::cuda
