// The bits of a float32 and back, on the host (memcpy) and in device code
// (the intrinsics), for the code that works on the encoding: the bf16 casts
// (kernels/shared/bf16.h) and the top-k score's order-preserving keys.
#pragma once
#include "engine/core/common.h"
#include <stdint.h>
#include <string.h>

namespace mdps {

MDPS_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

MDPS_HD float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

}  // namespace mdps
