// The perceptual feature extractor: a torchvision-style ResNet (BasicBlock or
// Bottleneck, any depth and width) read from a safetensors state dict, run in
// eval mode up to a requested stage. The architecture is inferred from the
// tensor names and shapes (conv3 present -> Bottleneck; blocks per layer from
// the indices present; widths from the weights), so resnet18/34/50 and the
// wide variants the method uses load with the same code. BatchNorm (eps 1e-5)
// is folded into each convolution at load.
#pragma once
#include "engine/core/backend.h"
#include "engine/io/safetensors.h"
#include "engine/core/tensor.h"
#include <string>
#include <vector>

namespace mdps {

// ImageNet normalisation of images in [-1,1]: ((x+1)/2 - mean) / std per
// channel, mean (0.485,0.456,0.406), std (0.229,0.224,0.225). [N,3,H,W], same backend.
Tensor imagenet_normalise(const Tensor& x_in_minus1_1);

// The deepest stage `layers` (the perceptual term's stages, each 1..4) use:
// how far an extractor must be loaded or stored. Throws naming --layers when
// the list is empty or a stage is out of range. The one place this is decided.
int deepest_stage(const std::vector<int>& layers);

class ResNetFeatures {
 public:
  // Reads `prefix`conv1.weight, `prefix`bn1.*, `prefix`layerL.B.* for L up to
  // deepest_layer (1..4). Throws naming the file when a tensor is missing or
  // its shape does not fit a ResNet.
  static ResNetFeatures load(const SafeTensorsFile& f, const std::string& prefix, int deepest_layer,
                             Backend& backend);

  // Outputs of the requested stages (1-based, each <= deepest_layer(), in the
  // order asked) for ImageNet-normalised images [N,3,H,W] (on any backend; the
  // outputs live on the extractor's backend).
  std::vector<Tensor> forward(const Tensor& images_normalised, const std::vector<int>& layers) const;

  int deepest_layer() const { return int(layers_.size()); }
  bool bottleneck() const { return bottleneck_; }
  std::vector<int> blocks_per_layer() const;
  int64_t channels(int layer) const;  // output channels of stage `layer`
  Backend& backend() const { return *backend_; }

 private:
  struct Conv {
    Tensor w, b;  // BatchNorm folded in
    ConvGeom g;
  };
  struct Block {
    Conv c1, c2, c3;  // c3 only in Bottleneck blocks
    bool has_down = false;
    Conv down;
  };
  Tensor conv(const Conv& c, const Tensor& x, bool relu) const;
  Tensor run_block(const Block& b, const Tensor& x) const;

  Backend* backend_ = nullptr;
  bool bottleneck_ = false;
  Conv stem_;
  std::vector<std::vector<Block>> layers_;
};

}  // namespace mdps
