// Same-shape elementwise arithmetic (no broadcasting; outputs may alias
// inputs) and the per-(sample, channel) bias with its reduction.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/shared/mdps_step.h"

namespace mdps {

namespace {
template <typename F>
void binary(const Tensor& a, const Tensor& b, Tensor& y, F f) {
  const float* A = a.data();
  const float* B = b.data();
  float* Y = y.data();
  cpu::parallel_elems(a.numel(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) Y[i] = f(A[i], B[i]);
  });
}
}  // namespace

void CpuBackend::add_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, [](float p, float q) { return p + q; });
}
void CpuBackend::sub_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, [](float p, float q) { return p - q; });
}
void CpuBackend::mul_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, [](float p, float q) { return p * q; });
}

void CpuBackend::scale_impl(const Tensor& x, float alpha, Tensor& y) {
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_elems(x.numel(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) Y[i] = alpha * X[i];
  });
}

void CpuBackend::scale_by_inverse_sqrt_impl(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  scale_impl(x, inverse_norm(sum_sq.data()[0]), y);
}

void CpuBackend::axpby_impl(float alpha, const Tensor& x, float beta, Tensor& y) {
  const float* X = x.data();
  float* Y = y.data();
  // As in BLAS, beta == 0 does not read y (it may hold garbage or NaN).
  if (beta == 0.f) {
    cpu::parallel_elems(x.numel(), [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) Y[i] = alpha * X[i];
    });
  } else {
    cpu::parallel_elems(x.numel(), [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) Y[i] = alpha * X[i] + beta * Y[i];
    });
  }
}

void CpuBackend::add_channel_bias_impl(const Tensor& x, const Tensor& v, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  const float* X = x.data();
  const float* V = v.data();
  float* Y = y.data();
  cpu::parallel_rows(N * C, HW, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float add = V[r];
      for (int64_t i = 0; i < HW; ++i) Y[r * HW + i] = X[r * HW + i] + add;
    }
  });
}

void CpuBackend::sum_hw_impl(const Tensor& dy, Tensor& dv) {
  const int64_t N = dy.dim(0), C = dy.dim(1);
  const int64_t HW = N * C != 0 ? dy.numel() / (N * C) : 0;
  const float* DY = dy.data();
  float* DV = dv.data();
  cpu::parallel_rows(N * C, HW, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      DV[r] = float(cpu::sum_d(DY + r * HW, HW));
    }
  });
}

}  // namespace mdps
