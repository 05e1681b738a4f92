// The `mdps eval` panel of one test image, readable at a glance: the model-
// size tiles (image, reconstruction, ground truth, anomaly map) enlarged by
// an integer factor with nearest-neighbour sampling (so each model pixel
// stays a visible square and nothing is invented), a title over each tile
// and caption lines above them in the bitmap font (engine/eval/font.h).
//
// Layout, top to bottom: caption lines, tile titles, tiles; a dark
// background, 8-pixel margins and gaps. Text is drawn at scale 2 (12 x 18
// pixels a character cell, lines 6 pixels apart) and cut with "..." where it
// would overflow.
#pragma once
#include "engine/io/image.h"
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace mdps {

// One coloured piece of a caption line (colour 0..255).
struct TextSpan {
  std::string text;
  float r = 235, g = 235, b = 235;
};
using CaptionLine = std::vector<TextSpan>;

// The factor that brings `size` to at least `min_side` pixels (1 when it is
// already that large).
int panel_scale(int size, int min_side);

// Tiles of equal height side by side, each enlarged by
// panel_scale(height, min_tile) (gray tiles become RGB), with `titles` (one
// per tile, or none) and the caption `lines` above. Throws for no tiles,
// tiles of different heights or a titles count other than 0 or the tiles'.
Image captioned_panel(const std::vector<Image>& tiles, const std::vector<std::string>& titles,
                      const std::vector<CaptionLine>& lines, int min_tile = 256);

// The caption of an evaluation panel: line 1 the defect type and file name;
// line 2 the image score and the decision, "NG" (red) when score > threshold
// else "OK" (green), with the threshold and where it comes from; without a
// threshold (NaN) the ground truth ("defective" / "normal") instead.
std::vector<CaptionLine> eval_panel_caption(const std::string& type, const std::string& file, float score, int label,
                                            float threshold = std::numeric_limits<float>::quiet_NaN(),
                                            const std::string& threshold_source = "");

}  // namespace mdps
