// The elementwise ops of the backend in one grid-stride kernel:
// y[i] = f(a[i], b[(i / b_div) % b_mod]), so the second operand may be a full
// tensor (b_div = 1, b_mod = n), a row bias (b_div = 1, b_mod = row length) or
// a per-(n, c) value broadcast over H*W (b_div = H*W, b_mod = N*C).
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/ew_op.h"
#include "kernels/shared/mdps_step.h"
#include <math.h>

namespace mdps::cuda {

// Operands an op does not read may be null; y may alias a or b.
MDPS_KERNEL void elementwise_kernel(EwOp op, const float* a, const float* b, float* y, float alpha, float beta,
                                    int64_t n, int64_t b_div, int64_t b_mod) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t j = (i / b_div) % b_mod;
    float r;
    switch (op) {
      case EwOp::Fill: r = alpha; break;
      case EwOp::Add: r = a[i] + b[j]; break;
      case EwOp::Sub: r = a[i] - b[j]; break;
      case EwOp::Mul: r = a[i] * b[j]; break;
      case EwOp::Scale: r = alpha * a[i]; break;
      case EwOp::Axpby: r = alpha * a[i] + beta * b[j]; break;
      case EwOp::Silu: r = a[i] / (1.f + expf(-a[i])); break;
      case EwOp::Relu: r = a[i] > 0.f ? a[i] : 0.f; break;  // NaN -> 0, as the CPU's
      case EwOp::ScaleByInverseSqrt: r = inverse_norm(b[j]) * a[i]; break;
      default: {
        const float s = 1.f / (1.f + expf(-a[i]));
        r = b[j] * s * (1.f + a[i] * (1.f - s));
      }
    }
    y[i] = r;
  }
}

}  // namespace mdps::cuda
