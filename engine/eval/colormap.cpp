#include "engine/eval/colormap.h"
#include <algorithm>
#include <array>
#include <cmath>

namespace mdps {
namespace {

struct Anchor {
  double x, y;
};

// matplotlib's _jet_data (continuous segments, so y0 == y1 at every anchor).
const std::vector<Anchor> kJetR = {{0.0, 0.0}, {0.35, 0.0}, {0.66, 1.0}, {0.89, 1.0}, {1.0, 0.5}};
const std::vector<Anchor> kJetG = {{0.0, 0.0}, {0.125, 0.0}, {0.375, 1.0}, {0.64, 1.0}, {0.91, 0.0}, {1.0, 0.0}};
const std::vector<Anchor> kJetB = {{0.0, 0.5}, {0.11, 1.0}, {0.34, 1.0}, {0.65, 0.0}, {1.0, 0.0}};

// matplotlib's _create_lookup_table, operation for operation (anchors scaled
// by N - 1 = 255, samples 255 * linspace(0, 1, 256)) so that entries sitting
// on a truncation boundary (entry 128's red is 124.99999...) come out the same.
// Products are rounded on their own: with -march=native GCC may fuse a*b+c
// into one FMA, which numpy never does, and entry 128's red would then cross
// its truncation boundary.
inline double rounded(double x) {
  volatile double v = x;
  return v;
}

double segment(const std::vector<Anchor>& a, int i) {
  if (i == 0) return a.front().y;
  if (i == 255) return a.back().y;
  double xi = rounded(255.0 * rounded(i * (1.0 / 255.0)));
  for (size_t k = 1; k < a.size(); ++k) {
    double x0 = rounded(a[k - 1].x * 255.0), x1 = rounded(a[k].x * 255.0);
    if (xi <= x1) return rounded((xi - x0) / (x1 - x0) * (a[k].y - a[k - 1].y)) + a[k - 1].y;
  }
  return a.back().y;
}

// Converted like (lut * 255).astype(uint8), i.e. truncated.
const std::array<std::array<uint8_t, 3>, 256>& jet_table() {
  static const auto table = [] {
    std::array<std::array<uint8_t, 3>, 256> t{};
    for (int i = 0; i < 256; ++i)
      t[i] = {uint8_t(segment(kJetR, i) * 255.0), uint8_t(segment(kJetG, i) * 255.0),
              uint8_t(segment(kJetB, i) * 255.0)};
    return t;
  }();
  return table;
}

template <typename F>
Image apply_map(const float* values, int w, int h, float lo, float hi, F color) {
  MDPS_CHECK(w > 0 && h > 0 && values, "colormap: empty map (", w, "x", h, ")");
  Image out(w, h, 3);
  const double span = double(hi) - double(lo);
  for (size_t i = 0; i < size_t(w) * h; ++i) {
    float v = values[i];
    if (std::isnan(v)) continue;  // stays black
    double t = span > 0 ? (double(v) - lo) / span : 0.0;
    t = std::min(1.0, std::max(0.0, t));
    std::array<float, 3> rgb = color(t);
    for (int c = 0; c < 3; ++c) out.pixels[i * 3 + c] = rgb[c];
  }
  return out;
}

}  // namespace

Image colormap_jet(const float* values, int w, int h, float lo, float hi) {
  const auto& table = jet_table();
  return apply_map(values, w, h, lo, hi, [&](double t) {
    int idx = std::min(255, int(t * 256.0));  // matplotlib: x * N, N mapped to N - 1
    return std::array<float, 3>{float(table[idx][0]), float(table[idx][1]), float(table[idx][2])};
  });
}

Image colormap_turbo(const float* values, int w, int h, float lo, float hi) {
  return apply_map(values, w, h, lo, hi, [](double x) {
    double r = 0.13572138 + x * (4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
    double g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
    double b = 0.10667330 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
    auto u8 = [](double v) { return float(std::round(std::min(1.0, std::max(0.0, v)) * 255.0)); };
    return std::array<float, 3>{u8(r), u8(g), u8(b)};
  });
}

Image overlay(const Image& base, const Image& heat, float alpha) {
  MDPS_CHECK(base.width == heat.width && base.height == heat.height, "overlay: base is ", base.width, "x",
             base.height, " but the heat map is ", heat.width, "x", heat.height);
  MDPS_CHECK(alpha >= 0.f && alpha <= 1.f, "overlay: alpha ", alpha, " must be in [0,1]");
  Image b = to_rgb(base), t = to_rgb(heat);
  Image out(b.width, b.height, 3);
  for (size_t i = 0; i < out.pixels.size(); ++i) out.pixels[i] = (1.f - alpha) * b.pixels[i] + alpha * t.pixels[i];
  return out;
}

Image hstack(const std::vector<Image>& images, int gap) {
  MDPS_CHECK(!images.empty(), "hstack: no images");
  MDPS_CHECK(gap >= 0, "hstack: gap ", gap, " must be non-negative");
  int width = 0, height = 0, channels = 1;
  for (size_t i = 0; i < images.size(); ++i) {
    const Image& im = images[i];
    MDPS_CHECK(im.channels == 1 || im.channels == 3, "hstack: image ", i, " has ", im.channels,
               " channels; expected 1 or 3");
    width += im.width + (i ? gap : 0);
    height = std::max(height, im.height);
    channels = std::max(channels, im.channels);
  }
  Image out(width, height, channels);
  int x0 = 0;
  for (const Image& src : images) {
    Image im = channels == 3 ? to_rgb(src) : src;
    for (int y = 0; y < im.height; ++y)
      std::copy_n(&im.pixels[im.index(0, y)], size_t(im.width) * channels, &out.pixels[out.index(x0, y)]);
    x0 += im.width + gap;
  }
  return out;
}

}  // namespace mdps
