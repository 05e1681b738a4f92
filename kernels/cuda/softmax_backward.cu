#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/softmax_backward_kernel.cuh"

namespace mdps::cuda {

void launch_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t L, Stream stream) {
  if (rows == 0 || L == 0) return;
  MDPS_CHECK(rows < (int64_t(1) << 31), "softmax_backward: ", rows, " rows exceed the grid limit");
  MDPS_LAUNCH(softmax_backward_kernel, unsigned(rows), kReduceBlock, stream)(y, dy, dx, L);
  check_launch("softmax_backward");
}

}  // namespace mdps::cuda
