// Whole-tensor sums into a 1-element tensor, accumulated in double.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include <mutex>

namespace mdps {

namespace {
// Per-chunk double partials combined under a lock; chunks are few (one per thread).
template <typename F>
double reduce_sum(const Tensor& x, F term) {
  const float* X = x.data();
  double total = 0;
  std::mutex mu;
  cpu::parallel_elems(x.numel(), [&](int64_t b, int64_t e) {
    double s = 0;
    for (int64_t i = b; i < e; ++i) s += term(double(X[i]));
    std::lock_guard<std::mutex> lock(mu);
    total += s;
  });
  return total;
}
void check_out(const Tensor& out, const char* op) {
  cpu::check_cpu(out, op);
  MDPS_CHECK(out.numel() == 1, op, ": output must hold one element, got ", shape_str(out.shape()));
}
}  // namespace

void CpuBackend::sum(const Tensor& x, Tensor& out) {
  cpu::check_cpu(x, "sum input");
  check_out(out, "sum");
  out.data()[0] = float(reduce_sum(x, [](double v) { return v; }));
}

void CpuBackend::sum_squares(const Tensor& x, Tensor& out) {
  cpu::check_cpu(x, "sum_squares input");
  check_out(out, "sum_squares");
  out.data()[0] = float(reduce_sum(x, [](double v) { return v * v; }));
}

}  // namespace mdps
