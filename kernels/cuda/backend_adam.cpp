// The CUDA backend's the Adam / AdamW update; the CPU's are in kernels/cpu/adam.cpp, the checks
// every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;

void CudaBackend::adam_update_impl(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                                   int64_t step) {
  OpRange range("adam_update");
  cuda::launch_adam(param.data(), grad.data(), m.data(), v.data(), p, step, param.numel(), stream_);
}

}  // namespace mdps
