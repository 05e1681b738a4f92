// CPU body of the fused MDPS step: the per-element arithmetic is
// kernels/shared/mdps_step.h, the same function the CUDA kernel calls.
#include "kernels/cpu/cpu_backend.h"
#include "engine/core/thread_pool.h"

namespace mdps {

void CpuBackend::mdps_step_impl(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad,
                                const Tensor* mask, const Tensor* z, const StepCoeffs& c, Tensor& x_next,
                                Tensor* x0_hat) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  const float *px = x.data(), *py = y.data(), *pe = eps.data();
  const float* pg = grad ? grad->data() : nullptr;
  const float* pm = mask ? mask->data() : nullptr;
  const float* pz = z ? z->data() : nullptr;
  float* pn = x_next.data();
  float* p0 = x0_hat ? x0_hat->data() : nullptr;
  parallel_for(
      N * C,
      [&](int64_t b, int64_t e) {
        for (int64_t nc = b; nc < e; ++nc) {
          const float* mrow = pm ? pm + (nc / C) * HW : nullptr;
          for (int64_t i = nc * HW, j = 0; j < HW; ++i, ++j) {
            float x0;
            mdps_step_element(px[i], py[i], pe[i], pg ? pg[i] : 0.f, mrow ? mrow[j] : 1.f, pz ? pz[i] : 0.f, c,
                              &pn[i], &x0);
            if (p0) p0[i] = x0;
          }
        }
      },
      std::max<int64_t>(1, 16384 / std::max<int64_t>(1, HW)));
}

void CpuBackend::replace_normal_impl(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask,
                                     float sqrt_a, float sqrt_1ma) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  float* px = x.data();
  const float *py = y.data(), *pz = z_fixed.data(), *pm = mask.data();
  parallel_for(N * C, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const float* mrow = pm + (nc / C) * HW;
      for (int64_t i = nc * HW, j = 0; j < HW; ++i, ++j)
        px[i] = replace_normal_element(px[i], py[i], pz[i], mrow[j], sqrt_a, sqrt_1ma);
    }
  });
}

}  // namespace mdps
