// The separable Gaussian blur of the combined anomaly map (torchvision's
// gaussian_blur: odd kernel, reflect border) as two grid-stride passes, one
// output element per thread: rows into a double plane, then columns from it
// rounded to float. The double intermediate and the tap order are the CPU's
// (kernels/shared/anomaly_map_arith.h), so the results agree bit for bit under
// emulation. The taps travel by value in the kernel parameters (constant
// bank), so the launch needs no device copy of them.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// The longest kernel the parameter block carries (odd sizes up to this).
constexpr int kMaxBlurTaps = 127;
struct BlurTaps {
  float w[kMaxBlurTaps];
  int kernel;
};

// x: [planes, H, W] -> tmp (double, same shape); n = planes * H * W.
MDPS_KERNEL void gaussian_blur_rows_kernel(const float* __restrict__ x, double* __restrict__ tmp, int64_t W,
                                           int64_t n, BlurTaps taps) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride)
    tmp[o] = gaussian_row_at(x + (o / W) * W, W, o % W, taps.w, taps.kernel);
}

// tmp: [planes, H, W] -> y (float, same shape).
MDPS_KERNEL void gaussian_blur_columns_kernel(const double* __restrict__ tmp, float* __restrict__ y, int64_t H,
                                              int64_t W, int64_t n, BlurTaps taps) {
  const int64_t HW = H * W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride) {
    const int64_t i = o % HW;
    y[o] = gaussian_column_at(tmp + (o - i), H, W, i / W, i % W, taps.w, taps.kernel);
  }
}

}  // namespace mdps::cuda
