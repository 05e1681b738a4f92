// The per-pixel arithmetic of the anomaly map (spec section 5), shared by the
// CPU image ops (kernels/cpu/cpu_image_ops.cpp) and the CUDA kernels
// (kernels/cuda/imagenet_normalise, pixel_distance, max_pool3x3, pooled_cosine,
// resize_bilinear, anomaly_mix, gaussian_blur, topk_score)
// through MDPS_HD, so that both compute every value with the same operations
// in the same order: under the kernel emulation the results are bit-equal,
// on a GPU they differ only by nvcc's fma contraction and the device's exp.
#pragma once
#include "engine/core/common.h"
#include <math.h>
#include <stdint.h>

namespace mdps {

// torchvision's Normalize with the ImageNet statistics, applied as the authors
// do to an image in [-1, 1]: ((v + 1) / 2 - mean_c) / std_c, in that order.
MDPS_HD float imagenet_normalised(float v, int64_t c) {
  const float mean = c == 0 ? 0.485f : c == 1 ? 0.456f : 0.406f;
  const float std = c == 0 ? 0.229f : c == 1 ? 0.224f : 0.225f;
  return ((v + 1.f) / 2.f - mean) / std;
}

// The pixel term at one pixel of two RGB images in [-1, 1]: the mean over the
// three channels of |normalised a - normalised b|; a and b point at the pixel
// in channel 0, channels `hw` apart.
MDPS_HD float pixel_distance_at(const float* a, const float* b, int64_t hw) {
  float acc = 0.f;
  for (int64_t c = 0; c < 3; ++c) acc += fabsf(imagenet_normalised(a[c * hw], c) - imagenet_normalised(b[c * hw], c));
  return acc / 3.f;
}

// The larger of m and v as std::max(m, v) picks it (m unless m < v).
MDPS_HD float max_of(float m, float v) { return m < v ? v : m; }

// nn.MaxPool2d(3, stride 2, padding 1) at output (oh, ow) of the plane xc
// [H, W]: the padding never wins, so the window is clipped to the image.
MDPS_HD float max_pool3x3_s2_at(const float* xc, int64_t H, int64_t W, int64_t oh, int64_t ow) {
  const int64_t h0 = 2 * oh > 0 ? 2 * oh - 1 : 0, h1 = 2 * oh + 1 < H ? 2 * oh + 1 : H - 1;
  const int64_t w0 = 2 * ow > 0 ? 2 * ow - 1 : 0, w1 = 2 * ow + 1 < W ? 2 * ow + 1 : W - 1;
  float m = -INFINITY;
  for (int64_t ih = h0; ih <= h1; ++ih)
    for (int64_t iw = w0; iw <= w1; ++iw) m = max_of(m, xc[ih * W + iw]);
  return m;
}

// The weight of the pixel term in the mix F + w P (spec section 5): eta times
// max(F) / max(P) over the batch, and 0 when max(P) = 0 (the reconstruction
// equals the image), where the authors would divide 0 by 0.
MDPS_HD float anomaly_mix_weight(float max_f, float max_p, float eta) { return max_p > 0.f ? eta * (max_f / max_p) : 0.f; }

// nn.AvgPool2d(3, stride 1, padding 1) with count_include_pad at (h, w) of
// the plane xc [H, W]: the in-image part of the 3x3 window, summed row by
// row, over 9 (the zeros outside the image still count).
MDPS_HD float mean_pool3x3_at(const float* xc, int64_t H, int64_t W, int64_t h, int64_t w) {
  const int64_t h0 = h > 0 ? h - 1 : 0, h1 = h + 1 < H ? h + 1 : H - 1;
  const int64_t w0 = w > 0 ? w - 1 : 0, w1 = w + 1 < W ? w + 1 : W - 1;
  float s = 0.f;
  for (int64_t ih = h0; ih <= h1; ++ih)
    for (int64_t iw = w0; iw <= w1; ++iw) s += xc[ih * W + iw];
  return s / 9.f;
}

// 1 - cosine similarity of two vectors fed one component at a time, in
// double; each norm is clamped to eps before dividing, as
// torch.cosine_similarity does (max written as std::max writes it, so a NaN
// norm propagates the same way on both sides).
struct CosineDistance {
  double dot = 0, na = 0, nb = 0;
  MDPS_HD void add(float u, float v) {
    const double a = u, b = v;
    dot += a * b;
    na += a * a;
    nb += b * b;
  }
  MDPS_HD float value(float eps) const {
    const double e = eps, sa = sqrt(na), sb = sqrt(nb);
    const double den = (sa < e ? e : sa) * (sb < e ? e : sb);
    return float(1.0 - dot / den);
  }
};

// One output row or column of F.interpolate(mode="bilinear",
// align_corners=True): the two source indices and the weight of the second,
// computed in float as ATen does.
struct BilinearTap {
  int64_t i0, i1;
  float l1;
};
MDPS_HD BilinearTap bilinear_tap_align_corners(int64_t in, int64_t out, int64_t o) {
  const float scale = out > 1 ? float(in - 1) / float(out - 1) : 0.f;
  // The product rounded on its own on the GPU too: nvcc would otherwise fuse
  // it into the weight's `src - k` as one fma, and the weight would differ
  // from the CPU's by up to (in - 1) 2^-24 while the index does not.
#ifdef __CUDA_ARCH__
  const float src = __fmul_rn(scale, float(o));
#else
  const float src = scale * float(o);
#endif
  const int64_t k = int64_t(src) < in - 1 ? int64_t(src) : in - 1;
  return BilinearTap{k, k < in - 1 ? k + 1 : k, src - float(k)};
}
// The blend of the four neighbours: rows by a1, columns by b1.
MDPS_HD float bilinear_mix(float a1, float b1, float v00, float v01, float v10, float v11) {
  const float a0 = 1.f - a1, b0 = 1.f - b1;
  return a0 * (b0 * v00 + b1 * v01) + a1 * (b0 * v10 + b1 * v11);
}

// Index into [0, n) for a reflect-padded position (edge not repeated:
// -1 -> 1); positions further out than n-1 keep bouncing, so any size works.
MDPS_HD int64_t reflect_index(int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;  // inside: no division on the common path
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// The two passes of the separable Gaussian blur (reflect border), each a
// double sum over the taps in tap order. Rows first: output w of `row` [W].
MDPS_HD double gaussian_row_at(const float* row, int64_t W, int64_t w, const float* taps, int kernel) {
  const int64_t r = kernel / 2;
  double s = 0;
  for (int t = 0; t < kernel; ++t) s += double(taps[t]) * row[reflect_index(w + t - r, W)];
  return s;
}
// Then columns of the row pass's plane [H, W]: output (h, w), rounded to float.
MDPS_HD float gaussian_column_at(const double* plane, int64_t H, int64_t W, int64_t h, int64_t w,
                                 const float* taps, int kernel) {
  const int64_t r = kernel / 2;
  double s = 0;
  for (int t = 0; t < kernel; ++t) s += double(taps[t]) * plane[reflect_index(h + t - r, H) * W + w];
  return float(s);
}

// One term of the authors' image score: softmax numerator exp(v - max) in
// double (the denominator is the sum of these over the map).
MDPS_HD double softmax_term(float v, double max_v) { return exp(double(v) - max_v); }

}  // namespace mdps
