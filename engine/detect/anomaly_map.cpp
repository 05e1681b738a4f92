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
    case ImageScoreKind::NormalZ: return "normal-z";
  }
  return "?";
}

ImageScoreKind parse_image_score(const std::string& v) {
  for (ImageScoreKind k : {ImageScoreKind::Authors, ImageScoreKind::TopKMean, ImageScoreKind::Max,
                           ImageScoreKind::TopFraction, ImageScoreKind::NormalZ})
    if (v == image_score_name(k)) return k;
  throw UsageError(cat("--image-score: '", v, "' is not authors, topk-mean, max, topk-fraction or normal-z"));
}

PixelNormals PixelNormals::of_maps(const std::vector<float>& maps, size_t N, int H, int W) {
  const size_t plane = size_t(H) * size_t(W);
  MDPS_CHECK(N >= 1 && H >= 1 && W >= 1 && maps.size() == N * plane, "pixel statistics: ", maps.size(),
             " values are not ", N, " maps of ", H, "x", W);
  PixelNormals p;
  p.height = H;
  p.width = W;
  p.mean.resize(plane);
  p.std.resize(plane);
  for (size_t i = 0; i < plane; ++i) {
    // Two passes in double: the deviations are small beside the values.
    double sum = 0.0;
    for (size_t n = 0; n < N; ++n) sum += double(maps[n * plane + i]);
    const double mu = sum / double(N);
    double dev = 0.0;
    for (size_t n = 0; n < N; ++n) {
      const double d = double(maps[n * plane + i]) - mu;
      dev += d * d;
    }
    p.mean[i] = float(mu);
    p.std[i] = float(std::sqrt(dev / double(N)));
  }
  return p;
}

void PixelNormals::check(int H, int W, const std::string& what) const {
  const size_t plane = size_t(H) * size_t(W);
  MDPS_CHECK(height == H && width == W && mean.size() == plane && std.size() == plane, what, ": per-pixel statistics of ",
             height, "x", width, " maps (", mean.size(), " and ", std.size(), " values) do not fit maps of ", H, "x", W);
  for (size_t i = 0; i < plane; ++i)
    MDPS_CHECK(std::isfinite(mean[i]) && std::isfinite(std[i]) && std[i] >= 0.f, what, ": per-pixel statistic ",
               i, " is not usable (mean ", mean[i], ", std ", std[i], ")");
}

namespace {

// A non-finite map or score is an error, never a decision: NaN > threshold
// is false and would pass the image as OK.
void check_finite_maps(const std::vector<float>& v, size_t N, size_t plane) {
  for (size_t i = 0; i < v.size(); ++i)
    MDPS_CHECK(std::isfinite(v[i]), "the anomaly map of image ", i / plane + 1, " of ", N, " is not finite (", v[i],
               " at pixel ", i % plane, "): the model or the feature extractor computes non-finite values ",
               "(weights too large, or a diverged training); no score or decision is given");
}

// std + mean(std): the divisor of normal-z, in double over the pixels.
std::vector<double> normal_z_divisors(const std::vector<float>& sd) {
  double m = 0.0;
  for (float v : sd) m += double(v);
  m /= double(std::max<size_t>(1, sd.size()));
  std::vector<double> out(sd.size());
  // A map without any spread on the normal images (all equal) divides by 1.
  for (size_t i = 0; i < sd.size(); ++i) out[i] = m > 0.0 ? double(sd[i]) + m : 1.0;
  return out;
}

}  // namespace

std::vector<float> normal_z_maps(const std::vector<float>& maps, const PixelNormals& normals) {
  const size_t plane = normals.mean.size();
  MDPS_CHECK(plane > 0 && maps.size() % plane == 0, "normal-z: ", maps.size(), " map values are not whole maps of ",
             normals.height, "x", normals.width);
  const std::vector<double> div = normal_z_divisors(normals.std);
  std::vector<float> z(maps.size());
  for (size_t i = 0; i < maps.size(); ++i) {
    const size_t p = i % plane;
    z[i] = float((double(maps[i]) - double(normals.mean[p])) / div[p]);
  }
  return z;
}

std::vector<float> normal_z_scores_leave_one_out(const std::vector<float>& maps, size_t N, int H, int W) {
  const size_t plane = size_t(H) * size_t(W);
  MDPS_CHECK(N >= 1 && maps.size() == N * plane, "normal-z: ", maps.size(), " values are not ", N, " maps of ", H,
             "x", W);
  check_finite_maps(maps, N, plane);
  std::vector<float> out(N);
  if (N == 1) {
    out[0] = 0.f;  // the image against itself: every pixel at its mean
    return out;
  }
  // Sums over all images once; each image's statistics without it follow
  // from them in double (its own value taken out), O(N H W) in all; the
  // score is then normal_z_maps' against those statistics.
  std::vector<double> s1(plane, 0.0), s2(plane, 0.0);
  for (size_t n = 0; n < N; ++n)
    for (size_t p = 0; p < plane; ++p) {
      const double x = double(maps[n * plane + p]);
      s1[p] += x;
      s2[p] += x * x;
    }
  const double m = double(N - 1);
  PixelNormals others{H, W, std::vector<float>(plane), std::vector<float>(plane)};
  for (size_t i = 0; i < N; ++i) {
    const std::vector<float> mine(maps.begin() + long(i * plane), maps.begin() + long((i + 1) * plane));
    for (size_t p = 0; p < plane; ++p) {
      const double x = double(mine[p]), mu = (s1[p] - x) / m;
      others.mean[p] = float(mu);
      others.std[p] = float(std::sqrt(std::max(0.0, (s2[p] - x * x) / m - mu * mu)));
    }
    const std::vector<float> z = normal_z_maps(mine, others);
    out[i] = *std::max_element(z.begin(), z.end());
  }
  return out;
}

std::vector<float> image_scores(const Tensor& maps, ImageScoreKind kind, int k, float fraction,
                                const PixelNormals* normals) {
  MDPS_CHECK(maps.defined() && maps.ndim() == 4 && maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ",
             maps.defined() ? maps.describe() : std::string("undefined"), " are not [N,1,H,W]");
  const std::vector<float> v = maps.to_vector();
  check_finite_maps(v, size_t(maps.dim(0)), size_t(maps.dim(2)) * size_t(maps.dim(3)));
  const int64_t hw = maps.dim(2) * maps.dim(3);
  if (kind == ImageScoreKind::NormalZ) {
    MDPS_USAGE_CHECK(normals && !normals->empty(),
                     "--image-score normal-z needs per-pixel statistics of normal images' maps: a detector "
                     "calibrated on normal images (`mdps calibrate --normal DIR`, calibrated protocol; `mdps eval` "
                     "calibrates first)");
    normals->check(int(maps.dim(2)), int(maps.dim(3)), "--image-score normal-z");
    const Tensor z = Tensor::from_vector(maps.shape(), normal_z_maps(v, *normals));
    return image_scores(z, ImageScoreKind::Max, 1, fraction);
  }
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
