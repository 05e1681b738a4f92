// Issue 18: the calibrated protocol (engine/calibrated_protocol.h), the
// size-aware defaults, the image scores that hold at every size, and ground
// truth resized as the authors resize it.
//
// - `mdps score IMAGE` alone gives that image's row of `mdps eval` bit for
//   bit (a calibrated bundle), and the evaluation batch (images per U-Net
//   call) changes nothing: maps, masks, reconstructions and statistics;
// - the statistics run scores its normal images exactly as a detector that
//   carries the statistics scores them;
// - the noise of an image follows its pixels, not its position;
// - ground-truth masks: Pillow bilinear with antialiasing (hand-computed
//   values), nearest on request, and a warning when a type's masks vanish.
#include "engine/detect/bundle.h"
#include "engine/detect/setting_table.h"
#include "engine/eval/calibrate.h"
#include "engine/eval/calibrated_protocol.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include "engine/core/json_mini.h"
#include "engine/io/safetensors.h"
#include "include/mdps/mdps.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "tests/calibrated_fixtures.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mdps;
using test::fast_calibrated;
using test::kFastFlags;
using test::loader_of;
namespace fs = std::filesystem;

namespace {

// The last defective image's row of an eval's images.csv: its file, its score
// as printed, its index among the rows and the number of rows.
struct CsvRow {
  std::string file, score_text;
  size_t index = 0, rows = 0;
};
CsvRow last_defective_row(const std::string& csv) {
  std::istringstream lines(csv);
  std::string line, last;
  std::getline(lines, line);  // the header
  CsvRow r;
  while (std::getline(lines, line)) {
    if (line.find(",1,") != std::string::npos) last = line, r.index = r.rows;
    ++r.rows;
  }
  REQUIRE(!last.empty());
  r.file = last.substr(0, last.find(','));
  r.score_text = last.substr(last.rfind(',') + 1);
  return r;
}


}  // namespace

TEST_CASE("size-aware defaults: the authors' values at 256, scaled elsewhere, flags win") {
  EvalSettings s;
  s.protocol = Protocol::Calibrated;
  EvalSettings a = s.at_size(256);
  CHECK(a.map.blur_sigma == 4.f);
  CHECK(a.map.blur_kernel == 33);
  CHECK(a.score_k == 500);
  CHECK(a.map.eta == 7.f);
  CHECK(s.at_size(128).map.eta == 7.f);
  CHECK(s.at_size(32).map.eta == 112.f);
  EvalSettings b = s.at_size(64);
  CHECK(b.map.eta == 28.f);  // the perceptual term is 8x8 there: the pixel term weighs more
  CHECK(b.map.blur_sigma == 1.f);
  CHECK(b.map.blur_kernel == 9);  // round(8.25) = 8, made odd
  CHECK(b.score_k == 31);         // round(500 / 16)
  EvalSettings c = s.at_size(16);
  CHECK(c.map.blur_kernel == 3);  // round(2.06) = 2 -> 3
  CHECK(c.score_k == 2);
  CHECK(s.at_size(4).score_k == 1);  // at least one pixel
  s.set("blur-sigma", "2");
  s.set("image-score-k", "7");
  s.set("eta", "2");
  CHECK(s.at_size(64).map.blur_sigma == 2.f);
  CHECK(s.at_size(64).map.blur_kernel == 9);
  CHECK(s.at_size(64).score_k == 7);
  CHECK(s.at_size(64).map.eta == 2.f);
  // values() keeps "auto" for what follows the size, numbers for what was set.
  EvalSettings back;
  for (const auto& [k, v] : s.values()) back.set(k, v);
  CHECK(back.at_size(64).to_json() == s.at_size(64).to_json());
  CHECK(back.at_size(128).to_json() == s.at_size(128).to_json());
  // The authors' protocol keeps the fields as they are at every size.
  EvalSettings authors;
  CHECK(authors.at_size(64).map.blur_sigma == 4.f);
  CHECK(authors.at_size(64).map.blur_kernel == 33);
  CHECK(authors.at_size(64).score_k == 500);
  CHECK(authors.at_size(64).map.eta == 7.f);
  CHECK_THROWS_WITH_AS(authors.set("protocol", "paper"), doctest::Contains("--protocol"), Error);
  authors.dataset_scope = true;
  authors.validate();
  authors.protocol = Protocol::Calibrated;
  CHECK_THROWS_WITH_AS(authors.validate(), doctest::Contains("--mask-scope dataset"), Error);
}

TEST_CASE("image scores that hold at every size: max and top fraction") {
  // A 4x4 map 0..15: max 15; top 25% = 4 pixels (12..15) mean 13.5.
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[size_t(i)] = float(i);
  Tensor m = Tensor::from_vector({1, 1, 4, 4}, v);
  CHECK(image_scores(m, ImageScoreKind::Max)[0] == 15.f);
  CHECK(image_scores(m, ImageScoreKind::TopFraction, 500, 0.25f)[0] == doctest::Approx(13.5));
  CHECK(image_scores(m, ImageScoreKind::TopFraction, 500, 0.2f)[0] == doctest::Approx(13.5));  // ceil(3.2) = 4
  CHECK(image_scores(m, ImageScoreKind::TopFraction, 500, 1e-6f)[0] == 15.f);                // at least one
  CHECK(parse_image_score("topk-fraction") == ImageScoreKind::TopFraction);
  CHECK_THROWS_WITH_AS(parse_image_score("median"), doctest::Contains("--image-score"), Error);
}

TEST_CASE("ground truth: Pillow bilinear with antialiasing, then > 0 (hand-computed), or nearest") {
  // 4x4 -> 2x2 halves each side: Pillow's bilinear support is 2 input pixels
  // each side of the centre, centres 1.0 and 3.0, taps 0..2 and 1..3 with
  // triangle weights (0.75, 0.75, 0.25) / 1.75 and (0.25, 0.75, 0.75) / 1.75.
  Image gt(4, 4, 1);
  gt.at(1, 1, 0) = 255.f;
  // Horizontal pass, row 1: 255 * 3/7 = 109.29 -> 109 and 255 * 1/7 = 36.43 -> 36;
  // vertical pass: 109 * 3/7 = 46.71 -> 47, 36 * 3/7 = 15.43 -> 15, 109/7 = 15.57 -> 16, 36/7 = 5.14 -> 5.
  Image r = resize_bilinear(gt, 2, 2, true);
  CHECK(r.at(0, 0, 0) == 47.f);
  CHECK(r.at(1, 0, 0) == 15.f);
  CHECK(r.at(0, 1, 0) == 16.f);
  CHECK(r.at(1, 1, 0) == 5.f);
  CHECK(resize_gt_mask(gt, 2, GtResize::Bilinear) == std::vector<uint8_t>{1, 1, 1, 1});
  // Nearest samples input pixels 1 and 3: only the top-left output sees it.
  CHECK(resize_gt_mask(gt, 2, GtResize::Nearest) == std::vector<uint8_t>{1, 0, 0, 0});
  // A defect on pixel (0, 0): nearest never samples it, bilinear keeps it.
  Image thin(4, 4, 1);
  thin.at(0, 0, 0) = 255.f;
  CHECK(resize_gt_mask(thin, 2, GtResize::Nearest) == std::vector<uint8_t>{0, 0, 0, 0});
  CHECK(resize_gt_mask(thin, 2, GtResize::Bilinear) == std::vector<uint8_t>{1, 0, 0, 0});
  // 8-bit as Pillow: a faint value rounds away (1 * 3/7 -> 0).
  Image faint(4, 4, 1);
  faint.at(1, 1, 0) = 1.f;
  CHECK(resize_gt_mask(faint, 2, GtResize::Bilinear) == std::vector<uint8_t>{0, 0, 0, 0});
}

TEST_CASE("a type whose masks all vanish gets a warning, in the result and report.json") {
  const std::string dir = test::temp_dir("cal_vanish");
  const std::string root = dir + "/thin";
  // 64x64 images for a 32x32 model; the "hole" defect is one pixel at (10, 10):
  // nearest neighbour samples odd coordinates only and deletes it.
  for (const char* d : {"train/good", "test/good", "test/hole", "ground_truth/hole"})
    fs::create_directories(root + "/" + d);
  Image img(64, 64, 3);
  for (auto& p : img.pixels) p = 120.f;
  save_png(root + "/train/good/000.png", img);
  save_png(root + "/test/good/000.png", img);
  save_png(root + "/test/good/001.png", img);
  save_png(root + "/test/hole/000.png", img);
  Image mask(64, 64, 1);
  mask.at(10, 10, 0) = 255.f;
  save_png(root + "/ground_truth/hole/000_mask.png", mask);
  auto net = load_unet(test::write_tiny_model(dir), cpu_backend());
  Dataset ds = read_dataset(root);
  EvalSettings s;  // the authors' protocol, fast
  s.rounds.round1 = {20, 5.f};
  s.rounds.round2 = {20, 5.f};
  s.gt_resize = GtResize::Nearest;
  EvalResult r = evaluate(*net, nullptr, ds, s);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].find("'hole'") != std::string::npos);
  CHECK(r.warnings[0].find("all 1 ground-truth masks are empty") != std::string::npos);
  CHECK(std::isnan(r.per_type.at("hole").pixel_auroc));
  write_eval_report(r, s, dir + "/out");
  json::Value js = json::parse(test::read_text(dir + "/out/report.json"), "report.json");
  REQUIRE(js.find("warnings") != nullptr);
  CHECK(js.find("warnings")->items.size() == 1);
  CHECK(js.find("settings")->find("gt_resize")->str == "nearest");
  s.gt_resize = GtResize::Bilinear;
  EvalResult b = evaluate(*net, nullptr, ds, s);
  CHECK(b.warnings.empty());
  CHECK(std::isfinite(b.per_type.at("hole").pixel_auroc));
}

TEST_CASE("calibrated protocol: an image's map does not depend on the images around it") {
  const std::string dir = test::temp_dir("cal_lib");
  const std::string root = test::make_tiny_category(dir);
  auto net = load_unet(test::write_tiny_model(dir), cpu_backend());
  Dataset ds = read_dataset(root);
  std::vector<std::string> files;
  for (const auto& s : ds.test) files.push_back(s.image_path);
  REQUIRE(files.size() >= 6);
  EvalSettings s = fast_calibrated();
  s.rounds.samples = 2;
  ProtocolOutput all = run_protocol(*net, nullptr, files.size(), loader_of(files, 32), s);
  // The fourth image alone, and in another order with other neighbours.
  const size_t plane = 32 * 32;
  ProtocolOutput one = run_protocol(*net, nullptr, 1, loader_of({files[3]}, 32), s);
  CHECK(std::equal(one.maps.begin(), one.maps.end(), all.maps.begin() + 3 * plane));
  CHECK(one.recon[0] == all.recon[3]);
  std::vector<std::string> other = {files[5], files[3], files[0]};
  s.batch = 2;  // images per U-Net call: speed only
  ProtocolOutput mixed = run_protocol(*net, nullptr, other.size(), loader_of(other, 32), s);
  CHECK(std::equal(mixed.maps.begin() + plane, mixed.maps.begin() + 2 * plane, all.maps.begin() + 3 * plane));
  // Another seed or other pixels draw other noise.
  EvalSettings s2 = s;
  s2.seed = 6;
  ProtocolOutput seed6 = run_protocol(*net, nullptr, 1, loader_of({files[3]}, 32), s2);
  CHECK(seed6.maps != one.maps);
  Tensor y = images_to_tensor({load_model_image(files[3], 32)});
  Tensor z = images_to_tensor({load_model_image(files[4], 32)});
  CHECK(image_noise_key(y) == image_noise_key(y.clone()));
  CHECK(image_noise_key(y) != image_noise_key(z));
  CHECK(image_noise_stream(1, 1, 0) != image_noise_stream(1, 2, 0));
  CHECK(image_noise_stream(1, 1, 0) != image_noise_stream(1, 1, 1));
}

TEST_CASE("calibrated protocol: --batch changes the speed only, never a bit of a map, mask or reconstruction") {
  // Several images per U-Net call (batch 3 with a partial last batch, 8 with
  // one partial batch) against one image per call, with and without
  // calibration statistics, every sample's reconstruction kept.
  const std::string dir = test::temp_dir("cal_batch");
  const std::string root = test::make_tiny_category(dir);
  auto net = load_unet(test::write_tiny_model(dir, test::tiny_attention_unet_config()), cpu_backend());
  REQUIRE(cpu_backend().batch_invariant());
  const int S = net->config().image_size;
  Dataset ds = read_dataset(root);
  std::vector<std::string> files;
  for (const auto& smp : ds.test) files.push_back(smp.image_path);
  REQUIRE(files.size() >= 7);
  files.resize(7);
  const std::vector<std::string> normal = list_images(root + "/test/good");
  ProtocolHooks hooks;
  hooks.keep_masks = true;
  hooks.all_samples = true;
  for (bool with_stats : {false, true}) {
    CAPTURE(with_stats);
    EvalSettings s = fast_calibrated();
    s.rounds.samples = 2;
    s.batch = 1;
    if (with_stats) {
      std::vector<float> maps1, maps3;
      NormalStats st1 = collect_normal_stats(*net, nullptr, normal.size(), loader_of(normal, S), s, {}, &maps1);
      EvalSettings s3 = s;
      s3.batch = 3;
      NormalStats st3 = collect_normal_stats(*net, nullptr, normal.size(), loader_of(normal, S), s3, {}, &maps3);
      CHECK(st3.to_json() == st1.to_json());
      CHECK(maps3 == maps1);
      s.normal = st1;
    }
    const ProtocolOutput one = run_protocol(*net, nullptr, files.size(), loader_of(files, S), s, {}, {}, hooks);
    REQUIRE(one.masks.size() == one.maps.size());
    CHECK(std::any_of(one.masks.begin(), one.masks.end(), [](float v) { return v > 0.f; }));
    for (int batch : {3, 8}) {
      CAPTURE(batch);
      s.batch = batch;
      const ProtocolOutput many = run_protocol(*net, nullptr, files.size(), loader_of(files, S), s, {}, {}, hooks);
      CHECK(many.maps == one.maps);
      CHECK(many.masks == one.masks);
      CHECK(many.recon == one.recon);  // both samples of every image
    }
  }
}

TEST_CASE("calibration statistics: the normal images score as a detector carrying them scores them") {
  const std::string dir = test::temp_dir("cal_stats");
  const std::string root = test::make_tiny_category(dir);
  auto net = load_unet(test::write_tiny_model(dir), cpu_backend());
  std::vector<std::string> normal = list_images(root + "/test/good");
  REQUIRE(normal.size() == 4);
  std::vector<std::unique_ptr<ResNetFeatures>> fes;
  fes.push_back(nullptr);
  const std::string feat = test::shared_dir() + "/weights/resnet18_imagenet_l1-l3.safetensors";
  if (fs::exists(feat)) fes.push_back(load_features(feat, {2, 3}, cpu_backend()));
  for (const auto& fe : fes) {
    CAPTURE(fe != nullptr);
    // Without the feature memory: with it, each normal image's statistics
    // run measures its distance to the others' features (leave one out),
    // where a detector carrying them finds its own (tests/detect/test_feature_memory.cpp).
    EvalSettings s = fast_calibrated();
    s.set("memory-weight", "0");
    std::vector<float> maps;
    NormalStats st = collect_normal_stats(*net, fe.get(), normal.size(), loader_of(normal, 32), s, {}, &maps);
    CHECK(st.images == 4);
    CHECK(st.round1.pixel > 0.f);
    CHECK(st.final.pixel > 0.f);
    CHECK((fe ? st.round1.feature > 0.f : st.round1.feature == 0.f));
    CHECK(st.round1_min < st.round1_max);
    s.normal = st;
    ProtocolOutput po = run_protocol(*net, fe.get(), normal.size(), loader_of(normal, 32), s);
    CHECK(po.maps == maps);
    // The maxima really are the normal images' own: the round-1 range covers their round-1 maps.
    NormalStats back = NormalStats::from_json(st.to_json(), "stats");
    CHECK(back.to_json() == st.to_json());
    CHECK(back.round1_max == st.round1_max);
    CHECK(back.final.feature == st.final.feature);
  }
  CHECK_THROWS_WITH_AS(NormalStats::from_json("{\"images\": 1}", "x"), doctest::Contains("round1_max_feature"), Error);
}

TEST_CASE("mdps score of one image equals its row of mdps eval, bit for bit (calibrated bundle)") {
  const std::string dir = test::temp_dir("cal_cli");
  const std::string root = test::make_tiny_category(dir);
  const std::string model = test::write_tiny_model(dir);
  const std::string log = dir + "/log.txt";
  INFO(test::read_text(log));
  // A detector calibrated on held-out normal images (here the train images).
  REQUIRE(test::run_mdps("calibrate --model " + model + kFastFlags + " --protocol calibrated --normal " + root +
                       "/train/good --quiet --threads 2 --out " + dir + "/cal.safetensors",
                   log) == 0);
  Bundle b = Bundle::open(dir + "/cal.safetensors");
  REQUIRE(b.normal_stats().has_value());
  CHECK(b.normal_stats()->images == 2);
  CHECK(b.settings().protocol == Protocol::Calibrated);
  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                       " --quiet --no-panels --threads 2 --out " + dir + "/ev",
                   log) == 0);
  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                       " --batch 1 --quiet --no-panels --threads 2 --out " + dir + "/ev1",
                   log) == 0);
  CHECK(test::read_text(dir + "/ev/images.csv") == test::read_text(dir + "/ev1/images.csv"));
  // 8 images per U-Net call (a partial last batch) and 1: the same maps, bit for bit.
  CHECK(SafeTensorsFile::open(dir + "/ev/maps.safetensors").read_f32_vector("anomaly_maps") ==
        SafeTensorsFile::open(dir + "/ev1/maps.safetensors").read_f32_vector("anomaly_maps"));
  json::Value rep = json::parse(test::read_text(dir + "/ev/report.json"), "report.json");
  CHECK(rep.find("protocol")->str == "calibrated");
  CHECK(rep.find("calibration")->find("source")->str == "bundle");
  CHECK(rep.find("settings")->find("protocol")->str == "calibrated");
  CHECK(rep.find("settings")->find("blur_kernel")->number == 5);  // 33 * 32 / 256 = 4.1 -> 5

  // The last defective image alone.
  const CsvRow last = last_defective_row(test::read_text(dir + "/ev/images.csv"));
  const std::string &file = last.file, &score_text = last.score_text;
  const size_t row = last.index, rows = last.rows;
  REQUIRE(test::run_mdps("score --model " + dir + "/cal.safetensors --images " + file + " --quiet --threads 2 --out " + dir +
                       "/sc",
                   log) == 0);
  // (The bundle has thresholds, so a decision follows the score.)
  const std::string scored = test::read_text(dir + "/sc/scores.csv");
  CHECK(scored.rfind("file,score,decision\n" + file + "," + score_text + ",", 0) == 0);

  // `mdps sample` runs the same protocol: its reconstruction is score's, byte
  // for byte (the bundle's Ns is the calibrated default 2: sample 0 is the
  // one score writes).
  const std::string stem = fs::path(file).stem().string();
  REQUIRE(b.settings().rounds.samples == kCalibratedDefaultSamples);
  REQUIRE(test::run_mdps("sample --model " + dir + "/cal.safetensors --image " + file + " --threads 2 --out " + dir +
                             "/sample.png",
                         log) == 0);
  CHECK(test::read_text(dir + "/sample_0.png") == test::read_text(dir + "/sc/" + stem + "_recon.png"));
  CHECK(test::read_text(dir + "/sample_1.png") != test::read_text(dir + "/sample_0.png"));
  CHECK_FALSE(fs::exists(dir + "/sample.png"));
  // And with a plain model under the authors' protocol.
  REQUIRE(test::run_mdps("score --model " + model + kFastFlags + " --protocol authors --images " + file +
                             " --quiet --threads 2 --out " + dir + "/sca",
                         log) == 0);
  REQUIRE(test::run_mdps("sample --model " + model + kFastFlags + " --protocol authors --image " + file +
                             " --threads 2 --out " + dir + "/sample_a.png",
                         log) == 0);
  CHECK(test::read_text(dir + "/sample_a.png") == test::read_text(dir + "/sca/" + stem + "_recon.png"));
  CHECK(test::read_text(dir + "/sample_a.png") != test::read_text(dir + "/sample_0.png"));

  // The library's map equals the eval's map of that image, value for value.
  DetectorOptions o;
  o.unet_path = dir + "/cal.safetensors";
  Detector det(o);
  Image im = load_image(file);
  std::vector<uint8_t> px(im.pixels.begin(), im.pixels.end());
  ScoreResult sr = det.score(px.data(), im.width, im.height, im.channels);
  SafeTensorsFile f = SafeTensorsFile::open(dir + "/ev/maps.safetensors");
  std::vector<float> maps = f.read_f32_vector("anomaly_maps");
  REQUIRE(maps.size() == rows * 32 * 32);
  CHECK(std::equal(sr.heat_map.begin(), sr.heat_map.end(), maps.begin() + row * 32 * 32));

  // --repeat: N seeds, each metric's mean and standard deviation.
  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                       " --repeat 2 --quiet --no-panels --threads 2 --out " + dir + "/rep",
                   log) == 0);
  json::Value rj = json::parse(test::read_text(dir + "/rep/report.json"), "report.json");
  const json::Value* rep2 = rj.find("repeat");
  REQUIRE(rep2 != nullptr);
  REQUIRE(rep2->find("seeds")->items.size() == 2);
  CHECK(rep2->find("seeds")->items[1].number == 6);
  const json::Value* pa = rep2->find("pixel_auroc");
  const double a0 = pa->find("values")->items[0].number, a1 = pa->find("values")->items[1].number;
  CHECK(pa->find("mean")->number == doctest::Approx((a0 + a1) / 2));
  CHECK(pa->find("std")->number == doctest::Approx(std::fabs(a0 - a1) / std::sqrt(2.0)));
  CHECK(a0 == rep.find("pixel_auroc")->number);  // seed 5 first, as the single run
  for (const char* key : {"image_auroc", "aupro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap"}) {
    const json::Value* m = rep2->find(key);  // every metric of the table, average precision included
    REQUIRE_MESSAGE(m != nullptr, key);
    CHECK(m->find("values")->items.size() == 2);
  }
  CHECK(test::read_text(log).find("over 2 seeds") != std::string::npos);
  // How far an image's score moves between the seeds, against how far the
  // images lie apart: recomputed from seed 5's and seed 6's single runs.
  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                             " --seed 6 --quiet --no-panels --threads 2 --out " + dir + "/ev6",
                         log) == 0);
  auto scores_of = [](const std::string& csv) {
    std::istringstream in(csv);
    std::string l;
    std::getline(in, l);  // header
    std::vector<double> v;
    while (std::getline(in, l)) v.push_back(std::stod(l.substr(l.rfind(',') + 1)));
    return v;
  };
  const std::vector<double> s5 = scores_of(test::read_text(dir + "/ev/images.csv")),
                            s6 = scores_of(test::read_text(dir + "/ev6/images.csv"));
  REQUIRE(s5.size() == s6.size());
  REQUIRE(s5.size() >= 2);
  double within = 0, mean_all = 0;
  std::vector<double> means;
  for (size_t i = 0; i < s5.size(); ++i) {
    within += std::fabs(s5[i] - s6[i]) / std::sqrt(2.0) / double(s5.size());
    means.push_back((s5[i] + s6[i]) / 2);
    mean_all += means.back() / double(s5.size());
  }
  double between = 0;
  for (double m : means) between += (m - mean_all) * (m - mean_all);
  between = std::sqrt(between / double(means.size() - 1));
  const json::Value* spread = rep2->find("image_score_spread");
  REQUIRE(spread != nullptr);
  CHECK(within > 0);  // two seeds draw different noise
  CHECK(spread->find("seed_std_mean")->number == doctest::Approx(within).epsilon(1e-4));
  CHECK(spread->find("between_images_std")->number == doctest::Approx(between).epsilon(1e-4));
  CHECK(spread->find("ratio")->number == doctest::Approx(within / between).epsilon(1e-4));

  // Without statistics, eval calibrates on the data set's training images and says so.
  REQUIRE(test::run_mdps("eval --model " + model + kFastFlags + " --protocol calibrated --dataset " + root +
                       " --quiet --no-panels --threads 2 --out " + dir + "/fly",
                   log) == 0);
  json::Value fj = json::parse(test::read_text(dir + "/fly/report.json"), "report.json");
  CHECK(fj.find("calibration")->find("images")->number == 2);
  CHECK(fj.find("calibration")->find("source")->str.find("training images") != std::string::npos);
  // ... which is the same detector as the bundle calibrated on those images.
  CHECK(test::read_text(dir + "/fly/images.csv") == test::read_text(dir + "/ev/images.csv"));
  // The authors' protocol on request, without calibration.
  REQUIRE(test::run_mdps("eval --model " + model + kFastFlags + " --protocol authors --dataset " + root +
                       " --quiet --no-panels --threads 2 --out " + dir + "/auth",
                   log) == 0);
  json::Value aj = json::parse(test::read_text(dir + "/auth/report.json"), "report.json");
  CHECK(aj.find("protocol")->str == "authors");
  CHECK(aj.find("calibration")->kind == json::Kind::Null);
}

TEST_CASE("normal-z: calibrate stores per-pixel statistics, eval reports the score, score alone equals eval's row") {
  const std::string dir = test::temp_dir("cal_normal_z");
  const std::string root = test::make_tiny_category(dir);
  const std::string model = test::write_tiny_model(dir);
  const std::string log = dir + "/log.txt";
  INFO(test::read_text(log));
  // The statistics are those of the final maps the normal images score.
  {
    auto net = load_unet(model, cpu_backend());
    std::vector<std::string> normal = list_images(root + "/train/good");
    std::vector<float> maps;
    const NormalStats st = collect_normal_stats(*net, nullptr, normal.size(), loader_of(normal, 32), fast_calibrated(),
                                                {}, &maps);
    const PixelNormals want = PixelNormals::of_maps(maps, normal.size(), 32, 32);
    CHECK(st.pixels.height == 32);
    CHECK(st.pixels.mean == want.mean);
    CHECK(st.pixels.std == want.std);
  }
  REQUIRE(test::run_mdps("calibrate --model " + model + kFastFlags + " --protocol calibrated --image-score normal-z " +
                             "--normal " + root + "/train/good --quiet --threads 2 --json " + dir + "/cal.json --out " +
                             dir + "/cal.safetensors",
                         log) == 0);
  Bundle b = Bundle::open(dir + "/cal.safetensors");
  REQUIRE(b.normal_stats().has_value());
  const PixelNormals& pn = b.normal_stats()->pixels;
  CHECK(pn.height == 32);
  CHECK(pn.width == 32);
  CHECK(std::any_of(pn.std.begin(), pn.std.end(), [](float v) { return v > 0.f; }));
  CHECK(b.settings().score_kind == ImageScoreKind::NormalZ);
  // The calibration's own scores are leave-one-out (2 images: each against the other).
  json::Value cal = json::parse(test::read_text(dir + "/cal.json"), "cal.json");
  REQUIRE(cal.find("scores")->items.size() == 2);
  CHECK(cal.find("scores")->items[0].find("score")->number > 0.0);

  REQUIRE(test::run_mdps("eval --model " + dir + "/cal.safetensors --dataset " + root +
                             " --quiet --no-panels --threads 2 --out " + dir + "/ev",
                         log) == 0);
  json::Value rep = json::parse(test::read_text(dir + "/ev/report.json"), "report.json");
  CHECK(rep.find("settings")->find("image_score")->str == "normal-z");
  REQUIRE(rep.find("image_auroc_by_score")->find("normal-z") != nullptr);
  const CsvRow last = last_defective_row(test::read_text(dir + "/ev/images.csv"));
  const std::string &file = last.file, &score_text = last.score_text;
  REQUIRE(test::run_mdps("score --model " + dir + "/cal.safetensors --images " + file + " --quiet --threads 2 --out " +
                             dir + "/sc",
                         log) == 0);
  CHECK(test::read_text(dir + "/sc/scores.csv").rfind("file,score,decision\n" + file + "," + score_text + ",", 0) == 0);

  // An uncalibrated detector cannot score normal-z; the authors' protocol refuses it.
  CHECK(test::run_mdps("score --model " + model + kFastFlags + " --image-score normal-z --images " + file +
                           " --quiet --threads 2 --out " + dir + "/sc2",
                       log) != 0);
  CHECK(test::read_text(log).find("mdps calibrate --normal") != std::string::npos);
  CHECK(test::run_mdps("score --model " + model + kFastFlags + " --protocol authors --image-score normal-z --images " +
                           file + " --quiet --threads 2 --out " + dir + "/sc3",
                       log) != 0);
}
