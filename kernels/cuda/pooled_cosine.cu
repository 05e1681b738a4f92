#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/pooled_cosine_kernel.cuh"

namespace mdps::cuda {

void launch_pooled_cosine_distance(const float* a, const float* b, float* y, int64_t N, int64_t C, int64_t H,
                                   int64_t W, float eps, Stream stream) {
  const int64_t n = N * H * W;
  if (n == 0) return;
  MDPS_LAUNCH(pooled_cosine_distance_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(a, b, y, C, H, W, n, eps);
  check_launch("pooled_cosine_distance");
}

}  // namespace mdps::cuda
