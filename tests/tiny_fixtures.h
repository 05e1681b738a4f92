// Tiny, fast fixtures shared by the evaluation suites: a 32x32 U-Net of one
// residual block per level, written as a model file, and a toy data set in
// MVTec AD layout (engine/io/demo_data.h).
#pragma once
#include "engine/io/demo_data.h"
#include "engine/io/safetensors.h"
#include "engine/model/unet.h"
#include <cmath>
#include <string>
#include <vector>

namespace mdps::test {

inline UNetConfig tiny_unet_config(std::vector<int> attention_resolutions = {}) {
  UNetConfig c;
  c.image_size = 32;
  c.base_channels = 32;
  c.channel_mults = {1, 2};
  c.res_blocks = 1;
  c.attention_resolutions = std::move(attention_resolutions);
  return c;
}

// The smallest U-Net with an attention block: 16x16, levels {1,2}, one
// res block, attention at 8 with 2 heads (sampler and trace tests).
inline UNetConfig tiny_attention_unet_config() {
  UNetConfig c = tiny_unet_config({8});
  c.image_size = 16;
  c.heads = 2;
  return c;
}

// DIR/model.safetensors with random weights (seed) and the config in its metadata.
inline std::string write_tiny_model(const std::string& dir, const UNetConfig& config = tiny_unet_config(),
                                    uint64_t seed = 7, const std::string& kind = "") {
  UNet net(config, cpu_backend());
  net.init_random(seed);
  SafeTensorsWriter w;
  for (const auto& p : net.params()) w.add(p.name, p.var.value);
  w.set_metadata("unet_config", net.config().to_json());
  if (!kind.empty()) w.set_metadata("mdps_kind", kind);
  const std::string path = dir + "/model.safetensors";
  w.write(path);
  return path;
}

// DIR/resnet.safetensors: a torchvision-style BasicBlock ResNet with random
// weights (seed), one block per stage, stem 4 channels, stages 1..3 of 4, 8
// and 8 channels: the shape of ResNet-18 up to layer3 at a fraction of its
// cost (feature-memory and bundle tests that must not depend on ../shared).
inline std::string write_tiny_resnet(const std::string& dir, uint64_t seed = 11) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto uniform = [&state]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return float((state >> 40) & 0xFFFFFF) / float(0x1000000) * 2.f - 1.f;
  };
  SafeTensorsWriter w;
  auto conv = [&](const std::string& name, int64_t co, int64_t ci, int64_t k) {
    std::vector<float> v(size_t(co * ci * k * k));
    const float scale = std::sqrt(6.f / float(ci * k * k));
    for (float& x : v) x = uniform() * scale;
    w.add(name + ".weight", Tensor::from_vector({co, ci, k, k}, v));
  };
  auto bn = [&](const std::string& name, int64_t c) {
    const size_t n = static_cast<size_t>(c);
    std::vector<float> g(n), b(n), m(n), var(n);
    for (int64_t i = 0; i < c; ++i) {
      g[size_t(i)] = 1.f + 0.1f * uniform();
      b[size_t(i)] = 0.1f * uniform();
      m[size_t(i)] = 0.1f * uniform();
      var[size_t(i)] = 1.f + 0.2f * std::fabs(uniform());
    }
    w.add(name + ".weight", Tensor::from_vector({c}, g));
    w.add(name + ".bias", Tensor::from_vector({c}, b));
    w.add(name + ".running_mean", Tensor::from_vector({c}, m));
    w.add(name + ".running_var", Tensor::from_vector({c}, var));
  };
  conv("conv1", 4, 3, 7);
  bn("bn1", 4);
  const int64_t widths[] = {4, 8, 8};
  int64_t in = 4;
  for (int L = 1; L <= 3; ++L) {
    const std::string p = "layer" + std::to_string(L) + ".0.";
    const int64_t out = widths[L - 1];
    conv(p + "conv1", out, in, 3);
    bn(p + "bn1", out);
    conv(p + "conv2", out, out, 3);
    bn(p + "bn2", out);
    if (L > 1) {  // stride 2 from layer2 on: a downsample path
      conv(p + "downsample.0", out, in, 1);
      bn(p + "downsample.1", out);
    }
    in = out;
  }
  const std::string path = dir + "/resnet.safetensors";
  w.write(path);
  return path;
}

// DIR/cat: 2 train images, 4 good and 3 of each defect type in test, 32x32.
inline std::string make_tiny_category(const std::string& dir) {
  DemoDataOptions o;
  o.size = 32;
  o.train = 2;
  o.test_good = 4;
  o.test_defect = 3;
  o.seed = 3;
  const std::string root = dir + "/cat";
  write_demo_dataset(root, o);
  return root;
}

}  // namespace mdps::test
