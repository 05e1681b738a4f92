#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/resize_bilinear_kernel.cuh"

namespace mdps::cuda {

void launch_resize_bilinear(const float* x, float* y, int64_t planes, int64_t Hi, int64_t Wi, int64_t H, int64_t W,
                            Stream stream) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  MDPS_CHECK(Hi >= 1 && Wi >= 1, "resize_bilinear: empty input ", Hi, "x", Wi);
  MDPS_LAUNCH(resize_bilinear_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, Hi, Wi, H, W, n);
  check_launch("resize_bilinear");
}

}  // namespace mdps::cuda
