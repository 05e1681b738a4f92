// The authors' ADM-style U-Net (spec section 2): epsilon prediction from
// (x_t, float timestep). Parameters carry the authors' state-dict names so
// checkpoints load by name.
#pragma once
#include "engine/core/autograd.h"
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mdps {

class SafeTensorsFile;

struct UNetConfig {
  // Bounds of validate(): far above any model mdps trains, far below what
  // would exhaust memory while building the network.
  static constexpr int kMaxImageSize = 4096, kMaxChannels = 4096, kMaxResBlocks = 16;
  static constexpr size_t kMaxLevels = 10;
  int image_size = 256;
  int base_channels = 64;
  int heads = 4;
  int in_channels = 3;
  int res_blocks = 2;
  std::vector<int> attention_resolutions{32, 16, 8};
  std::vector<int> channel_mults;  // empty: the authors' default for image_size
  float dropout = 0.f;

  // The authors' channel multipliers for an image size (256, 128, 64, 32).
  static std::vector<int> default_channel_mults(int image_size);
  std::vector<int> mults() const { return channel_mults.empty() ? default_channel_mults(image_size) : channel_mults; }
  void validate() const;  // throws with the reason (e.g. size not divisible)
  // The authors' constructor arguments as JSON (the golden files' `unet_config`).
  std::string to_json() const;
  static UNetConfig from_json(const std::string& json);
  bool operator==(const UNetConfig& o) const;
};

struct NamedParam {
  std::string name;
  Var var;
};

class UNet {
 public:
  explicit UNet(const UNetConfig& config, Backend& backend);
  const UNetConfig& config() const { return config_; }
  Backend& backend() const { return *backend_; }

  // eps_theta(x, t): x [N, C, H, W], t float timesteps [N] (CPU or device).
  Var forward(const Var& x, const Tensor& t) const;

  // Parameters in a fixed order (state-dict order of the authors' module tree).
  std::vector<NamedParam>& params() { return params_; }
  const std::vector<NamedParam>& params() const { return params_; }
  Var& param(const std::string& name);
  int64_t parameter_count() const;
  // true: parameters collect gradients (training); false: input-only mode.
  void set_requires_grad(bool on);
  void zero_grad();

  // Loads every parameter from `file` under `prefix` (a leading "module." is
  // stripped too). Fails listing missing, unexpected and misshaped tensors.
  void load(const SafeTensorsFile& file, const std::string& prefix = "");
  // Random init as PyTorch's defaults (kaiming-uniform weights, zero-init of
  // the last conv of each block is not used by the authors): for training.
  void init_random(uint64_t seed);
  // The config stored in a model file's metadata (`unet_config`).
  static UNetConfig config_from_file(const SafeTensorsFile& file);
  // A model file, checkpoint, golden file ("unet." prefix) or bundle: the
  // config from its metadata, the weights by name.
  static std::unique_ptr<UNet> from_file(const std::string& path, Backend& backend);

 private:
  struct ResBlock {
    std::string name;
    int in_ch, out_ch;
    enum Resample { None, Down, Up } resample = None;
  };
  struct AttnBlock {
    std::string name;
    int ch;
  };
  // One entry of down/middle/up: a ResBlock, optionally followed by attention.
  struct Stage {
    ResBlock res;
    bool has_attn = false;
    AttnBlock attn;
    bool is_input_conv = false;
  };

  void add_param(const std::string& name, const Shape& shape);
  void add_res_block(const ResBlock& b);
  void add_attn_block(const AttnBlock& a);
  Var p(const std::string& name) const;
  Var run_res_block(const ResBlock& b, const Var& x, const Var& emb) const;
  Var run_attn_block(const AttnBlock& a, const Var& x) const;

  UNetConfig config_;
  Backend* backend_;
  std::vector<NamedParam> params_;
  std::map<std::string, size_t> index_;
  std::vector<Stage> down_, middle_, up_;
};

}  // namespace mdps
