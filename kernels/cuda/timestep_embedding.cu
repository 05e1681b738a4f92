#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/timestep_embedding_kernel.cuh"

namespace mdps::cuda {

void launch_timestep_embedding(const float* t, float* y, int64_t N, int64_t dim, Stream stream) {
  const int64_t items = N * (dim / 2 + dim % 2);
  if (items == 0) return;
  MDPS_LAUNCH(timestep_embedding_kernel, elementwise_blocks(items), kElementwiseBlock, stream)(t, y, N, dim);
  check_launch("timestep_embedding");
}

}  // namespace mdps::cuda
