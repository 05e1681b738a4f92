// DetectorOptions (include/mdps/mdps.h) as the engine's EvalSettings: the
// typed fields are written as their keys in the settings table
// (engine/detect/setting_table.h) and read by it, so the library spells no
// setting itself; then the bundle, preset and overrides are layered as the
// command line layers them (SettingLayers). Internal to libmdps (and its tests).
#pragma once
#include "include/mdps/mdps.h"
#include "engine/detect/bundle.h"
#include "engine/detect/settings.h"

namespace mdps {

// The typed protocol fields (round1_t ... seed) as (setting key, text) pairs.
PresetValues detector_option_settings(const DetectorOptions& o);
// The settings a Detector runs with: the typed fields (or, for a bundle, its
// stored settings and normal statistics), then the preset, then the
// overrides; validated.
EvalSettings detector_settings(const DetectorOptions& o, const Bundle* bundle);

}  // namespace mdps
