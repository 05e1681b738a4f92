// U-Net construction (the authors' module tree and names) and forward pass.
#include "engine/model/unet.h"
#include "engine/core/trace.h"
#include "engine/core/ops.h"
#include "engine/io/safetensors.h"
#include <algorithm>
#include <cmath>

namespace mdps {

namespace {
constexpr int kGroups = 32;
constexpr float kGnEps = 1e-5f;

bool has_attention(const UNetConfig& c, int resolution) {
  return std::find(c.attention_resolutions.begin(), c.attention_resolutions.end(), resolution) !=
         c.attention_resolutions.end();
}
}  // namespace

UNet::UNet(const UNetConfig& config, Backend& backend) : config_(config), backend_(&backend) {
  config_.validate();
  if (config_.channel_mults.empty()) config_.channel_mults = config_.mults();
  const int base = config_.base_channels, emb = 4 * base;
  const auto mults = config_.mults();

  add_param("time_embedding.1.weight", {emb, base});
  add_param("time_embedding.1.bias", {emb});
  add_param("time_embedding.3.weight", {emb, emb});
  add_param("time_embedding.3.bias", {emb});

  // down: input conv, then per level res blocks (+attention) and a down block.
  add_param("down.0.0.weight", {base, config_.in_channels, 3, 3});
  add_param("down.0.0.bias", {base});
  Stage input;
  input.is_input_conv = true;
  input.res.out_ch = base;
  down_.push_back(input);
  std::vector<int> skip_ch{base};
  int ch = base, res = config_.image_size;
  for (size_t level = 0; level < mults.size(); ++level) {
    for (int r = 0; r < config_.res_blocks; ++r) {
      std::string name = cat("down.", down_.size());
      Stage s;
      s.res = {name + ".0", ch, base * mults[level], ResBlock::None};
      add_res_block(s.res);
      ch = s.res.out_ch;
      if (has_attention(config_, res)) {
        s.has_attn = true;
        s.attn = {name + ".1", ch};
        add_attn_block(s.attn);
      }
      down_.push_back(s);
      skip_ch.push_back(ch);
    }
    if (level + 1 < mults.size()) {
      Stage s;
      s.res = {cat("down.", down_.size(), ".0"), ch, ch, ResBlock::Down};
      add_res_block(s.res);
      down_.push_back(s);
      skip_ch.push_back(ch);
      res /= 2;
    }
  }
  // middle: res, attention, res
  {
    Stage a;
    a.res = {"middle.0", ch, ch, ResBlock::None};
    add_res_block(a.res);
    a.has_attn = true;
    a.attn = {"middle.1", ch};
    add_attn_block(a.attn);
    middle_.push_back(a);
    Stage b;
    b.res = {"middle.2", ch, ch, ResBlock::None};
    add_res_block(b.res);
    middle_.push_back(b);
  }
  // up: mirrored, res_blocks + 1 blocks per level taking a skip each.
  int up_index = 0;  // the up Sequential's index (an up block shares its entry's)
  for (size_t li = mults.size(); li-- > 0;) {
    for (int r = 0; r <= config_.res_blocks; ++r) {
      std::string name = cat("up.", up_index++);
      int skip = skip_ch.back();
      skip_ch.pop_back();
      Stage s;
      s.res = {name + ".0", ch + skip, base * mults[li], ResBlock::None};
      add_res_block(s.res);
      ch = s.res.out_ch;
      if (has_attention(config_, res)) {
        s.has_attn = true;
        s.attn = {name + ".1", ch};
        add_attn_block(s.attn);
      }
      up_.push_back(s);
      if (li > 0 && r == config_.res_blocks) {
        // The level's up block lives in the same Sequential, after attention.
        Stage u;
        u.res = {name + (s.has_attn ? ".2" : ".1"), ch, ch, ResBlock::Up};
        add_res_block(u.res);
        up_.push_back(u);
        res *= 2;
      }
    }
  }
  add_param("out.0.weight", {ch});
  add_param("out.0.bias", {ch});
  add_param("out.2.weight", {config_.in_channels, ch, 3, 3});
  add_param("out.2.bias", {config_.in_channels});
  set_requires_grad(false);
}

void UNet::add_param(const std::string& name, const Shape& shape) {
  MemCategoryScope scope(MemCategory::Weights);
  index_[name] = params_.size();
  params_.push_back({name, Var(Tensor::zeros(shape, *backend_))});
}

void UNet::add_res_block(const ResBlock& b) {
  const int emb = 4 * config_.base_channels;
  add_param(b.name + ".in_layers.0.weight", {b.in_ch});
  add_param(b.name + ".in_layers.0.bias", {b.in_ch});
  add_param(b.name + ".in_layers.2.weight", {b.out_ch, b.in_ch, 3, 3});
  add_param(b.name + ".in_layers.2.bias", {b.out_ch});
  add_param(b.name + ".embed_layers.1.weight", {b.out_ch, emb});
  add_param(b.name + ".embed_layers.1.bias", {b.out_ch});
  add_param(b.name + ".out_layers.0.weight", {b.out_ch});
  add_param(b.name + ".out_layers.0.bias", {b.out_ch});
  add_param(b.name + ".out_layers.3.weight", {b.out_ch, b.out_ch, 3, 3});
  add_param(b.name + ".out_layers.3.bias", {b.out_ch});
  if (b.in_ch != b.out_ch) {
    add_param(b.name + ".skip_connection.weight", {b.out_ch, b.in_ch, 1, 1});
    add_param(b.name + ".skip_connection.bias", {b.out_ch});
  }
}

void UNet::add_attn_block(const AttnBlock& a) {
  add_param(a.name + ".norm.weight", {a.ch});
  add_param(a.name + ".norm.bias", {a.ch});
  add_param(a.name + ".to_qkv.weight", {3 * a.ch, a.ch, 1});
  add_param(a.name + ".to_qkv.bias", {3 * a.ch});
  add_param(a.name + ".proj_out.weight", {a.ch, a.ch, 1});
  add_param(a.name + ".proj_out.bias", {a.ch});
}

Var& UNet::param(const std::string& name) {
  auto it = index_.find(name);
  MDPS_CHECK(it != index_.end(), "U-Net has no parameter '", name, "'");
  return params_[it->second].var;
}
Var UNet::p(const std::string& name) const { return params_[index_.at(name)].var; }

int64_t UNet::parameter_count() const {
  int64_t n = 0;
  for (auto& p : params_) n += p.var.value.numel();
  return n;
}

void UNet::set_requires_grad(bool on) {
  for (auto& p : params_) {
    if (on && !p.var.cell) {
      p.var = make_leaf(p.var.value, MemCategory::WeightGrad);
    } else if (!on) {
      p.var.cell.reset();
    }
  }
}

void UNet::zero_grad() {
  for (auto& p : params_)
    if (p.var.cell) p.var.cell->grad = Tensor();
}

Var UNet::run_res_block(const ResBlock& b, const Var& x, const Var& emb) const {
  const std::string& n = b.name;
  Var h = ops::group_norm(x, p(n + ".in_layers.0.weight"), p(n + ".in_layers.0.bias"), kGroups, kGnEps, true);
  Var xs = x;
  if (b.resample == ResBlock::Down) {
    h = ops::avg_pool2(h);
    xs = ops::avg_pool2(x);
  } else if (b.resample == ResBlock::Up) {
    h = ops::upsample_nearest2(h);
    xs = ops::upsample_nearest2(x);
  }
  // The time embedding's projection is added to in_layers' output, and the
  // skip to out_layers', each in the convolution's store (ops::conv2d_fused:
  // the bits of the separate add_channel_bias and add).
  Var eb = p(n + ".embed_layers.1.bias");
  Var e = ops::linear(ops::silu(emb), p(n + ".embed_layers.1.weight"), &eb);
  Var in_b = p(n + ".in_layers.2.bias");
  h = ops::conv2d_fused(h, p(n + ".in_layers.2.weight"), &in_b, &e, nullptr, {1, 1});
  // dropout is 0 in every released setting
  h = ops::group_norm(h, p(n + ".out_layers.0.weight"), p(n + ".out_layers.0.bias"), kGroups, kGnEps, true);
  if (b.in_ch != b.out_ch) {
    Var sb = p(n + ".skip_connection.bias");
    xs = ops::conv2d(xs, p(n + ".skip_connection.weight"), &sb, {1, 0});
  }
  Var out_b = p(n + ".out_layers.3.bias");
  return ops::conv2d_fused(h, p(n + ".out_layers.3.weight"), &out_b, nullptr, &xs, {1, 1});
}

Var UNet::run_attn_block(const AttnBlock& a, const Var& x) const {
  const std::string& n = a.name;
  const Shape& s = x.shape();
  const int64_t B = s[0], C = s[1], H = s[2], W = s[3];
  Var h = ops::group_norm(x, p(n + ".norm.weight"), p(n + ".norm.bias"), kGroups, kGnEps, false);
  // Conv1d with kernel 1 over the flattened pixels is a 1x1 conv2d.
  Var wq = ops::reshape(p(n + ".to_qkv.weight"), {3 * C, C, 1, 1});
  Var bq = p(n + ".to_qkv.bias");
  Var qkv = ops::conv2d(h, wq, &bq, {1, 0});
  Var att = ops::qkv_attention(ops::reshape(qkv, {B, 3 * C, H * W}), config_.heads);
  Var wo = ops::reshape(p(n + ".proj_out.weight"), {C, C, 1, 1});
  Var bo = p(n + ".proj_out.bias");
  Var o = ops::conv2d(ops::reshape(att, {B, C, H, W}), wo, &bo, {1, 0});
  return ops::add(x, o);
}

Var UNet::forward(const Var& x, const Tensor& t) const {
  trace::Scope span("unet.forward", "span");
  if (span.active()) span.shape("x", x.shape());
  const Shape& s = x.shape();
  MDPS_CHECK(s.size() == 4 && s[1] == config_.in_channels && s[2] == config_.image_size &&
                 s[3] == config_.image_size,
             "U-Net input ", x.value.describe(), " does not match the model (", config_.in_channels, " x ",
             config_.image_size, " x ", config_.image_size, ")");
  MDPS_CHECK(t.ndim() == 1 && t.dim(0) == s[0], "U-Net timesteps ", t.describe(), " for a batch of ", s[0]);
  Tensor tt = t.device() == backend_->device() ? t : t.to(*backend_);
  Var temb = ops::timestep_embedding(tt, config_.base_channels);
  Var b1 = p("time_embedding.1.bias"), b3 = p("time_embedding.3.bias");
  Var emb = ops::linear(ops::silu(ops::linear(temb, p("time_embedding.1.weight"), &b1)),
                        p("time_embedding.3.weight"), &b3);

  std::vector<Var> skips;
  Var h = x;
  for (const Stage& st : down_) {
    if (st.is_input_conv) {
      Var b = p("down.0.0.bias");
      h = ops::conv2d(x, p("down.0.0.weight"), &b, {1, 1});
    } else {
      h = run_res_block(st.res, h, emb);
      if (st.has_attn) h = run_attn_block(st.attn, h);
    }
    skips.push_back(h);
  }
  for (const Stage& st : middle_) {
    h = run_res_block(st.res, h, emb);
    if (st.has_attn) h = run_attn_block(st.attn, h);
  }
  for (const Stage& st : up_) {
    if (st.res.resample == ResBlock::Up) {
      h = run_res_block(st.res, h, emb);
      continue;
    }
    Var skip = skips.back();
    skips.pop_back();
    h = run_res_block(st.res, ops::concat_channels(h, skip), emb);
    if (st.has_attn) h = run_attn_block(st.attn, h);
  }
  h = ops::group_norm(h, p("out.0.weight"), p("out.0.bias"), kGroups, kGnEps, true);
  Var ob = p("out.2.bias");
  return ops::conv2d(h, p("out.2.weight"), &ob, {1, 1});
}

void UNet::load(const SafeTensorsFile& file, const std::string& prefix) {
  // Accept "<prefix>name", "module.<prefix>name" and "<prefix>module.name".
  std::map<std::string, std::string> by_name;
  for (const auto& full : file.names()) {
    std::string n = full;
    if (n.rfind("module.", 0) == 0) n = n.substr(7);
    if (!prefix.empty()) {
      if (n.rfind(prefix, 0) != 0) continue;
      n = n.substr(prefix.size());
    }
    if (n.rfind("module.", 0) == 0) n = n.substr(7);
    by_name[n] = full;
  }
  std::vector<std::string> missing, misshaped, unexpected;
  for (auto& np : params_) {
    auto it = by_name.find(np.name);
    if (it == by_name.end()) {
      missing.push_back(np.name);
      continue;
    }
    const auto& info = file.info(it->second);
    if (info.shape != np.var.value.shape()) {
      misshaped.push_back(cat(np.name, " (file ", shape_str(info.shape), ", model ", shape_str(np.var.value.shape()),
                              ")"));
    }
  }
  for (auto& kv : by_name)
    if (!index_.count(kv.first)) unexpected.push_back(kv.first);
  // Tensors outside the U-Net (optimiser state, other models) are expected in
  // checkpoints and bundles; only names that look like U-Net parameters count.
  std::vector<std::string> unexpected_unet;
  for (auto& u : unexpected) {
    for (const char* root : {"time_embedding.", "down.", "middle.", "up.", "out."})
      if (u.rfind(root, 0) == 0) {
        unexpected_unet.push_back(u);
        break;
      }
  }
  if (!missing.empty() || !misshaped.empty() || !unexpected_unet.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      size_t shown = std::min<size_t>(v.size(), 12);
      for (size_t i = 0; i < shown; ++i) s += "\n    " + v[i];
      if (v.size() > shown) s += cat("\n    ... and ", v.size() - shown, " more");
      return s;
    };
    std::string msg = cat(file.path(), ": does not hold the U-Net ", config_.to_json());
    if (!missing.empty()) msg += cat("\n  missing (", missing.size(), "):", list(missing));
    if (!misshaped.empty()) msg += cat("\n  misshaped (", misshaped.size(), "):", list(misshaped));
    if (!unexpected_unet.empty()) msg += cat("\n  unexpected (", unexpected_unet.size(), "):", list(unexpected_unet));
    throw Error(msg);
  }
  for (auto& np : params_) {
    Tensor host = file.read_weights(by_name[np.name]);
    np.var.value.copy_from(host);
  }
}

UNetConfig UNet::config_from_file(const SafeTensorsFile& file) {
  auto it = file.metadata().find("unet_config");
  MDPS_CHECK(it != file.metadata().end(), file.path(),
             ": no 'unet_config' in the metadata; this is not an mdps model or checkpoint");
  return UNetConfig::from_json(it->second);
}

std::unique_ptr<UNet> UNet::from_file(const std::string& path, Backend& backend) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  auto net = std::make_unique<UNet>(config_from_file(f), backend);
  std::string prefix;
  if (!f.has("time_embedding.1.weight") && !f.has("module.time_embedding.1.weight") &&
      (f.has("unet.time_embedding.1.weight") || f.has("unet.module.time_embedding.1.weight")))
    prefix = "unet.";
  net->load(f, prefix);
  return net;
}

void UNet::init_random(uint64_t seed) {
  // PyTorch's defaults: Conv/Linear weights and biases uniform in
  // +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)); GroupNorm 1 and 0.
  // splitmix64 keeps it identical on every platform.
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  auto next = [&state] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  std::map<std::string, int64_t> fan_in;
  for (auto& np : params_) {
    const Shape& s = np.var.value.shape();
    if (s.size() >= 2) fan_in[np.name.substr(0, np.name.rfind('.'))] = shape_numel(s) / s[0];
  }
  for (auto& np : params_) {
    const Shape& s = np.var.value.shape();
    std::string module = np.name.substr(0, np.name.rfind('.'));
    bool is_norm = s.size() == 1 && !fan_in.count(module);
    std::vector<float> v(size_t(shape_numel(s)));
    if (is_norm) {
      bool weight = np.name.size() > 7 && np.name.compare(np.name.size() - 7, 7, ".weight") == 0;
      std::fill(v.begin(), v.end(), weight ? 1.f : 0.f);
    } else {
      double bound = 1.0 / std::sqrt(double(fan_in[module]));
      for (auto& x : v) x = float((double(next() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
    }
    np.var.value.copy_from(Tensor::from_vector(s, v));
  }
}

}  // namespace mdps
