// SiLU and last-dimension softmax with their backward ops.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/core/trace.h"

namespace mdps {

void CpuBackend::silu_impl(const Tensor& x, Tensor& y) {
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_elems(x.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) Y[i] = cpu::siluf(X[i]);
  });
}

void CpuBackend::silu_backward_impl(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const float* X = x.data();
  const float* DY = dy.data();
  float* DX = dx.data();
  // d/dx x s(x) = s(x) (1 + x (1 - s(x)))
  cpu::parallel_elems(x.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float s = cpu::sigmoidf(X[i]);
      DX[i] = DY[i] * s * (1.f + X[i] * (1.f - s));
    }
  });
}

void CpuBackend::softmax_impl(const Tensor& x, Tensor& y) {
  const int64_t L = x.dim(-1);
  if (L == 0) return;
  const int64_t rows = x.numel() / L;
  trace::Scope ts("softmax", "kernel");
  if (ts.active()) ts.shape("x", x.shape()).bytes(2 * x.numel() * int64_t(sizeof(float)));
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_rows(rows, L, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) cpu::softmax_row(X + r * L, Y + r * L, L);
  });
}

void CpuBackend::softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) {
  const int64_t L = y.dim(-1);
  if (L == 0) return;
  const int64_t rows = y.numel() / L;
  trace::Scope ts("softmax_backward", "kernel");
  if (ts.active()) ts.shape("y", y.shape()).bytes(3 * y.numel() * int64_t(sizeof(float)));
  const float* Yp = y.data();
  const float* DY = dy.data();
  float* DX = dx.data();
  cpu::parallel_rows(rows, L, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) cpu::softmax_backward_row(Yp + r * L, DY + r * L, DX + r * L, L);
  });
}

}  // namespace mdps
