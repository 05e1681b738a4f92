#include "engine/detect/settings.h"
#include "engine/core/option_checks.h"
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
  else if (key == "blur-sigma") map.blur_sigma = to_float(key, v);
  else if (key == "blur-kernel") map.blur_kernel = to_int(key, v);
  else if (key == "layers") map.layers = to_int_list(key, v);
  else if (key == "crop") crop = to_float(key, v);
  else if (key == "batch") batch = to_int(key, v);
  else if (key == "limit") limit = to_int(key, v);
  else if (key == "image-score-k") score_k = to_int(key, v);
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
    MDPS_USAGE_CHECK(v == "authors" || v == "topk-mean", "--image-score: '", v, "' is not authors or topk-mean");
    score_kind = v == "authors" ? ImageScoreKind::Authors : ImageScoreKind::TopKMean;
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
             score_kind == ImageScoreKind::Authors ? "authors" : "topk-mean", "\", \"image_score_k\": ", score_k,
             ", \"mask_scope\": \"", dataset_scope ? "dataset" : "image", "\", \"batch\": ", batch,
             ", \"limit\": ", limit, ", \"crop\": ", numf(crop), ", \"seed\": ", seed, "}");
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
  return {{"variant", sampler.variant == Variant::Paper ? "paper" : "authors"},
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
          {"blur-sigma", f(map.blur_sigma)},
          {"blur-kernel", std::to_string(map.blur_kernel)},
          {"layers", layers},
          {"image-score", score_kind == ImageScoreKind::Authors ? "authors" : "topk-mean"},
          {"image-score-k", std::to_string(score_k)},
          {"mask-scope", dataset_scope ? "dataset" : "image"},
          {"batch", std::to_string(batch)},
          {"crop", f(crop)},
          {"seed", std::to_string(seed)}};
}
}  // namespace mdps
