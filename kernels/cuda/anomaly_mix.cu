#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/anomaly_mix_kernel.cuh"

namespace mdps::cuda {

void launch_anomaly_mix(const float* f, const float* p, const float* max_f, const float* max_p, float eta, float* y,
                        int64_t n, Stream stream) {
  if (n == 0) return;
  MDPS_LAUNCH(anomaly_mix_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(f, p, max_f, max_p, eta, y, n);
  check_launch("anomaly_mix");
}

}  // namespace mdps::cuda
