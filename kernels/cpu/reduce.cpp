// Whole-tensor sums into a 1-element tensor, accumulated in double.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {

namespace {
// Fixed blocks whose double partials are added in order: the result does not
// depend on the thread count.
template <typename F>
double reduce_sum(const Tensor& x, F block_sum) {
  const float* X = x.data();
  const int64_t n = x.numel(), block = 65536, nblocks = (n + block - 1) / block;
  std::vector<double> partial(size_t(nblocks), 0.0);
  parallel_for(nblocks, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) partial[size_t(k)] = block_sum(X + k * block, std::min(block, n - k * block));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}
}  // namespace

void CpuBackend::sum_impl(const Tensor& x, Tensor& out) {
  out.data()[0] = float(reduce_sum(x, [](const float* p, int64_t n) { return cpu::sum_d(p, n); }));
}

void CpuBackend::sum_squares_impl(const Tensor& x, Tensor& out) {
  out.data()[0] = float(reduce_sum(x, [](const float* p, int64_t n) { return cpu::sum_sq_dev_d(p, n, 0.0); }));
}

}  // namespace mdps
