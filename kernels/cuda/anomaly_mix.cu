#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/anomaly_mix_kernel.cuh"

namespace mdps::cuda {

void launch_anomaly_mix(const float* f, const float* p, const float* max_f, const float* max_p, float eta, float* y,
                        int64_t n, Stream stream) {
  if (n == 0) return;
  anomaly_mix_kernel<<<elementwise_blocks(n), kElementwiseBlock, 0, stream>>>(f, p, max_f, max_p, eta, y, n);
  check_launch("anomaly_mix");
}

}  // namespace mdps::cuda
