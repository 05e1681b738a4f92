// The thresholds flags over a detector's files (engine/eval/detector_files.h,
// which loads what --model and --features name): --image-threshold /
// --pixel-threshold win over a bundle's thresholds, as protocol flags win over
// its settings.
#pragma once
#include "engine/detect/bundle.h"
#include "engine/eval/detector_files.h"
#include "engine/core/option_checks.h"
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

namespace mdps::cli {

// --image-threshold / --pixel-threshold over a bundle's thresholds.
struct ThresholdFlags {
  float image = 0.f, pixel = 0.f;
  CLI::Option* image_opt = nullptr;
  CLI::Option* pixel_opt = nullptr;
  void add(CLI::App* c, const std::string& what) {
    image_opt = c->add_option("--image-threshold", image,
                              "image decision: NG when the score > X" + what);
    pixel_opt = c->add_option("--pixel-threshold", pixel,
                              "defect mask: a pixel is a defect when its map value > Y" + what);
  }
  Thresholds resolve(const DetectorFiles& d) const {
    Thresholds t = d.bundle ? d.bundle->thresholds() : Thresholds{};
    if (image_opt && image_opt->count()) t.image = image;
    if (pixel_opt && pixel_opt->count()) t.pixel = pixel;
    MDPS_USAGE_CHECK(!t.has_image() || std::isfinite(t.image), "--image-threshold: ", t.image, " is not finite");
    MDPS_USAGE_CHECK(!t.has_pixel() || std::isfinite(t.pixel), "--pixel-threshold: ", t.pixel, " is not finite");
    return t;
  }
};

}  // namespace mdps::cli
