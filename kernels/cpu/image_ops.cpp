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

// The reference result `r` into the caller's output `y` of the same shape.
void store(const Tensor& r, Tensor& y, const char* op) {
  cpu::check_cpu(y, op);
  MDPS_CHECK(y.shape() == r.shape(), op, ": output ", y.describe(), " should be ", shape_str(r.shape()));
  y.copy_from(r);
}

void check_scalar(const Tensor& t, const char* what) {
  cpu::check_cpu(t, what);
  MDPS_CHECK(t.numel() == 1, what, ": must hold one element, got ", shape_str(t.shape()));
}

}  // namespace

void CpuBackend::relu(const Tensor& x, Tensor& y) {
  cpu::check_cpu(x, "relu input");
  cpu::check_cpu(y, "relu output");
  MDPS_CHECK(x.shape() == y.shape(), "relu: output ", y.describe(), " should be ", shape_str(x.shape()));
  const float* px = x.data();
  float* py = y.data();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) py[i] = px[i] > 0.f ? px[i] : 0.f;
}

void CpuBackend::max_pool3x3_s2(const Tensor& x, Tensor& y) {
  store(hostops::max_pool3x3_s2(x), y, "max_pool3x3_s2 output");
}

void CpuBackend::imagenet_normalise(const Tensor& x, Tensor& y) {
  store(hostops::imagenet_normalise(x), y, "imagenet_normalise output");
}

void CpuBackend::pixel_distance(const Tensor& a, const Tensor& b, Tensor& y) {
  store(hostops::pixel_distance(a, b), y, "pixel_distance output");
}

void CpuBackend::pooled_cosine_distance(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  store(hostops::cosine_distance(hostops::mean_pool3x3(a), hostops::mean_pool3x3(b), eps), y,
        "pooled_cosine_distance output");
}

void CpuBackend::resize_bilinear_align_corners(const Tensor& x, Tensor& y) {
  cpu::check_cpu(y, "resize_bilinear output");
  MDPS_CHECK(y.ndim() == 4, "resize_bilinear: output ", y.describe(), " is not [N,C,H,W]");
  store(hostops::resize_bilinear_align_corners(x, y.dim(2), y.dim(3)), y, "resize_bilinear output");
}

void CpuBackend::gaussian_blur(const Tensor& x, int kernel, float sigma, Tensor& y) {
  store(hostops::gaussian_blur(x, kernel, sigma), y, "gaussian_blur output");
}

void CpuBackend::max(const Tensor& x, Tensor& out) {
  cpu::check_cpu(x, "max input");
  check_scalar(out, "max output");
  MDPS_CHECK(x.numel() > 0, "max: input ", x.describe(), " is empty");
  const float* p = x.data();
  float m = p[0];
  for (int64_t i = 1, n = x.numel(); i < n; ++i) m = max_of(m, p[i]);
  out.data()[0] = m;
}

void CpuBackend::anomaly_mix(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                             Tensor& y) {
  cpu::check_cpu(f, "anomaly_mix feature term");
  cpu::check_cpu(p, "anomaly_mix pixel term");
  cpu::check_cpu(y, "anomaly_mix output");
  check_scalar(max_f, "anomaly_mix max_f");
  check_scalar(max_p, "anomaly_mix max_p");
  MDPS_CHECK(f.shape() == p.shape() && y.shape() == f.shape(), "anomaly_mix: terms ", f.describe(), " and ",
             p.describe(), ", output ", y.describe(), " must share one shape");
  const float w = anomaly_mix_weight(max_f.data()[0], max_p.data()[0], eta);
  const float* pf = f.data();
  const float* pp = p.data();
  float* py = y.data();
  for (int64_t i = 0, n = y.numel(); i < n; ++i) py[i] = pf[i] + w * pp[i];
}

std::vector<double> CpuBackend::image_scores(const Tensor& maps, ImageScoreKind kind, int k) {
  cpu::check_cpu(maps, "image_scores maps");
  MDPS_CHECK(maps.ndim() == 4 && maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ", maps.describe(),
             " are not [N,1,H,W]");
  const int64_t N = maps.dim(0), HW = maps.dim(2) * maps.dim(3);
  std::vector<double> out(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float* p = maps.data() + n * HW;
    out[size_t(n)] = kind == ImageScoreKind::Authors ? hostops::softmax_topk_sum(p, HW, k) : hostops::topk_mean(p, HW, k);
  }
  return out;
}

}  // namespace mdps
