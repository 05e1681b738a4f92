// The pictures `mdps score` writes for one image, at the input image's own
// size: <stem>_heatmap.png (jet over [lo, hi], the scale the caller chose:
// `mdps score` writes each batch before scoring the next, so never one over
// all images; docs/cli.md), <stem>_overlay.png (the heat map over the image,
// alpha 0.5, with the predicted defect's outline in white when there is a pixel threshold),
// <stem>_mask.png (0/255: map > pixel threshold, the rule of the model-size
// defect mask applied to the map resized bilinearly to the image) and
// <stem>_recon.png (the reconstruction, at the model's size: it is what the
// model produced). Every file is written atomically (engine/io/image.h save_png).
#pragma once
#include "include/mdps/mdps.h"
#include "engine/io/image.h"
#include <string>

namespace mdps::cli {

void write_score_images(const std::string& out_dir, const std::string& stem, const Image& image,
                        const ScoreResult& r, float lo, float hi, float pixel_threshold);

}  // namespace mdps::cli
