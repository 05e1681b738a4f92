// The detector's settings: every value that decides a map and a score (the
// sampler, the two rounds, the anomaly map, the image score, the mask scope,
// the batch) in one struct, readable and writable by its `mdps eval` option
// names. Presets (engine/detect/presets.h), detector bundles
// (engine/detect/bundle.h), report.json and the command line all go through
// set() / values() / to_json(), so a setting is spelled the same everywhere.
#pragma once
#include "engine/detect/anomaly_map.h"
#include "engine/detect/presets.h"
#include "engine/diffusion/sampler.h"
#include <cstdint>
#include <string>

namespace mdps {

struct EvalSettings {
  SamplerSettings sampler;  // sampler.group is set to `batch`
  MdpsRounds rounds;
  AnomalyMapSettings map;
  ImageScoreKind score_kind = ImageScoreKind::Authors;
  int score_k = 500;
  bool dataset_scope = false;  // --mask-scope dataset
  int batch = 8;
  int limit = 0;      // at most this many images per test type (0: all)
  float crop = 1.f;   // centre-crop fraction of maps and masks before the metrics and scores
  uint64_t seed = 0;
  bool panels = true; // OUT/panels/<type>_<stem>.png
  // Not a detector setting: run_protocol writes every intermediate there
  // (engine/eval/protocol_dump.h; `mdps eval --dump-intermediates`). Empty: none.
  std::string dump_intermediates;
  // Sets one value by its `mdps eval` option name without dashes (the preset
  // keys: t-start, rho, round1-t, round1-rho, lambda, eta, skip, samples,
  // crop, ...). Throws for an unknown key or a bad value.
  void set(const std::string& key, const std::string& value);
  void validate() const;
  std::string to_json() const;
  // Every setting of the detector as (set() key, text) pairs that set() reads
  // back to the same values bit for bit: what a detector
  // bundle stores. `limit` is left out: it selects test images, it is not
  // part of a detector.
  PresetValues values() const;
};

}  // namespace mdps
