#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/group_norm_backward_kernel.cuh"

namespace mdps::cuda {

void launch_group_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t n_samples, int groups, int64_t cg,
                                int64_t hw, bool silu, float* dx, double* sum_dz, double* sum_dzx, float* dgamma,
                                float* dbeta, Stream stream) {
  const int64_t blocks = n_samples * groups, C = int64_t(groups) * cg;
  if (blocks == 0 || C == 0) return;
  MDPS_CHECK(blocks < (int64_t(1) << 31), "group_norm_backward: ", blocks,
             " (sample, group) pairs exceed the grid limit");
  MDPS_LAUNCH(group_norm_backward_kernel, unsigned(blocks), kReduceBlock, stream)(dy, x, gamma, beta, mean, rstd, groups,
                                                                             cg, hw, silu, dx, sum_dz, sum_dzx);
  check_launch("group_norm_backward");
  if (!dgamma && !dbeta) return;
  MDPS_LAUNCH(group_norm_param_grad_kernel, elementwise_blocks(C), kElementwiseBlock, stream)(sum_dz, sum_dzx, n_samples,
                                                                                         C, dgamma, dbeta);
  check_launch("group_norm_backward parameters");
}

}  // namespace mdps::cuda
