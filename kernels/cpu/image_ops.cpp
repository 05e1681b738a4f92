// The feature extractor's and the anomaly map's image ops on the CPU: the
// reference forms of kernels/cpu/cpu_image_ops.h written into the caller's output.
// They run once per image (not per sampler step), so they stay single-threaded
// and plain; the arithmetic per value is kernels/shared/anomaly_map_arith.h's, which
// the CUDA kernels share.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/shared/anomaly_map_arith.h"
#include "kernels/cpu/cpu_image_ops.h"

namespace mdps {

namespace {

// The reference result `r` into the caller's output `y`, whose shape the
// public op has checked (copy_from refuses another size).
void store(const Tensor& r, Tensor& y) { y.copy_from(r); }

}  // namespace

void CpuBackend::relu_impl(const Tensor& x, Tensor& y) {
  const float* px = x.data();
  float* py = y.data();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) py[i] = px[i] > 0.f ? px[i] : 0.f;
}

void CpuBackend::max_pool3x3_s2_impl(const Tensor& x, Tensor& y) { store(hostops::max_pool3x3_s2(x), y); }

void CpuBackend::imagenet_normalise_impl(const Tensor& x, Tensor& y) { store(hostops::imagenet_normalise(x), y); }

void CpuBackend::pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  store(hostops::pixel_distance(a, b), y);
}

void CpuBackend::pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  store(hostops::cosine_distance(hostops::mean_pool3x3(a), hostops::mean_pool3x3(b), eps), y);
}

void CpuBackend::resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) {
  store(hostops::resize_bilinear_align_corners(x, y.dim(2), y.dim(3)), y);
}

void CpuBackend::gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) {
  store(hostops::gaussian_blur(x, kernel, sigma), y);
}

void CpuBackend::max_impl(const Tensor& x, Tensor& out) {
  const float* p = x.data();
  float m = p[0];
  for (int64_t i = 1, n = x.numel(); i < n; ++i) m = max_of(m, p[i]);
  out.data()[0] = m;
}

void CpuBackend::anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                                  Tensor& y) {
  const float w = anomaly_mix_weight(max_f.data()[0], max_p.data()[0], eta);
  const float* pf = f.data();
  const float* pp = p.data();
  float* py = y.data();
  for (int64_t i = 0, n = y.numel(); i < n; ++i) py[i] = pf[i] + w * pp[i];
}

std::vector<double> CpuBackend::image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) {
  const int64_t N = maps.dim(0), HW = maps.dim(2) * maps.dim(3);
  std::vector<double> out(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float* p = maps.data() + n * HW;
    out[size_t(n)] = kind == ImageScoreKind::Authors ? hostops::softmax_topk_sum(p, HW, k) : hostops::topk_mean(p, HW, k);
  }
  return out;
}

}  // namespace mdps
