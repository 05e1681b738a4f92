#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/shared/anomaly_map_arith.h"
#include "engine/core/backend.h"
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace mdps::hostops {

namespace {

void check_nchw(const Tensor& x, const char* op) {
  MDPS_CHECK(x.defined() && x.ndim() == 4, op, ": input must be [N, C, H, W], got ",
             x.defined() ? x.describe() : std::string("an undefined tensor"));
  MDPS_CHECK(x.device() == Device::CPU && x.dtype() == DType::F32, op, ": input ", x.describe(),
             " must be a float32 CPU tensor");
}

}  // namespace

Tensor to_host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(cpu_backend()); }

Tensor max_pool3x3_s2(const Tensor& x) {
  check_nchw(x, "max_pool3x3_s2");
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), Ho, Wo});
  const float* px = x.data();
  float* py = y.data();
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) py[(c * Ho + oh) * Wo + ow] = max_pool3x3_s2_at(px + c * H * W, H, W, oh, ow);
  return y;
}

Tensor imagenet_normalise(const Tensor& x) {
  check_nchw(x, "imagenet_normalise");
  MDPS_CHECK(x.dim(1) == 3, "imagenet_normalise: images ", x.describe(), " are not [N,3,H,W]");
  const int64_t N = x.dim(0), HW = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < HW; ++i) py[(n * 3 + c) * HW + i] = imagenet_normalised(px[(n * 3 + c) * HW + i], c);
  return y;
}

Tensor pixel_distance(const Tensor& a, const Tensor& b) {
  check_nchw(a, "pixel_distance");
  check_nchw(b, "pixel_distance");
  MDPS_CHECK(a.shape() == b.shape() && a.dim(1) == 3, "pixel_distance: images ", a.describe(), " and ",
             b.describe(), " must both be [N,3,H,W] of one shape");
  const int64_t N = a.dim(0), HW = a.dim(2) * a.dim(3);
  Tensor y = Tensor::empty({N, 1, a.dim(2), a.dim(3)});
  const float *pa = a.data(), *pb = b.data();
  float* py = y.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HW; ++i) py[n * HW + i] = pixel_distance_at(pa + n * 3 * HW + i, pb + n * 3 * HW + i, HW);
  return y;
}

Tensor mean_pool3x3(const Tensor& x) {
  check_nchw(x, "mean_pool3x3");
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for (int64_t c = 0; c < NC; ++c)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) py[(c * H + h) * W + w] = mean_pool3x3_at(px + c * H * W, H, W, h, w);
  return y;
}

Tensor cosine_distance(const Tensor& a, const Tensor& b, float eps) {
  check_nchw(a, "cosine_distance");
  check_nchw(b, "cosine_distance");
  MDPS_CHECK(a.shape() == b.shape(), "cosine_distance: shapes differ, ", a.describe(), " vs ", b.describe());
  const int64_t N = a.dim(0), C = a.dim(1), HW = a.dim(2) * a.dim(3);
  Tensor y = Tensor::empty({N, 1, a.dim(2), a.dim(3)});
  const float* pa = a.data();
  const float* pb = b.data();
  float* py = y.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HW; ++i) {
      CosineDistance d;
      for (int64_t c = 0; c < C; ++c) d.add(pa[(n * C + c) * HW + i], pb[(n * C + c) * HW + i]);
      py[n * HW + i] = d.value(eps);
    }
  return y;
}

Tensor resize_bilinear_align_corners(const Tensor& x, int64_t H, int64_t W) {
  check_nchw(x, "resize_bilinear_align_corners");
  MDPS_CHECK(H > 0 && W > 0, "resize_bilinear_align_corners: invalid output size ", H, "x", W);
  const int64_t NC = x.dim(0) * x.dim(1), Hi = x.dim(2), Wi = x.dim(3);
  // Source index and weight per output row / column, as ATen computes them.
  auto axis = [](int64_t in, int64_t out, std::vector<int64_t>& i0, std::vector<int64_t>& i1,
                 std::vector<float>& l1) {
    i0.resize(size_t(out));
    i1.resize(size_t(out));
    l1.resize(size_t(out));
    for (int64_t o = 0; o < out; ++o) {
      const BilinearTap t = bilinear_tap_align_corners(in, out, o);
      i0[size_t(o)] = t.i0;
      i1[size_t(o)] = t.i1;
      l1[size_t(o)] = t.l1;
    }
  };
  std::vector<int64_t> h0, h1, w0, w1;
  std::vector<float> lh, lw;
  axis(Hi, H, h0, h1, lh);
  axis(Wi, W, w0, w1, lw);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), H, W});
  const float* px = x.data();
  float* py = y.data();
  for (int64_t c = 0; c < NC; ++c) {
    const float* xc = px + c * Hi * Wi;
    float* yc = py + c * H * W;
    for (int64_t oh = 0; oh < H; ++oh) {
      const float a1 = lh[size_t(oh)];
      const float* r0 = xc + h0[size_t(oh)] * Wi;
      const float* r1 = xc + h1[size_t(oh)] * Wi;
      for (int64_t ow = 0; ow < W; ++ow) {
        const int64_t j0 = w0[size_t(ow)], j1 = w1[size_t(ow)];
        yc[oh * W + ow] = bilinear_mix(a1, lw[size_t(ow)], r0[j0], r0[j1], r1[j0], r1[j1]);
      }
    }
  }
  return y;
}

std::vector<float> gaussian_kernel1d(int kernel, float sigma) {
  MDPS_CHECK(kernel >= 1 && kernel % 2 == 1, "gaussian blur: kernel size ", kernel, " must be odd and positive");
  MDPS_CHECK(sigma > 0.f, "gaussian blur: sigma ", sigma, " must be positive");
  std::vector<float> k(static_cast<size_t>(kernel));
  const float half = float(kernel - 1) * 0.5f;
  const float step = kernel > 1 ? 2.f * half / float(kernel - 1) : 0.f;
  double sum = 0;
  for (int i = 0; i < kernel; ++i) {
    float x = -half + step * float(i);
    float t = x / sigma;
    k[size_t(i)] = std::exp(-0.5f * t * t);
    sum += k[size_t(i)];
  }
  for (float& v : k) v = float(v / sum);
  return k;
}

int64_t reflect_index(int64_t i, int64_t n) { return mdps::reflect_index(i, n); }

Tensor gaussian_blur(const Tensor& x, int kernel, float sigma) {
  check_nchw(x, "gaussian_blur");
  const std::vector<float> k = gaussian_kernel1d(kernel, sigma);
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  std::vector<double> tmp(size_t(H * W));
  for (int64_t c = 0; c < NC; ++c) {
    const float* xc = px + c * H * W;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) tmp[size_t(h * W + w)] = gaussian_row_at(xc + h * W, W, w, k.data(), kernel);
    float* yc = py + c * H * W;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) yc[h * W + w] = gaussian_column_at(tmp.data(), H, W, h, w, k.data(), kernel);
  }
  return y;
}

namespace {
// The k largest of v, descending.
std::vector<double> top_k(std::vector<double> v, int k) {
  MDPS_CHECK(k >= 1, "image score: k = ", k, " must be at least 1");
  MDPS_CHECK(!v.empty(), "image score: empty map");
  size_t kk = std::min(v.size(), size_t(k));
  std::partial_sort(v.begin(), v.begin() + long(kk), v.end(), std::greater<double>());
  v.resize(kk);
  return v;
}
}  // namespace

double softmax_topk_sum(const float* v, int64_t n, int k) {
  MDPS_CHECK(n >= 1, "image score: empty map");
  double m = v[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, double(v[i]));
  std::vector<double> e(static_cast<size_t>(n));
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += (e[size_t(i)] = softmax_term(v[i], m));
  double s = 0;
  for (double t : top_k(std::move(e), k)) s += t;
  return s / z;
}

double topk_mean(const float* v, int64_t n, int k) {
  std::vector<double> d(v, v + n);
  std::vector<double> t = top_k(std::move(d), k);
  double s = 0;
  for (double x : t) s += x;
  return s / double(t.size());
}

}  // namespace mdps::hostops
