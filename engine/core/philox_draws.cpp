#include "engine/core/philox_draws.h"
#include "engine/core/common.h"
#include "kernels/shared/philox.h"

namespace mdps {

void philox_fill_normal(float* dst, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
  MDPS_CHECK(n >= 0, "philox_fill_normal: negative count ", n);
  int64_t i = 0;
  // Leading elements up to a block boundary, then whole blocks, then the tail.
  while (i < n && ((offset + uint64_t(i)) & 3) != 0) {
    dst[i] = philox::normal_at(seed, stream, offset + uint64_t(i));
    ++i;
  }
  for (; i + 4 <= n; i += 4) {
    float z[4];
    philox::normals_of_block(seed, stream, (offset + uint64_t(i)) >> 2, z);
    dst[i] = z[0];
    dst[i + 1] = z[1];
    dst[i + 2] = z[2];
    dst[i + 3] = z[3];
  }
  for (; i < n; ++i) dst[i] = philox::normal_at(seed, stream, offset + uint64_t(i));
}

uint64_t philox_uniform_int(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
  MDPS_CHECK(n > 0 && n <= (uint64_t(1) << 32), "philox_uniform_int: range n = ", n,
             " must be in [1, 2^32]");
  return philox::uniform_int_at(seed, stream, index, n);
}

}  // namespace mdps
