// A detector bundle: everything `mdps score` needs in one safetensors file,
// so a deployment ships one file instead of a model, a feature extractor, a
// preset and two numbers.
//
//   unet.<name>     every U-Net parameter (float32)
//   resnet.<name>   the ResNet's stem and stages 1..D, D = the deepest stage
//                   the settings use (as stored in the source, any dtype)
//   __metadata__
//     mdps_kind            "detector"
//     mdps_bundle_version  "1"
//     unet_config          UNetConfig::to_json(), as in model files
//     settings             JSON object of EvalSettings::values(): option name
//                          without dashes -> text, e.g. {"t-start": "200"}
//     resnet_layers        D ("0": no feature extractor, the pixel term only)
//     image_threshold      "%.9g" text; absent: no image decision
//     pixel_threshold      "%.9g" text; absent: no defect mask
//     normal_stats         NormalStats::to_json() (engine/evaluate.h): what the
//                          calibrated protocol takes from normal images;
//                          absent: not calibrated (each image uses its own)
//   normal.map_mean, normal.map_std   [S,S] float32: the per-pixel mean and std
//                          of the normal images' final maps (NormalStats::
//                          pixels, the normal-z image score); absent in
//                          bundles calibrated before they existed
//   normal.memory          [rows, dim] float32: the feature memory
//                          (engine/detect/feature_memory.h; its images, grid,
//                          dim and the maxima map_max, memory_max are in
//                          normal_stats); absent: none
//   A bundle whose settings have no "protocol" (written before issue 18) is
//   the authors' protocol, so it scores as it always did.
//     engine_version, source_model, source_features   (provenance only)
//
// Because the U-Net lives under `unet.`, load_unet / UNet::from_file read a
// bundle as they read a model file.
#pragma once
#include "engine/detect/settings.h"
#include "engine/model/resnet.h"
#include "engine/io/safetensors.h"
#include "engine/model/unet.h"
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>

namespace mdps {

constexpr const char* kBundleKind = "detector";
constexpr int kBundleVersion = 1;

// The decision thresholds; NaN means none. An image is anomalous (NG) when
// its score > image; a pixel is a defect when its map value > pixel.
struct Thresholds {
  float image = std::numeric_limits<float>::quiet_NaN();
  float pixel = std::numeric_limits<float>::quiet_NaN();
  bool has_image() const { return !std::isnan(image); }
  bool has_pixel() const { return !std::isnan(pixel); }
};

// Where a bundle's ResNet comes from when writing one: a state dict and the
// prefix of its tensors (find_resnet_prefix).
struct ResNetSource {
  const SafeTensorsFile* file = nullptr;  // null: no feature extractor
  std::string prefix;
};

struct BundleProvenance {
  std::string model, features;  // the paths the parts came from (informative)
};

// Writes the bundle to `path` atomically (a temp name, then rename), with
// settings.normal as normal_stats when it is set. The
// ResNet tensors up to the deepest of settings.map.layers are copied as
// stored; throws naming the source when one of them is missing.
void write_bundle(const std::string& path, const UNet& net, const ResNetSource& resnet, const EvalSettings& settings,
                  const Thresholds& thresholds, const BundleProvenance& provenance = {});

// A bundle, opened and checked (metadata, the U-Net's and the ResNet's
// presence); the weights are read when loaded.
class Bundle {
 public:
  // Throws naming the file when it is not a bundle (a plain model, another
  // safetensors file), has a newer format version, or lacks a part.
  static Bundle open(const std::string& path);
  // The bundle at `path`, or nothing when `path` is a safetensors file that
  // is not a bundle (a model or checkpoint). Throws for unreadable files and
  // for bundles that fail the checks.
  static std::optional<Bundle> open_if_bundle(const std::string& path);
  static bool is_bundle(const SafeTensorsFile& f);

  const std::string& path() const { return file_->path(); }
  const SafeTensorsFile& file() const { return *file_; }
  const UNetConfig& unet_config() const { return config_; }
  // The settings as stored, in set() order; apply() puts them into `s`.
  const PresetValues& settings_values() const { return settings_; }
  EvalSettings settings() const;
  int resnet_layers() const { return resnet_layers_; }  // 0: none
  bool has_features() const { return resnet_layers_ > 0; }
  const Thresholds& thresholds() const { return thresholds_; }
  const std::optional<NormalStats>& normal_stats() const { return normal_; }
  std::string metadata(const std::string& key) const;  // "" when absent

  std::unique_ptr<UNet> load_unet(Backend& backend) const;
  // The feature extractor for `layers` (each <= resnet_layers()); null when
  // the bundle has none. Throws naming the bundle for a deeper layer.
  std::unique_ptr<ResNetFeatures> load_features(const std::vector<int>& layers, Backend& backend) const;

 private:
  Bundle() = default;
  std::shared_ptr<SafeTensorsFile> file_;
  UNetConfig config_;
  PresetValues settings_;
  int resnet_layers_ = 0;
  Thresholds thresholds_;
  std::optional<NormalStats> normal_;
};

// Decisions as the thresholds give them (the definitions above), used by
// `mdps score`, `mdps calibrate` and the library alike.
inline bool is_anomalous(float score, const Thresholds& t) {
  return t.has_image() && score > t.image;
}
std::vector<uint8_t> defect_mask(const float* map, size_t n, float pixel_threshold);

}  // namespace mdps
