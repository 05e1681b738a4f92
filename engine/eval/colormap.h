// Turning scalar maps into pictures: colour maps, overlays and side-by-side
// panels for the anomaly-map figures.
#pragma once
#include "engine/io/image.h"
#include <vector>

namespace mdps {

// values[h*w] -> RGB. Values are normalised as (v - lo) / (hi - lo) and
// clamped to [0,1]; hi <= lo maps everything to the bottom colour; NaN is
// black. jet follows matplotlib's 256-entry "jet" table (uint8 like
// matplotlib's bytes=True); turbo uses Google's polynomial fit of Turbo.
Image colormap_jet(const float* values, int w, int h, float lo, float hi);
Image colormap_turbo(const float* values, int w, int h, float lo, float hi);

// (1 - alpha) * base + alpha * heat; a gray base is repeated to 3 channels.
// Sizes must match.
Image overlay(const Image& base, const Image& heat, float alpha = 0.5f);

// Images side by side, top-aligned; shorter ones are padded with black, and
// gray images become RGB when any image is RGB. `gap` black columns go
// between neighbours.
Image hstack(const std::vector<Image>& images, int gap = 0);

}  // namespace mdps
