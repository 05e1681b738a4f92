#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/reduce_kernel.cuh"

namespace mdps::cuda {

void launch_row_sum(const float* x, float* out, int64_t rows, int64_t L, Stream stream) {
  if (rows == 0) return;
  MDPS_CHECK(rows < (int64_t(1) << 31), "row sum: ", rows, " rows exceed the grid limit");
  MDPS_LAUNCH(row_sum_kernel, unsigned(rows), kReduceBlock, stream)(x, out, L);
  check_launch("row_sum");
}

void launch_column_sum(const float* x, float* out, int64_t rows, int64_t cols, Stream stream) {
  if (cols == 0) return;
  MDPS_LAUNCH(column_sum_kernel, elementwise_blocks(cols), kElementwiseBlock, stream)(x, out, rows, cols);
  check_launch("column_sum");
}

void launch_sum(const float* x, int64_t n, bool squares, double* partial, float* out, Stream stream) {
  const unsigned parts = sum_partial_blocks(n);
  MDPS_LAUNCH(sum_partials_kernel, parts, kReduceBlock, stream)(x, n, squares, partial);
  check_launch("sum partials");
  MDPS_LAUNCH(sum_finish_kernel, 1, kReduceBlock, stream)(partial, int64_t(parts), out);
  check_launch("sum");
}

void launch_max(const float* x, int64_t n, float* partial, float* out, Stream stream) {
  const unsigned parts = sum_partial_blocks(n);
  MDPS_LAUNCH(max_partials_kernel, parts, kReduceBlock, stream)(x, n, partial);
  check_launch("max partials");
  MDPS_LAUNCH(max_finish_kernel, 1, kReduceBlock, stream)(partial, int64_t(parts), out);
  check_launch("max");
}

}  // namespace mdps::cuda
