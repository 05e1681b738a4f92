// The pictures of `mdps score` at the input image's own size
// (tools/score_images.h): heat map, mask (= the resized map > pixel
// threshold) and overlay with the predicted defect's outline; and the
// outline itself (engine/eval/outline.h) on hand cases.
#include <doctest/doctest.h>
#include "include/mdps/mdps.h"
#include "engine/core/common.h"
#include "engine/eval/outline.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <algorithm>
#include <cstdio>
#include <sys/wait.h>

using namespace mdps;

TEST_CASE("mask_outline on hand cases") {
  // A 3x3 block in a 5x5 mask: its ring is the outline, the centre is not.
  std::vector<uint8_t> m(25, 0);
  for (int y = 1; y <= 3; ++y)
    for (int x = 1; x <= 3; ++x) m[size_t(y) * 5 + x] = 1;
  std::vector<uint8_t> o = mask_outline(m, 5, 5);
  std::vector<uint8_t> ring = m;
  ring[2 * 5 + 2] = 0;
  CHECK(o == ring);
  // Thickness 2 reaches the centre too.
  CHECK(mask_outline(m, 5, 5, 2) == m);
  // Outside the image counts as outside: a full mask is all outline at its border only.
  std::vector<uint8_t> full(4 * 3, 1);
  std::vector<uint8_t> fo = mask_outline(full, 4, 3);
  CHECK(std::count(fo.begin(), fo.end(), 1) == 10);  // 12 pixels, the 2 inner ones of the middle row stay
  CHECK(fo[1 * 4 + 1] == 0);
  CHECK(fo[1 * 4 + 2] == 0);
  // An empty mask has no outline.
  CHECK(mask_outline(std::vector<uint8_t>(9, 0), 3, 3) == std::vector<uint8_t>(9, 0));
  CHECK(outline_thickness(256, 900) == 1);
  CHECK(outline_thickness(257, 900) == 2);
  CHECK(outline_thickness(1024, 1024) == 4);
  CHECK_THROWS_AS(mask_outline(m, 4, 5), Error);
  CHECK_THROWS_AS(mask_outline(m, 5, 5, 0), Error);
  Image rgb(5, 5, 3, 10.f);
  paint(rgb, ring, 255.f, 0.f, 255.f);
  CHECK(rgb.at(1, 1, 0) == 255.f);
  CHECK(rgb.at(1, 1, 1) == 0.f);
  CHECK(rgb.at(2, 2, 0) == 10.f);
}

TEST_CASE("mdps score writes the map, mask and outlined overlay at the image's own size") {
  const std::string dir = test::temp_dir("score_images");
  const std::string model = test::write_tiny_model(dir);
  // A non-square 48 x 40 image with structure.
  const int W = 48, H = 40;
  Image img(W, H, 3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = float((x * 5 + y * 3 + c * 40 + (x * y) % 17) % 256);
  const std::string path = dir + "/part.png";
  save_png(path, img);

  // The map in-process, to choose a pixel threshold that splits it.
  DetectorOptions o;
  o.unet_path = model;
  o.overrides = {{"t-start", "100"}, {"round1-t", "0"}, {"skip", "50"}};
  o.threads = 2;
  Image file = load_image(path);
  std::vector<uint8_t> bytes(file.pixels.begin(), file.pixels.end());
  ScoreResult r = Detector(o).score(bytes.data(), W, H, 3);
  std::vector<float> map = resize_map(r.heat_map, r.width, r.height, W, H);
  std::vector<float> sorted = map;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() * 3 / 4, sorted.end());
  const float t = sorted[sorted.size() * 3 / 4];
  char ts[32];
  std::snprintf(ts, sizeof ts, "%.9g", double(t));

  const std::string out = dir + "/out";
  const std::string cmd = test::binary_dir() + "/mdps score --model " + model + " --images " + path + " --out " + out +
                          " --t-start 100 --round1-t 0 --skip 50 --threads 2 --quiet --pixel-threshold " + ts +
                          " > /dev/null 2>&1";
  INFO(cmd);
  int st = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(st));
  REQUIRE(WEXITSTATUS(st) == 0);

  Image heat = load_image(out + "/part_heatmap.png");
  Image over = load_image(out + "/part_overlay.png");
  Image mask = load_image_gray(out + "/part_mask.png");
  Image recon = load_image(out + "/part_recon.png");
  CHECK((heat.width == W && heat.height == H));
  CHECK((over.width == W && over.height == H));
  REQUIRE((mask.width == W && mask.height == H));
  CHECK((recon.width == r.width && recon.height == r.height));

  // The mask is the resized map over the threshold, pixel for pixel.
  std::vector<uint8_t> want(map.size());
  size_t defects = 0;
  for (size_t k = 0; k < map.size(); ++k) {
    want[k] = map[k] > t;
    defects += want[k];
    CHECK(mask.pixels[k] == (want[k] ? 255.f : 0.f));
  }
  CHECK(defects > 0);
  CHECK(defects < map.size());
  // The overlay is white exactly on the outline (the jet colours and a 50%
  // blend never reach white).
  std::vector<uint8_t> edge = mask_outline(want, W, H, outline_thickness(W, H));
  size_t white = 0, on_edge = 0;
  for (size_t k = 0; k < edge.size(); ++k) {
    const bool w = over.pixels[3 * k] == 255.f && over.pixels[3 * k + 1] == 255.f && over.pixels[3 * k + 2] == 255.f;
    white += w;
    on_edge += edge[k];
    if (edge[k]) CHECK(w);
  }
  CHECK(on_edge > 0);
  CHECK(white == on_edge);
}
