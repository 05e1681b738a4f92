// The evaluation protocol end to end on a generated data set with a tiny
// random-init U-Net: the report must agree with its own maps file (so anyone
// can recompute it), the mask scopes must share their noise, presets must
// load, and bad inputs must fail with messages naming the culprit.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "engine/io/demo_data.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include "engine/core/json_mini.h"
#include "engine/eval/metrics.h"
#include "engine/detect/presets.h"
#include "engine/io/safetensors.h"
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

EvalSettings fast_settings() {
  EvalSettings s;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 5.f};
  s.rounds.lambda = 0.3f;
  s.sampler.skip = 20;
  s.batch = 4;  // 10 images: two full batches and a partial one
  s.crop = 0.875f;
  s.map.blur_sigma = 1.f;
  s.map.blur_kernel = 5;
  return s;
}

double report_value(const json::Value& v, const std::string& key) {
  const json::Value* x = v.find(key);
  REQUIRE(x != nullptr);
  REQUIRE(x->kind == json::Kind::Number);
  return x->number;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The metrics of maps/masks/labels/scores straight from engine/eval/metrics.h.
struct Recomputed {
  double image_auroc, pixel_auroc, aupro, image_f1, pixel_f1, image_ap, pixel_ap;
};
Recomputed recompute(const std::vector<float>& maps, const std::vector<float>& masks, const std::vector<int64_t>& labels,
                     const std::vector<float>& scores, int H, int W, const std::vector<size_t>& pick) {
  const size_t hw = size_t(H) * W;
  std::vector<uint8_t> m8(masks.size());
  for (size_t i = 0; i < masks.size(); ++i) m8[i] = masks[i] > 0.5f;
  std::vector<const float*> mp;
  std::vector<const uint8_t*> kp;
  std::vector<float> sc, px;
  std::vector<int64_t> lb, pl;
  for (size_t i : pick) {
    mp.push_back(maps.data() + i * hw);
    kp.push_back(m8.data() + i * hw);
    sc.push_back(scores[i]);
    lb.push_back(labels[i]);
    px.insert(px.end(), maps.begin() + i * hw, maps.begin() + (i + 1) * hw);
    for (size_t k = 0; k < hw; ++k) pl.push_back(m8[i * hw + k]);
  }
  return {roc_auc(sc, lb),     pixel_roc_auc(mp, kp, H, W),   aupro(mp, kp, H, W, 0.3), f1_max(sc, lb).f1,
          f1_max(px, pl).f1, average_precision(sc, lb), average_precision(px, pl)};
}

void check_metrics(const json::Value& obj, const Recomputed& r) {
  // The report prints 10 significant digits.
  CHECK(report_value(obj, "image_auroc") == doctest::Approx(r.image_auroc).epsilon(1e-8));
  CHECK(report_value(obj, "pixel_auroc") == doctest::Approx(r.pixel_auroc).epsilon(1e-8));
  CHECK(report_value(obj, "aupro") == doctest::Approx(r.aupro).epsilon(1e-8));
  CHECK(report_value(obj, "image_f1_max") == doctest::Approx(r.image_f1).epsilon(1e-8));
  CHECK(report_value(obj, "pixel_f1_max") == doctest::Approx(r.pixel_f1).epsilon(1e-8));
  CHECK(report_value(obj, "image_ap") == doctest::Approx(r.image_ap).epsilon(1e-8));
  CHECK(report_value(obj, "pixel_ap") == doctest::Approx(r.pixel_ap).epsilon(1e-8));
  // The same values under anomalib's names.
  const std::pair<const char*, const char*> anomalib[] = {
      {"image_AUROC", "image_auroc"}, {"pixel_AUROC", "pixel_auroc"}, {"pixel_AUPRO", "aupro"},
      {"image_F1Max", "image_f1_max"}, {"pixel_F1Max", "pixel_f1_max"}, {"image_AP", "image_ap"},
      {"pixel_AP", "pixel_ap"}};
  for (const auto& [theirs, ours] : anomalib) CHECK(report_value(obj, theirs) == report_value(obj, ours));
}

}  // namespace

TEST_CASE("the eval report's metrics equal those recomputed from its maps.safetensors") {
  const std::string dir = test::temp_dir("eval_report");
  const std::string root = test::make_tiny_category(dir);
  auto net = UNet::from_file(test::write_tiny_model(dir), cpu_backend());
  EvalSettings s = fast_settings();
  Dataset ds = read_dataset(root);
  size_t progress_calls = 0, last_done = 0;
  EvalResult r = evaluate(*net, nullptr, ds, s, PanelOptions{dir + "/out/panels"}, [&](size_t done, size_t total, double, int) {
    ++progress_calls;
    CHECK(done > last_done);
    CHECK(total == 10);
    last_done = done;
  });
  CHECK(progress_calls == 3);
  write_eval_report(r, s, dir + "/out", "\"model\": \"m\"");

  SafeTensorsFile f = SafeTensorsFile::open(dir + "/out/maps.safetensors");
  const int side = crop_side(32, 0.875f);
  CHECK(side == 28);
  CHECK(f.info("anomaly_maps").shape == Shape{10, 28, 28});
  CHECK(f.info("gt_masks").shape == Shape{10, 28, 28});
  CHECK(f.info("labels").dtype == StDType::I64);
  CHECK(f.info("image_scores").shape == Shape{10});
  std::vector<float> maps = f.read_f32_vector("anomaly_maps"), masks = f.read_f32_vector("gt_masks"),
                     scores = f.read_f32_vector("image_scores");
  std::vector<int64_t> labels = f.read_i64("labels");
  CHECK(std::count(labels.begin(), labels.end(), 1) == 6);
  // The stored scores are the authors' image score of the stored (cropped) maps.
  std::vector<float> again = image_scores(Tensor::from_vector({10, 1, 28, 28}, maps), ImageScoreKind::Authors, 500);
  CHECK(test::max_abs_diff(again.data(), scores.data(), 10) == 0.0);
  // Defective images have defect pixels inside the crop; normal ones none.
  for (size_t i = 0; i < 10; ++i) {
    double sum = 0;
    for (size_t k = 0; k < 28 * 28; ++k) sum += masks[i * 784 + k];
    CHECK((sum > 0) == (labels[i] == 1));
  }

  json::Value rep = json::parse(read_text(dir + "/out/report.json"), "report.json");
  std::vector<size_t> all(10);
  for (size_t i = 0; i < 10; ++i) all[i] = i;
  check_metrics(rep, recompute(maps, masks, labels, scores, 28, 28, all));
  CHECK(rep.find("engine_version")->str == MDPS_VERSION);
  CHECK(report_value(rep, "seconds_per_image") > 0);
  REQUIRE(rep.find("settings") != nullptr);
  CHECK(report_value(*rep.find("settings"), "crop") == doctest::Approx(0.875));

  // Per type: that type's images plus the good ones.
  const json::Value* per = rep.find("per_type");
  REQUIRE(per != nullptr);
  for (const std::string type : {"blob", "scratch"}) {
    std::vector<size_t> pick;
    for (size_t i = 0; i < 10; ++i)
      if (r.samples[i].defect_type == type || r.samples[i].label == 0) pick.push_back(i);
    CHECK(pick.size() == 7);
    REQUIRE(per->find(type) != nullptr);
    check_metrics(*per->find(type), recompute(maps, masks, labels, scores, 28, 28, pick));
  }

  // images.csv: a header and one row per image, in file order.
  std::string csv = read_text(dir + "/out/images.csv");
  CHECK(csv.rfind("file,type,label,score\n", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 11);
  CHECK(csv.find(r.samples[0].image_path + ",blob,1,") != std::string::npos);
  // One panel per test image: image | reconstruction | ground truth | heat map,
  // each 32x32 tile enlarged 8 times (to 256), under two caption lines and the
  // tile titles (engine/eval/panel.h: 8-pixel margins and gaps, 18-pixel text
  // lines 6 apart).
  Image panel = load_image(dir + "/out/panels/scratch_000.png");
  CHECK(panel.width == 8 + 4 * 256 + 3 * 8 + 8);
  CHECK(panel.height == 8 + 3 * (18 + 6) + 256 + 8);
  // The image tile is the model-size image, each pixel an 8x8 square.
  size_t scratch0 = 0;
  while (r.samples[scratch0].defect_type != "scratch") ++scratch0;
  Image small = load_model_image(r.samples[scratch0].image_path, 32);
  int differ = 0;
  for (int y = 0; y < 256; ++y)
    for (int x = 0; x < 256; ++x)
      for (int c = 0; c < 3; ++c)
        differ += panel.at(8 + x, 80 + y, c) != std::round(small.at(x / 8, y / 8, c));
  CHECK(differ == 0);
}

TEST_CASE("dataset mask scope equals image scope on one image (same noise streams)") {
  const std::string dir = test::temp_dir("eval_scope");
  const std::string root = test::make_tiny_category(dir);
  auto net = UNet::from_file(test::write_tiny_model(dir), cpu_backend());
  Dataset ds = read_dataset(root);
  Tensor y = image_to_tensor(load_model_image(ds.test[0].image_path, 32));
  auto loader = [&](size_t, size_t) { return y; };
  EvalSettings s = fast_settings();
  ProtocolOutput a = run_protocol(*net, nullptr, 1, loader, s);
  s.dataset_scope = true;
  int passes = 0;
  ProtocolOutput b = run_protocol(*net, nullptr, 1, loader, s, [&](size_t, size_t, double, int pass) {
    passes |= 1 << pass;
  });
  CHECK(passes == 6);  // pass 1 and pass 2 reported
  CHECK(test::max_abs_diff(a.maps.data(), b.maps.data(), a.maps.size()) == 0.0);
  // A different lambda changes the mask and hence the result: the mask is used.
  s.rounds.lambda = 0.95f;
  ProtocolOutput c = run_protocol(*net, nullptr, 1, loader, s);
  CHECK(test::max_abs_diff(a.maps.data(), c.maps.data(), a.maps.size()) > 0.0);
}

TEST_CASE("protocol hooks: a run's own masks given back reproduce it; every sample's reconstruction") {
  // What `mdps sample` asks of run_protocol, under both protocols.
  const std::string dir = test::temp_dir("eval_hooks");
  const std::string root = test::make_tiny_category(dir);
  auto net = UNet::from_file(test::write_tiny_model(dir), cpu_backend());
  Dataset ds = read_dataset(root);
  std::vector<Image> imgs;
  for (size_t i = 0; i < 3; ++i) imgs.push_back(load_model_image(ds.test[i].image_path, 32));
  auto loader = [&](size_t b, size_t e) { return images_to_tensor({imgs.begin() + long(b), imgs.begin() + long(e)}); };
  for (Protocol p : {Protocol::Authors, Protocol::Calibrated}) {
    INFO(protocol_name(p));
    EvalSettings s = fast_settings();
    s.protocol = p;
    s.batch = 2;
    s.rounds.samples = 2;
    ProtocolHooks keep;
    keep.keep_masks = true;
    keep.all_samples = true;
    int steps = 0;
    keep.round2_steps = [&](int, int, const Tensor& x, const Tensor&) {
      ++steps;
      CHECK(x.dim(0) % s.rounds.samples == 0);  // the batch's (or, calibrated, the image's) samples
    };
    ProtocolOutput a = run_protocol(*net, nullptr, imgs.size(), loader, s, {}, {}, keep);
    REQUIRE(a.masks.size() == a.maps.size());
    REQUIRE(a.recon.size() == imgs.size() * 2);  // repeat r of image i at r*N + i
    CHECK(steps > 0);
    double marked = 0;
    for (float v : a.masks) marked += v;
    CHECK(marked > 0);
    // The first repeat is what a run without hooks keeps.
    ProtocolOutput plain = run_protocol(*net, nullptr, imgs.size(), loader, s);
    REQUIRE(plain.recon.size() == imgs.size());
    CHECK(plain.maps == a.maps);
    for (size_t i = 0; i < imgs.size(); ++i) CHECK(plain.recon[i] == a.recon[i]);
    CHECK(a.recon[imgs.size()] != a.recon[0]);  // repeat 1 is another sample
    // The masks given back replace round 1: round 2 draws the same noise, so the maps are the same.
    ProtocolHooks give;
    give.masks = [&](size_t b, size_t e) {
      std::vector<float> m(a.masks.begin() + long(b * 32 * 32), a.masks.begin() + long(e * 32 * 32));
      return Tensor::from_vector({int64_t(e - b), 1, 32, 32}, m);
    };
    ProtocolOutput g = run_protocol(*net, nullptr, imgs.size(), loader, s, {}, {}, give);
    CHECK(g.maps == a.maps);
    // Other masks change them: the given masks are used.
    give.masks = [&](size_t b, size_t e) { return Tensor::zeros({int64_t(e - b), 1, 32, 32}); };
    CHECK(run_protocol(*net, nullptr, imgs.size(), loader, s, {}, {}, give).maps != a.maps);
  }
}

TEST_CASE("--limit keeps at most N images per test type in file order") {
  std::vector<Sample> t;
  for (const char* type : {"good", "good", "good", "cut", "cut", "hole"}) t.push_back({std::string(type) + std::to_string(t.size()), type, std::string(type) == "good" ? 0 : 1, ""});
  auto l = limit_samples(t, 2);
  REQUIRE(l.size() == 5);
  CHECK(l[0].image_path == "good0");
  CHECK(l[1].image_path == "good1");
  CHECK(l[2].image_path == "cut3");
  CHECK(l[4].image_path == "hole5");
  CHECK(limit_samples(t, 0).size() == 6);
}

TEST_CASE("presets: every shipped file loads, and the table's values arrive") {
  const std::string dir = test::source_dir() + "/presets";
  int n_mvtec = 0, n_btad = 0;
  for (const char* layout : {"mvtec", "btad"})
    for (const auto& e : fs::directory_iterator(dir + "/" + layout)) {
      EvalSettings s;
      for (const auto& [k, v] : read_preset(e.path().string())) s.set(k, v);
      CHECK_NOTHROW(s.validate());
      (std::string(layout) == "mvtec" ? n_mvtec : n_btad)++;
    }
  CHECK(n_mvtec == 15);
  CHECK(n_btad == 3);
  EvalSettings s;
  std::string bottle = find_preset("mvtec/bottle", {dir});
  REQUIRE(!bottle.empty());
  for (const auto& [k, v] : read_preset(bottle)) s.set(k, v);
  CHECK(s.rounds.round1.t_start == 200);
  CHECK(s.rounds.round1.rho == 50.f);
  CHECK(s.rounds.round2.t_start == 200);
  CHECK(s.rounds.round2.rho == 100.f);
  CHECK(s.rounds.lambda == doctest::Approx(0.12));
  CHECK(s.map.eta == 7.f);
  CHECK(s.crop == doctest::Approx(0.875));
  EvalSettings carpet;
  for (const auto& [k, v] : read_preset(find_preset("mvtec/carpet", {dir}))) carpet.set(k, v);
  CHECK(carpet.rounds.round1.t_start == 0);
  CHECK(carpet.rounds.round2.t_start == 250);
  CHECK(find_preset("mvtec/no_such", {dir}).empty());
  CHECK_THROWS_WITH_AS(s.set("no-such-key", "1"), doctest::Contains("no-such-key"), Error);
  CHECK_THROWS_WITH_AS(s.set("rho", "abc"), doctest::Contains("--rho"), Error);
}

TEST_CASE("bad input fails with a clear error") {
  const std::string dir = test::temp_dir("eval_bad");
  const std::string root = test::make_tiny_category(dir);
  const std::string model = test::write_tiny_model(dir);
  auto net = UNet::from_file(model, cpu_backend());

  SUBCASE("a model file that is not a U-Net") {
    SafeTensorsWriter w;
    w.add_f32("conv1.weight", {2, 3, 1, 1}, std::vector<float>(6, 0.f));
    const std::string bad = dir + "/not_unet.safetensors";
    w.write(bad);
    CHECK_THROWS_WITH_AS(load_unet(bad, cpu_backend()), doctest::Contains(bad.c_str()), Error);
    CHECK_THROWS_WITH_AS(load_unet(bad, cpu_backend()), doctest::Contains("U-Net"), Error);
  }
  SUBCASE("the stages a feature extractor is loaded to") {
    CHECK(deepest_stage({2, 3}) == 3);
    CHECK(deepest_stage({1}) == 1);
    CHECK_THROWS_WITH_AS(deepest_stage({}), doctest::Contains("--layers"), Error);
    CHECK_THROWS_WITH_AS(deepest_stage({0, 2}), doctest::Contains("--layers: stages are 1..4"), Error);
    CHECK_THROWS_WITH_AS(deepest_stage({2, 5}), doctest::Contains("--layers: stages are 1..4"), Error);
  }
  SUBCASE("a features file that is not a ResNet") {
    CHECK_THROWS_WITH_AS(load_features(model, {2, 3}, cpu_backend()), doctest::Contains("not a ResNet"), Error);
    CHECK_THROWS_WITH_AS(load_features(model, {2, 3}, cpu_backend()), doctest::Contains(model.c_str()), Error);
  }
  SUBCASE("a missing ground-truth mask") {
    fs::remove(root + "/ground_truth/scratch/001_mask.png");
    CHECK_THROWS_WITH_AS(read_dataset(root), doctest::Contains("001_mask.png"), Error);
  }
  SUBCASE("a mask whose size differs from its image") {
    save_png(root + "/ground_truth/blob/002_mask.png", Image(16, 16, 1, 255.f));
    Dataset ds = read_dataset(root);
    CHECK_THROWS_WITH_AS(evaluate(*net, nullptr, ds, fast_settings()), doctest::Contains("002_mask.png"), Error);
    CHECK_THROWS_WITH_AS(evaluate(*net, nullptr, ds, fast_settings()), doctest::Contains("16x16"), Error);
  }
  SUBCASE("a test set without defective images") {
    Dataset ds = read_dataset(root);
    ds.test.erase(std::remove_if(ds.test.begin(), ds.test.end(), [](const Sample& s) { return s.label == 1; }),
                  ds.test.end());
    CHECK_THROWS_WITH_AS(evaluate(*net, nullptr, ds, fast_settings()), doctest::Contains("defective"), Error);
  }
  SUBCASE("a crop outside (0, 1]") {
    EvalSettings s = fast_settings();
    s.crop = 1.5f;
    Dataset ds = read_dataset(root);
    CHECK_THROWS_WITH_AS(evaluate(*net, nullptr, ds, s), doctest::Contains("--crop"), Error);
  }
}

TEST_CASE("demo data: masks mark exactly the defective images") {
  const std::string dir = test::temp_dir("eval_demo_data");
  const std::string root = test::make_tiny_category(dir);
  Dataset ds = read_dataset(root);
  CHECK(ds.train.size() == 2);
  REQUIRE(ds.test.size() == 10);
  for (const auto& s : ds.test) {
    if (s.label == 0) continue;
    Image m = load_image_gray(s.mask_path);
    double defect = 0;
    for (float v : m.pixels) defect += v > 0;
    CHECK(defect > 0);
    CHECK(defect < 0.3 * m.pixels.size());
  }
}
