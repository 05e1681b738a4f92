// Host-side image ops the feature extractor and the anomaly map need beyond
// the backend's op set, each matching the PyTorch / torchvision op the
// authors call. Inputs and outputs are float32 NCHW CPU tensors; a tensor on
// another backend is an error (callers move it with to_host()).
#pragma once
#include "engine/core/tensor.h"
#include <vector>

namespace mdps::hostops {

// `t` itself when it lives on the CPU, else a CPU copy.
Tensor to_host(const Tensor& t);

// nn.MaxPool2d(3, stride 2, padding 1): padding never wins the max.
Tensor max_pool3x3_s2(const Tensor& x);

// torchvision Normalize with the ImageNet statistics of images in [-1, 1]
// mapped to [0, 1] first, per channel ([N,3,H,W]).
Tensor imagenet_normalise(const Tensor& x);

// The anomaly map's pixel term: per pixel the mean over the 3 channels of
// |imagenet_normalise(a) - imagenet_normalise(b)|, [N,3,H,W] x2 -> [N,1,H,W].
Tensor pixel_distance(const Tensor& a, const Tensor& b);

// nn.AvgPool2d(3, stride 1, padding 1) with count_include_pad: every output is
// the 3x3 window sum over 9, zeros outside the image.
Tensor mean_pool3x3(const Tensor& x);

// 1 - cosine similarity over channels, [N,C,H,W] x2 -> [N,1,H,W]. Each norm
// is clamped to eps before dividing, as torch.cosine_similarity does.
Tensor cosine_distance(const Tensor& a, const Tensor& b, float eps = 1e-8f);

// F.interpolate(mode="bilinear", align_corners=True) to [N,C,H,W].
Tensor resize_bilinear_align_corners(const Tensor& x, int64_t H, int64_t W);

// torchvision's 1-D Gaussian: exp(-x^2 / (2 sigma^2)) at x = linspace(-(k-1)/2,
// (k-1)/2, k), normalised to sum 1.
std::vector<float> gaussian_kernel1d(int kernel, float sigma);

// Index into [0, n) for a reflect-padded position (edge not repeated: -1 -> 1);
// positions further out than n-1 keep bouncing, so any size is accepted.
int64_t reflect_index(int64_t i, int64_t n);

// torchvision gaussian_blur: odd kernel, reflect border, per channel.
Tensor gaussian_blur(const Tensor& x, int kernel, float sigma);

// Sum of the k largest entries of softmax(v) (k clamped to v's size).
double softmax_topk_sum(const float* v, int64_t n, int k);
// Mean of the k largest entries of v (k clamped to v's size).
double topk_mean(const float* v, int64_t n, int k);

}  // namespace mdps::hostops
