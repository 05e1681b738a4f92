// Same-shape elementwise arithmetic (no broadcasting; outputs may alias
// inputs) and the per-(sample, channel) bias with its reduction.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/shared/mdps_step.h"

namespace mdps {

namespace {
template <typename F>
void binary(const Tensor& a, const Tensor& b, Tensor& y, const char* op, F f) {
  cpu::check_cpu(a, op);
  check_shape(b, a.shape(), cat(op, " second operand"));
  check_shape(y, a.shape(), cat(op, " output"));
  const float* A = a.data();
  const float* B = b.data();
  float* Y = y.data();
  cpu::parallel_elems(a.numel(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) Y[i] = f(A[i], B[i]);
  });
}
}  // namespace

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, "add", [](float p, float q) { return p + q; });
}
void CpuBackend::sub(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, "sub", [](float p, float q) { return p - q; });
}
void CpuBackend::mul(const Tensor& a, const Tensor& b, Tensor& y) {
  binary(a, b, y, "mul", [](float p, float q) { return p * q; });
}

void CpuBackend::scale(const Tensor& x, float alpha, Tensor& y) {
  cpu::check_cpu(x, "scale input");
  check_shape(y, x.shape(), "scale output");
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_elems(x.numel(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) Y[i] = alpha * X[i];
  });
}

void CpuBackend::scale_by_inverse_sqrt(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  cpu::check_cpu(sum_sq, "scale_by_inverse_sqrt sum of squares");
  MDPS_CHECK(sum_sq.numel() == 1, "scale_by_inverse_sqrt: the sum of squares must hold one element, got ",
             shape_str(sum_sq.shape()));
  scale(x, inverse_norm(sum_sq.data()[0]), y);
}

void CpuBackend::axpby(float alpha, const Tensor& x, float beta, Tensor& y) {
  cpu::check_cpu(x, "axpby x");
  check_shape(y, x.shape(), "axpby y");
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

void CpuBackend::add_channel_bias(const Tensor& x, const Tensor& v, Tensor& y) {
  cpu::check_cpu(x, "add_channel_bias input");
  MDPS_CHECK(x.ndim() >= 2, "add_channel_bias: input must be [N, C, ...], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1);
  check_shape(v, {N, C}, "add_channel_bias bias");
  check_shape(y, x.shape(), "add_channel_bias output");
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

void CpuBackend::sum_hw(const Tensor& dy, Tensor& dv) {
  cpu::check_cpu(dy, "sum_hw input");
  MDPS_CHECK(dy.ndim() >= 2, "sum_hw: input must be [N, C, ...], got ", shape_str(dy.shape()));
  const int64_t N = dy.dim(0), C = dy.dim(1);
  check_shape(dv, {N, C}, "sum_hw output");
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
