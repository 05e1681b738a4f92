#include "engine/io/demo_data.h"
#include "engine/core/common.h"
#include "engine/io/image.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

// splitmix64: the same images on every platform.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  double range(double a, double b) { return a + (b - a) * uniform(); }
};

// Diagonal stripes of a fixed period in two tones, random phase, mild noise:
// regular enough that a tiny prior learns it quickly.
Image texture(int size, Rng& rng) {
  Image img(size, size, 3);
  const double period = size / 4.0, phase = rng.range(0, 2 * M_PI);
  const double base[3] = {120, 110, 90}, amp[3] = {40, 35, 30};
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      double s = std::sin(2 * M_PI * (x + y) / period + phase);
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = float(base[c] + amp[c] * s + rng.range(-6, 6));
    }
  return img;
}

std::string name(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%03d", i);
  return buf;
}

void blob(Image& img, Image& mask, Rng& rng) {
  const int s = img.width;
  const double r = rng.range(s * 0.09, s * 0.16), cx = rng.range(r + 1, s - r - 1), cy = rng.range(r + 1, s - r - 1);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x)
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) {
        img.at(x, y, 0) = 250.f, img.at(x, y, 1) = 235.f, img.at(x, y, 2) = 60.f;
        mask.at(x, y) = 255.f;
      }
}

void scratch(Image& img, Image& mask, Rng& rng) {
  const int s = img.width;
  const double x0 = rng.range(s * 0.15, s * 0.85), y0 = rng.range(s * 0.15, s * 0.4);
  const double angle = rng.range(0.2, 1.2) * (rng.uniform() < 0.5 ? 1 : -1) + M_PI / 2;
  const double len = rng.range(s * 0.4, s * 0.6), half_w = std::max(0.8, s / 40.0);
  const double dx = std::cos(angle), dy = std::sin(angle);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      double px = x - x0, py = y - y0, along = px * dx + py * dy, across = std::fabs(-px * dy + py * dx);
      if (along >= 0 && along <= len && across <= half_w) {
        for (int c = 0; c < 3; ++c) img.at(x, y, c) = 15.f;
        mask.at(x, y) = 255.f;
      }
    }
}

}  // namespace

void write_demo_dataset(const std::string& root_str, const DemoDataOptions& o) {
  MDPS_CHECK(o.size >= 16, "demo data: image size must be >= 16, got ", o.size);
  MDPS_CHECK(o.train >= 1 && o.test_good >= 1 && o.test_defect >= 1, "demo data: every split needs images");
  fs::path root(root_str);
  for (const char* d : {"train/good", "test/good", "test/blob", "test/scratch", "ground_truth/blob",
                        "ground_truth/scratch"})
    fs::create_directories(root / d);
  Rng rng{o.seed * 0x2545F4914F6CDD1Dull + 17};
  for (int i = 0; i < o.train; ++i) save_png((root / "train/good" / (name(i) + ".png")).string(), texture(o.size, rng));
  for (int i = 0; i < o.test_good; ++i)
    save_png((root / "test/good" / (name(i) + ".png")).string(), texture(o.size, rng));
  for (const char* type : {"blob", "scratch"})
    for (int i = 0; i < o.test_defect; ++i) {
      Image img = texture(o.size, rng), mask(o.size, o.size, 1, 0.f);
      if (std::string(type) == "blob")
        blob(img, mask, rng);
      else
        scratch(img, mask, rng);
      save_png((root / "test" / type / (name(i) + ".png")).string(), img);
      save_png((root / "ground_truth" / type / (name(i) + "_mask.png")).string(), mask);
    }
}

}  // namespace mdps
