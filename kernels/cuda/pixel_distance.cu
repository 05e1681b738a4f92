#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/pixel_distance_kernel.cuh"

namespace mdps::cuda {

void launch_pixel_distance(const float* a, const float* b, float* y, int64_t N, int64_t hw, Stream stream) {
  const int64_t n = N * hw;
  if (n == 0) return;
  MDPS_LAUNCH(pixel_distance_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(a, b, y, hw, n);
  check_launch("pixel_distance");
}

}  // namespace mdps::cuda
