#include "tools/score_images.h"
#include "engine/eval/colormap.h"
#include "engine/eval/outline.h"
#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps::cli {

void write_score_images(const std::string& out_dir, const std::string& stem, const Image& image,
                        const ScoreResult& r, float lo, float hi, float pixel_threshold) {
  const int W = image.width, H = image.height;
  const std::vector<float> map = resize_map(r.heat_map, r.width, r.height, W, H);
  const Image heat = colormap_jet(map.data(), W, H, lo, hi);
  Image over = overlay(image, heat, 0.5f);
  if (!std::isnan(pixel_threshold)) {
    std::vector<uint8_t> mask(map.size());
    Image png(W, H, 1);
    for (size_t k = 0; k < map.size(); ++k) {
      mask[k] = map[k] > pixel_threshold;
      png.pixels[k] = mask[k] ? 255.f : 0.f;
    }
    save_png((fs::path(out_dir) / (stem + "_mask.png")).string(), png);
    paint(over, mask_outline(mask, W, H, outline_thickness(W, H)), 255.f, 255.f, 255.f);
  }
  save_png((fs::path(out_dir) / (stem + "_heatmap.png")).string(), heat);
  save_png((fs::path(out_dir) / (stem + "_overlay.png")).string(), over);
  Image recon(r.width, r.height, 3);
  recon.pixels = r.reconstruction;
  save_png((fs::path(out_dir) / (stem + "_recon.png")).string(), recon);
}

}  // namespace mdps::cli
