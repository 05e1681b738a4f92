// One Adam / AdamW step, following torch.optim.Adam's single-tensor path
// operation by operation (lerp for the first moment, addcmul for the second,
// addcdiv for the update; scalars computed in double, applied in float).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {

void CpuBackend::adam_update_impl(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                                  int64_t step) {
  const double lr = p.lr, b1 = p.beta1, b2 = p.beta2, wd = p.weight_decay;
  const double bc1 = 1.0 - std::pow(b1, double(step));
  const double bc2 = 1.0 - std::pow(b2, double(step));
  const float neg_step_size = float(-(lr / bc1));
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float eps = p.eps, fwd = float(wd), w1 = float(1.0 - b1), fb2 = float(b2), w2 = float(1.0 - b2);
  const float decay = float(1.0 - lr * wd);
  const bool decoupled = p.decoupled, coupled_wd = !p.decoupled && wd != 0.0;
  const bool apply_decay = decoupled && wd != 0.0;
  float* P = param.data();
  const float* G = grad.data();
  float* Mp = m.data();
  float* V = v.data();
  cpu::parallel_elems(param.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float pi = P[i];
      if (apply_decay) pi = pi * decay;
      float g = G[i];
      if (coupled_wd) g = g + fwd * pi;
      // torch lerp with weight < 0.5: m + w (g - m); otherwise g - (g - m)(1 - w)
      float mi = Mp[i];
      mi = w1 < 0.5f ? mi + w1 * (g - mi) : g - (g - mi) * (1.f - w1);
      float vi = V[i] * fb2;
      vi = vi + w2 * g * g;
      float denom = std::sqrt(vi) / bc2_sqrt + eps;
      P[i] = pi + neg_step_size * mi / denom;
      Mp[i] = mi;
      V[i] = vi;
    }
  });
}

}  // namespace mdps
