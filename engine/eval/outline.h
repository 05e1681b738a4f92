// Drawing a predicted defect on its image: the outline of a binary mask, so
// the pixels inside stay visible (an `mdps score` overlay draws it over the
// heat map at the input image's own size).
#pragma once
#include "engine/io/image.h"
#include <cstdint>
#include <vector>

namespace mdps {

// The pixels of `mask` (w x h, nonzero = defect) within `thickness` pixels
// (Chebyshev distance) of a pixel outside it; outside the image counts as
// outside, so a region touching the border is closed. 0/1, w x h. Throws
// for a size mismatch or thickness < 1.
std::vector<uint8_t> mask_outline(const std::vector<uint8_t>& mask, int w, int h, int thickness = 1);

// A line width that stays visible when the picture is shown whole: 1 pixel
// up to 256 pixels on the short side, then one more per 256.
int outline_thickness(int w, int h);

// Paints the pixels where `where` is nonzero in `rgb` (an RGB image of the
// same size) with the colour (r, g, b).
void paint(Image& rgb, const std::vector<uint8_t>& where, float r, float g, float b);

}  // namespace mdps
