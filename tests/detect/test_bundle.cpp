// Detector bundles and calibration (engine/detect/bundle.h, engine/eval/calibrate.h):
// a bundle scores bit for bit as the separate files it was made from, bad
// bundles fail naming the file and the problem, calibrated thresholds are the
// quantiles / F1 optima recomputed here from independently computed scores,
// and `mdps bundle` / `calibrate` / `score` agree with the library.
#include "engine/detect/bundle.h"
#include "engine/eval/calibrate.h"
#include "engine/io/dataset.h"
#include "engine/io/demo_data.h"
#include "engine/io/image.h"
#include "engine/core/json_mini.h"
#include "engine/eval/metrics.h"
#include "engine/eval/score_files.h"
#include "include/mdps/mdps.h"
#include "include/mdps/mdps_c.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

std::string features_file() {
  const std::string p = test::shared_dir() + "/weights/resnet18_imagenet_l1-l3.safetensors";
  return fs::exists(p) ? p : "";
}

// Fast settings (two DDIM steps per round), not the defaults, so that a
// bundle that dropped them would score differently.
EvalSettings fast_settings() {
  EvalSettings s;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 7.f};
  s.rounds.lambda = 0.2f;
  s.map.blur_kernel = 9;
  s.map.blur_sigma = 2.f;
  s.map.eta = 3.5f;
  s.batch = 4;
  s.seed = 3;
  return s;
}

std::string demo_root(const std::string& dir) {
  DemoDataOptions o;
  o.size = 32;
  o.train = 2;
  o.test_good = 6;
  o.test_defect = 2;
  write_demo_dataset(dir + "/demo", o);
  return dir + "/demo";
}

struct Parts {
  std::string dir, model, bundle;
  std::unique_ptr<UNet> net;
  std::unique_ptr<SafeTensorsFile> features;
  std::string prefix;
  EvalSettings settings = fast_settings();
};

Parts make_parts(const std::string& tag, const Thresholds& t = {}) {
  Parts p;
  p.dir = test::temp_dir(tag);
  p.model = test::write_tiny_model(p.dir, test::tiny_unet_config({16}), 11, "model");
  p.net = load_unet(p.model, cpu_backend());
  ResNetSource rs;
  if (!features_file().empty()) {
    p.features = std::make_unique<SafeTensorsFile>(SafeTensorsFile::open(features_file()));
    p.prefix = find_resnet_prefix(*p.features, features_file());
    rs = {p.features.get(), p.prefix};
  }
  p.bundle = p.dir + "/detector.safetensors";
  write_bundle(p.bundle, *p.net, rs, p.settings, t, {p.model, features_file()});
  return p;
}

std::unique_ptr<ResNetFeatures> separate_features(const EvalSettings& s) {
  if (features_file().empty()) return nullptr;
  return load_features(features_file(), s.map.layers, cpu_backend());
}

// Numpy's default (linear) quantile, written out independently of engine/calibrate.
double reference_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double h = (double(v.size()) - 1.0) * q;
  const size_t lo = size_t(h);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (h - double(lo)) * (v[hi] - v[lo]);
}

double f1_of(const std::vector<float>& scores, const std::vector<int>& labels, float threshold) {
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool pos = scores[i] > threshold;
    tp += pos && labels[i];
    fp += pos && !labels[i];
    fn += !pos && labels[i];
  }
  return tp == 0 ? 0.0 : 2 * tp / (2 * tp + fp + fn);
}

}  // namespace

TEST_CASE("a bundle holds the parts and scores bit for bit as the separate files") {
  Parts p = make_parts("bundle_rt", Thresholds{0.5f, 0.25f});
  Bundle b = Bundle::open(p.bundle);
  CHECK(b.unet_config() == p.net->config());
  CHECK(b.settings_values() == p.settings.values());
  CHECK(b.settings().to_json() == p.settings.to_json());
  CHECK(b.thresholds().image == 0.5f);
  CHECK(b.thresholds().pixel == 0.25f);
  CHECK(b.metadata("source_model") == p.model);

  size_t unet = 0, resnet = 0;
  for (const auto& n : b.file().names()) {
    if (n.rfind("unet.", 0) == 0) ++unet;
    if (n.rfind("resnet.", 0) == 0) {
      ++resnet;
      CHECK(n.rfind("resnet.fc.", 0) != 0);      // the classifier is never used
      CHECK(n.rfind("resnet.layer4.", 0) != 0);  // nor stages deeper than --layers
    }
  }
  CHECK(unet == p.net->params().size());
  CHECK(unet + resnet == b.file().size());
  if (p.features) {
    CHECK(b.resnet_layers() == 3);  // layers 2,3
    CHECK(resnet > 0);
    // Copied as stored: same dtype, shape and bytes.
    const std::string n = "layer3.0.conv1.weight";
    const auto& src = p.features->info(p.prefix + n);
    const auto& dst = b.file().info("resnet." + n);
    CHECK(src.dtype == dst.dtype);
    CHECK(src.shape == dst.shape);
    REQUIRE(src.bytes() == dst.bytes());
    CHECK(std::equal(p.features->raw(p.prefix + n), p.features->raw(p.prefix + n) + src.bytes(),
                     b.file().raw("resnet." + n)));
  } else {
    CHECK(b.resnet_layers() == 0);
  }

  // load_unet reads the bundle's `unet.` tensors.
  auto from_bundle = load_unet(p.bundle, cpu_backend());
  REQUIRE(from_bundle->params().size() == p.net->params().size());
  for (size_t i = 0; i < p.net->params().size(); ++i)
    CHECK(from_bundle->params()[i].var.value.to_vector() == p.net->params()[i].var.value.to_vector());

  // The protocol on five images, from the separate files and from the bundle.
  const std::string root = demo_root(p.dir);
  std::vector<std::string> images = list_images(root + "/test/blob");
  for (auto& f : list_images(root + "/test/good")) images.push_back(f);
  images.resize(5);
  auto sep_fe = separate_features(p.settings);
  FileScores a = score_files(*p.net, sep_fe.get(), images, p.settings);
  auto b_net = b.load_unet(cpu_backend());
  auto b_fe = b.load_features(b.settings().map.layers, cpu_backend());
  CHECK(bool(b_fe) == bool(sep_fe));
  FileScores c = score_files(*b_net, b_fe.get(), images, b.settings());
  CHECK(a.protocol.maps == c.protocol.maps);
  CHECK(a.scores == c.scores);
  CHECK(a.protocol.recon == c.protocol.recon);

  // The library with the bundle as unet_path: the bundle's settings and
  // thresholds, the same scores as the separate files with the same settings.
  DetectorOptions o;
  o.unet_path = p.bundle;
  Detector det(o);
  CHECK(det.settings_json() == p.settings.to_json());
  CHECK(det.image_threshold() == 0.5f);
  CHECK(det.pixel_threshold() == 0.25f);
  DetectorOptions sep;
  sep.unet_path = p.model;
  sep.features_path = features_file();
  for (const auto& kv : p.settings.values()) sep.overrides.push_back(kv);
  Detector det_sep(sep);
  CHECK(det_sep.settings_json() == p.settings.to_json());
  Image img = load_model_image(images[0], 32);
  std::vector<uint8_t> px(img.pixels.size());
  for (size_t k = 0; k < px.size(); ++k) px[k] = uint8_t(img.pixels[k]);
  ScoreResult r1 = det.score(px.data(), 32, 32, 3), r2 = det_sep.score(px.data(), 32, 32, 3);
  CHECK(r1.heat_map == r2.heat_map);
  CHECK(r1.image_score == r2.image_score);
  CHECK(r1.has_decision);
  CHECK_FALSE(r2.has_decision);
  CHECK(r1.anomalous == (r1.image_score > 0.5f));
  REQUIRE(r1.defect_mask.size() == r1.heat_map.size());
  for (size_t k = 0; k < r1.heat_map.size(); ++k) CHECK(r1.defect_mask[k] == (r1.heat_map[k] > 0.25f ? 1 : 0));

  // Options still win over the bundle: thresholds, overrides.
  o.image_threshold = -1e30f;
  o.overrides = {{"seed", "9"}};
  Detector det2(o);
  CHECK(det2.image_threshold() == -1e30f);
  CHECK(det2.pixel_threshold() == 0.25f);
  CHECK(det2.settings_json().find("\"seed\": 9") != std::string::npos);
  CHECK(det2.settings_json().find("\"rho\": 7") != std::string::npos);
}

TEST_CASE("the stored stages follow --layers") {
  if (features_file().empty()) return;  // nothing to store without the shared weights
  const std::string dir = test::temp_dir("bundle_layers");
  const std::string model = test::write_tiny_model(dir, test::tiny_unet_config({16}), 11, "model");
  auto net = load_unet(model, cpu_backend());
  SafeTensorsFile f = SafeTensorsFile::open(features_file());
  const ResNetSource rs{&f, find_resnet_prefix(f, features_file())};
  EvalSettings s = fast_settings();
  s.map.layers = {1, 2};
  write_bundle(dir + "/b12.safetensors", *net, rs, s, {});
  Bundle b = Bundle::open(dir + "/b12.safetensors");
  CHECK(b.resnet_layers() == 2);
  CHECK_FALSE(b.file().has("resnet.layer3.0.conv1.weight"));
  CHECK(b.file().has("resnet.layer2.0.conv1.weight"));
  CHECK(b.load_features({1, 2}, cpu_backend())->deepest_layer() == 2);
  CHECK_THROWS_WITH_AS(b.load_features({2, 3}, cpu_backend()), doctest::Contains("holds ResNet stages 1..2"), Error);
  s.map.layers = {4};  // the shared file stops at layer3
  CHECK_THROWS_WITH_AS(write_bundle(dir + "/b4.safetensors", *net, rs, s, {}), doctest::Contains("layer4.0.conv1"),
                       Error);
  CHECK_FALSE(fs::exists(dir + "/b4.safetensors"));
}

TEST_CASE("files that are not bundles, or damaged ones, fail naming the file and the problem") {
  Parts p = make_parts("bundle_err");
  CHECK_FALSE(Bundle::open_if_bundle(p.model).has_value());
  CHECK(Bundle::open_if_bundle(p.bundle).has_value());
  CHECK_THROWS_WITH_AS(Bundle::open(p.model), doctest::Contains("not a detector bundle (mdps_kind is 'model')"), Error);
  if (!features_file().empty())
    CHECK_THROWS_WITH_AS(Bundle::open(features_file()), doctest::Contains("no 'mdps_kind'"), Error);

  // Truncated: the safetensors reader refuses it, naming the file.
  {
    std::vector<char> bytes;
    {
      std::ifstream in(p.bundle, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const std::string cut = p.dir + "/cut.safetensors";
    std::ofstream(cut, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 1000));
    CHECK_THROWS_WITH_AS(Bundle::open(cut), doctest::Contains("cut.safetensors"), Error);
    DetectorOptions o;
    o.unet_path = cut;
    CHECK_THROWS_WITH_AS(Detector{o}, doctest::Contains("cut.safetensors"), std::runtime_error);
  }

  // Hand-made bundles missing a part or with bad metadata.
  auto forge = [&](const std::string& name, std::map<std::string, std::string> md, bool with_unet, bool with_resnet) {
    SafeTensorsWriter w;
    if (with_unet)
      for (const auto& q : p.net->params()) w.add("unet." + q.name, q.var.value);
    if (with_resnet && p.features)
      for (const auto& n : p.features->names())
        if (n.rfind(p.prefix + "conv1.", 0) == 0) w.add("resnet.conv1.weight", p.features->read_f32(n));
    std::map<std::string, std::string> base = {{"mdps_kind", "detector"},
                                               {"mdps_bundle_version", "1"},
                                               {"unet_config", p.net->config().to_json()},
                                               {"settings", "{\"rho\": \"7\"}"},
                                               {"resnet_layers", "0"}};
    for (auto& [k, v] : md) {
      if (v == "<erase>")
        base.erase(k);
      else
        base[k] = v;
    }
    for (auto& [k, v] : base) w.set_metadata(k, v);
    if (w.size() == 0) w.add_f32("x", {1}, {0.f});
    const std::string path = p.dir + "/" + name + ".safetensors";
    w.write(path);
    return path;
  };
  CHECK_NOTHROW(Bundle::open(forge("ok", {}, true, false)));
  CHECK_THROWS_WITH_AS(Bundle::open(forge("nounet", {}, false, false)), doctest::Contains("without its U-Net"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("nores", {{"resnet_layers", "3"}}, true, true)),
                       doctest::Contains("holds ResNet stages 1..3 but has no"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("newer", {{"mdps_bundle_version", "2"}}, true, false)),
                       doctest::Contains("newer than this mdps reads"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("noset", {{"settings", "<erase>"}}, true, false)),
                       doctest::Contains("without 'settings'"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("badset", {{"settings", "{\"rho\": \"abc\"}"}}, true, false)),
                       doctest::Contains("'abc' is not a number"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("unknown", {{"settings", "{\"bogus\": \"1\"}"}}, true, false)),
                       doctest::Contains("unknown setting 'bogus'"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("thr", {{"image_threshold", "high"}}, true, false)),
                       doctest::Contains("image_threshold"), Error);
  CHECK_THROWS_WITH_AS(Bundle::open(forge("nocfg", {{"unet_config", "<erase>"}}, true, false)),
                       doctest::Contains("unet_config"), Error);
  // Every message names the file.
  try {
    Bundle::open(forge("named", {{"resnet_layers", "7"}}, true, false));
    FAIL("resnet_layers 7 was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("named.safetensors") != std::string::npos);
  }
}

TEST_CASE("settings values read back bit for bit, in short text") {
  EvalSettings s = fast_settings();
  s.rounds.round2.rho = 1.f / 3.f;
  s.rounds.lambda = std::nextafter(0.12f, 1.f);
  s.map.blur_sigma = 1e-7f;
  s.sampler.variant = Variant::Paper;
  s.sampler.norm = GuidanceNorm::L2;  // not the paper's default: must survive
  s.score_kind = ImageScoreKind::TopKMean;
  s.score_k = 17;
  s.dataset_scope = true;
  s.map.layers = {1, 3};
  s.seed = 18446744073709551615ull;
  EvalSettings back;
  for (const auto& [k, v] : s.values()) back.set(k, v);
  CHECK(back.to_json() == s.to_json());
  CHECK(back.rounds.round2.rho == s.rounds.round2.rho);
  CHECK(back.rounds.lambda == s.rounds.lambda);
  CHECK(back.map.blur_sigma == s.map.blur_sigma);
  CHECK(back.score_k == 17);
  CHECK(back.seed == s.seed);
  for (const auto& [k, v] : fast_settings().values())
    if (k == "lambda") CHECK(v == "0.2");
  CHECK_THROWS_WITH_AS(back.set("seed", "-1"), doctest::Contains("--seed"), Error);
}

TEST_CASE("quantile: linear interpolation between order statistics") {
  CHECK(quantile({3.f, 1.f, 2.f, 4.f}, 0.5) == 2.5);
  CHECK(quantile({3.f, 1.f, 2.f, 4.f}, 0.0) == 1.0);
  CHECK(quantile({3.f, 1.f, 2.f, 4.f}, 1.0) == 4.0);
  CHECK(quantile({3.f, 1.f, 2.f, 4.f}, 0.25) == doctest::Approx(1.75));
  CHECK(quantile({5.f}, 0.99) == 5.0);
  CHECK_THROWS_AS(quantile({}, 0.5), Error);
  CHECK_THROWS_AS(quantile({1.f}, 1.5), Error);
  CHECK_THROWS_AS(quantile({1.f, NAN}, 0.5), Error);
  const float t = threshold_below(2.0);
  CHECK(t < 2.f);
  CHECK_FALSE(2.f > 2.f);
  CHECK(2.f > t);
  CHECK_FALSE(std::nextafter(t, -1.f) > t);
}

TEST_CASE("calibration on normal images: the thresholds are the quantiles of their scores and pixels") {
  Parts p = make_parts("calib_q");
  const std::string root = demo_root(p.dir);
  std::vector<std::string> normals = normal_images(root);
  CHECK(normals == list_images(root + "/test/good"));
  CHECK(normal_images(root + "/test/good") == normals);
  Bundle b = Bundle::open(p.bundle);
  auto net = b.load_unet(cpu_backend());
  auto fe = b.load_features(b.settings().map.layers, cpu_backend());
  Calibration c = calibrate_quantile(*net, fe.get(), normals, b.settings(), 0.9, 0.99);
  CHECK(c.method == "quantile");
  CHECK(c.files == normals);

  // The scores recomputed here with the protocol directly, from the separate files.
  auto sep_fe = separate_features(p.settings);
  const size_t N = normals.size();
  ProtocolOutput po = run_protocol(
      *p.net, sep_fe.get(), N,
      [&](size_t b0, size_t e) {
        std::vector<Image> v;
        for (size_t i = b0; i < e; ++i) v.push_back(load_model_image(normals[i], 32));
        return images_to_tensor(v);
      },
      p.settings);
  std::vector<float> scores =
      image_scores(Tensor::from_vector({int64_t(N), 1, 32, 32}, po.maps), p.settings.score_kind, p.settings.score_k);
  REQUIRE(c.scores == scores);
  const std::vector<double> sd(scores.begin(), scores.end()), md(po.maps.begin(), po.maps.end());
  CHECK(c.thresholds.image == float(reference_quantile(sd, 0.9)));
  CHECK(c.thresholds.pixel == float(reference_quantile(md, 0.99)));
  // 6 scores, q 0.9: h = 4.5, between the two highest: exactly one normal image is NG
  // (unless they tie), and about 1% of the pixels are defects.
  std::vector<float> sorted = scores;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(sorted[4] < sorted[5]);
  CHECK(std::count_if(scores.begin(), scores.end(), [&](float s) { return is_anomalous(s, c.thresholds); }) == 1);
  const size_t over =
      size_t(std::count_if(po.maps.begin(), po.maps.end(), [&](float v) { return v > c.thresholds.pixel; }));
  CHECK(over <= po.maps.size() / 100 + 1);
  CHECK(over >= 1);

  // A written bundle carries the thresholds exactly; decisions and masks follow them.
  write_bundle(p.dir + "/calibrated.safetensors", *net, {&b.file(), "resnet."}, b.settings(), c.thresholds);
  Bundle cb = Bundle::open(p.dir + "/calibrated.safetensors");
  CHECK(cb.thresholds().image == c.thresholds.image);
  CHECK(cb.thresholds().pixel == c.thresholds.pixel);
  DetectorOptions o;
  o.unet_path = p.dir + "/calibrated.safetensors";
  o.batch = 99;  // ignored: the bundle's settings (batch 4) replace the fields
  Detector det(o);
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<ImageView> views;
  for (const auto& f : normals) {
    Image im = load_image(f);
    pixels.emplace_back(im.pixels.begin(), im.pixels.end());
    views.push_back({pixels.back().data(), im.width, im.height, im.channels, 0});
  }
  std::vector<ScoreResult> rs = det.score_batch(views);
  for (size_t i = 0; i < N; ++i) {
    CHECK(rs[i].image_score == scores[i]);
    CHECK(rs[i].has_decision);
    CHECK(rs[i].anomalous == (scores[i] > c.thresholds.image));
    REQUIRE(rs[i].defect_mask.size() == 32u * 32u);
    for (size_t k = 0; k < rs[i].defect_mask.size(); ++k)
      CHECK(rs[i].defect_mask[k] == (po.maps[i * 1024 + k] > c.thresholds.pixel ? 1 : 0));
  }

  // The C interface reports the bundle's thresholds.
  mdps_options co;
  mdps_options_init(&co);
  co.unet_path = o.unet_path.c_str();
  mdps_detector* cd = nullptr;
  REQUIRE(mdps_detector_create(&co, &cd) == MDPS_OK);
  float ti = 0.f, tp = 0.f;
  CHECK(mdps_detector_thresholds(cd, &ti, &tp) == MDPS_OK);
  CHECK(ti == c.thresholds.image);
  CHECK(tp == c.thresholds.pixel);
  mdps_detector_destroy(cd);
  CHECK(mdps_detector_thresholds(nullptr, &ti, &tp) == MDPS_ERR_INVALID_ARGUMENT);
}

TEST_CASE("calibration on a labelled set: the F1-optimal thresholds") {
  Parts p = make_parts("calib_f1");
  const std::string root = demo_root(p.dir);
  Dataset ds = read_dataset(root);
  auto fe = separate_features(p.settings);
  EvalSettings s = p.settings;
  s.crop = 0.5f;  // a preset's metric crop must not shrink the maps the thresholds apply to
  Calibration c = calibrate_f1(*p.net, fe.get(), ds, s);
  CHECK(c.method == "f1");
  CHECK(c.map_size == 32);
  REQUIRE(c.scores.size() == ds.test.size());
  REQUIRE(c.labels.size() == ds.test.size());

  // The scores are those `mdps score` gives for the same files in the same order.
  std::vector<std::string> files;
  for (const auto& t : ds.test) files.push_back(t.image_path);
  FileScores fsc = score_files(*p.net, fe.get(), files, p.settings);
  CHECK(c.scores == fsc.scores);

  // The image threshold reaches the best F1 of any threshold.
  double best = 0;
  for (float t : c.scores) best = std::max(best, f1_of(c.scores, c.labels, std::nextafter(t, -INFINITY)));
  CHECK(c.image_f1 == doctest::Approx(best).epsilon(1e-12));
  CHECK(f1_of(c.scores, c.labels, c.thresholds.image) == doctest::Approx(best).epsilon(1e-12));
  // ... and it is the lowest such: the next float up drops a positive.
  const float up = std::nextafter(c.thresholds.image, INFINITY);
  CHECK(std::count(c.scores.begin(), c.scores.end(), up) >= 1);

  // The pixel threshold's F1 over all pixels of the ground-truth masks.
  std::vector<float> px;
  std::vector<int> pl;
  for (size_t i = 0; i < files.size(); ++i) {
    const float* m = fsc.protocol.maps.data() + i * 1024;
    px.insert(px.end(), m, m + 1024);
    if (ds.test[i].mask_path.empty()) {
      pl.insert(pl.end(), 1024, 0);
    } else {
      Image gt = load_image_gray(ds.test[i].mask_path);
      for (float v : gt.pixels) pl.push_back(v > 0.f ? 1 : 0);
    }
  }
  CHECK(f1_of(px, pl, c.thresholds.pixel) == doctest::Approx(c.pixel_f1).epsilon(1e-12));
  CHECK(f1_of(px, pl, std::nextafter(c.thresholds.pixel, INFINITY)) <= c.pixel_f1 + 1e-12);
  CHECK(c.pixel_f1 > 0.0);

  const std::string js = calibration_json(c);
  json::Value v = json::parse(js, "calibration");
  CHECK(v.find("method")->str == "f1");
  CHECK(float(v.find("image_threshold")->number) == c.thresholds.image);
  CHECK(v.find("scores")->items.size() == files.size());
}

TEST_CASE("mdps bundle, calibrate and score agree with the library") {
  Parts p = make_parts("bundle_cli");
  const std::string root = demo_root(p.dir), d = p.dir;
  const std::string feat = features_file().empty() ? "" : " --features " + features_file();
  const std::string log = d + "/log.txt";
  INFO(test::read_text(log));
  REQUIRE(test::run_mdps("bundle --model " + p.model + feat +
                       " --round1-t 40 --round1-rho 5 --t-start 40 --rho 7 --lambda 0.2 --blur-kernel 9"
                       " --blur-sigma 2 --eta 3.5 --batch 4 --seed 3 --protocol authors --out " +
                       d + "/cli.safetensors",
                   log) == 0);
  Bundle cli = Bundle::open(d + "/cli.safetensors");
  CHECK(cli.settings_values() == p.settings.values());
  CHECK_FALSE(cli.thresholds().has_image());

  REQUIRE(test::run_mdps("calibrate --detector " + d + "/cli.safetensors --normal " + root +
                       " --quantile 0.75 "
                       "--pixel-quantile 0.995 --quiet --threads 2 --out " +
                       d + "/cal.safetensors --json " + d + "/cal.json",
                   log) == 0);
  json::Value js = json::parse(test::read_text(d + "/cal.json"), "cal.json");
  std::vector<double> sc;
  for (const auto& it : js.find("scores")->items) sc.push_back(it.find("score")->number);
  REQUIRE(sc.size() == 6);
  Bundle cal = Bundle::open(d + "/cal.safetensors");
  CHECK(cal.thresholds().image == float(reference_quantile(sc, 0.75)));
  CHECK(float(js.find("image_threshold")->number) == cal.thresholds().image);
  CHECK(float(js.find("pixel_threshold")->number) == cal.thresholds().pixel);
  CHECK(cal.settings_values() == p.settings.values());

  // Score the defective and normal test images with the calibrated bundle.
  const std::string out = d + "/scored";
  REQUIRE(test::run_mdps("score --model " + d + "/cal.safetensors --images " + root + "/test/blob " + root +
                       "/test/good --quiet --threads 2 --out " + out,
                   log) == 0);
  const std::string csv = test::read_text(out + "/scores.csv");
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  CHECK(line == "file,score,decision");
  std::vector<std::string> files = list_images(root + "/test/blob");
  for (auto& f : list_images(root + "/test/good")) files.push_back(f);

  DetectorOptions o;
  o.unet_path = d + "/cal.safetensors";
  Detector det(o);
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<ImageView> views;
  for (const auto& f : files) {
    Image im = load_image(f);
    pixels.emplace_back(im.pixels.begin(), im.pixels.end());
    views.push_back({pixels.back().data(), im.width, im.height, im.channels, 0});
  }
  std::vector<ScoreResult> rs = det.score_batch(views);
  int ng = 0;
  std::map<std::string, int> seen;
  for (size_t i = 0; i < files.size(); ++i) {
    REQUIRE(std::getline(lines, line));
    char expect[64];
    std::snprintf(expect, sizeof expect, "%.9g", double(rs[i].image_score));
    CHECK(line == files[i] + "," + expect + "," + (rs[i].anomalous ? "NG" : "OK"));
    ng += rs[i].anomalous;
    std::string stem = fs::path(files[i]).stem().string();
    if (seen[stem]++) stem += "_" + std::to_string(seen[stem] - 1);  // as `mdps score` names repeats
    Image mask = load_image_gray(out + "/" + stem + "_mask.png");
    REQUIRE(mask.pixels.size() == rs[i].defect_mask.size());
    for (size_t k = 0; k < mask.pixels.size(); ++k) CHECK(mask.pixels[k] == (rs[i].defect_mask[k] ? 255.f : 0.f));
  }
  CHECK(test::read_text(log).find(cat("decisions: ", ng, " NG")) != std::string::npos);

  // sample and eval take the bundle too, and give what the separate files give with the same flags.
  const std::string flags =
      " --round1-t 40 --round1-rho 5 --t-start 40 --rho 7 --lambda 0.2 --eta 3.5 --seed 3";
  // (sample has no blur flags: a bundle with the default blur.)
  REQUIRE(test::run_mdps("bundle --model " + p.model + feat + flags + " --out " + d + "/sb.safetensors", log) == 0);
  REQUIRE(test::run_mdps("sample --model " + d + "/sb.safetensors --threads 2 --image " + files[0] + " --out " + d + "/s.png", log) == 0);
  REQUIRE(test::run_mdps("sample --model " + p.model + feat + flags + " --threads 2 --image " + files[0] + " --out " + d + "/s2.png",
                   log) == 0);
  REQUIRE(fs::exists(d + "/s_mask.png"));
  // (Ns is the calibrated protocol's default 2: OUT_0.png and OUT_1.png.)
  for (const char* k : {"_0.png", "_1.png"}) {
    CHECK_FALSE(test::read_text(d + "/s" + k).empty());
    CHECK(test::read_text(d + "/s" + k) == test::read_text(d + "/s2" + k));
  }
  CHECK(test::read_text(d + "/s_mask.png") == test::read_text(d + "/s2_mask.png"));
  REQUIRE(test::run_mdps("eval --model " + d + "/cal.safetensors --dataset " + root + " --quiet --no-panels --threads 2 --out " +
                       d + "/ev1",
                   log) == 0);
  REQUIRE(test::run_mdps("eval --model " + p.model + feat + flags + " --dataset " + root +
                       " --blur-kernel 9 --blur-sigma 2 --batch 4 --protocol authors --threads 2 --quiet --no-panels --out " +
                       d + "/ev2",
                   log) == 0);
  CHECK(test::read_text(d + "/ev1/images.csv") == test::read_text(d + "/ev2/images.csv"));
  CHECK(test::read_text(d + "/ev1/report.json").find("\"bundle\": true") != std::string::npos);
  REQUIRE(test::run_mdps("calibrate --detector " + d + "/cal.safetensors --labelled " + root +
                       " --quiet --threads 2 --seed 4 --out " + d + "/f1.safetensors",
                   log) == 0);
  Bundle f1 = Bundle::open(d + "/f1.safetensors");
  CHECK(f1.settings().seed == 4);
  CHECK(test::read_text(log).find("best image F1") != std::string::npos);

  // Errors: exit 1 with `mdps: error:` and the problem.
  CHECK(test::run_mdps("calibrate --detector " + p.model + " --normal " + root + " --out " + d + "/x.safetensors", log) != 0);
  CHECK(test::read_text(log).find("not a detector bundle") != std::string::npos);
  CHECK(test::run_mdps("calibrate --detector " + d + "/cal.safetensors --normal " + root + " --labelled " + root + " --out " +
                     d + "/x.safetensors",
                 log) != 0);
  CHECK(test::read_text(log).find("mdps: error:") != std::string::npos);
  CHECK(test::run_mdps("calibrate --detector " + d + "/cal.safetensors --labelled " + root + " --quantile 0.5 --out " + d +
                     "/x.safetensors",
                 log) != 0);
  CHECK(test::read_text(log).find("--quantile and --pixel-quantile apply to --normal") != std::string::npos);
  CHECK_FALSE(fs::exists(d + "/x.safetensors"));
}

TEST_CASE("mdps train --holdout --calibrate: a calibrated bundle from the held-out images") {
  const std::string d = test::temp_dir("train_calibrate");
  DemoDataOptions o;
  o.size = 16;
  o.train = 7;
  o.test_good = 1;
  o.test_defect = 1;
  write_demo_dataset(d + "/demo", o);
  const std::string root = d + "/demo";
  const std::vector<std::string> train = training_images(root);
  REQUIRE(train.size() == 7);
  const std::string feat = features_file().empty() ? "" : " --features " + features_file();
  const std::string log = d + "/log.txt";
  INFO(test::read_text(log));
  const std::string tiny = " --image-size 16 --base-channels 32 --channel-mult 1,2 --res-blocks 1 --attention 8"
                           " --heads 2 --batch 2 --steps 2 --threads 2 --quiet";
  REQUIRE(test::run_mdps("train --data " + root + " --out " + d + "/m.safetensors" + tiny + " --holdout 3 --calibrate " +
                             d + "/det.safetensors" + feat,
                         log) == 0);
  Bundle b = Bundle::open(d + "/det.safetensors");
  REQUIRE(b.normal_stats().has_value());
  CHECK(b.normal_stats()->images == 3);
  CHECK(b.thresholds().has_image());

  // The same as `mdps calibrate --protocol calibrated --normal` on a folder of
  // exactly the held-out images (evenly spaced: 0, 2, 4 of 7).
  const std::string held = d + "/held";
  fs::create_directories(held);
  for (size_t i : evenly_spaced(train.size(), 3))
    fs::copy_file(train[i], held + "/" + fs::path(train[i]).filename().string());
  REQUIRE(test::run_mdps("calibrate --protocol calibrated --model " + d + "/m.safetensors" + feat + " --normal " + held +
                             " --quiet --threads 2 --out " + d + "/cal.safetensors",
                         log) == 0);
  Bundle c = Bundle::open(d + "/cal.safetensors");
  CHECK(c.thresholds().image == b.thresholds().image);
  CHECK(c.thresholds().pixel == b.thresholds().pixel);
  REQUIRE(c.normal_stats().has_value());
  CHECK(c.normal_stats()->to_json() == b.normal_stats()->to_json());
  CHECK(c.settings_values() == b.settings_values());

  // --calibrate needs held-out images; the bundle may not be --out.
  CHECK(test::run_mdps("train --data " + root + " --out " + d + "/x.safetensors" + tiny + " --calibrate " + d +
                           "/y.safetensors",
                       log) == 2);
  CHECK(test::read_text(log).find("--calibrate needs --holdout") != std::string::npos);
  CHECK(test::run_mdps("train --data " + root + " --out " + d + "/x.safetensors" + tiny + " --holdout 2 --calibrate " +
                           d + "/x.safetensors",
                       log) == 2);
  CHECK(!fs::exists(d + "/x.safetensors"));
  CHECK(!fs::exists(d + "/y.safetensors"));
}
