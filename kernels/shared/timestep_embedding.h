// The arithmetic of the sinusoidal timestep embedding, shared by the CPU
// backend and the CUDA kernel (MDPS_HD) so both round the same way: the
// frequency f_i = exp(-ln(10000) i / half) and the argument t f_i are rounded
// to float32 step by step as torch computes them (large t, up to ~1000, then
// gives torch's phase); exp, sin and cos are evaluated in double and rounded.
#pragma once
#include "engine/core/common.h"
#include <math.h>

namespace mdps {

MDPS_HD float timestep_frequency(int64_t i, int64_t half) {
  const float neg_log = float(-::log(10000.0));
  float a = neg_log * float(i);
  a = a / float(half);
  return float(::exp(double(a)));
}

// Row n of the embedding, y[i] = sin(t f_i), y[half + i] = cos(t f_i), for one i.
MDPS_HD void timestep_embedding_pair(float t, float freq, float* sin_out, float* cos_out) {
  const float arg = t * freq;
  *sin_out = float(::sin(double(arg)));
  *cos_out = float(::cos(double(arg)));
}

}  // namespace mdps
