// The feature extractor, the anomaly map and the image score against
// score64 (MDPS_GOLDEN_DIR), made by the authors' PyTorch code; and the
// shared ResNet-18 weights (BasicBlock layout) for shapes and errors.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/detect/anomaly_map.h"
#include "engine/model/resnet.h"
#include "engine/io/safetensors.h"
#include <algorithm>
#include <cmath>
#include <regex>

using namespace mdps;

namespace {

// "... eta=7 ..." in the anomaly_map metadata; 7 (the authors' value) otherwise.
float eta_from_metadata(const SafeTensorsFile& f) {
  auto it = f.metadata().find("anomaly_map");
  std::smatch m;
  if (it != f.metadata().end() && std::regex_search(it->second, m, std::regex("eta\\s*=\\s*([0-9.]+)")))
    return std::stof(m[1]);
  return 7.f;
}

void check_close(const Tensor& got, const Tensor& want, const std::string& what, double tol = 1e-4) {
  INFO(what, ": got ", got.describe(), ", want ", want.describe());
  REQUIRE(got.shape() == want.shape());
  double e = test::rel_l2(got.to_vector(), want.to_vector());
  INFO(what, " rel L2 = ", e);
  CHECK(e < tol);
}

SafeTensorsFile score_file() { return SafeTensorsFile::open(test::golden_dir() + "/score64.safetensors"); }

}  // namespace

TEST_CASE("ResNet features match the golden layer1..layer3") {
  SafeTensorsFile f = score_file();
  ResNetFeatures fe = ResNetFeatures::load(f, "resnet.", 3, cpu_backend());
  CHECK(fe.bottleneck());
  CHECK(fe.deepest_layer() == 3);
  std::vector<Tensor> got = fe.forward(imagenet_normalise(f.read_f32("image")), {1, 2, 3});
  REQUIRE(got.size() == 3);
  for (int l = 1; l <= 3; ++l) {
    Tensor want = f.read_f32("layer" + std::to_string(l));
    CHECK(fe.channels(l) == want.dim(1));
    check_close(got[size_t(l - 1)], want, "layer" + std::to_string(l));
  }
  // Order as asked, and a shallower load gives the same stage.
  ResNetFeatures fe2 = ResNetFeatures::load(f, "resnet.", 2, cpu_backend());
  std::vector<Tensor> two = fe2.forward(imagenet_normalise(f.read_f32("image")), {2, 1});
  check_close(two[0], f.read_f32("layer2"), "layer2 (loaded to layer2)");
  check_close(two[1], f.read_f32("layer1"), "layer1 (loaded to layer2)");
  CHECK_THROWS_WITH_AS(fe2.forward(f.read_f32("image"), {3}), doctest::Contains("layer3"), Error);
}

TEST_CASE("anomaly maps and image scores match the golden") {
  SafeTensorsFile f = score_file();
  ResNetFeatures fe = ResNetFeatures::load(f, "resnet.", 3, cpu_backend());
  AnomalyMapSettings s;
  s.eta = eta_from_metadata(f);
  AnomalyMaps m = anomaly_map(&fe, f.read_f32("image"), f.read_f32("recon"), s);
  check_close(m.pixel, f.read_f32("pixel_map"), "pixel_map");
  check_close(m.feature, f.read_f32("feature_map"), "feature_map");
  check_close(m.combined, f.read_f32("anomaly_map"), "anomaly_map");

  std::vector<float> want = f.read_f32_vector("image_score");
  std::vector<float> got = image_scores(m.combined, ImageScoreKind::Authors, 500);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("image_score[", i, "] got ", got[i], " want ", want[i]);
    CHECK(std::fabs(double(got[i]) - want[i]) / std::fabs(double(want[i])) < 1e-4);
  }
  // The score of the golden map itself, so the score is checked apart from the map.
  std::vector<float> direct = image_scores(f.read_f32("anomaly_map"), ImageScoreKind::Authors, 500);
  for (size_t i = 0; i < want.size(); ++i)
    CHECK(std::fabs(double(direct[i]) - want[i]) / std::fabs(double(want[i])) < 1e-4);
}

TEST_CASE("ResNet-18 (BasicBlock) weights: stage shapes and the missing layer4") {
  const std::string path = test::shared_dir() + "/weights/resnet18_imagenet_l1-l3.safetensors";
  SafeTensorsFile f = SafeTensorsFile::open(path);
  ResNetFeatures fe = ResNetFeatures::load(f, "", 3, cpu_backend());
  CHECK_FALSE(fe.bottleneck());
  CHECK(fe.blocks_per_layer() == std::vector<int>{2, 2, 2});
  for (int64_t size : {64, 256}) {
    INFO("input ", size, "x", size);
    const int64_t N = size == 64 ? 2 : 1;
    Tensor x = Tensor::from_vector({N, 3, size, size}, test::random_floats(size_t(N * 3 * size * size), 11));
    std::vector<Tensor> out = fe.forward(imagenet_normalise(x), {1, 2, 3});
    CHECK(out[0].shape() == Shape{N, 64, size / 4, size / 4});
    CHECK(out[1].shape() == Shape{N, 128, size / 8, size / 8});
    CHECK(out[2].shape() == Shape{N, 256, size / 16, size / 16});
    // Every stage ends in a ReLU, and real weights do not give all zeros.
    for (auto& t : out) {
      std::vector<float> v = t.to_vector();
      CHECK(*std::min_element(v.begin(), v.end()) >= 0.f);
      CHECK(*std::max_element(v.begin(), v.end()) > 0.f);
    }
  }
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(f, "", 4, cpu_backend()), doctest::Contains("layer4"), Error);
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(f, "", 4, cpu_backend()), doctest::Contains(path.c_str()), Error);
}
