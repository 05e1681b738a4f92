// The CUDA backend's whole-tensor sums into a 1-element tensor; the CPU's are in
// kernels/cpu/reduce.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"

namespace mdps {

using cuda::OpRange;
using cuda::Scratch;

void CudaBackend::sum_impl(const Tensor& x, Tensor& out) {
  OpRange range("sum");
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), false, partial.get(), out.data(), stream_);
}

void CudaBackend::sum_squares_impl(const Tensor& x, Tensor& out) {
  OpRange range("sum_squares");
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), true, partial.get(), out.data(), stream_);
}

}  // namespace mdps
