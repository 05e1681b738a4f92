// bfloat16, the storage type of `--precision bf16` products: the upper 16 bits
// of a float32, rounded to nearest, ties to even (as __float2bfloat16_rn and
// torch's .bfloat16() round). Shared by the host and the CUDA cast kernels
// (MDPS_HD) so that both round every value the same way.
#pragma once
#include "kernels/shared/float_bits.h"

namespace mdps {

// The bfloat16 nearest to f (ties to even); a NaN stays a (quiet) NaN of the
// same sign rather than rounding into infinity.
MDPS_HD uint16_t bf16_from_float(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

MDPS_HD float float_from_bf16(uint16_t h) { return float_from_bits(uint32_t(h) << 16); }

}  // namespace mdps
