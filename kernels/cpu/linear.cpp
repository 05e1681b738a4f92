// Fully connected layer y = x w^T + b over the last dimension; leading
// dimensions of x are flattened into rows.
//
// Batch invariance: the products run one index of x's first dimension (one
// image of a batch) at a time, so their shape never depends on the batch and
// OpenBLAS picks the same kernel for an image in every batch (its
// small-matrix kernel, taken below about 1e6 multiply-adds, sums in another
// order than its blocked one). The time embedding's layers are the ones a
// U-Net has, [1, C] per image: tiny next to its convolutions.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {

namespace {
struct LinearDims {
  int64_t rows, in, out;
  int64_t items;  // x's first dimension (1 for a vector): rows / items per product
};
// The public op has checked that x ends in w's in_features.
LinearDims linear_dims(const Tensor& x, const Tensor& w) {
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const int64_t items = x.ndim() >= 2 && x.dim(0) > 0 ? x.dim(0) : 1;
  return {rows, w.dim(1), w.dim(0), items};
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
  const int64_t per = d.rows / d.items, ldi = std::max<int64_t>(1, d.in), ldo = std::max<int64_t>(1, d.out);
  for (int64_t i = 0; i < d.items; ++i)
    cpu::sgemm(false, true, per, d.out, d.in, 1.f, x.data() + i * per * d.in, ldi, w.data(), ldi, beta,
               Y + i * per * d.out, ldo);
}

void CpuBackend::linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                      Tensor* db) {
  LinearDims d = linear_dims(x, w);
  const int64_t ldi = std::max<int64_t>(1, d.in), ldo = std::max<int64_t>(1, d.out);
  if (dx) {
    const int64_t per = d.rows / d.items;
    for (int64_t i = 0; i < d.items; ++i)
      cpu::sgemm(false, false, per, d.in, d.out, 1.f, dy.data() + i * per * d.out, ldo, w.data(), ldi, 0.f,
                 dx->data() + i * per * d.in, ldi);
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
