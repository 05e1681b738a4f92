// The CUDA backend's the sinusoidal timestep embedding; the CPU's are in
// kernels/cpu/timestep_embedding.cpp, the checks every backend shares in
// engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;

void CudaBackend::timestep_embedding_impl(const Tensor& t, Tensor& y) {
  OpRange range("timestep_embedding");
  cuda::launch_timestep_embedding(t.data(), y.data(), t.dim(0), y.dim(1), stream_);
}

}  // namespace mdps
