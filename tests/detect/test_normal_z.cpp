// The normal-z image score (issue 18): per-pixel statistics of normal
// images' maps, the standardised map, the leave-one-out scores calibration
// takes its threshold from, and the errors where statistics are missing.
#include "engine/detect/anomaly_map.h"
#include "engine/detect/setting_table.h"
#include "engine/core/backend.h"
#include "engine/core/option_checks.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace mdps;

namespace {

std::vector<float> random_maps(size_t n, int H, int W, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> v(n * size_t(H) * size_t(W));
  for (float& x : v) x = 0.1f + 0.05f * u(rng);
  return v;
}

}  // namespace

TEST_CASE("normal-z: per-pixel mean and population std of normal maps") {
  // Three 1x2 maps: pixel 0 is 1, 2, 3; pixel 1 is 5, 5, 5.
  const std::vector<float> maps = {1.f, 5.f, 2.f, 5.f, 3.f, 5.f};
  const PixelNormals p = PixelNormals::of_maps(maps, 3, 1, 2);
  CHECK(p.height == 1);
  CHECK(p.width == 2);
  CHECK(p.mean[0] == doctest::Approx(2.0));
  CHECK(p.mean[1] == doctest::Approx(5.0));
  CHECK(p.std[0] == doctest::Approx(std::sqrt(2.0 / 3.0)));
  CHECK(p.std[1] == 0.f);
  // z = (x - mean) / (std + mean(std)): pixel 1 never varied and is divided
  // by the mean std alone, not by zero.
  const double ms = std::sqrt(2.0 / 3.0) / 2.0;
  const std::vector<float> z = normal_z_maps({4.f, 6.f}, p);
  CHECK(z[0] == doctest::Approx((4.0 - 2.0) / (std::sqrt(2.0 / 3.0) + ms)));
  CHECK(z[1] == doctest::Approx((6.0 - 5.0) / ms));
  CHECK_THROWS_AS(PixelNormals::of_maps(maps, 4, 1, 2), Error);
  CHECK_THROWS_AS(p.check(2, 2, "x"), Error);
}

TEST_CASE("normal-z: leave-one-out scores equal the statistics of the others") {
  const int H = 5, W = 7;
  const size_t N = 6, plane = size_t(H) * W;
  const std::vector<float> maps = random_maps(N, H, W, 3);
  const std::vector<float> loo = normal_z_scores_leave_one_out(maps, N, H, W);
  REQUIRE(loo.size() == N);
  for (size_t i = 0; i < N; ++i) {
    std::vector<float> others, mine(maps.begin() + long(i * plane), maps.begin() + long((i + 1) * plane));
    for (size_t n = 0; n < N; ++n)
      if (n != i) others.insert(others.end(), maps.begin() + long(n * plane), maps.begin() + long((n + 1) * plane));
    const std::vector<float> z = normal_z_maps(mine, PixelNormals::of_maps(others, N - 1, H, W));
    CHECK(loo[i] == doctest::Approx(*std::max_element(z.begin(), z.end())).epsilon(1e-5));
    // In-sample statistics make an image look more normal than left out.
    const std::vector<float> zin = normal_z_maps(mine, PixelNormals::of_maps(maps, N, H, W));
    CHECK(*std::max_element(zin.begin(), zin.end()) < loo[i]);
  }
}

TEST_CASE("normal-z: the image score is the maximum of the standardised map, and needs statistics") {
  const int H = 4, W = 4;
  const std::vector<float> normal = random_maps(5, H, W, 7);
  const PixelNormals p = PixelNormals::of_maps(normal, 5, H, W);
  std::vector<float> test = random_maps(2, H, W, 8);
  test[16 + 5] += 0.2f;  // a defect in image 2
  const Tensor maps = Tensor::from_vector({2, 1, H, W}, test);
  const std::vector<float> s = image_scores(maps, ImageScoreKind::NormalZ, 1, 0.01f, &p);
  const std::vector<float> z = normal_z_maps(test, p);
  CHECK(s[0] == *std::max_element(z.begin(), z.begin() + 16));
  CHECK(s[1] == *std::max_element(z.begin() + 16, z.end()));
  CHECK(s[1] > s[0]);
  CHECK_THROWS_WITH_AS(image_scores(maps, ImageScoreKind::NormalZ, 1, 0.01f, nullptr),
                       doctest::Contains("mdps calibrate --normal"), UsageError);
  const PixelNormals wrong = PixelNormals::of_maps(random_maps(2, 2, 8, 1), 2, 2, 8);
  CHECK_THROWS_WITH_AS(image_scores(maps, ImageScoreKind::NormalZ, 1, 0.01f, &wrong), doctest::Contains("2x8"), Error);
  CHECK(parse_image_score("normal-z") == ImageScoreKind::NormalZ);
  CHECK(std::string(image_score_name(ImageScoreKind::NormalZ)) == "normal-z");
}

TEST_CASE("normal-z: a setting of the calibrated protocol only") {
  EvalSettings s = default_settings();
  s.set("image-score", "normal-z");
  CHECK_NOTHROW(s.validate());
  CHECK(s.pixel_normals() == nullptr);
  s.set("protocol", "authors");
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("calibrated protocol"), UsageError);
}

TEST_CASE("normal-z: image-score auto is normal-z for a calibrated detector, authors otherwise") {
  EvalSettings s = default_settings();
  REQUIRE(s.protocol == Protocol::Calibrated);
  CHECK(s.auto_score_kind);
  CHECK(find_setting("image-score")->print(s) == "auto");
  CHECK(s.at_size(64).score_kind == ImageScoreKind::Authors);  // no statistics: as before
  NormalStats st;
  st.images = 3;
  st.pixels = PixelNormals::of_maps(random_maps(3, 8, 8, 2), 3, 8, 8);
  s.normal = st;
  CHECK(s.at_size(8).score_kind == ImageScoreKind::NormalZ);
  CHECK(s.to_json().find("\"image_score\": \"normal-z\"") != std::string::npos);
  // Statistics without per-pixel maps (a bundle calibrated before they existed): authors.
  s.normal->pixels = PixelNormals{};
  CHECK(s.at_size(8).score_kind == ImageScoreKind::Authors);
  // A chosen kind stays; the authors' protocol never takes normal-z on its own.
  s.normal = st;
  s.set("image-score", "max");
  CHECK_FALSE(s.auto_score_kind);
  CHECK(s.at_size(8).score_kind == ImageScoreKind::Max);
  s.set("image-score", "auto");
  s.set("protocol", "authors");
  CHECK(s.at_size(8).score_kind == ImageScoreKind::Authors);
  CHECK(find_setting("image-score")->print(s) == "authors");
  CHECK_NOTHROW(s.validate());
}
