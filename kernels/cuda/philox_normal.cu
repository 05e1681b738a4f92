#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/philox_normal_kernel.cuh"

namespace mdps::cuda {

void launch_philox_normal(float* dst, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, Stream stream) {
  if (n <= 0) return;
  const int64_t blocks4 = int64_t(((offset + uint64_t(n) - 1) >> 2) - (offset >> 2)) + 1;
  MDPS_LAUNCH(philox_normal_kernel, elementwise_blocks(blocks4), kElementwiseBlock, stream)(dst, n, seed, stream_id,
                                                                                      offset);
  check_launch("philox_normal");
}

}  // namespace mdps::cuda
