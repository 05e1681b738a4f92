// Tiny, fast fixtures shared by the evaluation suites: a 32x32 U-Net of one
// residual block per level, written as a model file, and a toy data set in
// MVTec AD layout (engine/io/demo_data.h).
#pragma once
#include "engine/io/demo_data.h"
#include "engine/io/safetensors.h"
#include "engine/model/unet.h"
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
