// The CUDA backend's the engine's stream of standard normals; the CPU's are in
// kernels/cpu/philox_normal.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;

void CudaBackend::philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  OpRange range("philox_normal");
  cuda::launch_philox_normal(x.data(), x.numel(), seed, stream_id, offset, stream_);
}

}  // namespace mdps
