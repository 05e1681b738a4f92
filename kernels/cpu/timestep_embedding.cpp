// Sinusoidal timestep embedding: y[n] = [sin(t f_i)..., cos(t f_i)...],
// f_i = exp(-ln(10000) i / half). The frequencies and arguments are rounded
// to float32 step by step as torch computes them, so large t (up to ~1000)
// gives the same phase; an odd dim gets a zero last column.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {

void CpuBackend::timestep_embedding(const Tensor& t, Tensor& y) {
  cpu::check_cpu(t, "timestep_embedding t");
  MDPS_CHECK(t.ndim() == 1, "timestep_embedding: t must be [N], got ", shape_str(t.shape()));
  cpu::check_cpu(y, "timestep_embedding output");
  MDPS_CHECK(y.ndim() == 2 && y.dim(0) == t.dim(0), "timestep_embedding: output must be [", t.dim(0),
             ", dim], got ", shape_str(y.shape()));
  const int64_t N = t.dim(0), dim = y.dim(1), half = dim / 2;
  const float neg_log = float(-std::log(10000.0));
  std::vector<float> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    float a = neg_log * float(i);
    a = a / float(half);
    freqs[size_t(i)] = float(std::exp(double(a)));
  }
  const float* T = t.data();
  float* Y = y.data();
  for (int64_t n = 0; n < N; ++n) {
    float* row = Y + n * dim;
    for (int64_t i = 0; i < half; ++i) {
      float arg = T[n] * freqs[size_t(i)];
      row[i] = float(std::sin(double(arg)));
      row[half + i] = float(std::cos(double(arg)));
    }
    if (dim % 2) row[dim - 1] = 0.f;
  }
}

}  // namespace mdps
