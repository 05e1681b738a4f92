#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/topk_score_kernel.cuh"

namespace mdps::cuda {

void launch_topk_score(const float* maps, int64_t n_maps, int64_t n, int k, bool softmax, double* out,
                       Stream stream) {
  if (n_maps == 0) return;
  MDPS_CHECK(n >= 1, "image score: empty map");
  MDPS_CHECK(k >= 1, "image score: k = ", k, " must be at least 1");
  MDPS_CHECK(std::min<int64_t>(k, n) <= kTopKCapacity, "image score: k = ", k, " exceeds the ", kTopKCapacity,
             " values the CUDA top-k sorts in shared memory");
  MDPS_CHECK(n < (int64_t(1) << 32), "image score: maps of ", n, " pixels overflow the 32-bit histograms");
  MDPS_CHECK(n_maps < (int64_t(1) << 31), "image score: ", n_maps, " maps exceed the grid limit");
  MDPS_LAUNCH(topk_score_kernel, unsigned(n_maps), kTopKBlock, stream)(maps, n, k, softmax, out);
  check_launch("topk_score");
}

}  // namespace mdps::cuda
