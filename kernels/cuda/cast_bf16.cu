#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/cast_bf16_kernel.cuh"

namespace mdps::cuda {

void launch_float_to_bf16(const float* x, uint16_t* y, int64_t n, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(float_to_bf16_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, n);
  check_launch("float_to_bf16");
}

void launch_bf16_to_float(const uint16_t* x, float* y, int64_t n, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(bf16_to_float_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, y, n);
  check_launch("bf16_to_float");
}

}  // namespace mdps::cuda
