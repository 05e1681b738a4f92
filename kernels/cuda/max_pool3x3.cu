#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/max_pool3x3_kernel.cuh"

namespace mdps::cuda {

void launch_max_pool3x3_s2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream) {
  const int64_t Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1, n = planes * Ho * Wo;
  if (n == 0) return;
  MDPS_LAUNCH(max_pool3x3_s2_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, H, W, Ho, Wo, n);
  check_launch("max_pool3x3_s2");
}

}  // namespace mdps::cuda
