// The CUDA backend's the fully connected layer and its backward, through gemm; the CPU's are in
// kernels/cpu/linear.cpp, the checks every backend shares in engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include <algorithm>

namespace mdps {

using cuda::OpRange;

void CudaBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  OpRange range("linear");
  // Leading dimensions of x are rows, as on the CPU.
  const int64_t in = w.dim(1), out = w.dim(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const int64_t ldi = std::max<int64_t>(1, in), ldo = std::max<int64_t>(1, out);
  gemm(false, true, rows, out, in, 1.f, x.data(), ldi, 0, w.data(), ldi, 0, 0.f, y.data(), ldo, 0, 1);
  if (b) elementwise(cuda::EwOp::Add, &y, b, y, 0.f, 0.f, 1, ldo);
}

// Leading dimensions of x are rows, as on the CPU: dx = dy w, dw = dy^T x,
// db = column sums of dy.
void CudaBackend::linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                       Tensor* db) {
  OpRange range("linear_backward");
  const int64_t in = w.dim(1), out = w.dim(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const int64_t ldi = std::max<int64_t>(1, in), ldo = std::max<int64_t>(1, out);
  if (dx) {
    if (out == 0) fill(*dx, 0.f);
    else gemm(false, false, rows, in, out, 1.f, dy.data(), ldo, 0, w.data(), ldi, 0, 0.f, dx->data(), ldi, 0, 1);
  }
  if (dw) {
    if (rows == 0) fill(*dw, 0.f);
    else gemm(true, false, out, in, rows, 1.f, dy.data(), ldo, 0, x.data(), ldi, 0, 0.f, dw->data(), ldi, 0, 1);
  }
  if (db) {
    cuda::launch_column_sum(dy.data(), db->data(), rows, out, stream_);
  }
}

}  // namespace mdps
