// Launch-error checking shared by the launchers.
#include "kernels/cuda/launchers.h"
#include <cuda_runtime.h>

namespace mdps::cuda {

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  MDPS_CHECK(e == cudaSuccess, "CUDA kernel ", what, ": ", cudaGetErrorString(e));
}

}  // namespace mdps::cuda
