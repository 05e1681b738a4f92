// F.interpolate(mode="bilinear", align_corners=True), one output element per
// thread (grid-stride): each thread recomputes its row's and column's source
// taps (a few float operations, cheaper than a table in memory) with the CPU's
// arithmetic (kernels/shared/anomaly_map_arith.h), so the two agree bit for bit under
// emulation.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/shared/anomaly_map_arith.h"

namespace mdps::cuda {

// x: [planes, Hi, Wi] -> y: [planes, H, W]; n_out = planes * H * W.
MDPS_KERNEL void resize_bilinear_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t Hi, int64_t Wi,
                                        int64_t H, int64_t W, int64_t n_out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += stride) {
    const int64_t ow = o % W, oh = (o / W) % H, p = o / (W * H);
    const BilinearTap th = bilinear_tap_align_corners(Hi, H, oh), tw = bilinear_tap_align_corners(Wi, W, ow);
    const float* r0 = x + (p * Hi + th.i0) * Wi;
    const float* r1 = x + (p * Hi + th.i1) * Wi;
    y[o] = bilinear_mix(th.l1, tw.l1, r0[tw.i0], r0[tw.i1], r1[tw.i0], r1[tw.i1]);
  }
}

}  // namespace mdps::cuda
