// The feature memory (engine/detect/feature_memory.h): nearest distances
// against a brute force in double, the embedding against the stages computed
// here, the leave-one-out calibration and the fused map of a detector that
// carries a memory, the bundle's copy, and `mdps score` of one image equal to
// its row of `mdps eval` with the memory in the map. A tiny random ResNet
// (tests/tiny_fixtures.h) keeps the suite independent of ../shared.
#include "engine/detect/bundle.h"
#include "engine/detect/feature_memory.h"
#include "engine/eval/calibrate.h"
#include "engine/eval/evaluate.h"
#include "engine/eval/detector_files.h"
#include "engine/io/image.h"
#include "engine/core/json_mini.h"
#include "engine/core/option_checks.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "tests/calibrated_fixtures.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <sstream>

using namespace mdps;
using test::fast_calibrated;
using test::kFastFlags;
using test::loader_of;

namespace {

FeatureMemory random_memory(int images, int grid, int dim, uint64_t seed) {
  FeatureMemory m;
  m.images = images;
  m.grid = grid;
  m.dim = dim;
  m.rows = test::random_floats(size_t(images) * size_t(grid) * size_t(grid) * size_t(dim), seed);
  return m;
}

// The distance of each q row to the nearest memory row outside image `skip`, in double.
std::vector<double> brute_force(const FeatureMemory& m, const std::vector<float>& q, int skip) {
  const size_t D = size_t(m.dim), per = m.rows_per_image(), total = per * size_t(m.images);
  std::vector<double> out;
  for (size_t i = 0; i < q.size() / D; ++i) {
    double best = INFINITY;
    for (size_t j = 0; j < total; ++j) {
      if (skip >= 0 && j / per == size_t(skip)) continue;
      double s = 0.0;
      for (size_t c = 0; c < D; ++c) {
        const double d = double(q[i * D + c]) - double(m.rows[j * D + c]);
        s += d * d;
      }
      best = std::min(best, s);
    }
    out.push_back(std::sqrt(best));
  }
  return out;
}

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(double(got[i]) - want[i]) <= tol * (1.0 + want[i]));
  }
}


std::vector<float> blurred(const Tensor& d, const EvalSettings& sized) {
  Tensor b = Tensor::empty(d.shape(), d.backend());
  d.backend().gaussian_blur(d, sized.map.blur_kernel, sized.map.blur_sigma, b);
  return b.to_vector();
}

}  // namespace

TEST_CASE("nearest distances: the brute-force minimum, blocks of memory rows, one image left out") {
  // 3 images of 30x30 rows: 2700 rows, more than one block of 2048.
  const FeatureMemory m = random_memory(3, 30, 6, 1);
  const std::vector<float> q = test::random_floats(40 * 6, 2);
  check_close(nearest_distances(m, q.data(), 40), brute_force(m, q, -1), 1e-4);
  check_close(nearest_distances(m, q.data(), 40, 2), brute_force(m, q, 2), 1e-4);
  // An image's own rows: distance 0 with itself in the memory, the others' without.
  const size_t per = m.rows_per_image() * 6;
  const std::vector<float> own(m.rows.begin() + long(per), m.rows.begin() + long(2 * per));
  for (float d : nearest_distances(m, own.data(), m.rows_per_image())) CHECK(d <= 1e-3f);
  const std::vector<float> loo = nearest_distances(m, own.data(), m.rows_per_image(), 1);
  check_close(loo, brute_force(m, own, 1), 1e-4);
  CHECK(*std::min_element(loo.begin(), loo.end()) > 0.f);
  // One image left out of a memory of one: nothing to compare with.
  const FeatureMemory one = random_memory(1, 2, 3, 3);
  CHECK_THROWS_WITH_AS(nearest_distances(one, one.rows.data(), 1, 0), doctest::Contains("nothing to compare"), Error);
}

TEST_CASE("the memory's images: all up to the cap, else evenly spaced") {
  CHECK(memory_image_indices(3) == std::vector<size_t>{0, 1, 2});
  const std::vector<size_t> all = memory_image_indices(kMaxMemoryImages);
  CHECK(all.size() == kMaxMemoryImages);
  CHECK(all.back() == kMaxMemoryImages - 1);
  const std::vector<size_t> half = memory_image_indices(2 * kMaxMemoryImages);
  REQUIRE(half.size() == kMaxMemoryImages);
  for (size_t k = 0; k < half.size(); ++k) CHECK(half[k] == 2 * k);
  const std::vector<size_t> odd = memory_image_indices(kMaxMemoryImages + 1);
  REQUIRE(odd.size() == kMaxMemoryImages);
  CHECK(std::adjacent_find(odd.begin(), odd.end(), [](size_t a, size_t b) { return b <= a; }) == odd.end());
  CHECK(odd.back() <= kMaxMemoryImages);
}

TEST_CASE("fuse: C / c_max + w d / d_max, a maximum of 0 counting as 1") {
  const std::vector<float> c{1.f, 2.f, 4.f}, d{0.5f, 1.f, 0.f};
  const std::vector<float> f = fuse_memory_term(c, d, 4.f, 2.f, 3.f);
  CHECK(f[0] == doctest::Approx(0.25 + 0.75));
  CHECK(f[1] == doctest::Approx(0.5 + 1.5));
  CHECK(f[2] == doctest::Approx(1.0));
  CHECK(fuse_memory_term(c, d, 0.f, 0.f, 1.f)[1] == doctest::Approx(3.0));
  CHECK_THROWS_AS(fuse_memory_term(c, {1.f}, 1.f, 1.f, 1.f), Error);
}

TEST_CASE("embedding: stages 2 and 3 at 256x256, 3x3-mean-pooled, stage 3 resized to stage 2's grid") {
  const std::string dir = test::temp_dir("memory_embed");
  auto fe = load_features(test::write_tiny_resnet(dir), {2, 3}, cpu_backend());
  REQUIRE(can_embed(fe.get()));
  auto shallow = load_features(test::write_tiny_resnet(dir), {2}, cpu_backend());
  CHECK_FALSE(can_embed(shallow.get()));
  CHECK_FALSE(can_embed(nullptr));
  const Tensor img = test::random_tensor({1, 3, 64, 64}, 4);
  int grid = 0, dim = 0;
  const std::vector<float> e = memory_embeddings(*fe, img, grid, dim);
  CHECK(grid == 32);     // 256 / 8
  CHECK(dim == 8 + 8);   // stage 2 and stage 3 channels
  REQUIRE(e.size() == size_t(32 * 32 * 16));
  // The same image resized here first gives the same rows.
  Tensor up = Tensor::empty({1, 3, 256, 256}, cpu_backend());
  cpu_backend().resize_bilinear_align_corners(img, up);
  int g2 = 0, d2 = 0;
  CHECK(memory_embeddings(*fe, up, g2, d2) == e);
  // Stage 2 pooled by hand at two positions (a corner: zero padding counted),
  // stage 3 at the corner (align corners: grid corner = stage-3 corner).
  const std::vector<Tensor> st = fe->forward(imagenet_normalise(up), {2, 3});
  const std::vector<float> s2 = st[0].to_vector(), s3 = st[1].to_vector();
  auto pooled = [](const std::vector<float>& v, int64_t C, int64_t H, int64_t c, int64_t i, int64_t j) {
    double s = 0.0;
    for (int64_t a = i - 1; a <= i + 1; ++a)
      for (int64_t b = j - 1; b <= j + 1; ++b)
        if (a >= 0 && a < H && b >= 0 && b < H) s += v[size_t((c * H + a) * H + b)];
    (void)C;
    return s / 9.0;
  };
  for (int64_t c = 0; c < 8; ++c) {
    CHECK(e[size_t(c)] == doctest::Approx(pooled(s2, 8, 32, c, 0, 0)).epsilon(1e-5));
    CHECK(e[size_t((5 * 32 + 7) * 16 + c)] == doctest::Approx(pooled(s2, 8, 32, c, 5, 7)).epsilon(1e-5));
    CHECK(e[size_t(8 + c)] == doctest::Approx(pooled(s3, 8, 16, c, 0, 0)).epsilon(1e-5));
  }
  // A memory taken with another extractor is refused, naming the cause.
  const FeatureMemory other = random_memory(2, 32, 5, 6);
  CHECK_THROWS_WITH_AS(memory_distance_map(other, *fe, img), doctest::Contains("does not fit"), Error);
  // From the image's rows the map is the image's, leaving out a memory image
  // or not (calibration takes its memory images' maps from their rows).
  const FeatureMemory mem = random_memory(3, 32, 16, 7);
  for (int skip : {-1, 1}) {
    CAPTURE(skip);
    CHECK(memory_distance_map(mem, e.data(), grid, dim, 64, 64, cpu_backend(), skip).to_vector() ==
          memory_distance_map(mem, *fe, img, skip).to_vector());
  }
  CHECK_THROWS_WITH_AS(memory_distance_map(other, e.data(), grid, dim, 64, 64, cpu_backend()),
                       doctest::Contains("does not fit"), Error);
}

TEST_CASE("calibration takes the memory leave-one-out; a detector carrying it fuses every map") {
  const std::string dir = test::temp_dir("memory_cal");
  const std::string root = test::make_tiny_category(dir);
  auto net = load_unet(test::write_tiny_model(dir), cpu_backend());
  auto fe = load_features(test::write_tiny_resnet(dir), {2, 3}, cpu_backend());
  const std::vector<std::string> normal = list_images(root + "/test/good");
  REQUIRE(normal.size() == 4);
  const EvalSettings s = fast_calibrated();
  const EvalSettings sized = s.at_size(32);
  CHECK(sized.memory_weight == kCalibratedMemoryWeight);

  std::vector<float> maps, plain_maps;
  const NormalStats st = collect_normal_stats(*net, fe.get(), normal.size(), loader_of(normal, 32), s, {}, &maps);
  EvalSettings off = s;
  off.set("memory-weight", "0");
  const NormalStats plain = collect_normal_stats(*net, fe.get(), normal.size(), loader_of(normal, 32), off, {}, &plain_maps);
  CHECK(plain.memory.empty());
  REQUIRE_FALSE(st.memory.empty());
  CHECK(st.memory.images == 4);
  CHECK(st.memory.grid == 32);
  CHECK(st.memory.dim == 16);
  // The memory does not touch the reconstruction: the maxima of the terms are the plain run's.
  CHECK(st.final.pixel == plain.final.pixel);
  CHECK(st.round1_max == plain.round1_max);
  CHECK(st.map_max == *std::max_element(plain_maps.begin(), plain_maps.end()));
  // Each normal image's map: its plain map fused with its distance to the others' rows.
  const size_t plane = 32 * 32;
  std::vector<float> dist;
  for (size_t i = 0; i < normal.size(); ++i) {
    const std::vector<float> d = blurred(memory_distance_map(st.memory, *fe, loader_of(normal, 32)(i, i + 1), int(i)), sized);
    dist.insert(dist.end(), d.begin(), d.end());
  }
  CHECK(st.memory_max == *std::max_element(dist.begin(), dist.end()));
  CHECK(maps == fuse_memory_term(plain_maps, dist, st.map_max, st.memory_max, kCalibratedMemoryWeight));
  CHECK(st.pixels.mean == PixelNormals::of_maps(maps, normal.size(), 32, 32).mean);
  // Round trip of the statistics' JSON (the rows travel as a tensor).
  NormalStats back = NormalStats::from_json(st.to_json(), "stats");
  CHECK(back.memory.images == 4);
  CHECK(back.memory.dim == 16);
  CHECK(back.map_max == st.map_max);
  CHECK(back.memory_max == st.memory_max);
  // Text from a file: counts and floats only within range.
  std::string bad = st.to_json();
  const std::string grid = "\"memory_grid\": 32", images = "\"images\": 4";
  bad.replace(bad.find(grid), grid.size(), "\"memory_grid\": 1e300");
  CHECK_THROWS_WITH_AS(NormalStats::from_json(bad, "stats"), doctest::Contains("memory_grid"), Error);
  bad = st.to_json();
  bad.replace(bad.find(images), images.size(), "\"images\": 4.5");
  CHECK_THROWS_WITH_AS(NormalStats::from_json(bad, "stats"), doctest::Contains("is not a count"), Error);

  // A detector carrying the statistics: a defective image's map is its plain
  // map (the same statistics without the memory) fused with its distance to
  // every normal image's rows; the image score follows (topk-fraction).
  const std::vector<std::string> defect = list_images(root + "/test/" + std::string("scratch"));
  REQUIRE(!defect.empty());
  EvalSettings with = s, without = s;
  with.normal = st;
  without.normal = st;
  without.set("memory-weight", "0");
  CHECK(with.at_size(32).score_kind == ImageScoreKind::TopFraction);
  CHECK(without.at_size(32).score_kind == ImageScoreKind::NormalZ);
  CHECK(with.fused_memory() != nullptr);
  CHECK(without.fused_memory() == nullptr);
  const ProtocolOutput a = run_protocol(*net, fe.get(), 1, loader_of(defect, 32), with);
  const ProtocolOutput b = run_protocol(*net, fe.get(), 1, loader_of(defect, 32), without);
  const std::vector<float> d = blurred(memory_distance_map(st.memory, *fe, loader_of(defect, 32)(0, 1)), sized);
  CHECK(a.maps == fuse_memory_term(b.maps, d, st.map_max, st.memory_max, kCalibratedMemoryWeight));
  CHECK(a.maps.size() == plane);
  // The authors' protocol never takes a memory; a weight is refused there.
  EvalSettings authors;
  CHECK(authors.at_size(32).memory_weight == 0.f);
  authors.set("memory-weight", "2");
  CHECK_THROWS_WITH_AS(authors.validate(), doctest::Contains("--protocol calibrated"), UsageError);
  EvalSettings neg = s;
  neg.set("memory-weight", "-1");
  CHECK_THROWS_WITH_AS(neg.validate(), doctest::Contains("--memory-weight"), UsageError);
}

TEST_CASE("mdps calibrate stores the memory in the bundle; score of one image equals its row of eval") {
  const std::string dir = test::temp_dir("memory_cli");
  const std::string root = test::make_tiny_category(dir);
  const std::string model = test::write_tiny_model(dir);
  const std::string resnet = test::write_tiny_resnet(dir);
  const std::string log = dir + "/log.txt";
  INFO(test::read_text(log));
  REQUIRE(test::run_mdps("calibrate --model " + model + " --features " + resnet + kFastFlags + " --normal " + root +
                             "/train/good --quiet --threads 2 --out " + dir + "/cal.safetensors",
                         log) == 0);
  Bundle b = Bundle::open(dir + "/cal.safetensors");
  REQUIRE(b.normal_stats().has_value());
  const FeatureMemory& mem = b.normal_stats()->memory;
  CHECK(mem.images == 2);
  CHECK(mem.rows.size() == size_t(2 * 32 * 32 * 16));
  CHECK(b.file().has("normal.memory"));
  CHECK(b.settings().fused_memory() != nullptr);

  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                             " --quiet --no-panels --threads 2 --out " + dir + "/ev",
                         log) == 0);
  json::Value rep = json::parse(test::read_text(dir + "/ev/report.json"), "report.json");
  CHECK(rep.find("settings")->find("image_score")->str == "topk-fraction");
  CHECK(rep.find("settings")->find("memory_weight")->number == double(kCalibratedMemoryWeight));
  // The last defective image's row, then that image alone.
  std::istringstream lines(test::read_text(dir + "/ev/images.csv"));
  std::string line, last;
  std::getline(lines, line);
  while (std::getline(lines, line))
    if (line.find(",1,") != std::string::npos) last = line;
  REQUIRE(!last.empty());
  const std::string file = last.substr(0, last.find(',')), score = last.substr(last.rfind(',') + 1);
  REQUIRE(test::run_mdps("score --model " + dir + "/cal.safetensors --images " + file + " --quiet --threads 2 --out " +
                             dir + "/sc",
                         log) == 0);
  CHECK(test::read_text(dir + "/sc/scores.csv").rfind("file,score,decision\n" + file + "," + score + ",", 0) == 0);

  // A damaged bundle: the memory's rows gone, its shape still named.
  SafeTensorsFile f = SafeTensorsFile::open(dir + "/cal.safetensors");
  SafeTensorsWriter w;
  for (const std::string& n : f.names())
    if (n != "normal.memory") w.add_raw(n, f.info(n).dtype, f.info(n).shape, std::vector<uint8_t>(f.raw(n), f.raw(n) + f.info(n).bytes()));
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  w.write(dir + "/damaged.safetensors");
  CHECK_THROWS_WITH_AS(Bundle::open(dir + "/damaged.safetensors"), doctest::Contains("normal.memory"), Error);
}
