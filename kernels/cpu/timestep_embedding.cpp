// Sinusoidal timestep embedding: y[n] = [sin(t f_i)..., cos(t f_i)...],
// f_i = exp(-ln(10000) i / half); the arithmetic is kernels/shared/timestep_embedding.h
// (shared with the CUDA kernel). An odd dim gets a zero last column.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/shared/timestep_embedding.h"

namespace mdps {

void CpuBackend::timestep_embedding_impl(const Tensor& t, Tensor& y) {
  const int64_t N = t.dim(0), dim = y.dim(1), half = dim / 2;
  std::vector<float> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) freqs[size_t(i)] = timestep_frequency(i, half);
  const float* T = t.data();
  float* Y = y.data();
  for (int64_t n = 0; n < N; ++n) {
    float* row = Y + n * dim;
    for (int64_t i = 0; i < half; ++i) timestep_embedding_pair(T[n], freqs[size_t(i)], &row[i], &row[half + i]);
    if (dim % 2) row[dim - 1] = 0.f;
  }
}

}  // namespace mdps
