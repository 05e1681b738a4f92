#include "engine/detect/anomaly_map.h"
#include <cmath>
#include "engine/core/option_checks.h"
#include "engine/core/trace.h"
#include <algorithm>
#include <cmath>

namespace mdps {

namespace {

// Sum over the chosen stages of the resized per-stage distances, [N,1,H,W]
// on the images' backend.
Tensor feature_term(const ResNetFeatures& fe, const Tensor& image, const Tensor& recon,
                    const std::vector<int>& layers) {
  MDPS_CHECK(!layers.empty(), "anomaly map: no feature layers chosen");
  Backend& be = image.backend();
  const int64_t N = image.dim(0), H = image.dim(2), W = image.dim(3);
  std::vector<Tensor> fr = fe.forward(imagenet_normalise(recon), layers);
  std::vector<Tensor> fi = fe.forward(imagenet_normalise(image), layers);
  Tensor sum = Tensor::empty({N, 1, H, W}, be);
  for (size_t l = 0; l < layers.size(); ++l) {
    const Tensor r = fr[l].device() == image.device() ? fr[l] : fr[l].to(be);
    const Tensor i = fi[l].device() == image.device() ? fi[l] : fi[l].to(be);
    Tensor d = Tensor::empty({N, 1, r.dim(2), r.dim(3)}, be);
    be.pooled_cosine_distance(r, i, d, 1e-8f);
    Tensor up = l == 0 ? sum : Tensor::empty({N, 1, H, W}, be);
    be.resize_bilinear_align_corners(d, up);
    if (l > 0) be.add(sum, up, sum);
  }
  return sum;
}

}  // namespace

Tensor pixel_anomaly_map(const Tensor& a, const Tensor& b) {
  MDPS_CHECK(a.defined() && b.defined() && a.shape() == b.shape() && a.ndim() == 4 && a.dim(1) == 3,
             "pixel map: images ", a.describe(), " and ", b.describe(), " must both be [N,3,H,W] of one shape");
  trace::Scope op("pixel_anomaly_map");
  Backend& be = a.backend();
  Tensor out = Tensor::empty({a.dim(0), 1, a.dim(2), a.dim(3)}, be);
  be.pixel_distance(a, b.device() == a.device() ? b : b.to(be), out);
  return out;
}

Tensor combine_anomaly_terms(const Tensor& pixel, const Tensor& feature, const AnomalyMapSettings& s,
                             const TermMaxima* maxima) {
  Backend& be = pixel.backend();
  const int64_t N = pixel.dim(0), H = pixel.dim(2), W = pixel.dim(3);
  Tensor mix;
  if (feature.defined()) {
    Tensor max_f = Tensor::empty({1}, be), max_p = Tensor::empty({1}, be);
    if (maxima) {
      be.fill(max_f, maxima->feature);
      be.fill(max_p, maxima->pixel);
    } else {
      be.max(feature, max_f);
      be.max(pixel, max_p);
    }
    mix = Tensor::empty({N, 1, H, W}, be);
    be.anomaly_mix(feature, pixel, max_f, max_p, s.eta, mix);
  } else {
    mix = pixel;
  }
  Tensor combined = Tensor::empty({N, 1, H, W}, be);
  be.gaussian_blur(mix, s.blur_kernel, s.blur_sigma, combined);
  be.scale(combined, 0.5f, combined);
  return combined;
}

AnomalyMaps anomaly_map(const ResNetFeatures* features, const Tensor& image, const Tensor& recon,
                        const AnomalyMapSettings& s, const TermMaxima* maxima) {
  MDPS_CHECK(image.defined() && recon.defined() && image.ndim() == 4 && image.dim(1) == 3 &&
                 image.shape() == recon.shape() && image.numel() > 0,
             "anomaly map: image ", image.defined() ? image.describe() : std::string("undefined"),
             " and reconstruction ", recon.defined() ? recon.describe() : std::string("undefined"),
             " must both be [N,3,H,W] of one shape");
  // Every step runs on the image's backend; nothing waits until a map is read.
  trace::Scope span("anomaly_map", "span");
  if (span.active()) span.shape("image", image.shape());
  Backend& be = image.backend();
  const Tensor rec = recon.device() == image.device() ? recon : recon.to(be);
  const int64_t N = image.dim(0), H = image.dim(2), W = image.dim(3);
  Tensor pixel = pixel_anomaly_map(rec, image);
  Tensor feature;
  if (features) feature = feature_term(*features, image, rec, s.layers);
  Tensor combined = combine_anomaly_terms(pixel, feature, s, maxima);
  if (!features) feature = Tensor::zeros({N, 1, H, W}, be);
  return AnomalyMaps{pixel, feature, combined};
}

const char* image_score_name(ImageScoreKind kind) {
  switch (kind) {
    case ImageScoreKind::Authors: return "authors";
    case ImageScoreKind::TopKMean: return "topk-mean";
    case ImageScoreKind::Max: return "max";
    case ImageScoreKind::TopFraction: return "topk-fraction";
  }
  return "?";
}

ImageScoreKind parse_image_score(const std::string& v) {
  for (ImageScoreKind k : {ImageScoreKind::Authors, ImageScoreKind::TopKMean, ImageScoreKind::Max,
                           ImageScoreKind::TopFraction})
    if (v == image_score_name(k)) return k;
  throw UsageError(cat("--image-score: '", v, "' is not authors, topk-mean, max or topk-fraction"));
}

std::vector<float> image_scores(const Tensor& maps, ImageScoreKind kind, int k, float fraction) {
  MDPS_CHECK(maps.defined() && maps.ndim() == 4 && maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ",
             maps.defined() ? maps.describe() : std::string("undefined"), " are not [N,1,H,W]");
  // A non-finite map or score is an error, never a decision: NaN > threshold
  // is false and would pass the image as OK.
  const std::vector<float> v = maps.to_vector();
  const size_t plane = size_t(maps.dim(2)) * size_t(maps.dim(3));
  for (size_t i = 0; i < v.size(); ++i)
    MDPS_CHECK(std::isfinite(v[i]), "the anomaly map of image ", i / plane + 1, " of ", maps.dim(0), " is not finite (",
               v[i], " at pixel ", i % plane, "): the model or the feature extractor computes non-finite values ",
               "(weights too large, or a diverged training); no score or decision is given");
  const int64_t hw = maps.dim(2) * maps.dim(3);
  if (kind == ImageScoreKind::Max) {
    kind = ImageScoreKind::TopKMean;
    k = 1;
  } else if (kind == ImageScoreKind::TopFraction) {
    MDPS_USAGE_CHECK(fraction > 0.f && fraction <= 1.f, "--image-score-fraction must be in (0, 1], got ", fraction);
    kind = ImageScoreKind::TopKMean;
    k = int(std::min<int64_t>(hw, std::max<int64_t>(1, int64_t(std::ceil(double(fraction) * double(hw) - 1e-9)))));
  }
  std::vector<double> s = maps.backend().image_scores(maps, kind, k);
  for (size_t i = 0; i < s.size(); ++i)
    MDPS_CHECK(std::isfinite(float(s[i])), "the image score of image ", i + 1, " of ", s.size(), " is not finite (",
               s[i], "); no decision is given");
  return std::vector<float>(s.begin(), s.end());
}

}  // namespace mdps
