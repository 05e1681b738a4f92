#include "engine/detect/bundle.h"
#include "engine/core/json_mini.h"
#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace mdps {
namespace {

std::string float_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(v));
  return buf;
}

// "conv1.weight", "bn1.bias", "layer2.0.conv1.weight" ... : part of the stem
// or of a stage <= deepest (fc.* and deeper stages are left out).
bool resnet_tensor_used(const std::string& rest, int deepest) {
  if (rest.rfind("conv1.", 0) == 0 || rest.rfind("bn1.", 0) == 0) return true;
  for (int L = 1; L <= deepest; ++L)
    if (rest.rfind("layer" + std::to_string(L) + ".", 0) == 0) return true;
  return false;
}

std::string settings_json(const PresetValues& values) {
  std::string js = "{";
  for (size_t i = 0; i < values.size(); ++i)
    js += cat(i ? ", " : "", json::quote(values[i].first), ": ", json::quote(values[i].second));
  return js + "}";
}

float parse_threshold(const std::string& path, const std::string& key, const std::string& text) {
  char* end = nullptr;
  const float v = std::strtof(text.c_str(), &end);
  MDPS_CHECK(!text.empty() && end && *end == 0 && std::isfinite(v), path, ": metadata '", key, "' = '", text,
             "' is not a finite number");
  return v;
}

}  // namespace

std::vector<uint8_t> defect_mask(const float* map, size_t n, float pixel_threshold) {
  std::vector<uint8_t> m(n);
  for (size_t k = 0; k < n; ++k) m[k] = map[k] > pixel_threshold ? 1 : 0;
  return m;
}

void write_bundle(const std::string& path, const UNet& net, const ResNetSource& resnet, const EvalSettings& settings,
                  const Thresholds& thresholds, const BundleProvenance& provenance) {
  settings.validate();
  MDPS_CHECK(!thresholds.has_image() || std::isfinite(thresholds.image), "image threshold ", thresholds.image,
             " is not finite");
  MDPS_CHECK(!thresholds.has_pixel() || std::isfinite(thresholds.pixel), "pixel threshold ", thresholds.pixel,
             " is not finite");
  SafeTensorsWriter w;
  for (const auto& p : net.params()) w.add("unet." + p.name, p.var.value);
  int deepest = 0;
  if (resnet.file) {
    deepest = deepest_stage(settings.map.layers);
    const SafeTensorsFile& f = *resnet.file;
    const std::string& pre = resnet.prefix;
    const std::string stage = "layer" + std::to_string(deepest) + ".0.conv1.weight";
    for (const std::string& need : {std::string("conv1.weight"), stage})
      MDPS_CHECK(f.has(pre + need), "--features ", f.path(), ": no tensor '", pre, need,
                 "', which the bundle needs for ResNet stages 1..", deepest, " (--layers)");
    for (const std::string& name : f.names()) {
      if (name.rfind(pre, 0) != 0) continue;
      const std::string rest = name.substr(pre.size());
      if (!resnet_tensor_used(rest, deepest)) continue;
      const StTensorInfo& info = f.info(name);
      const uint8_t* raw = f.raw(name);
      w.add_raw("resnet." + rest, info.dtype, info.shape, std::vector<uint8_t>(raw, raw + info.bytes()));
    }
  }
  w.set_metadata("mdps_kind", kBundleKind);
  w.set_metadata("mdps_bundle_version", std::to_string(kBundleVersion));
  w.set_metadata("unet_config", net.config().to_json());
  w.set_metadata("settings", settings_json(settings.values()));
  w.set_metadata("resnet_layers", std::to_string(deepest));
  if (thresholds.has_image()) w.set_metadata("image_threshold", float_text(thresholds.image));
  if (thresholds.has_pixel()) w.set_metadata("pixel_threshold", float_text(thresholds.pixel));
  if (settings.normal) {
    w.set_metadata("normal_stats", settings.normal->to_json());
    const PixelNormals& pn = settings.normal->pixels;
    if (!pn.empty()) {
      pn.check(pn.height, pn.width, "bundle: the normal statistics");
      w.add_f32("normal.map_mean", {pn.height, pn.width}, pn.mean);
      w.add_f32("normal.map_std", {pn.height, pn.width}, pn.std);
    }
    const FeatureMemory& mem = settings.normal->memory;
    if (!mem.empty()) {
      mem.check("bundle: the feature memory");
      MDPS_CHECK(deepest >= memory_layers().back(), "bundle: the feature memory needs ResNet stage ",
                 memory_layers().back(), ", the bundle would hold stages up to ", deepest, " (--layers)");
      w.add_f32("normal.memory", {int64_t(mem.images) * int64_t(mem.rows_per_image()), mem.dim}, mem.rows);
    }
  }
  w.set_metadata("engine_version", MDPS_VERSION);
  if (!provenance.model.empty()) w.set_metadata("source_model", provenance.model);
  if (!provenance.features.empty()) w.set_metadata("source_features", provenance.features);
  w.write(path);
}

bool Bundle::is_bundle(const SafeTensorsFile& f) {
  auto it = f.metadata().find("mdps_kind");
  return it != f.metadata().end() && it->second == kBundleKind;
}

std::optional<Bundle> Bundle::open_if_bundle(const std::string& path) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  if (!is_bundle(f)) return std::nullopt;
  return open(path);
}

Bundle Bundle::open(const std::string& path) {
  Bundle b;
  b.file_ = std::make_shared<SafeTensorsFile>(SafeTensorsFile::open(path));
  const SafeTensorsFile& f = *b.file_;
  const auto& md = f.metadata();
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = md.find(key);
    MDPS_CHECK(it != md.end(), path, ": a detector bundle without '", key,
               "' in its metadata (damaged, or not written by `mdps bundle`)");
    return it->second;
  };
  if (!is_bundle(f)) {
    auto kind = md.find("mdps_kind");
    throw Error(
        cat(path, ": not a detector bundle (",
            kind == md.end() ? std::string("no 'mdps_kind' in the metadata") : "mdps_kind is '" + kind->second + "'",
            "); `mdps bundle` writes one from a model and a feature extractor"));
  }
  {
    const std::string& v = get("mdps_bundle_version");
    char* end = nullptr;
    const long version = std::strtol(v.c_str(), &end, 10);
    MDPS_CHECK(!v.empty() && end && *end == 0 && version >= 1, path, ": bundle version '", v, "' is not a number");
    MDPS_CHECK(version <= kBundleVersion, path, ": bundle format version ", version, " is newer than this mdps reads (",
               kBundleVersion, "); update mdps");
  }
  try {
    b.config_ = UNetConfig::from_json(get("unet_config"));
  } catch (const Error& e) {
    throw Error(cat(path, ": ", e.what()));
  }
  MDPS_CHECK(f.has("unet.time_embedding.1.weight"), path,
             ": a detector bundle without its U-Net (no 'unet.time_embedding.1.weight'); the file is damaged");

  const json::Value js = json::parse(get("settings"), path + ": metadata 'settings'");
  MDPS_CHECK(js.kind == json::Kind::Object, path, ": metadata 'settings' is not a JSON object");
  EvalSettings check;
  for (const auto& [k, v] : js.members) {
    MDPS_CHECK(v.kind == json::Kind::String, path, ": setting '", k, "' is a ", json::kind_name(v.kind),
               ", not a string");
    try {
      check.set(k, v.str);
    } catch (const Error& e) {
      throw Error(cat(path, ": stored settings: ", e.what()));
    }
    b.settings_.emplace_back(k, v.str);
  }
  try {
    check.validate();
  } catch (const Error& e) {
    throw Error(cat(path, ": stored settings: ", e.what()));
  }

  {
    const std::string& v = get("resnet_layers");
    MDPS_CHECK(v.size() == 1 && v[0] >= '0' && v[0] <= '4', path, ": metadata 'resnet_layers' = '", v, "' is not 0..4");
    b.resnet_layers_ = v[0] - '0';
  }
  if (b.resnet_layers_ > 0) {
    const std::string deepest = "resnet.layer" + std::to_string(b.resnet_layers_) + ".0.conv1.weight";
    for (const std::string& need : {std::string("resnet.conv1.weight"), deepest})
      MDPS_CHECK(f.has(need), path, ": the bundle says it holds ResNet stages 1..", b.resnet_layers_, " but has no '",
                 need, "'; the file is damaged");
  }
  if (md.count("image_threshold"))
    b.thresholds_.image = parse_threshold(path, "image_threshold", get("image_threshold"));
  if (md.count("pixel_threshold"))
    b.thresholds_.pixel = parse_threshold(path, "pixel_threshold", get("pixel_threshold"));
  if (md.count("normal_stats")) b.normal_ = NormalStats::from_json(get("normal_stats"), path + ": metadata 'normal_stats'");
  const bool has_mean = f.has("normal.map_mean"), has_std = f.has("normal.map_std");
  MDPS_CHECK(has_mean == has_std, path, ": the bundle holds '", has_mean ? "normal.map_mean" : "normal.map_std",
             "' without '", has_mean ? "normal.map_std" : "normal.map_mean", "'; the file is damaged");
  if (has_mean) {
    MDPS_CHECK(b.normal_, path, ": per-pixel normal statistics without 'normal_stats' in the metadata; the file is damaged");
    const StTensorInfo& info = f.info("normal.map_mean");
    MDPS_CHECK(info.shape.size() == 2 && f.info("normal.map_std").shape == info.shape, path,
               ": 'normal.map_mean' and 'normal.map_std' are not two maps of one size");
    PixelNormals& pn = b.normal_->pixels;
    pn.height = int(info.shape[0]);
    pn.width = int(info.shape[1]);
    pn.mean = f.read_f32_vector("normal.map_mean");
    pn.std = f.read_f32_vector("normal.map_std");
    pn.check(b.config_.image_size, b.config_.image_size, path + ": 'normal.map_mean' / 'normal.map_std'");
  }
  // The feature memory: its shape in normal_stats, its rows in normal.memory; both or neither.
  const bool has_memory = f.has("normal.memory");
  const bool memory_named = b.normal_ && b.normal_->memory.images > 0;
  MDPS_CHECK(has_memory == memory_named, path, ": ",
             has_memory ? "'normal.memory' without its shape in 'normal_stats'"
                        : "'normal_stats' names a feature memory the bundle does not hold ('normal.memory')",
             "; the file is damaged");
  if (has_memory) {
    FeatureMemory& mem = b.normal_->memory;
    const StTensorInfo& info = f.info("normal.memory");
    MDPS_CHECK(info.shape.size() == 2 && info.shape[0] == int64_t(mem.images) * int64_t(mem.rows_per_image()) &&
                   info.shape[1] == mem.dim,
               path, ": 'normal.memory' is ", shape_str(info.shape), ", not the ", mem.images, " x ", mem.grid, "x",
               mem.grid, " rows of ", mem.dim, " values 'normal_stats' names");
    MDPS_CHECK(b.resnet_layers_ >= memory_layers().back(), path, ": a feature memory without ResNet stage ",
               memory_layers().back(), "; the file is damaged");
    mem.rows = f.read_f32_vector("normal.memory");
    mem.check(path + ": 'normal.memory'");
  }
  return b;
}

EvalSettings Bundle::settings() const {
  EvalSettings s;
  for (const auto& [k, v] : settings_) s.set(k, v);
  s.normal = normal_;
  return s;
}

std::string Bundle::metadata(const std::string& key) const {
  auto it = file_->metadata().find(key);
  return it == file_->metadata().end() ? std::string() : it->second;
}

std::unique_ptr<UNet> Bundle::load_unet(Backend& backend) const {
  auto net = std::make_unique<UNet>(config_, backend);
  net->load(*file_, "unet.");
  return net;
}

std::unique_ptr<ResNetFeatures> Bundle::load_features(const std::vector<int>& layers, Backend& backend) const {
  if (!has_features()) return nullptr;
  const int deepest = deepest_stage(layers);
  MDPS_CHECK(deepest <= resnet_layers_, path(), ": the bundle holds ResNet stages 1..", resnet_layers_,
             " but the settings use stage ", deepest, " (--layers)");
  return std::make_unique<ResNetFeatures>(ResNetFeatures::load(*file_, "resnet.", deepest, backend));
}

}  // namespace mdps
