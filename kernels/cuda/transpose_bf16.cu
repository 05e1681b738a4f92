#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/transpose_bf16_kernel.cuh"
#include "engine/core/common.h"

namespace mdps::cuda {

namespace {
dim3 transpose_grid(int64_t n, int64_t R, int64_t C) {
  MDPS_CHECK(transpose_tiles_along(R, kTransposeTile) <= 65535, "transpose: ", R,
             " rows exceed the grid's y extent (65535 tiles of ", kTransposeTile, ")");
  return dim3(transpose_tiles_along(C, kTransposeTile), transpose_tiles_along(R, kTransposeTile),
              transpose_batch_blocks(n));
}
}  // namespace

void launch_transpose_to_bf16(const float* x, uint16_t* y, int64_t n, int64_t R, int64_t C, Stream stream) {
  if (n == 0 || R == 0 || C == 0) return;
  MDPS_LAUNCH(transpose_to_bf16_kernel, transpose_grid(n, R, C), dim3(kTransposeTile, kTransposeRows), stream)(x, y, n, R,
                                                                                                         C);
  check_launch("transpose_to_bf16");
}

void launch_transpose_from_bf16(const uint16_t* x, float* y, int64_t n, int64_t R, int64_t C, Stream stream) {
  if (n == 0 || R == 0 || C == 0) return;
  MDPS_LAUNCH(transpose_from_bf16_kernel, transpose_grid(n, R, C), dim3(kTransposeTile, kTransposeRows), stream)(x, y, n,
                                                                                                           R, C);
  check_launch("transpose_from_bf16");
}

}  // namespace mdps::cuda
