// The anomaly map of an image against its reconstruction, and the image
// score (spec section 5, the authors' code):
//   pixel    P = mean over channels of |norm(recon) - norm(image)|
//   feature  F = sum over the chosen ResNet stages of
//                1 - cos(mean3x3(F_l(recon)), mean3x3(F_l(image))), resized
//                bilinearly (align_corners) to the image size
//   combined   = blur(F + eta * max(F) / max(P) * P) / 2, maxima over the
//                whole batch, Gaussian blur (sigma 4, kernel 33, reflect).
// Without a feature extractor the map is blur(P) / 2 (F is reported as
// zeros): the formula above would weight P by max(F) = 0 and leave nothing.
// When max(P) = 0 (the reconstruction equals the image) the pixel term adds
// nothing instead of the authors' 0/0.
#pragma once
#include "engine/model/resnet.h"
#include "engine/core/tensor.h"
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

// image, recon: [N,3,H,W] in [-1,1].
AnomalyMaps anomaly_map(const ResNetFeatures* features, const Tensor& image, const Tensor& recon,
                        const AnomalyMapSettings& settings);

// One score per map of [N,1,H,W]; k is clamped to H*W.
std::vector<float> image_scores(const Tensor& maps, ImageScoreKind kind, int k = 500);

}  // namespace mdps
