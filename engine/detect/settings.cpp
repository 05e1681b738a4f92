#include "engine/detect/settings.h"
#include "engine/detect/setting_table.h"
#include "engine/core/option_checks.h"
#include "engine/core/json_mini.h"
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>

namespace mdps {

// Each of these reads the table (engine/detect/setting_table.h): a setting's
// key, parse, print, report.json member and check are written only there.
void EvalSettings::set(const std::string& key, const std::string& v) {
  const SettingEntry* e = find_setting(key);
  if (!e) throw UsageError(cat("unknown setting '", key, "'"));
  e->parse(*this, v);
}

// The one check of every protocol setting (engine/core/option_checks.h): the
// command line, presets, bundles and the library all end here.
void EvalSettings::validate() const {
  for (const SettingEntry& e : setting_table())
    if (e.check) e.check(*this);
}

const char* protocol_name(Protocol p) { return p == Protocol::Authors ? "authors" : "calibrated"; }

float EvalSettings::memory_weight_in_effect() const {
  if (!auto_memory_weight) return memory_weight;
  return protocol == Protocol::Calibrated ? kCalibratedMemoryWeight : 0.f;
}

const NormalStats* EvalSettings::fused_memory() const {
  return protocol == Protocol::Calibrated && memory_weight_in_effect() > 0.f && normal && !normal->memory.empty()
             ? &*normal
             : nullptr;
}

ImageScoreKind auto_score_kind_of(const EvalSettings& s) {
  if (s.fused_memory()) return ImageScoreKind::TopFraction;
  return s.protocol == Protocol::Calibrated && s.pixel_normals() ? ImageScoreKind::NormalZ : s.score_kind;
}

EvalSettings EvalSettings::at_size(int S) const {
  MDPS_CHECK(S >= 1, "image size ", S, " must be positive");
  EvalSettings s = *this;
  if (protocol == Protocol::Calibrated) {
    const double f = double(S) / 256.0;
    if (auto_blur_sigma) s.map.blur_sigma = float(4.0 * f);
    if (auto_blur_kernel) {
      int k = int(std::lround(33.0 * f));
      if (k % 2 == 0) ++k;
      s.map.blur_kernel = std::max(3, k);
    }
    if (auto_score_k) s.score_k = std::max(1, int(std::lround(500.0 * f * f)));
    if (auto_eta) s.map.eta = float(7.0 * std::max(1.0, (128.0 / S) * (128.0 / S)));
  }
  if (auto_score_kind) s.score_kind = auto_score_kind_of(*this);
  s.memory_weight = memory_weight_in_effect();
  s.auto_blur_sigma = s.auto_blur_kernel = s.auto_score_k = s.auto_score_kind = s.auto_eta = false;
  s.auto_memory_weight = false;
  return s;
}

std::string NormalStats::to_json() const {
  auto n = [](float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", double(v));
    return std::string(buf);
  };
  return cat("{\"images\": ", images, ", \"round1_max_feature\": ", n(round1.feature), ", \"round1_max_pixel\": ",
             n(round1.pixel), ", \"round1_min\": ", n(round1_min), ", \"round1_max\": ", n(round1_max),
             ", \"final_max_feature\": ", n(final.feature), ", \"final_max_pixel\": ", n(final.pixel),
             memory.images == 0 ? std::string()
                            : cat(", \"memory_images\": ", memory.images, ", \"memory_grid\": ", memory.grid,
                                  ", \"memory_dim\": ", memory.dim, ", \"map_max\": ", n(map_max),
                                  ", \"memory_max\": ", n(memory_max)),
             "}");
}

NormalStats NormalStats::from_json(const std::string& text, const std::string& what) {
  const json::Value v = json::parse(text, what);
  MDPS_CHECK(v.kind == json::Kind::Object, what, ": not a JSON object");
  auto num_of = [&](const char* key) {
    const json::Value* x = v.find(key);
    MDPS_CHECK(x && x->kind == json::Kind::Number && std::isfinite(x->number), what, ": no finite number '", key, "'");
    return x->number;
  };
  NormalStats s;
  // Converted only within range: a double beyond an int or a float would be
  // undefined behaviour, and the text comes from a file.
  auto count_of = [&](const char* key) {
    const double x = num_of(key);
    MDPS_CHECK(x >= 0.0 && x <= double(1 << 30) && x == std::floor(x), what, ": '", key, "' = ", x,
               " is not a count");
    return int(x);
  };
  auto float_of = [&](const char* key) {
    const double x = num_of(key);
    MDPS_CHECK(std::fabs(x) <= double(std::numeric_limits<float>::max()), what, ": '", key, "' = ", x,
               " is beyond a float");
    return float(x);
  };
  s.images = count_of("images");
  s.round1.feature = float_of("round1_max_feature");
  s.round1.pixel = float_of("round1_max_pixel");
  s.round1_min = float_of("round1_min");
  s.round1_max = float_of("round1_max");
  s.final.feature = float_of("final_max_feature");
  s.final.pixel = float_of("final_max_pixel");
  // The feature memory's shape and maxima (its rows are stored beside, as a
  // tensor): all or none.
  if (v.find("memory_images")) {
    s.memory.images = count_of("memory_images");
    s.memory.grid = count_of("memory_grid");
    s.memory.dim = count_of("memory_dim");
    s.map_max = float_of("map_max");
    s.memory_max = float_of("memory_max");
    MDPS_CHECK(s.memory.images >= 1 && s.memory.grid >= 1 && s.memory.grid <= 4096 && s.memory.dim >= 1 &&
                   s.memory.dim <= 65536 && s.map_max >= 0.f &&
                   s.memory_max >= 0.f,
               what, ": feature memory of ", s.memory.images, " images, ", s.memory.grid, "x", s.memory.grid, " of ",
               s.memory.dim, ", maxima ", s.map_max, " and ", s.memory_max, " is not usable");
  }
  MDPS_CHECK(s.images >= 1 && s.round1_min <= s.round1_max, what, ": statistics of ", s.images,
             " images with round-1 range [", s.round1_min, ", ", s.round1_max, "] are not usable");
  return s;
}

std::string EvalSettings::to_json() const {
  std::string out = "{";
  for (const SettingEntry& e : setting_table())
    out += cat(out.size() > 1 ? ", " : "", "\"", e.json, "\": ", e.json_value(*this));
  return out + "}";
}

PresetValues EvalSettings::values() const {
  // The protocol first: what "auto" and the other values mean depends on it
  // (and bundles keep the order they have always been written in).
  const SettingEntry& protocol = *find_setting("protocol");
  PresetValues out{{protocol.key, protocol.print(*this)}};
  for (const SettingEntry& e : setting_table())
    if (e.stored && &e != &protocol) out.emplace_back(e.key, e.print(*this));
  return out;
}
}  // namespace mdps
