#include "engine/anomaly_map.h"
#include "engine/cpu_image_ops.h"
#include "engine/sampler.h"
#include <algorithm>

namespace mdps {

namespace {

Tensor feature_term(const ResNetFeatures& fe, const Tensor& image, const Tensor& recon,
                    const std::vector<int>& layers) {
  MDPS_CHECK(!layers.empty(), "anomaly map: no feature layers chosen");
  const int64_t N = image.dim(0), H = image.dim(2), W = image.dim(3);
  std::vector<Tensor> fr = fe.forward(imagenet_normalise(recon), layers);
  std::vector<Tensor> fi = fe.forward(imagenet_normalise(image), layers);
  Tensor sum = Tensor::zeros({N, 1, H, W});
  float* ps = sum.data();
  for (size_t l = 0; l < layers.size(); ++l) {
    Tensor d = hostops::cosine_distance(hostops::mean_pool3x3(hostops::to_host(fr[l])),
                                        hostops::mean_pool3x3(hostops::to_host(fi[l])));
    Tensor up = hostops::resize_bilinear_align_corners(d, H, W);
    const float* pu = up.data();
    for (int64_t i = 0; i < sum.numel(); ++i) ps[i] += pu[i];
  }
  return sum;
}

float max_of(const Tensor& t) {
  const float* p = t.data();
  return *std::max_element(p, p + t.numel());
}

}  // namespace

AnomalyMaps anomaly_map(const ResNetFeatures* features, const Tensor& image, const Tensor& recon,
                        const AnomalyMapSettings& s) {
  MDPS_CHECK(image.defined() && recon.defined() && image.ndim() == 4 && image.dim(1) == 3 &&
                 image.shape() == recon.shape() && image.numel() > 0,
             "anomaly map: image ", image.defined() ? image.describe() : std::string("undefined"),
             " and reconstruction ", recon.defined() ? recon.describe() : std::string("undefined"),
             " must both be [N,3,H,W] of one shape");
  const int64_t N = image.dim(0), H = image.dim(2), W = image.dim(3);
  Tensor pixel = hostops::to_host(pixel_anomaly_map(recon, image));
  Tensor feature, mix;
  if (features) {
    feature = feature_term(*features, image, recon, s.layers);
    const float maxF = max_of(feature), maxP = max_of(pixel);
    const float w = maxP > 0.f ? s.eta * (maxF / maxP) : 0.f;
    mix = Tensor::empty({N, 1, H, W});
    const float* pf = feature.data();
    const float* pp = pixel.data();
    float* pm = mix.data();
    for (int64_t i = 0; i < mix.numel(); ++i) pm[i] = pf[i] + w * pp[i];
  } else {
    feature = Tensor::zeros({N, 1, H, W});
    mix = pixel;
  }
  Tensor combined = hostops::gaussian_blur(mix, s.blur_kernel, s.blur_sigma);
  float* pc = combined.data();
  for (int64_t i = 0; i < combined.numel(); ++i) pc[i] /= 2.f;

  auto back = [&](const Tensor& t) { return image.device() == Device::CPU ? t : t.to(image.backend()); };
  return AnomalyMaps{back(pixel), back(feature), back(combined)};
}

std::vector<float> image_scores(const Tensor& maps, ImageScoreKind kind, int k) {
  MDPS_CHECK(maps.defined() && maps.ndim() == 4 && maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ",
             maps.defined() ? maps.describe() : std::string("undefined"), " are not [N,1,H,W]");
  Tensor h = hostops::to_host(maps);
  const int64_t N = h.dim(0), HW = h.dim(2) * h.dim(3);
  std::vector<float> out(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float* p = h.data() + n * HW;
    out[size_t(n)] = float(kind == ImageScoreKind::Authors ? hostops::softmax_topk_sum(p, HW, k)
                                                           : hostops::topk_mean(p, HW, k));
  }
  return out;
}

}  // namespace mdps
