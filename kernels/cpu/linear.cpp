// Fully connected layer y = x w^T + b over the last dimension; leading
// dimensions of x are flattened into rows.
//
// Batch invariance: the products run one index of x's first dimension (one
// image of a batch) at a time, so their shape never depends on the batch and
// OpenBLAS picks the same kernel for an image in every batch (its
// small-matrix kernel, taken below about 1e6 multiply-adds, sums in another
// order than its blocked one). The time embedding's layers are the ones a
// U-Net has, [1, C] per image: tiny next to its convolutions, and below
// kSmallLinear multiply-adds they are loops of dot products (the same bits
// for an image alone or in any batch, too).
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

// One vector per item and a product this small (the time embedding's
// layers: [1, 32 .. 128] by [128, 128] per image) is a loop of dot products on
// the calling thread: through cpu::sgemm each image's product went to the pool
// and back, 8 round trips per layer, 37 us a layer; here 23 us (30 layers a
// forward of the 64x64 U-Net, batch 8; AMD Zen 5). Each output is b + the dot
// product in double, summed in an order fixed by `in` alone.
constexpr int64_t kSmallLinear = int64_t(1) << 20;  // multiply-adds
bool small_vectors(const LinearDims& d) { return d.rows == d.items && d.rows * d.in * d.out <= kSmallLinear; }

void CpuBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  LinearDims d = linear_dims(x, w);
  float* Y = y.data();
  if (small_vectors(d)) {
    const float *X = x.data(), *Wt = w.data(), *B = b ? b->data() : nullptr;
    for (int64_t r = 0; r < d.rows; ++r)
      for (int64_t o = 0; o < d.out; ++o)
        Y[r * d.out + o] = float((B ? double(B[o]) : 0.0) + cpu::dot_d(X + r * d.in, Wt + o * d.in, d.in));
    return;
  }
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
  if (dx && small_vectors(d)) {  // dx[r] = sum over o of dy[r, o] w[o], o in order
    const float *DY = dy.data(), *Wt = w.data();
    float* DX = dx->data();
    for (int64_t r = 0; r < d.rows; ++r) {
      float* dxr = DX + r * d.in;
      std::fill(dxr, dxr + d.in, 0.f);
      for (int64_t o = 0; o < d.out; ++o) {
        const float g = DY[r * d.out + o];
        const float* wo = Wt + o * d.in;
        for (int64_t k = 0; k < d.in; ++k) dxr[k] += g * wo[k];
      }
    }
  } else if (dx) {
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
