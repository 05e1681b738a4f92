#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/softmax_kernel.cuh"

namespace mdps::cuda {

void launch_softmax(const float* x, float* y, int64_t rows, int64_t L, Stream stream) {
  if (rows == 0 || L == 0) return;
  MDPS_CHECK(rows < (int64_t(1) << 31), "softmax: ", rows, " rows exceed the grid limit");
  MDPS_LAUNCH(softmax_kernel, unsigned(rows), kReduceBlock, stream)(x, y, L);
  check_launch("softmax");
}

}  // namespace mdps::cuda
