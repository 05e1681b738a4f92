// What --model names for the commands that run a detector (sample, score,
// eval, calibrate, bundle): a U-Net model or checkpoint, used with
// --features and the flags; or a detector bundle (engine/detect/bundle.h), whose
// feature extractor, settings and thresholds come with it. Explicit flags
// still win: --features replaces the bundle's extractor, protocol flags its
// settings, --image-threshold / --pixel-threshold its thresholds.
#pragma once
#include "engine/detect/bundle.h"
#include "engine/eval/evaluate.h"
#include "engine/core/option_checks.h"
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

namespace mdps::cli {

struct DetectorFiles {
  std::string model_path, features_path;  // as given (features: "" = none or the bundle's)
  std::optional<Bundle> bundle;
  std::unique_ptr<UNet> net;

  // The bundle's stored settings for SettingFlags::build, or null.
  const PresetValues* base_settings() const { return bundle ? &bundle->settings_values() : nullptr; }
  // --features when given, else the bundle's extractor, else none.
  std::unique_ptr<ResNetFeatures> load_features(const EvalSettings& s) const {
    if (!features_path.empty()) return mdps::load_features(features_path, s.map.layers, net->backend());
    if (bundle) return bundle->load_features(s.map.layers, net->backend());
    return nullptr;
  }
  bool has_features() const { return !features_path.empty() || (bundle && bundle->has_features()); }
  // Where a bundle written from these files takes its ResNet: --features,
  // else the --model bundle's own; `holder` keeps an opened --features file.
  ResNetSource resnet_source(std::optional<SafeTensorsFile>& holder) const {
    if (!features_path.empty()) {
      holder = SafeTensorsFile::open(features_path);
      return {&*holder, find_resnet_prefix(*holder, "--features " + features_path)};
    }
    if (bundle && bundle->has_features()) return {&bundle->file(), "resnet."};
    return {};
  }
  // The original files, carried from bundle to bundle.
  BundleProvenance provenance() const {
    BundleProvenance p;
    p.model = bundle ? bundle->metadata("source_model") : model_path;
    p.features = !features_path.empty() ? features_path : bundle ? bundle->metadata("source_features") : "";
    return p;
  }
  // Where the features come from, for reports.
  std::string features_source() const {
    if (!features_path.empty()) return features_path;
    if (bundle && bundle->has_features()) return model_path;
    return "";
  }
};

// Opens --model (a bundle is recognised by its metadata) and loads the U-Net.
inline DetectorFiles open_detector(const std::string& model, const std::string& features, Backend& backend) {
  DetectorFiles d;
  d.model_path = model;
  d.features_path = features;
  d.bundle = Bundle::open_if_bundle(model);
  d.net = d.bundle ? d.bundle->load_unet(backend) : load_unet(model, backend);
  return d;
}

// --image-threshold / --pixel-threshold over a bundle's thresholds.
struct ThresholdFlags {
  float image = 0.f, pixel = 0.f;
  CLI::Option* image_opt = nullptr;
  CLI::Option* pixel_opt = nullptr;
  void add(CLI::App* c, const std::string& what) {
    image_opt = c->add_option("--image-threshold", image,
                              "image decision: NG when the score > X" + what);
    pixel_opt = c->add_option("--pixel-threshold", pixel,
                              "defect mask: a pixel is a defect when its map value > Y" + what);
  }
  Thresholds resolve(const DetectorFiles& d) const {
    Thresholds t = d.bundle ? d.bundle->thresholds() : Thresholds{};
    if (image_opt && image_opt->count()) t.image = image;
    if (pixel_opt && pixel_opt->count()) t.pixel = pixel;
    MDPS_USAGE_CHECK(!t.has_image() || std::isfinite(t.image), "--image-threshold: ", t.image, " is not finite");
    MDPS_USAGE_CHECK(!t.has_pixel() || std::isfinite(t.pixel), "--pixel-threshold: ", t.pixel, " is not finite");
    return t;
  }
};

}  // namespace mdps::cli
