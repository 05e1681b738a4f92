#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/elementwise_kernel.cuh"

namespace mdps::cuda {

void launch_elementwise(EwOp op, const float* a, const float* b, float* y, float alpha, float beta, int64_t n,
                        int64_t b_div, int64_t b_mod, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(elementwise_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(op, a, b, y, alpha, beta, n, b_div,
                                                                             b_mod);
  check_launch("elementwise");
}

}  // namespace mdps::cuda
