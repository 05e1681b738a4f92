#include "engine/model/resnet.h"
#include <algorithm>
#include <cmath>

namespace mdps {

int deepest_stage(const std::vector<int>& layers) {
  MDPS_CHECK(!layers.empty(), "--layers: no ResNet stage chosen");
  const auto [lo, hi] = std::minmax_element(layers.begin(), layers.end());
  MDPS_CHECK(*lo >= 1 && *hi <= 4, "--layers: stages are 1..4");
  return *hi;
}

Tensor imagenet_normalise(const Tensor& x) {
  MDPS_CHECK(x.defined() && x.ndim() == 4 && x.dim(1) == 3, "imagenet_normalise: images ",
             x.defined() ? x.describe() : std::string("undefined"), " are not [N,3,H,W]");
  Tensor y = Tensor::empty(x.shape(), x.backend());
  x.backend().imagenet_normalise(x, y);
  return y;
}

namespace {

constexpr double kBnEps = 1e-5;

// Reads the tensors of one state dict, naming the file in every complaint.
struct Reader {
  const SafeTensorsFile& f;
  const std::string& prefix;

  Tensor get(const std::string& name, const Shape* expected = nullptr) const {
    const std::string full = prefix + name;
    MDPS_CHECK(f.has(full), "ResNet weights ", f.path(), ": missing tensor '", full,
               "' (not a torchvision-style ResNet, or the wrong prefix '", prefix, "')");
    Tensor t = f.read_weights(full);
    if (expected)
      MDPS_CHECK(t.shape() == *expected, "ResNet weights ", f.path(), ": tensor '", full, "' has shape ",
                 shape_str(t.shape()), ", expected ", shape_str(*expected));
    return t;
  }
};

}  // namespace

std::vector<int> ResNetFeatures::blocks_per_layer() const {
  std::vector<int> out;
  for (auto& l : layers_) out.push_back(int(l.size()));
  return out;
}

int64_t ResNetFeatures::channels(int layer) const {
  MDPS_CHECK(layer >= 1 && layer <= deepest_layer(), "ResNet: no layer", layer, " (loaded up to layer",
             deepest_layer(), ")");
  const Block& b = layers_[size_t(layer - 1)].back();
  return (bottleneck_ ? b.c3 : b.c2).w.dim(0);
}

ResNetFeatures ResNetFeatures::load(const SafeTensorsFile& f, const std::string& prefix, int deepest_layer,
                                    Backend& backend) {
  MDPS_CHECK(deepest_layer >= 1 && deepest_layer <= 4, "ResNet weights ", f.path(), ": deepest layer ",
             deepest_layer, " is not in 1..4");
  MemCategoryScope scope(MemCategory::Weights);
  Reader r{f, prefix};

  // conv `conv` followed by BatchNorm `bn`, folded; in_ch checks the chain.
  auto conv_bn = [&](const std::string& conv, const std::string& bn, int64_t in_ch, int stride) {
    Tensor w = r.get(conv + ".weight");
    MDPS_CHECK(w.ndim() == 4 && w.dim(2) == w.dim(3) && w.dim(2) % 2 == 1, "ResNet weights ", f.path(),
               ": '", prefix, conv, ".weight' has shape ", shape_str(w.shape()),
               ", not a square odd convolution kernel [Co, Ci, k, k]");
    MDPS_CHECK(w.dim(1) == in_ch, "ResNet weights ", f.path(), ": '", prefix, conv, ".weight' has shape ",
               shape_str(w.shape()), " but its input has ", in_ch,
               " channels (grouped convolutions are not supported)");
    const int64_t co = w.dim(0), per = w.numel() / co;
    const Shape vs{co};
    std::vector<float> gamma = r.get(bn + ".weight", &vs).to_vector();
    std::vector<float> beta = r.get(bn + ".bias", &vs).to_vector();
    std::vector<float> mean = r.get(bn + ".running_mean", &vs).to_vector();
    std::vector<float> var = r.get(bn + ".running_var", &vs).to_vector();
    Tensor bias = Tensor::empty({co});
    float* pw = w.data();
    float* pb = bias.data();
    for (int64_t o = 0; o < co; ++o) {
      const double s = double(gamma[size_t(o)]) / std::sqrt(double(var[size_t(o)]) + kBnEps);
      for (int64_t i = 0; i < per; ++i) pw[o * per + i] = float(double(pw[o * per + i]) * s);
      pb[o] = float(double(beta[size_t(o)]) - double(mean[size_t(o)]) * s);
    }
    Conv c;
    c.w = backend.device() == Device::CPU ? w : w.to(backend);
    c.b = backend.device() == Device::CPU ? bias : bias.to(backend);
    c.g = ConvGeom{stride, int(w.dim(2) / 2)};
    return c;
  };

  ResNetFeatures net;
  net.backend_ = &backend;
  net.stem_ = conv_bn("conv1", "bn1", 3, 2);
  MDPS_CHECK(net.stem_.w.dim(2) == 7, "ResNet weights ", f.path(), ": '", prefix,
             "conv1.weight' is not the 7x7 ResNet stem");
  net.bottleneck_ = f.has(prefix + "layer1.0.conv3.weight");
  int64_t ch = net.stem_.w.dim(0);
  for (int L = 1; L <= deepest_layer; ++L) {
    const std::string lname = "layer" + std::to_string(L);
    MDPS_CHECK(f.has(prefix + lname + ".0.conv1.weight"), "ResNet weights ", f.path(), ": no ", lname,
               " (tensor '", prefix, lname, ".0.conv1.weight' missing); this file holds ",
               L == 1 ? std::string("no ResNet stages") : "stages up to layer" + std::to_string(L - 1));
    std::vector<Block> blocks;
    for (int B = 0; f.has(prefix + lname + "." + std::to_string(B) + ".conv1.weight"); ++B) {
      const std::string p = lname + "." + std::to_string(B) + ".";
      const int stride = (L > 1 && B == 0) ? 2 : 1;
      MDPS_CHECK(f.has(prefix + p + "conv3.weight") == net.bottleneck_, "ResNet weights ", f.path(), ": block '",
                 prefix, p, "' mixes BasicBlock and Bottleneck layouts");
      Block b;
      // torchvision puts the stride on the 3x3 convolution: conv2 of a
      // Bottleneck, conv1 of a BasicBlock.
      b.c1 = conv_bn(p + "conv1", p + "bn1", ch, net.bottleneck_ ? 1 : stride);
      b.c2 = conv_bn(p + "conv2", p + "bn2", b.c1.w.dim(0), net.bottleneck_ ? stride : 1);
      int64_t out = b.c2.w.dim(0);
      if (net.bottleneck_) {
        b.c3 = conv_bn(p + "conv3", p + "bn3", out, 1);
        out = b.c3.w.dim(0);
      }
      b.has_down = f.has(prefix + p + "downsample.0.weight");
      if (b.has_down) {
        b.down = conv_bn(p + "downsample.0", p + "downsample.1", ch, stride);
        MDPS_CHECK(b.down.w.dim(0) == out, "ResNet weights ", f.path(), ": '", prefix, p,
                   "downsample.0.weight' gives ", b.down.w.dim(0), " channels, the block ", out);
      } else {
        MDPS_CHECK(stride == 1 && ch == out, "ResNet weights ", f.path(), ": block '", prefix, p,
                   "' changes the shape (", ch, " -> ", out, " channels, stride ", stride,
                   ") but has no downsample tensors");
      }
      ch = out;
      blocks.push_back(std::move(b));
    }
    net.layers_.push_back(std::move(blocks));
  }
  return net;
}

Tensor ResNetFeatures::conv(const Conv& c, const Tensor& x, bool relu) const {
  Tensor y = Tensor::empty({x.dim(0), c.w.dim(0), conv_out_size(x.dim(2), c.w.dim(2), c.g),
                            conv_out_size(x.dim(3), c.w.dim(3), c.g)},
                           *backend_);
  backend_->conv2d(x, c.w, &c.b, y, c.g);
  if (relu) backend_->relu(y, y);
  return y;
}

Tensor ResNetFeatures::run_block(const Block& b, const Tensor& x) const {
  Tensor out = conv(b.c1, x, true);
  out = conv(b.c2, out, bottleneck_);
  if (bottleneck_) out = conv(b.c3, out, false);
  Tensor id = b.has_down ? conv(b.down, x, false) : x;
  backend_->add(out, id, out);
  backend_->relu(out, out);
  return out;
}

std::vector<Tensor> ResNetFeatures::forward(const Tensor& images, const std::vector<int>& layers) const {
  MDPS_CHECK(backend_, "ResNet: forward on an extractor that was never loaded");
  MDPS_CHECK(images.defined() && images.ndim() == 4 && images.dim(1) == 3, "ResNet: input ",
             images.defined() ? images.describe() : std::string("undefined"), " is not [N,3,H,W]");
  MDPS_CHECK(!layers.empty(), "ResNet: no layers requested");
  int deepest = 0;
  for (int l : layers) {
    MDPS_CHECK(l >= 1 && l <= deepest_layer(), "ResNet: layer", l, " requested, but the extractor was loaded",
               " with layers 1..", deepest_layer());
    deepest = std::max(deepest, l);
  }
  Tensor x = images.device() == backend_->device() ? images : images.to(*backend_);
  x = conv(stem_, x, true);
  Tensor pooled = Tensor::empty({x.dim(0), x.dim(1), (x.dim(2) - 1) / 2 + 1, (x.dim(3) - 1) / 2 + 1}, *backend_);
  backend_->max_pool3x3_s2(x, pooled);
  x = pooled;
  std::vector<Tensor> stage(static_cast<size_t>(deepest));
  for (int L = 1; L <= deepest; ++L) {
    for (const Block& b : layers_[size_t(L - 1)]) x = run_block(b, x);
    stage[size_t(L - 1)] = x;
  }
  std::vector<Tensor> out;
  for (int l : layers) out.push_back(stage[size_t(l - 1)]);
  return out;
}

}  // namespace mdps
