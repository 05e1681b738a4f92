#include "engine/detect/settings.h"
#include "engine/core/option_checks.h"
#include "engine/core/json_mini.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace mdps {
namespace {

int to_int(const std::string& key, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  MDPS_USAGE_CHECK(!v.empty() && end && *end == 0 && x >= INT32_MIN && x <= INT32_MAX, "--", key, ": '", v,
                   "' is not an integer");
  return int(x);
}
float to_float(const std::string& key, const std::string& v) {
  char* end = nullptr;
  float x = std::strtof(v.c_str(), &end);
  MDPS_USAGE_CHECK(!v.empty() && end && *end == 0 && std::isfinite(x), "--", key, ": '", v, "' is not a number");
  return x;
}
std::vector<int> to_int_list(const std::string& key, const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(to_int(key, item));
  MDPS_USAGE_CHECK(!out.empty(), "--", key, ": empty list");
  return out;
}

// Settings are floats: 7 digits print them as given (0.12, not 0.1199999973).
std::string numf(float v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", double(v));
  return buf;
}

}  // namespace

void EvalSettings::set(const std::string& key, const std::string& v) {
  if (key == "t-start") rounds.round2.t_start = to_int(key, v);
  else if (key == "rho") rounds.round2.rho = to_float(key, v);
  else if (key == "round1-t") rounds.round1.t_start = to_int(key, v);
  else if (key == "round1-rho") rounds.round1.rho = to_float(key, v);
  else if (key == "lambda") rounds.lambda = to_float(key, v);
  else if (key == "samples") rounds.samples = to_int(key, v);
  else if (key == "skip") sampler.skip = to_int(key, v);
  else if (key == "ddim-eta") sampler.ddim_eta = to_float(key, v);
  else if (key == "variant") sampler.variant = parse_variant(v);
  else if (key == "guidance-norm") sampler.norm = parse_guidance_norm(v);
  else if (key == "eta") map.eta = to_float(key, v);
  else if (key == "blur-sigma") {
    auto_blur_sigma = v == "auto";
    if (!auto_blur_sigma) map.blur_sigma = to_float(key, v);
  } else if (key == "blur-kernel") {
    auto_blur_kernel = v == "auto";
    if (!auto_blur_kernel) map.blur_kernel = to_int(key, v);
  }
  else if (key == "layers") map.layers = to_int_list(key, v);
  else if (key == "crop") crop = to_float(key, v);
  else if (key == "batch") batch = to_int(key, v);
  else if (key == "limit") limit = to_int(key, v);
  else if (key == "image-score-k") {
    auto_score_k = v == "auto";
    if (!auto_score_k) score_k = to_int(key, v);
  } else if (key == "image-score-fraction") score_fraction = to_float(key, v);
  else if (key == "protocol") {
    MDPS_USAGE_CHECK(v == "authors" || v == "calibrated", "--protocol: '", v, "' is not calibrated or authors");
    protocol = v == "authors" ? Protocol::Authors : Protocol::Calibrated;
  } else if (key == "gt-resize") {
    MDPS_USAGE_CHECK(v == "bilinear" || v == "nearest", "--gt-resize: '", v, "' is not bilinear or nearest");
    gt_resize = v == "nearest" ? GtResize::Nearest : GtResize::Bilinear;
  }
  else if (key == "seed") {
    char* end = nullptr;
    unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    MDPS_USAGE_CHECK(!v.empty() && v[0] != '-' && end && *end == 0, "--seed: '", v,
                     "' is not a non-negative integer");
    seed = uint64_t(x);
  }
  else if (key == "mask-scope") {
    MDPS_USAGE_CHECK(v == "image" || v == "dataset", "--mask-scope: '", v, "' is not image or dataset");
    dataset_scope = v == "dataset";
  } else if (key == "image-score") {
    score_kind = parse_image_score(v);
  } else
    throw UsageError(cat("unknown setting '", key, "'"));
}

// The one check of every protocol setting (engine/core/option_checks.h): the
// command line, presets, bundles and the library all end here.
void EvalSettings::validate() const {
  MDPS_USAGE_CHECK(batch >= 1 && batch <= kMaxBatch, "--batch must be in 1..", kMaxBatch, ", got ", batch);
  MDPS_USAGE_CHECK(limit >= 0, "--limit must be >= 0, got ", limit);
  MDPS_USAGE_CHECK(crop > 0.f && crop <= 1.f, "--crop must be in (0, 1], got ", crop);
  MDPS_USAGE_CHECK(rounds.samples >= 1 && rounds.samples <= kMaxSamples, "--samples must be in 1..", kMaxSamples,
                   ", got ", rounds.samples);
  MDPS_USAGE_CHECK(sampler.skip >= 1, "--skip must be >= 1, got ", sampler.skip);
  MDPS_USAGE_CHECK(rounds.round2.t_start > 0 && rounds.round2.t_start < 1000, "--t-start must be in 1..999, got ",
                   rounds.round2.t_start);
  MDPS_USAGE_CHECK(rounds.round1.t_start >= 0 && rounds.round1.t_start < 1000, "--round1-t must be in 0..999, got ",
                   rounds.round1.t_start);
  MDPS_USAGE_CHECK(score_k >= 1, "image score k must be >= 1");
  // NaN compares false with everything: each float is checked to be finite.
  check_non_negative(rounds.lambda, "--lambda");
  MDPS_USAGE_CHECK(rounds.lambda <= 1.f, "--lambda must be in [0, 1] (the mask threshold min + lambda (max - min)), "
                   "got ", rounds.lambda);
  check_non_negative(rounds.round2.rho, "--rho");
  check_non_negative(rounds.round1.rho, "--round1-rho");
  check_non_negative(map.eta, "--eta");
  check_non_negative(sampler.ddim_eta, "--ddim-eta");
  check_non_negative(map.blur_sigma, "--blur-sigma");
  MDPS_USAGE_CHECK(map.blur_kernel >= 1, "--blur-kernel must be >= 1, got ", map.blur_kernel);
  MDPS_USAGE_CHECK(score_fraction > 0.f && score_fraction <= 1.f, "--image-score-fraction must be in (0, 1], got ",
             score_fraction);
  MDPS_USAGE_CHECK(protocol == Protocol::Authors || !dataset_scope,
             "--mask-scope dataset is the authors' protocol (--protocol authors); the calibrated protocol takes the "
             "mask range from normal images");
}

const char* protocol_name(Protocol p) { return p == Protocol::Authors ? "authors" : "calibrated"; }

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
  }
  s.auto_blur_sigma = s.auto_blur_kernel = s.auto_score_k = false;
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
             ", \"final_max_feature\": ", n(final.feature), ", \"final_max_pixel\": ", n(final.pixel), "}");
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
  s.images = int(num_of("images"));
  s.round1.feature = float(num_of("round1_max_feature"));
  s.round1.pixel = float(num_of("round1_max_pixel"));
  s.round1_min = float(num_of("round1_min"));
  s.round1_max = float(num_of("round1_max"));
  s.final.feature = float(num_of("final_max_feature"));
  s.final.pixel = float(num_of("final_max_pixel"));
  MDPS_CHECK(s.images >= 1 && s.round1_min <= s.round1_max, what, ": statistics of ", s.images,
             " images with round-1 range [", s.round1_min, ", ", s.round1_max, "] are not usable");
  return s;
}

std::string EvalSettings::to_json() const {
  std::string layers;
  for (size_t i = 0; i < map.layers.size(); ++i) layers += (i ? "," : "") + std::to_string(map.layers[i]);
  return cat("{\"variant\": \"", sampler.variant == Variant::Paper ? "paper" : "authors", "\", \"guidance_norm\": \"",
             sampler.norm == GuidanceNorm::L2 ? "l2" : "squared", "\", \"skip\": ", sampler.skip,
             ", \"ddim_eta\": ", numf(sampler.ddim_eta), ", \"round1_t\": ", rounds.round1.t_start,
             ", \"round1_rho\": ", numf(rounds.round1.rho), ", \"t_start\": ", rounds.round2.t_start,
             ", \"rho\": ", numf(rounds.round2.rho), ", \"lambda\": ", numf(rounds.lambda),
             ", \"samples\": ", rounds.samples, ", \"eta\": ", numf(map.eta), ", \"blur_sigma\": ",
             numf(map.blur_sigma), ", \"blur_kernel\": ", map.blur_kernel, ", \"layers\": [", layers, "], \"image_score\": \"",
             image_score_name(score_kind), "\", \"image_score_k\": ", score_k,
             ", \"image_score_fraction\": ", numf(score_fraction), ", \"protocol\": \"", protocol_name(protocol),
             "\", \"normal_stats\": ", normal ? normal->to_json() : std::string("null"),
             ", \"mask_scope\": \"", dataset_scope ? "dataset" : "image", "\", \"batch\": ", batch,
             ", \"limit\": ", limit, ", \"gt_resize\": \"", gt_resize == GtResize::Nearest ? "nearest" : "bilinear",
             "\", \"crop\": ", numf(crop), ", \"seed\": ", seed, "}");
}

PresetValues EvalSettings::values() const {
  // The shortest text that reads back as the same float (9 digits always do):
  // 0.12, not 0.119999997.
  auto f = [](float v) {
    char buf[32];
    for (int digits = 6; digits <= 9; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
      if (std::strtof(buf, nullptr) == v) break;
    }
    return std::string(buf);
  };
  std::string layers;
  for (size_t i = 0; i < map.layers.size(); ++i) layers += (i ? "," : "") + std::to_string(map.layers[i]);
  const bool cal = protocol == Protocol::Calibrated;
  return {{"protocol", protocol_name(protocol)},
          {"variant", sampler.variant == Variant::Paper ? "paper" : "authors"},
          {"guidance-norm", sampler.norm == GuidanceNorm::L2 ? "l2" : "squared"},
          {"skip", std::to_string(sampler.skip)},
          {"ddim-eta", f(sampler.ddim_eta)},
          {"round1-t", std::to_string(rounds.round1.t_start)},
          {"round1-rho", f(rounds.round1.rho)},
          {"t-start", std::to_string(rounds.round2.t_start)},
          {"rho", f(rounds.round2.rho)},
          {"lambda", f(rounds.lambda)},
          {"samples", std::to_string(rounds.samples)},
          {"eta", f(map.eta)},
          {"blur-sigma", cal && auto_blur_sigma ? std::string("auto") : f(map.blur_sigma)},
          {"blur-kernel", cal && auto_blur_kernel ? std::string("auto") : std::to_string(map.blur_kernel)},
          {"layers", layers},
          {"image-score", image_score_name(score_kind)},
          {"image-score-k", cal && auto_score_k ? std::string("auto") : std::to_string(score_k)},
          {"image-score-fraction", f(score_fraction)},
          {"mask-scope", dataset_scope ? "dataset" : "image"},
          {"batch", std::to_string(batch)},
          {"crop", f(crop)},
          {"seed", std::to_string(seed)}};
}
}  // namespace mdps
