#include "engine/detect/setting_table.h"
#include "engine/core/option_checks.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace mdps {
namespace {

// ---- reading text ---------------------------------------------------------

int to_int(const char* key, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  MDPS_USAGE_CHECK(!v.empty() && end && *end == 0 && x >= INT32_MIN && x <= INT32_MAX, "--", key, ": '", v,
                   "' is not an integer");
  return int(x);
}
float to_float(const char* key, const std::string& v) {
  char* end = nullptr;
  float x = std::strtof(v.c_str(), &end);
  MDPS_USAGE_CHECK(!v.empty() && end && *end == 0 && std::isfinite(x), "--", key, ": '", v, "' is not a number");
  return x;
}
std::vector<int> to_int_list(const char* key, const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(to_int(key, item));
  MDPS_USAGE_CHECK(!out.empty(), "--", key, ": empty list");
  return out;
}
uint64_t to_seed(const char* key, const std::string& v) {
  char* end = nullptr;
  unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  MDPS_USAGE_CHECK(!v.empty() && v[0] != '-' && end && *end == 0, "--", key, ": '", v,
                   "' is not a non-negative integer");
  return uint64_t(x);
}
// One of `names` (2 or more): its index; else "--key: 'v' is not a, b or c".
int to_choice(const char* key, const std::string& v, std::initializer_list<const char*> names) {
  int i = 0;
  for (const char* n : names) {
    if (v == n) return i;
    ++i;
  }
  std::string list;
  i = 0;
  for (const char* n : names) {
    list += i == 0 ? "" : i + 1 == int(names.size()) ? " or " : ", ";
    list += n;
    ++i;
  }
  throw UsageError(cat("--", key, ": '", v, "' is not ", list));
}

// ---- printing -------------------------------------------------------------

// A preset/bundle value: the shortest text that reads back as the same float
// (9 digits always do): 0.12, not 0.119999997.
std::string text_of(float v) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}
// A report.json value: 7 digits print settings as given (0.12, not 0.1199999973).
std::string json_of(float v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", double(v));
  return buf;
}
std::string quoted(const std::string& s) { return "\"" + s + "\""; }
std::string list_of(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}
// The size-dependent values print "auto" while they follow the size.
bool follows_size(const EvalSettings& s, bool flag) { return s.protocol == Protocol::Calibrated && flag; }
std::string auto_or(const EvalSettings& s, bool flag, const std::string& text) {
  return follows_size(s, flag) ? std::string("auto") : text;
}
// A size-following value's parse: "auto" sets its flag, a number clears it.
void set_auto_or(bool& flag, float& value, const char* key, const std::string& v) {
  flag = v == "auto";
  if (!flag) value = to_float(key, v);
}
void set_auto_or(bool& flag, int& value, const char* key, const std::string& v) {
  flag = v == "auto";
  if (!flag) value = to_int(key, v);
}

const char* variant_name(Variant v) { return v == Variant::Paper ? "paper" : "authors"; }
const char* norm_name(GuidanceNorm n) { return n == GuidanceNorm::L2 ? "l2" : "squared"; }
const char* gt_name(GtResize g) { return g == GtResize::Nearest ? "nearest" : "bilinear"; }
const char* scope_name(bool dataset) { return dataset ? "dataset" : "image"; }

using S = EvalSettings;
using T = const std::string&;

// The entries in report.json's order. Each check keeps the message the
// options have always had (tests/test_hostile.cpp reads them).
const std::vector<SettingEntry>& entries() {
  static const std::vector<SettingEntry> table = {
      {"variant", "variant", "authors (normal-region replacement) or paper (masked epsilon fusion)", nullptr, true,
       false, [](S& s, T v) { s.sampler.variant = to_choice("variant", v, {"authors", "paper"}) ? Variant::Paper : Variant::Authors; },
       [](const S& s) { return std::string(variant_name(s.sampler.variant)); },
       [](const S& s) { return quoted(variant_name(s.sampler.variant)); }, nullptr},
      {"guidance-norm", "guidance_norm", "l2 (the authors: over the batch) or squared (the paper: per image)",
       "by the variant: l2 for authors, squared for paper", true, false,
       [](S& s, T v) { s.sampler.norm = to_choice("guidance-norm", v, {"l2", "squared"}) ? GuidanceNorm::Squared : GuidanceNorm::L2; },
       [](const S& s) { return std::string(norm_name(s.sampler.norm)); },
       [](const S& s) { return quoted(norm_name(s.sampler.norm)); }, nullptr},
      {"skip", "skip", "DDIM stride", nullptr, true, false, [](S& s, T v) { s.sampler.skip = to_int("skip", v); },
       [](const S& s) { return std::to_string(s.sampler.skip); },
       [](const S& s) { return std::to_string(s.sampler.skip); },
       [](const S& s) { MDPS_USAGE_CHECK(s.sampler.skip >= 1, "--skip must be >= 1, got ", s.sampler.skip); }},
      {"ddim-eta", "ddim_eta", "DDIM noise (1: the authors'; 0: deterministic)", nullptr, true, false,
       [](S& s, T v) { s.sampler.ddim_eta = to_float("ddim-eta", v); },
       [](const S& s) { return text_of(s.sampler.ddim_eta); }, [](const S& s) { return json_of(s.sampler.ddim_eta); },
       [](const S& s) { check_non_negative(s.sampler.ddim_eta, "--ddim-eta"); }},
      {"round1-t", "round1_t", "T of the mask round; 0: a single unmasked round", nullptr, true, false,
       [](S& s, T v) { s.rounds.round1.t_start = to_int("round1-t", v); },
       [](const S& s) { return std::to_string(s.rounds.round1.t_start); },
       [](const S& s) { return std::to_string(s.rounds.round1.t_start); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.rounds.round1.t_start >= 0 && s.rounds.round1.t_start < 1000,
                          "--round1-t must be in 0..999, got ", s.rounds.round1.t_start);
       }},
      {"round1-rho", "round1_rho", "guidance weight of the mask round", nullptr, true, false,
       [](S& s, T v) { s.rounds.round1.rho = to_float("round1-rho", v); },
       [](const S& s) { return text_of(s.rounds.round1.rho); }, [](const S& s) { return json_of(s.rounds.round1.rho); },
       [](const S& s) { check_non_negative(s.rounds.round1.rho, "--round1-rho"); }},
      {"t-start", "t_start", "T of the final round", nullptr, true, false,
       [](S& s, T v) { s.rounds.round2.t_start = to_int("t-start", v); },
       [](const S& s) { return std::to_string(s.rounds.round2.t_start); },
       [](const S& s) { return std::to_string(s.rounds.round2.t_start); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.rounds.round2.t_start > 0 && s.rounds.round2.t_start < 1000,
                          "--t-start must be in 1..999, got ", s.rounds.round2.t_start);
       }},
      {"rho", "rho", "guidance weight of the final round", nullptr, true, false,
       [](S& s, T v) { s.rounds.round2.rho = to_float("rho", v); },
       [](const S& s) { return text_of(s.rounds.round2.rho); }, [](const S& s) { return json_of(s.rounds.round2.rho); },
       [](const S& s) { check_non_negative(s.rounds.round2.rho, "--rho"); }},
      {"lambda", "lambda", "mask threshold min + lambda (max - min)", nullptr, true, false,
       [](S& s, T v) { s.rounds.lambda = to_float("lambda", v); },
       [](const S& s) { return text_of(s.rounds.lambda); }, [](const S& s) { return json_of(s.rounds.lambda); },
       [](const S& s) {
         // NaN compares false with everything: check_non_negative checks it is finite.
         check_non_negative(s.rounds.lambda, "--lambda");
         MDPS_USAGE_CHECK(s.rounds.lambda <= 1.f, "--lambda must be in [0, 1] (the mask threshold min + lambda ",
                          "(max - min)), got ", s.rounds.lambda);
       }},
      {"samples", "samples", "Ns posterior samples per image, maps averaged",
       "2 under the calibrated protocol, 1 under the authors'", true, false,
       [](S& s, T v) { s.rounds.samples = to_int("samples", v); },
       [](const S& s) { return std::to_string(s.rounds.samples); },
       [](const S& s) { return std::to_string(s.rounds.samples); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.rounds.samples >= 1 && s.rounds.samples <= kMaxSamples, "--samples must be in 1..",
                          kMaxSamples, ", got ", s.rounds.samples);
       }},
      {"eta", "eta", "weight of the pixel term in the anomaly map; auto: follows the size (calibrated protocol)",
       "calibrated 7 max(1, 128/S)^2, authors 7", true, false,
       [](S& s, T v) { set_auto_or(s.auto_eta, s.map.eta, "eta", v); },
       [](const S& s) { return auto_or(s, s.auto_eta, text_of(s.map.eta)); },
       [](const S& s) { return json_of(s.map.eta); }, [](const S& s) { check_non_negative(s.map.eta, "--eta"); }},
      {"blur-sigma", "blur_sigma", "Gaussian blur of the map; auto: follows the size (calibrated protocol)",
       "calibrated 4 S/256, authors 4", true, false,
       [](S& s, T v) { set_auto_or(s.auto_blur_sigma, s.map.blur_sigma, "blur-sigma", v); },
       [](const S& s) { return auto_or(s, s.auto_blur_sigma, text_of(s.map.blur_sigma)); },
       [](const S& s) { return json_of(s.map.blur_sigma); },
       [](const S& s) { check_non_negative(s.map.blur_sigma, "--blur-sigma"); }},
      {"blur-kernel", "blur_kernel", "Gaussian blur kernel size; auto: follows the size (calibrated protocol)",
       "calibrated 33 S/256 odd >= 3, authors 33", true, false,
       [](S& s, T v) { set_auto_or(s.auto_blur_kernel, s.map.blur_kernel, "blur-kernel", v); },
       [](const S& s) { return auto_or(s, s.auto_blur_kernel, std::to_string(s.map.blur_kernel)); },
       [](const S& s) { return std::to_string(s.map.blur_kernel); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.map.blur_kernel >= 1, "--blur-kernel must be >= 1, got ", s.map.blur_kernel);
       }},
      {"layers", "layers", "ResNet stages of the perceptual term", nullptr, true, false,
       [](S& s, T v) { s.map.layers = to_int_list("layers", v); }, [](const S& s) { return list_of(s.map.layers); },
       [](const S& s) { return "[" + list_of(s.map.layers) + "]"; }, nullptr},
      {"image-score", "image_score",
       "authors (softmax top-k sum), topk-mean, max (of the blurred map), topk-fraction (mean of the top "
       "--image-score-fraction of the pixels) or normal-z (max of the map standardised pixel by pixel by normal "
       "images' maps; calibrated protocol, a calibrated detector); auto: topk-fraction where the map fuses a "
       "feature memory (--memory-weight), else normal-z where the detector carries normal images' per-pixel "
       "statistics (calibrated protocol), else authors",
       "auto", true, false,
       [](S& s, T v) {
         static const ImageScoreKind kinds[] = {ImageScoreKind::Authors, ImageScoreKind::TopKMean,
                                                ImageScoreKind::Max, ImageScoreKind::TopFraction,
                                                ImageScoreKind::NormalZ};
         s.auto_score_kind = v == "auto";
         if (s.auto_score_kind) {
           s.score_kind = ImageScoreKind::Authors;  // what auto is without statistics
         } else {
           const int i = to_choice("image-score", v, {"auto", "authors", "topk-mean", "max", "topk-fraction", "normal-z"});
           s.score_kind = kinds[i - 1];
         }
       },
       [](const S& s) { return auto_or(s, s.auto_score_kind, image_score_name(s.score_kind)); },
       [](const S& s) {
         return quoted(image_score_name(s.auto_score_kind ? auto_score_kind_of(s) : s.score_kind));
       },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.auto_score_kind || s.score_kind != ImageScoreKind::NormalZ || s.protocol == Protocol::Calibrated,
                          "--image-score normal-z takes normal images' per-pixel statistics, which belong to the "
                          "calibrated protocol (--protocol calibrated)");
       }},
      {"image-score-k", "image_score_k", "k of authors / topk-mean; auto: follows the size (calibrated protocol)",
       "calibrated 500 (S/256)^2 >= 1, authors 500", true, false,
       [](S& s, T v) { set_auto_or(s.auto_score_k, s.score_k, "image-score-k", v); },
       [](const S& s) { return auto_or(s, s.auto_score_k, std::to_string(s.score_k)); },
       [](const S& s) { return std::to_string(s.score_k); },
       [](const S& s) { MDPS_USAGE_CHECK(s.score_k >= 1, "--image-score-k must be >= 1, got ", s.score_k); }},
      {"image-score-fraction", "image_score_fraction", "fraction of the pixels of topk-fraction", nullptr, true, false,
       [](S& s, T v) { s.score_fraction = to_float("image-score-fraction", v); },
       [](const S& s) { return text_of(s.score_fraction); }, [](const S& s) { return json_of(s.score_fraction); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.score_fraction > 0.f && s.score_fraction <= 1.f,
                          "--image-score-fraction must be in (0, 1], got ", s.score_fraction);
       }},
      {"protocol", "protocol",
       "calibrated (scores depend only on the image and the detector) or authors (the authors' batch- and "
       "test-set-coupled code, as the presets)",
       nullptr, true, false,
       [](S& s, T v) { s.protocol = to_choice("protocol", v, {"calibrated", "authors"}) ? Protocol::Authors : Protocol::Calibrated; },
       [](const S& s) { return std::string(protocol_name(s.protocol)); },
       [](const S& s) { return quoted(protocol_name(s.protocol)); }, nullptr},
      // Not a setting but the calibrated protocol's statistics: stored beside
      // a bundle's settings, reported with them.
      {nullptr, "normal_stats", "", nullptr, false, false, nullptr, nullptr,
       [](const S& s) { return s.normal ? s.normal->to_json() : std::string("null"); }, nullptr},
      {"mask-scope", "mask_scope",
       "authors protocol: image (per-image threshold) or dataset (two passes, as the authors)", nullptr, true, true,
       [](S& s, T v) { s.dataset_scope = to_choice("mask-scope", v, {"image", "dataset"}) == 1; },
       [](const S& s) { return std::string(scope_name(s.dataset_scope)); },
       [](const S& s) { return quoted(scope_name(s.dataset_scope)); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.protocol == Protocol::Authors || !s.dataset_scope,
                          "--mask-scope dataset is the authors' protocol (--protocol authors); the calibrated "
                          "protocol takes the mask range from normal images");
       }},
      {"batch", "batch", "evaluation batch: guidance group and eta maxima (authors' protocol); images per U-Net call, "
       "speed only, never results (calibrated protocol)", nullptr, true, false,
       [](S& s, T v) { s.batch = to_int("batch", v); }, [](const S& s) { return std::to_string(s.batch); },
       [](const S& s) { return std::to_string(s.batch); },
       [](const S& s) {
         MDPS_USAGE_CHECK(s.batch >= 1 && s.batch <= kMaxBatch, "--batch must be in 1..", kMaxBatch, ", got ",
                          s.batch);
       }},
      {"limit", "limit", "at most N test images per type (0: all)", nullptr, false, true,
       [](S& s, T v) { s.limit = to_int("limit", v); }, [](const S& s) { return std::to_string(s.limit); },
       [](const S& s) { return std::to_string(s.limit); },
       [](const S& s) { MDPS_USAGE_CHECK(s.limit >= 0, "--limit must be >= 0, got ", s.limit); }},
      {"gt-resize", "gt_resize",
       "ground-truth masks to the model size: bilinear (the authors: Pillow bilinear, then > 0) or nearest", nullptr,
       false, true,
       [](S& s, T v) {
         s.gt_resize = to_choice("gt-resize", v, {"bilinear", "nearest"}) ? GtResize::Nearest : GtResize::Bilinear;
       },
       [](const S& s) { return std::string(gt_name(s.gt_resize)); },
       [](const S& s) { return quoted(gt_name(s.gt_resize)); }, nullptr},
      {"crop", "crop", "centre-crop fraction of maps and masks before the metrics and scores (the presets: 0.875)",
       nullptr, true, true, [](S& s, T v) { s.crop = to_float("crop", v); },
       [](const S& s) { return text_of(s.crop); }, [](const S& s) { return json_of(s.crop); },
       [](const S& s) { MDPS_USAGE_CHECK(s.crop > 0.f && s.crop <= 1.f, "--crop must be in (0, 1], got ", s.crop); }},
      {"seed", "seed", "Philox seed", nullptr, true, false, [](S& s, T v) { s.seed = to_seed("seed", v); },
       [](const S& s) { return std::to_string(s.seed); }, [](const S& s) { return std::to_string(s.seed); },
       nullptr},
      // Added after the members scripts already read (issue 18), so their order stays.
      {"memory-weight", "memory_weight",
       "weight of the feature-memory term (distance of the image's ResNet features to the nearest normal "
       "image's) in the final map, beside the reconstruction's map; 0: the reconstruction's map alone; used where "
       "the detector was calibrated on normal images with a feature extractor reaching stage 3; auto: 4 under "
       "the calibrated protocol, 0 under the authors'",
       "auto", true, false,
       [](S& s, T v) { set_auto_or(s.auto_memory_weight, s.memory_weight, "memory-weight", v); },
       [](const S& s) { return auto_or(s, s.auto_memory_weight, text_of(s.memory_weight)); },
       [](const S& s) { return json_of(s.memory_weight_in_effect()); },
       [](const S& s) {
         check_non_negative(s.memory_weight, "--memory-weight");
         MDPS_USAGE_CHECK(s.auto_memory_weight || s.memory_weight == 0.f || s.protocol == Protocol::Calibrated,
                          "--memory-weight takes a feature memory of normal images, which belongs to the "
                          "calibrated protocol (--protocol calibrated)");
       }},
  };
  return table;
}

}  // namespace

const std::vector<SettingEntry>& setting_table() { return entries(); }

std::string setting_text(float v) { return text_of(v); }

const SettingEntry* find_setting(const std::string& key) {
  for (const SettingEntry& e : entries())
    if (e.key && key == e.key) return &e;
  return nullptr;
}

EvalSettings default_settings() {
  EvalSettings s;
  // The protocol is the calibrated one unless chosen (by a flag, the preset,
  // or a bundle): on tire at 64x64 it measures at least as well as the
  // authors' (bench/RESULTS.md, issue 18) and its scores do not depend on the
  // other images of a run. The struct's own default stays the authors' (the
  // golden tests).
  s.protocol = Protocol::Calibrated;
  s.sampler.norm = guidance_norm_of(s.sampler.variant);
  return s;
}

std::string setting_help(const SettingEntry& e) {
  const std::string def = e.default_note ? std::string(e.default_note) : e.print(default_settings());
  return cat(e.help, " (default ", def, ")");
}

GuidanceNorm guidance_norm_of(Variant v) { return v == Variant::Paper ? GuidanceNorm::Squared : GuidanceNorm::L2; }

int default_samples(Protocol p) { return p == Protocol::Calibrated ? kCalibratedDefaultSamples : 1; }

void SettingLayers::bundle(const PresetValues& values, const Skip& skip) {
  // A bundle written before the protocol was a setting ran the authors'.
  if (std::none_of(values.begin(), values.end(), [](const auto& kv) { return kv.first == "protocol"; }))
    s_.protocol = Protocol::Authors;
  for (const auto& [k, v] : values) {
    if (skip && skip(k)) continue;
    s_.set(k, v);
    bundle_norm_ = bundle_norm_ || k == "guidance-norm";
    samples_chosen_ = samples_chosen_ || k == "samples";
  }
}

void SettingLayers::chosen(const PresetValues& values, const std::string& source, const Skip& skip) {
  for (const auto& [k, v] : values) {
    if (skip && skip(k)) continue;
    if (source.empty()) {
      s_.set(k, v);
    } else {
      try {
        s_.set(k, v);
      } catch (const Error& e) {
        throw Error(source + e.what());  // the file is at fault, not the command line
      }
    }
    norm_chosen_ = norm_chosen_ || k == "guidance-norm";
    samples_chosen_ = samples_chosen_ || k == "samples";
    variant_changed_ = variant_changed_ || k == "variant";
  }
}

EvalSettings SettingLayers::finish() const {
  EvalSettings s = s_;
  if (!norm_chosen_ && !(bundle_norm_ && !variant_changed_)) s.sampler.norm = guidance_norm_of(s.sampler.variant);
  if (!samples_chosen_) s.rounds.samples = default_samples(s.protocol);
  s.validate();
  return s;
}

}  // namespace mdps
