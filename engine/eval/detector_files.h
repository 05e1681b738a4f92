// A detector's files, loaded in one place for every command that runs one
// (sample, score, eval, calibrate, bundle, train --calibrate) and for the
// library (mdps::Detector): what --model names, a U-Net model or checkpoint
// used with a ResNet file (--features), or a detector bundle
// (engine/detect/bundle.h) whose feature extractor, settings and thresholds
// come with it. Explicit files win: --features replaces the bundle's
// extractor. The stages loaded are those the settings use (deepest_stage,
// engine/model/resnet.h). Errors name the file and what it should have been.
#pragma once
#include "engine/detect/bundle.h"
#include "engine/detect/settings.h"
#include "engine/model/resnet.h"
#include "engine/model/unet.h"
#include <memory>
#include <optional>
#include <string>

namespace mdps {

struct DetectorFiles {
  std::string model_path;       // as given
  std::string features_path;    // as given: "" = the bundle's or none
  std::string features_prefix;  // tensor-name prefix in features_path; "": found (find_resnet_prefix)
  std::optional<Bundle> bundle;
  std::unique_ptr<UNet> net;

  // The bundle's stored settings (the layer under the preset and the flags), or null.
  const PresetValues* base_settings() const { return bundle ? &bundle->settings_values() : nullptr; }
  // features_path when given, else the bundle's extractor, else none (the
  // map is then the pixel term only); loaded up to the stage `s` uses.
  std::unique_ptr<ResNetFeatures> load_features(const EvalSettings& s) const;
  bool has_features() const { return !features_path.empty() || (bundle && bundle->has_features()); }
  // Where a bundle written from these files takes its ResNet: features_path,
  // else the bundle's own; `holder` keeps an opened features file.
  ResNetSource resnet_source(std::optional<SafeTensorsFile>& holder) const;
  // The original files, carried from bundle to bundle.
  BundleProvenance provenance() const;
  // Where the features come from, for reports ("" when none).
  std::string features_source() const;
};

// Opens `model` (a bundle is recognised by its metadata) and loads the U-Net
// on `backend`; the features are loaded later, once the settings are known.
DetectorFiles open_detector(const std::string& model, const std::string& features, Backend& backend,
                            const std::string& features_prefix = "");

// A ResNet feature extractor from `path` up to deepest_stage(layers), its
// tensor prefix `prefix` or, when empty, found. Errors say the file is not a ResNet.
std::unique_ptr<ResNetFeatures> load_features(const std::string& path, const std::vector<int>& layers,
                                              Backend& backend, const std::string& prefix = "");
// The tensor-name prefix of the ResNet in `f` ("", "resnet.", "module.",
// "model.", "backbone."); throws naming `what` when there is none.
std::string find_resnet_prefix(const SafeTensorsFile& f, const std::string& what);
// A U-Net from a model file, checkpoint or detector bundle, with an error
// naming the file when it is not one.
std::unique_ptr<UNet> load_unet(const std::string& path, Backend& backend);

}  // namespace mdps
