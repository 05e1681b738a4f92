// The anomaly map of an image against its reconstruction, and the image
// score (spec section 5, the authors' code):
//   pixel    P = mean over channels of |norm(recon) - norm(image)|
//   feature  F = sum over the chosen ResNet stages of
//                1 - cos(mean3x3(F_l(recon)), mean3x3(F_l(image))), resized
//                bilinearly (align_corners) to the image size
//   combined   = blur(F + eta * max(F) / max(P) * P) / 2, maxima over the
//                whole batch (the authors), or given (TermMaxima: taken from
//                normal images by `mdps calibrate`, so that an image's map
//                depends on nothing but the image and the detector),
//                Gaussian blur (sigma 4, kernel 33, reflect).
// Without a feature extractor the map is blur(P) / 2 (F is reported as
// zeros): the formula above would weight P by max(F) = 0 and leave nothing.
// When max(P) = 0 (the reconstruction equals the image) the pixel term adds
// nothing instead of the authors' 0/0.
#pragma once
#include "engine/model/resnet.h"
#include "engine/core/tensor.h"
#include <string>
#include <vector>

namespace mdps {

struct AnomalyMapSettings {
  std::vector<int> layers{2, 3};  // ResNet stages (1-based); the authors skip layer1
  float eta = 7.f;
  float blur_sigma = 4.f;
  int blur_kernel = 33;
};

struct AnomalyMaps {
  Tensor pixel, feature, combined;  // each [N,1,H,W], on the image's backend
};

// The pixel term alone: mean over channels of |norm(a) - norm(b)| with
// ImageNet normalisation of (v+1)/2, [N,1,H,W] on a's backend (also the
// sampler's mask map where no feature extractor is used).
Tensor pixel_anomaly_map(const Tensor& a, const Tensor& b);

// The maxima of the feature and pixel terms the eta combination divides by.
struct TermMaxima {
  float feature = 0.f, pixel = 0.f;
};

// image, recon: [N,3,H,W] in [-1,1]. maxima: null = over the batch (the authors).
AnomalyMaps anomaly_map(const ResNetFeatures* features, const Tensor& image, const Tensor& recon,
                        const AnomalyMapSettings& settings, const TermMaxima* maxima = nullptr);
// The combination step alone, on terms anomaly_map computed (feature
// undefined: no feature extractor, the map is blur(pixel) / 2). The same
// arithmetic as anomaly_map, so terms kept and combined later give the same
// bits as a map computed at once with the same maxima.
Tensor combine_anomaly_terms(const Tensor& pixel, const Tensor& feature, const AnomalyMapSettings& settings,
                             const TermMaxima* maxima = nullptr);

// Per-pixel statistics of normal images' final maps (`mdps calibrate --normal`,
// stored in a detector bundle): the mean and the standard deviation (over the
// images, population) of each pixel of an H x W map. Empty: none. The
// normal-z image score divides by std + mean(std): the mean of std keeps a
// pixel that happened to vary little on the few normal images (the
// background) from turning noise into a score.
struct PixelNormals {
  int height = 0, width = 0;
  std::vector<float> mean, std;
  bool empty() const { return mean.empty(); }
  // Of N maps of H x W (N >= 1) laid one after another.
  static PixelNormals of_maps(const std::vector<float>& maps, size_t N, int H, int W);
  // Throws naming `what` unless mean and std are H*W finite values, std >= 0.
  void check(int H, int W, const std::string& what) const;
};

// (map - mean) / (std + mean(std)) pixel by pixel: the map standardised by
// normal images' maps (normal-z), for N maps laid one after another.
std::vector<float> normal_z_maps(const std::vector<float>& maps, const PixelNormals& normals);
// The normal-z score of each of the N normal maps the statistics would come
// from, each against the statistics of the other N - 1 (leave one out), so a
// quantile of them is what unseen normal images score (N >= 2; for N = 1 the
// image against itself). Equal to of_maps of the others followed by
// normal_z_maps and the maximum, up to rounding.
std::vector<float> normal_z_scores_leave_one_out(const std::vector<float>& maps, size_t N, int H, int W);

// One score per map of [N,1,H,W]; k is clamped to H*W; fraction (in (0,1])
// is used by TopFraction only; normals by NormalZ only (throws when it has
// none, or of another size).
std::vector<float> image_scores(const Tensor& maps, ImageScoreKind kind, int k = 500, float fraction = 0.01f,
                                const PixelNormals* normals = nullptr);
// "authors", "topk-mean", "max", "topk-fraction", "normal-z"; parse throws for others.
const char* image_score_name(ImageScoreKind kind);
ImageScoreKind parse_image_score(const std::string& name);

}  // namespace mdps
