#include "engine/eval/outline.h"
#include "engine/core/common.h"
#include <algorithm>

namespace mdps {

std::vector<uint8_t> mask_outline(const std::vector<uint8_t>& mask, int w, int h, int thickness) {
  MDPS_CHECK(w > 0 && h > 0 && mask.size() == size_t(w) * size_t(h), "mask_outline: ", mask.size(),
             " values for a ", w, "x", h, " mask");
  MDPS_CHECK(thickness >= 1, "mask_outline: thickness ", thickness, " must be >= 1");
  std::vector<uint8_t> out(mask.size(), 0);
  const int t = thickness;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (!mask[size_t(y) * w + x]) continue;
      bool edge = false;
      for (int dy = -t; dy <= t && !edge; ++dy) {
        for (int dx = -t; dx <= t; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w || !mask[size_t(yy) * w + xx]) {
            edge = true;
            break;
          }
        }
      }
      out[size_t(y) * w + x] = edge;
    }
  }
  return out;
}

int outline_thickness(int w, int h) { return 1 + std::max(0, (std::min(w, h) - 1) / 256); }

void paint(Image& rgb, const std::vector<uint8_t>& where, float r, float g, float b) {
  MDPS_CHECK(rgb.channels == 3 && where.size() == size_t(rgb.width) * size_t(rgb.height), "paint: ", where.size(),
             " mask values for a ", rgb.width, "x", rgb.height, "x", rgb.channels, " image");
  for (size_t i = 0; i < where.size(); ++i) {
    if (!where[i]) continue;
    rgb.pixels[3 * i] = r;
    rgb.pixels[3 * i + 1] = g;
    rgb.pixels[3 * i + 2] = b;
  }
}

}  // namespace mdps
