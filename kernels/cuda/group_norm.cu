#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/group_norm_kernel.cuh"

namespace mdps::cuda {

void launch_group_norm(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t n_samples, int groups, int64_t cg, int64_t hw, float eps, bool silu, Stream stream) {
  const int64_t blocks = n_samples * groups;
  if (blocks == 0 || cg * hw == 0) return;
  MDPS_CHECK(blocks < (int64_t(1) << 31), "group_norm: ", blocks, " (sample, group) pairs exceed the grid limit");
  MDPS_LAUNCH(group_norm_kernel, unsigned(blocks), kReduceBlock, stream)(x, gamma, beta, y, mean, rstd, groups, cg, hw,
                                                                    eps, silu);
  check_launch("group_norm");
}

}  // namespace mdps::cuda
