// The pieces of the anomaly map against hand-computed values, and the
// feature extractor's complaints about files that are not ResNets.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/detect/anomaly_map.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "engine/model/resnet.h"
#include "engine/io/safetensors.h"
#include <algorithm>
#include <cmath>
#include <numeric>

using namespace mdps;
using namespace mdps::hostops;

namespace {

std::vector<float> iota(size_t n, float start = 0.f) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

}  // namespace

TEST_CASE("3x3 mean pool counts the zero padding") {
  Tensor x = Tensor::from_vector({1, 1, 3, 3}, iota(9, 1.f));  // 1..9
  std::vector<float> y = mean_pool3x3(x).to_vector();
  CHECK(y[0] == doctest::Approx(12.0 / 9));  // 1+2+4+5
  CHECK(y[1] == doctest::Approx(21.0 / 9));  // 1..6
  CHECK(y[4] == doctest::Approx(45.0 / 9));  // all nine
  CHECK(y[8] == doctest::Approx(28.0 / 9));  // 5+6+8+9
}

TEST_CASE("3x3 stride-2 max pool: the padding never wins") {
  Tensor x = Tensor::from_vector({1, 1, 4, 4}, iota(16));
  CHECK(max_pool3x3_s2(x).to_vector() == std::vector<float>{5, 7, 13, 15});
  std::vector<float> neg = iota(16);
  for (float& v : neg) v = -v - 1.f;
  CHECK(max_pool3x3_s2(Tensor::from_vector({1, 1, 4, 4}, neg)).to_vector() ==
        std::vector<float>{-1, -2, -5, -6});
}

TEST_CASE("bilinear resize with align_corners keeps the corners") {
  Tensor x = Tensor::from_vector({1, 1, 2, 2}, {0, 1, 2, 3});
  std::vector<float> y = resize_bilinear_align_corners(x, 3, 3).to_vector();
  std::vector<float> want{0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3};
  REQUIRE(y.size() == want.size());
  for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(want[i]));
  // A 1x1 source spreads everywhere.
  std::vector<float> one = resize_bilinear_align_corners(Tensor::full({1, 1, 1, 1}, 4.f), 2, 3).to_vector();
  for (float v : one) CHECK(v == 4.f);
}

TEST_CASE("Gaussian kernel, blur of a constant and of an impulse") {
  std::vector<float> k = gaussian_kernel1d(3, 1.f);
  const double e = std::exp(-0.5), z = 1 + 2 * e;
  CHECK(k[0] == doctest::Approx(e / z));
  CHECK(k[1] == doctest::Approx(1 / z));
  CHECK(k[2] == doctest::Approx(e / z));

  for (float v : gaussian_blur(Tensor::full({2, 1, 20, 20}, 3.f), 33, 4.f).to_vector())
    CHECK(v == doctest::Approx(3.0).epsilon(1e-6));

  Tensor imp = Tensor::zeros({1, 1, 40, 40});
  imp.data()[20 * 40 + 20] = 1.f;
  std::vector<float> b = gaussian_blur(imp, 33, 4.f).to_vector();
  CHECK(std::accumulate(b.begin(), b.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(b[20 * 40 + 20] == *std::max_element(b.begin(), b.end()));
  CHECK(b[20 * 40 + 17] == doctest::Approx(b[20 * 40 + 23]));
  CHECK(b[17 * 40 + 20] == doctest::Approx(b[23 * 40 + 20]));
  std::vector<float> k33 = gaussian_kernel1d(33, 4.f);
  CHECK(b[20 * 40 + 20] == doctest::Approx(double(k33[16]) * k33[16]));
}

TEST_CASE("reflect border: the edge is not repeated") {
  CHECK(reflect_index(-1, 4) == 1);
  CHECK(reflect_index(-2, 4) == 2);
  CHECK(reflect_index(4, 4) == 2);
  CHECK(reflect_index(5, 4) == 1);
  CHECK(reflect_index(2, 4) == 2);
  CHECK(reflect_index(-7, 4) == 1);  // beyond one reflection it keeps bouncing
  CHECK(reflect_index(3, 1) == 0);
  // Rows equal, columns 1 2 4: the left pixel sees x[1] on both sides.
  Tensor x = Tensor::from_vector({1, 1, 3, 3}, {1, 2, 4, 1, 2, 4, 1, 2, 4});
  std::vector<float> y = gaussian_blur(x, 3, 1.f).to_vector();
  std::vector<float> k = gaussian_kernel1d(3, 1.f);
  CHECK(y[0] == doctest::Approx(k[0] * 2 + k[1] * 1 + k[2] * 2));
  CHECK(y[2] == doctest::Approx(k[0] * 2 + k[1] * 4 + k[2] * 2));
  CHECK(y[1] == doctest::Approx(k[0] * 1 + k[1] * 2 + k[2] * 4));
  CHECK(y[7] == doctest::Approx(y[1]));
}

TEST_CASE("cosine distance over channels") {
  std::vector<float> a = test::random_floats(2 * 5 * 4 * 3, 3);
  Tensor ta = Tensor::from_vector({2, 5, 4, 3}, a);
  for (float v : cosine_distance(ta, ta).to_vector()) CHECK(v == doctest::Approx(0.0).epsilon(1e-6));
  std::vector<float> neg = a;
  for (float& v : neg) v = -2.f * v;  // opposite direction, other length
  for (float v : cosine_distance(ta, Tensor::from_vector({2, 5, 4, 3}, neg)).to_vector())
    CHECK(v == doctest::Approx(2.0));
  // Orthogonal channel vectors (1,0) and (0,3); zero vectors give 1 (clamped norms).
  Tensor p = Tensor::from_vector({1, 2, 1, 2}, {1, 0, 0, 0});
  Tensor q = Tensor::from_vector({1, 2, 1, 2}, {0, 0, 3, 0});
  std::vector<float> d = cosine_distance(p, q).to_vector();
  CHECK(d[0] == doctest::Approx(1.0));
  CHECK(d[1] == doctest::Approx(1.0));
  CHECK_THROWS_AS(cosine_distance(p, Tensor::zeros({1, 3, 1, 2})), Error);
}

TEST_CASE("image scores: softmax top-k and top-k mean") {
  Tensor c = Tensor::full({2, 1, 8, 8}, 0.37f);
  for (float s : image_scores(c, ImageScoreKind::Authors, 10)) CHECK(s == doctest::Approx(10.0 / 64));
  Tensor r = Tensor::from_vector({1, 1, 2, 2}, {1, 4, 2, 3});
  CHECK(image_scores(r, ImageScoreKind::TopKMean, 2)[0] == doctest::Approx(3.5));
  CHECK(image_scores(r, ImageScoreKind::TopKMean, 500)[0] == doctest::Approx(2.5));  // k clamped
  const double z = std::exp(1.) + std::exp(4.) + std::exp(2.) + std::exp(3.);
  CHECK(image_scores(r, ImageScoreKind::Authors, 1)[0] == doctest::Approx(std::exp(4.) / z));
  CHECK(image_scores(r, ImageScoreKind::Authors, 4)[0] == doctest::Approx(1.0));
  CHECK_THROWS_AS(image_scores(Tensor::zeros({1, 3, 2, 2}), ImageScoreKind::Authors), Error);
}

TEST_CASE("pixel-only anomaly map is blur(pixel) / 2") {
  Tensor img = Tensor::zeros({1, 3, 8, 8});
  Tensor rec = Tensor::full({1, 3, 8, 8}, 0.2f);  // 0.1 apart after (v+1)/2
  AnomalyMaps m = anomaly_map(nullptr, img, rec, AnomalyMapSettings{});
  const double p = (0.1 / 0.229 + 0.1 / 0.224 + 0.1 / 0.225) / 3;
  for (float v : m.pixel.to_vector()) CHECK(v == doctest::Approx(p).epsilon(1e-5));
  for (float v : m.feature.to_vector()) CHECK(v == 0.f);
  for (float v : m.combined.to_vector()) CHECK(v == doctest::Approx(p / 2).epsilon(1e-5));
  AnomalyMaps same = anomaly_map(nullptr, img, img, AnomalyMapSettings{});
  for (float v : same.combined.to_vector()) CHECK(v == 0.f);
  CHECK_THROWS_AS(anomaly_map(nullptr, img, Tensor::zeros({1, 3, 8, 4}), AnomalyMapSettings{}), Error);
}

TEST_CASE("the backend's image ops: max, the mix and their complaints") {
  Backend& cpu = cpu_backend();
  Tensor x = Tensor::from_vector({1, 1, 2, 3}, {-4, 2.5f, -1, 0, 2.25f, -7});
  Tensor m = Tensor::full({1}, NAN);
  cpu.max(x, m);
  CHECK(m.at(0) == 2.5f);
  Tensor neg = Tensor::from_vector({3}, {-3, -2, -9});
  cpu.max(neg, m);
  CHECK(m.at(0) == -2.f);
  CHECK_THROWS_AS(cpu.max(Tensor::empty({0}), m), Error);
  CHECK_THROWS_AS(cpu.max(x, x), Error);  // the output holds one element

  // F + eta max(F) / max(P) P, and F alone when the images agree (max(P) = 0).
  Tensor f = Tensor::from_vector({1, 1, 1, 2}, {1, 2}), p = Tensor::from_vector({1, 1, 1, 2}, {0.5f, 0.25f});
  Tensor mf = Tensor::full({1}, 2.f), mp = Tensor::full({1}, 0.5f), y = Tensor::empty({1, 1, 1, 2});
  cpu.anomaly_mix(f, p, mf, mp, 7.f, y);
  CHECK(y.to_vector() == std::vector<float>{1 + 28 * 0.5f, 2 + 28 * 0.25f});
  mp.fill(0.f);
  cpu.anomaly_mix(f, p, mf, mp, 7.f, y);
  CHECK(y.to_vector() == f.to_vector());
  CHECK_THROWS_AS(cpu.anomaly_mix(f, Tensor::zeros({1, 1, 2, 1}), mf, mp, 7.f, y), Error);

  // The guidance's d / ||d|| with the norm read from a tensor: 0 for a zero difference.
  Tensor d = Tensor::from_vector({1, 1, 1, 3}, {1, -2, 3}), g = Tensor::empty({1, 1, 1, 3});
  Tensor four = Tensor::full({1}, 4.f), none = Tensor::zeros({1});
  cpu.scale_by_inverse_sqrt(d, four, g);
  CHECK(g.to_vector() == std::vector<float>{0.5f, -1.f, 1.5f});
  cpu.scale_by_inverse_sqrt(d, none, g);
  CHECK(g.to_vector() == std::vector<float>{0, 0, 0});
  CHECK_THROWS_AS(cpu.scale_by_inverse_sqrt(d, d, g), Error);

  // ReLU in place; outputs of the wrong shape name the op.
  cpu.relu(x, x);
  CHECK(x.to_vector() == std::vector<float>{0, 2.5f, 0, 0, 2.25f, 0});
  Tensor img = Tensor::zeros({1, 3, 4, 4});
  Tensor wrong = Tensor::empty({1, 3, 4, 4});
  CHECK_THROWS_WITH_AS(cpu.pixel_distance(img, img, wrong), doctest::Contains("pixel_distance"), Error);
  CHECK_THROWS_WITH_AS(cpu.max_pool3x3_s2(img, wrong), doctest::Contains("max_pool3x3_s2"), Error);
  CHECK_THROWS_AS(cpu.imagenet_normalise(Tensor::zeros({1, 2, 4, 4}), wrong), Error);
  Tensor other = Tensor::empty({1, 3, 4, 5});
  CHECK_THROWS_AS(cpu.relu(img, other), Error);
}

TEST_CASE("a file that is not a ResNet is refused, naming the file") {
  const std::string dir = test::temp_dir("resnet_bad");
  {
    SafeTensorsWriter w;
    w.add_f32("foo", {2}, {1, 2});
    w.write(dir + "/not_resnet.safetensors");
  }
  SafeTensorsFile f = SafeTensorsFile::open(dir + "/not_resnet.safetensors");
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(f, "", 3, cpu_backend()),
                       doctest::Contains((dir + "/not_resnet.safetensors").c_str()), Error);
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(f, "", 3, cpu_backend()), doctest::Contains("conv1.weight"), Error);

  // A stem without its BatchNorm.
  {
    SafeTensorsWriter w;
    w.add_f32("conv1.weight", {4, 3, 7, 7}, std::vector<float>(4 * 3 * 49, 0.1f));
    w.write(dir + "/no_bn.safetensors");
  }
  SafeTensorsFile g = SafeTensorsFile::open(dir + "/no_bn.safetensors");
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(g, "", 1, cpu_backend()), doctest::Contains("bn1.weight"), Error);
  CHECK_THROWS_WITH_AS(ResNetFeatures::load(g, "", 1, cpu_backend()), doctest::Contains("no_bn.safetensors"),
                       Error);
  CHECK_THROWS_AS(ResNetFeatures::load(g, "", 0, cpu_backend()), Error);
  CHECK_THROWS_AS(ResNetFeatures::load(g, "", 5, cpu_backend()), Error);
}
