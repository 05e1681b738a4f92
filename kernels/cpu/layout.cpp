// Channel concatenation/split, 2x2 average pooling and 2x nearest
// upsampling, with their backward ops. Pooling floors odd sizes like
// torch.nn.functional.avg_pool2d(x, 2).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include <cstring>

namespace mdps {

namespace {
// Copies channel blocks between a [N, Cs, HW] tensor and channels
// [c_off, c_off + Cs) of a [N, Cy, HW] tensor (to_y picks the direction).
void copy_channels(float* s, int64_t Cs, float* y, int64_t Cy, int64_t c_off, int64_t N, int64_t HW, bool to_y) {
  const int64_t block = Cs * HW;
  cpu::parallel_rows(N, block, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      float* sp = s + n * block;
      float* yp = y + (n * Cy + c_off) * HW;
      if (block == 0) continue;
      if (to_y)
        std::memcpy(yp, sp, sizeof(float) * size_t(block));
      else
        std::memcpy(sp, yp, sizeof(float) * size_t(block));
    }
  });
}
}  // namespace

void CpuBackend::concat_channels_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  const int64_t N = a.dim(0), Ca = a.dim(1), H = a.dim(2), W = a.dim(3), Cb = b.dim(1);
  copy_channels(const_cast<float*>(a.data()), Ca, y.data(), Ca + Cb, 0, N, H * W, true);
  copy_channels(const_cast<float*>(b.data()), Cb, y.data(), Ca + Cb, Ca, N, H * W, true);
}

void CpuBackend::split_channels_impl(const Tensor& y, Tensor* a, Tensor* b) {
  // The public op has matched the outputs' channels to the input's.
  const int64_t N = y.dim(0), C = y.dim(1), H = y.dim(2), W = y.dim(3);
  const int64_t Ca = a ? a->dim(1) : C - b->dim(1);
  float* Y = const_cast<float*>(y.data());
  if (a) copy_channels(a->data(), Ca, Y, C, 0, N, H * W, false);
  if (b) copy_channels(b->data(), C - Ca, Y, C, Ca, N, H * W, false);
}

void CpuBackend::avg_pool2_impl(const Tensor& x, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), Ho = H / 2, Wo = W / 2;
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_rows(N * C, H * W, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xp = X + r * H * W;
      float* yp = Y + r * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const float* r0 = xp + 2 * i * W;
        const float* r1 = r0 + W;
        for (int64_t j = 0; j < Wo; ++j)
          yp[i * Wo + j] = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * 0.25f;
      }
    }
  });
}

void CpuBackend::avg_pool2_backward_impl(const Tensor& dy, Tensor& dx) {
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3), Ho = H / 2, Wo = W / 2;
  const float* DY = dy.data();
  float* DX = dx.data();
  cpu::parallel_rows(N * C, H * W, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* xp = DX + r * H * W;
      const float* yp = DY + r * Ho * Wo;
      // Rows/columns dropped by the floor get no gradient.
      std::memset(xp, 0, sizeof(float) * size_t(H * W));
      for (int64_t i = 0; i < Ho; ++i) {
        float* r0 = xp + 2 * i * W;
        float* r1 = r0 + W;
        for (int64_t j = 0; j < Wo; ++j) {
          float g = yp[i * Wo + j] * 0.25f;
          r0[2 * j] = g;
          r0[2 * j + 1] = g;
          r1[2 * j] = g;
          r1[2 * j + 1] = g;
        }
      }
    }
  });
}

void CpuBackend::upsample_nearest2_impl(const Tensor& x, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const float* X = x.data();
  float* Y = y.data();
  cpu::parallel_rows(N * C, 4 * H * W, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xp = X + r * H * W;
      float* yp = Y + r * 4 * H * W;
      for (int64_t i = 0; i < H; ++i) {
        float* y0 = yp + 2 * i * 2 * W;
        for (int64_t j = 0; j < W; ++j) y0[2 * j] = y0[2 * j + 1] = xp[i * W + j];
        std::memcpy(y0 + 2 * W, y0, sizeof(float) * size_t(2 * W));
      }
    }
  });
}

void CpuBackend::upsample_nearest2_backward_impl(const Tensor& dy, Tensor& dx) {
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  const float* DY = dy.data();
  float* DX = dx.data();
  cpu::parallel_rows(N * C, 4 * H * W, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* xp = DX + r * H * W;
      const float* yp = DY + r * 4 * H * W;
      for (int64_t i = 0; i < H; ++i) {
        const float* y0 = yp + 2 * i * 2 * W;
        const float* y1 = y0 + 2 * W;
        for (int64_t j = 0; j < W; ++j) xp[i * W + j] = (y0[2 * j] + y0[2 * j + 1]) + (y1[2 * j] + y1[2 * j + 1]);
      }
    }
  });
}

}  // namespace mdps
