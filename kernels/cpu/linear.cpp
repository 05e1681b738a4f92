// Fully connected layer y = x w^T + b over the last dimension; leading
// dimensions of x are flattened into rows.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {

namespace {
struct LinearDims {
  int64_t rows, in, out;
};
// The public op has checked that x ends in w's in_features.
LinearDims linear_dims(const Tensor& x, const Tensor& w) {
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  return {rows, w.dim(1), w.dim(0)};
}
}  // namespace

void CpuBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  LinearDims d = linear_dims(x, w);
  float* Y = y.data();
  float beta = 0.f;
  if (b) {
    const float* B = b->data();
    for (int64_t r = 0; r < d.rows; ++r) std::copy(B, B + d.out, Y + r * d.out);
    beta = 1.f;
  }
  cpu::sgemm(false, true, d.rows, d.out, d.in, 1.f, x.data(), std::max<int64_t>(1, d.in), w.data(),
             std::max<int64_t>(1, d.in), beta, Y, std::max<int64_t>(1, d.out));
}

void CpuBackend::linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                      Tensor* db) {
  LinearDims d = linear_dims(x, w);
  const int64_t ldi = std::max<int64_t>(1, d.in), ldo = std::max<int64_t>(1, d.out);
  if (dx) {
    cpu::sgemm(false, false, d.rows, d.in, d.out, 1.f, dy.data(), ldo, w.data(), ldi, 0.f, dx->data(), ldi);
  }
  if (dw) {
    cpu::sgemm(true, false, d.out, d.in, d.rows, 1.f, dy.data(), ldo, x.data(), ldi, 0.f, dw->data(), ldi);
  }
  if (db) {
    const float* DY = dy.data();
    float* DB = db->data();
    cpu::parallel_rows(d.out, d.rows, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        double s = 0;
        for (int64_t r = 0; r < d.rows; ++r) s += DY[r * d.out + o];
        DB[o] = float(s);
      }
    });
  }
}

}  // namespace mdps
