#include "kernels/cuda/launchers.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/gaussian_blur_kernel.cuh"

namespace mdps::cuda {

void launch_gaussian_blur(const float* x, double* tmp, float* y, int64_t planes, int64_t H, int64_t W,
                          const float* taps, int kernel, Stream stream) {
  MDPS_CHECK(kernel >= 1 && kernel % 2 == 1 && kernel <= kMaxBlurTaps, "gaussian_blur: kernel size ", kernel,
             " must be odd and at most ", kMaxBlurTaps);
  const int64_t n = planes * H * W;
  if (n == 0) return;
  BlurTaps t{};
  for (int i = 0; i < kernel; ++i) t.w[i] = taps[i];
  t.kernel = kernel;
  MDPS_LAUNCH(gaussian_blur_rows_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(x, tmp, W, n, t);
  check_launch("gaussian_blur rows");
  MDPS_LAUNCH(gaussian_blur_columns_kernel, elementwise_blocks(n), kElementwiseBlock, stream)(tmp, y, H, W, n, t);
  check_launch("gaussian_blur columns");
}

}  // namespace mdps::cuda
