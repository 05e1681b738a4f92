#include "engine/eval/calibrate.h"
#include "engine/core/json_mini.h"
#include "engine/eval/metrics.h"
#include "engine/eval/score_files.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace mdps {
namespace {

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void check_q(double q, const char* what) {
  MDPS_CHECK(q >= 0.0 && q <= 1.0, what, " must be in [0, 1], got ", q);
}

}  // namespace

double quantile(const std::vector<float>& values, double q) {
  check_q(q, "quantile");
  MDPS_CHECK(!values.empty(), "quantile of no values");
  for (size_t i = 0; i < values.size(); ++i) MDPS_CHECK(!std::isnan(values[i]), "quantile: value ", i, " is NaN");
  // Two order statistics by selection: O(n), as the pixel sets are large.
  std::vector<float> v = values;
  const double h = double(v.size() - 1) * q;
  const size_t lo = size_t(std::floor(h));
  std::nth_element(v.begin(), v.begin() + long(lo), v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + long(lo) + 1, v.end());
  return a + (h - double(lo)) * (b - a);
}

float threshold_below(double v) {
  MDPS_CHECK(std::isfinite(v), "threshold_below: ", v, " is not finite");
  return std::nextafter(float(v), -std::numeric_limits<float>::infinity());
}

std::vector<std::string> normal_images(const std::string& dir) {
  if (!is_category_root(dir)) return list_images(dir);
  Dataset ds = read_dataset(dir);
  std::vector<std::string> out;
  for (const auto& s : ds.test)
    if (s.label == 0) out.push_back(s.image_path);
  MDPS_CHECK(!out.empty(), "--normal ", dir, ": the category has no normal test images (test/good or test/ok)");
  return out;
}

Calibration calibrate_quantile(const UNet& model, const ResNetFeatures* features,
                               const std::vector<std::string>& images, const EvalSettings& settings, double q,
                               double pixel_q, const EvalProgressFn& progress) {
  check_q(q, "--quantile");
  check_q(pixel_q, "--pixel-quantile");
  FileScores fs;
  std::optional<NormalStats> normal;
  if (settings.protocol == Protocol::Calibrated) {
    MDPS_CHECK(!images.empty(), "no images given");
    const int S = model.config().image_size;
    for (const auto& p : images) fs.images.push_back(load_model_image(p, S));
    const auto t0 = std::chrono::steady_clock::now();
    normal = collect_normal_stats(
        model, features, images.size(),
        [&](size_t b, size_t e) {
          return images_to_tensor(std::vector<Image>(fs.images.begin() + long(b), fs.images.begin() + long(e)));
        },
        settings, progress, &fs.protocol.maps);
    fs.protocol.size = S;
    fs.protocol.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The image score as a detector carrying these statistics scores (image-score auto: normal-z).
    EvalSettings with = settings;
    with.normal = normal;
    const EvalSettings sized = with.at_size(S);
    if (sized.score_kind == ImageScoreKind::NormalZ) {
      // Each normal image against the statistics of the others: scored
      // against statistics that include it, every image would look more
      // normal than an unseen one does, and the threshold would be too low.
      fs.scores = normal_z_scores_leave_one_out(fs.protocol.maps, images.size(), S, S);
    } else {
      fs.scores = image_scores(Tensor::from_vector({int64_t(images.size()), 1, S, S}, fs.protocol.maps),
                               sized.score_kind, sized.score_k, sized.score_fraction);
    }
  } else {
    fs = score_files(model, features, images, settings, progress);
  }
  Calibration c;
  c.normal = normal;
  c.method = "quantile";
  c.quantile = q;
  c.pixel_quantile = pixel_q;
  c.files = images;
  c.scores = fs.scores;
  c.map_size = fs.protocol.size;
  c.seconds = fs.protocol.seconds;
  c.thresholds.image = float(quantile(fs.scores, q));
  c.thresholds.pixel = float(quantile(fs.protocol.maps, pixel_q));
  return c;
}

Calibration calibrate_f1(const UNet& model, const ResNetFeatures* features, const Dataset& ds,
                         const EvalSettings& settings, const EvalProgressFn& progress) {
  // The full maps, as `mdps score` sees them: a preset's crop is for the metrics only.
  EvalSettings st = settings;
  st.crop = 1.f;
  EvalResult r = evaluate(model, features, ds, st, {}, progress);
  Calibration c;
  c.method = "f1";
  for (const auto& s : r.samples) {
    c.files.push_back(s.image_path);
    c.labels.push_back(s.label);
  }
  c.scores = r.scores;
  c.map_size = r.H;
  c.seconds = r.seconds;
  std::vector<double> s(r.scores.begin(), r.scores.end());
  F1Max img = f1_max(s, c.labels);
  c.image_f1 = img.f1;
  c.thresholds.image = threshold_below(img.threshold);
  std::vector<double> px(r.maps.begin(), r.maps.end());
  std::vector<int> pl(r.masks.begin(), r.masks.end());
  F1Max pix = f1_max(px, pl);
  c.pixel_f1 = pix.f1;
  c.thresholds.pixel = threshold_below(pix.threshold);
  return c;
}

std::string calibration_json(const Calibration& c, const std::string& extra) {
  std::string items;
  for (size_t i = 0; i < c.files.size(); ++i) {
    items += cat(i ? ",\n    " : "", "{\"file\": ", json::quote(c.files[i]), ", \"score\": ", num(c.scores[i]));
    if (!c.labels.empty()) items += cat(", \"label\": ", c.labels[i]);
    items += cat(", \"decision\": \"", is_anomalous(c.scores[i], c.thresholds) ? "NG" : "OK", "\"}");
  }
  std::string js = cat("{\n  \"engine\": \"mdps\",\n  \"engine_version\": \"", MDPS_VERSION, "\",\n  \"method\": \"",
                       c.method, "\",\n  \"image_threshold\": ", num(c.thresholds.image),
                       ",\n  \"pixel_threshold\": ", num(c.thresholds.pixel));
  if (c.method == "quantile")
    js += cat(",\n  \"quantile\": ", num(c.quantile), ",\n  \"pixel_quantile\": ", num(c.pixel_quantile));
  else
    js += cat(",\n  \"image_f1\": ", num(c.image_f1), ",\n  \"pixel_f1\": ", num(c.pixel_f1));
  if (c.normal) js += cat(",\n  \"normal_stats\": ", c.normal->to_json());
  js +=
      cat(",\n  \"images\": ", c.files.size(), ",\n  \"map_size\": ", c.map_size, ",\n  \"seconds\": ", num(c.seconds),
          extra.empty() ? "" : ",\n  ", extra, ",\n  \"scores\": [\n    ", items, "\n  ]\n}\n");
  json::parse(js, "calibration JSON");  // never write what other readers would reject
  return js;
}

}  // namespace mdps
