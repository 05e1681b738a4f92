// Decision thresholds from data (`mdps calibrate`): either a high quantile
// of held-out normal images' scores (image threshold) and of all their map
// pixels (pixel threshold), or, on a labelled set, the thresholds with the
// best image and pixel F1. The images are scored exactly as `mdps score`
// scores them (engine/eval/score_files.h: full maps, no crop), so the thresholds
// apply to the numbers `mdps score` and the library produce.
#pragma once
#include "engine/detect/bundle.h"
#include "engine/io/dataset.h"
#include "engine/eval/evaluate.h"
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace mdps {

// The q-quantile (0 <= q <= 1) by linear interpolation between the order
// statistics, numpy.quantile's default: h = (n-1) q, x[floor h] +
// (h - floor h) (x[floor h + 1] - x[floor h]) over the sorted values.
// Throws for no values, NaNs or q outside [0,1].
double quantile(const std::vector<float>& values, double q);

// The threshold t such that "value > t" selects exactly the values >= v for
// float values: the largest float below v. F1-max thresholds (engine/metrics)
// count "score >= v"; decisions here are "score > t".
float threshold_below(double v);

struct Calibration {
  std::string method;  // "quantile" or "f1"
  Thresholds thresholds;
  double quantile = std::numeric_limits<double>::quiet_NaN();  // method quantile
  double pixel_quantile = std::numeric_limits<double>::quiet_NaN();
  double image_f1 = std::numeric_limits<double>::quiet_NaN();  // method f1: the F1 reached
  double pixel_f1 = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::string> files;  // the images scored, in order
  std::vector<float> scores;
  std::vector<int> labels;  // method f1: 0 normal, 1 defective
  int map_size = 0;
  double seconds = 0;
  // Calibrated protocol, method quantile: the normal images' statistics,
  // computed in the same run (their scores above are scored with them).
  std::optional<NormalStats> normal;
};

// The normal images --normal DIR names: a category root's normal test images
// (test/good, BTAD test/ok), else the images in the folder.
std::vector<std::string> normal_images(const std::string& dir);

// Scores `images` (normal ones) and takes the quantiles. Under the calibrated
// protocol the run first takes the images' NormalStats (collect_normal_stats)
// and scores them with those, as a detector carrying them would.
Calibration calibrate_quantile(const UNet& model, const ResNetFeatures* features,
                               const std::vector<std::string>& images, const EvalSettings& settings, double q,
                               double pixel_q, const EvalProgressFn& progress = {});
// Scores the test set of `ds` (normal and defective images with masks) and
// takes the F1-optimal thresholds over the image scores and over all pixels.
Calibration calibrate_f1(const UNet& model, const ResNetFeatures* features, const Dataset& ds,
                         const EvalSettings& settings, const EvalProgressFn& progress = {});

// The calibration as JSON: method, thresholds, quantiles or F1s, and every
// image's file and score (and label).
std::string calibration_json(const Calibration& c, const std::string& extra_json_members = "");

}  // namespace mdps
