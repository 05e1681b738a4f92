#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/imagenet_normalise_kernel.cuh"

namespace mdps::cuda {

void launch_imagenet_normalise(const float* x, float* y, int64_t N, int64_t hw, Stream stream) {
  const int64_t n = N * 3 * hw;
  if (n == 0) return;
  MDPS_LAUNCH(imagenet_normalise_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, hw, n);
  check_launch("imagenet_normalise");
}

}  // namespace mdps::cuda
