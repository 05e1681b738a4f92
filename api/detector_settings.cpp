#include "api/detector_settings.h"
#include "engine/detect/setting_table.h"
#include <cmath>

#ifndef MDPS_API_PRESET_DIR
#define MDPS_API_PRESET_DIR ""
#endif

namespace mdps {

PresetValues detector_option_settings(const DetectorOptions& o) {
  return {{"round1-t", std::to_string(o.round1_t)}, {"round1-rho", setting_text(o.round1_rho)},
          {"t-start", std::to_string(o.round2_t)},  {"rho", setting_text(o.round2_rho)},
          {"lambda", setting_text(o.lambda)},            {"eta", std::isnan(o.eta) ? std::string("auto") : setting_text(o.eta)},
          {"skip", std::to_string(o.skip)},
          {"batch", std::to_string(o.batch)},       {"variant", o.variant},
          {"image-score", o.image_score},           {"protocol", o.protocol},
          {"seed", std::to_string(o.seed)}};
}

EvalSettings detector_settings(const DetectorOptions& o, const Bundle* bundle) {
  EvalSettings start = default_settings();
  if (!bundle) {
    // Each field is read as its setting, so a bad one is named like the flag.
    for (const auto& [k, v] : detector_option_settings(o)) start.set(k, v);
  }
  SettingLayers layers(start);
  // samples 0 leaves Ns to the protocol (SettingLayers); a number is chosen.
  if (!bundle && o.samples != 0) layers.chosen({{"samples", std::to_string(o.samples)}});
  if (bundle) {
    layers.bundle(bundle->settings_values());
    layers.settings().normal = bundle->normal_stats();
  }
  if (!o.preset.empty()) {
    const std::string path = find_preset(o.preset, preset_search_dirs(MDPS_API_PRESET_DIR));
    MDPS_CHECK(!path.empty(), "preset '", o.preset, "': not found (set MDPS_PRESET_DIR or give a path)");
    layers.chosen(read_preset(path), cat("preset '", path, "': "));
  }
  layers.chosen(o.overrides);
  return layers.finish();
}

}  // namespace mdps
