#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/channels_kernel.cuh"
#include "kernels/cuda/pool_kernel.cuh"
#include "kernels/cuda/upsample_kernel.cuh"

namespace mdps::cuda {

void launch_copy_channels(float* src, int64_t Cs, float* dst, int64_t Cd, int64_t c_off, int64_t N, int64_t hw,
                          bool to_dst, Stream stream) {
  const int64_t n = N * Cs * hw;
  if (n == 0) return;
  MDPS_LAUNCH(copy_channels_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(src, Cs, dst, Cd, c_off, hw, n,
                                                                                 to_dst);
  check_launch("copy_channels");
}

void launch_avg_pool2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream) {
  const int64_t n = planes * (H / 2) * (W / 2);
  if (n == 0) return;
  MDPS_LAUNCH(avg_pool2_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, H, W, n);
  check_launch("avg_pool2");
}

void launch_avg_pool2_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W, Stream stream) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  MDPS_LAUNCH(avg_pool2_backward_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(dy, dx, H, W, n);
  check_launch("avg_pool2_backward");
}

void launch_upsample_nearest2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream) {
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return;
  MDPS_LAUNCH(upsample_nearest2_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, H, W, n);
  check_launch("upsample_nearest2");
}

void launch_upsample_nearest2_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                       Stream stream) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  MDPS_LAUNCH(upsample_nearest2_backward_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(dy, dx, H, W, n);
  check_launch("upsample_nearest2_backward");
}

}  // namespace mdps::cuda
