// The public API (include/mdps/mdps.h, mdps_c.h): pixels from memory give
// what the file-based protocol gives, layouts and strides do not matter,
// decisions follow the thresholds (the options' or a detector bundle's), and
// errors come back as exceptions (C++) or status codes (C, driven from
// tests/api/c_api_check.c).
#include "include/mdps/mdps.h"
#include "include/mdps/mdps_c.h"
#include "engine/detect/bundle.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include "engine/detect/presets.h"
#include "engine/detect/setting_table.h"
#include "api/detector_settings.h"
#include "engine/io/safetensors.h"
#include "tests/test_util.h"
#include <doctest/doctest.h>
#include <cmath>
#include <filesystem>

extern "C" int run_c_api_check(const char* model, const char* features, const uint8_t* rgba, int w, int h,
                               float* score_out, float* heat_out, char* err, int err_len);

using namespace mdps;
namespace fs = std::filesystem;

namespace {

std::string tiny_model(const std::string& dir) {
  UNetConfig c;
  c.image_size = 32;
  c.base_channels = 32;
  c.channel_mults = {1, 2};
  c.res_blocks = 1;
  c.attention_resolutions = {16};
  UNet net(c, cpu_backend());
  net.init_random(11);
  SafeTensorsWriter w;
  for (const auto& p : net.params()) w.add(p.name, p.var.value);
  w.set_metadata("unet_config", net.config().to_json());
  const std::string path = dir + "/model.safetensors";
  w.write(path);
  return path;
}

std::string features_file() {
  const std::string p = test::shared_dir() + "/weights/resnet18_imagenet_l1-l3.safetensors";
  return fs::exists(p) ? p : "";
}

DetectorOptions fast_options(const std::string& model) {
  DetectorOptions o;
  o.unet_path = model;
  o.features_path = features_file();
  o.round1_t = 40;
  o.round1_rho = 5.f;
  o.round2_t = 40;
  o.round2_rho = 5.f;
  o.overrides = {{"blur-kernel", "9"}, {"blur-sigma", "2"}};
  return o;
}

// A w x h RGBA image with a bright blob: not the model's size, so it is resized.
std::vector<uint8_t> test_image(int w, int h, uint64_t seed) {
  std::vector<float> r = test::random_floats(size_t(w) * h * 4, seed, 0.f, 255.f);
  std::vector<uint8_t> px(r.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 4; ++c) {
        const size_t i = (size_t(y) * w + x) * 4 + c;
        const bool blob = std::abs(x - w / 3) < 4 && std::abs(y - h / 2) < 4;
        px[i] = uint8_t(c == 3 ? 255 : blob ? 250 : 60 + int(r[i]) % 40);
      }
  return px;
}

std::vector<uint8_t> channels_of(const std::vector<uint8_t>& rgba, int n) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < rgba.size(); i += 4)
    for (int c = 0; c < n; ++c) out.push_back(rgba[i + size_t(c)]);
  return out;
}

}  // namespace

TEST_CASE("pixels from memory score as the same image read from a file by the protocol") {
  const std::string dir = test::temp_dir("api_file");
  const std::string model = tiny_model(dir);
  const int w = 40, h = 24;
  auto rgba = test_image(w, h, 1);
  DetectorOptions o = fast_options(model);
  o.protocol = "authors";  // the reference below is the authors' protocol's EvalSettings
  Detector det(o);
  REQUIRE(det.image_size() == 32);
  ScoreResult r = det.score(rgba.data(), w, h, 4);
  CHECK(r.width == 32);
  CHECK(r.height == 32);
  REQUIRE(r.heat_map.size() == 32u * 32u);
  CHECK(r.reconstruction.size() == 32u * 32u * 3u);
  CHECK_FALSE(r.has_decision);
  CHECK(r.defect_mask.empty());

  // The reference: the PNG of the same pixels through load_model_image and run_protocol.
  Image img(w, h, 3);
  auto rgb = channels_of(rgba, 3);
  for (size_t i = 0; i < rgb.size(); ++i) img.pixels[i] = rgb[i];
  const std::string png = dir + "/img.png";
  save_png(png, img);
  EvalSettings s;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 5.f};
  s.map.blur_kernel = 9;
  s.map.blur_sigma = 2.f;
  auto net = load_unet(model, cpu_backend());
  std::unique_ptr<ResNetFeatures> fe;
  if (!features_file().empty()) fe = load_features(features_file(), s.map.layers, cpu_backend());
  ProtocolOutput po = run_protocol(*net, fe.get(), 1, [&](size_t, size_t) {
    return images_to_tensor({load_model_image(png, 32)});
  }, s);
  CHECK(po.maps == r.heat_map);
  float ref = image_scores(Tensor::from_vector({1, 1, 32, 32}, po.maps), s.score_kind, s.score_k)[0];
  CHECK(ref == r.image_score);
}

TEST_CASE("layouts, strides, seeds and batches") {
  const std::string dir = test::temp_dir("api_layout");
  const std::string model = tiny_model(dir);
  const int w = 32, h = 32;
  auto rgba = test_image(w, h, 2);
  Detector det(fast_options(model));
  const float base = det.score(rgba.data(), w, h, 4).image_score;
  CHECK(std::isfinite(base));

  auto rgb = channels_of(rgba, 3);
  CHECK(det.score(rgb.data(), w, h, 3).image_score == base);
  const int stride = w * 3 + 7;
  std::vector<uint8_t> padded(size_t(stride) * h, 0xAB);
  for (int y = 0; y < h; ++y) std::copy_n(rgb.begin() + y * w * 3, w * 3, padded.begin() + y * stride);
  CHECK(det.score(padded.data(), w, h, 3, stride).image_score == base);

  // Gray equals RGB with the gray value in every channel.
  auto gray = channels_of(rgba, 1);
  std::vector<uint8_t> gray3;
  for (uint8_t g : gray) gray3.insert(gray3.end(), {g, g, g});
  CHECK(det.score(gray.data(), w, h, 1).image_score == det.score(gray3.data(), w, h, 3).image_score);

  DetectorOptions o = fast_options(model);
  o.seed = 5;
  CHECK(Detector(o).score(rgba.data(), w, h, 4).image_score != base);

  auto other = test_image(w, h, 3);
  ImageView a{rgba.data(), w, h, 4, 0}, b{other.data(), w, h, 4, 0};
  auto batch = det.score_batch({a, b});
  REQUIRE(batch.size() == 2);
  CHECK(batch[0].heat_map != batch[1].heat_map);
  o = fast_options(model);
  o.batch = 1;  // batch 0 of a batch of one is what a single call computes
  CHECK(Detector(o).score_batch({a, b})[0].image_score == base);
}

TEST_CASE("thresholds give decisions and defect masks") {
  const std::string dir = test::temp_dir("api_thr");
  const std::string model = tiny_model(dir);
  auto rgba = test_image(32, 32, 4);
  DetectorOptions o = fast_options(model);
  ScoreResult r0 = Detector(o).score(rgba.data(), 32, 32, 4);
  auto [lo, hi] = std::minmax_element(r0.heat_map.begin(), r0.heat_map.end());
  REQUIRE(*hi > *lo);
  o.pixel_threshold = 0.5f * (*lo + *hi);
  o.image_threshold = r0.image_score - 1e-3f;
  ScoreResult r = Detector(o).score(rgba.data(), 32, 32, 4);
  CHECK(r.has_decision);
  CHECK(r.anomalous);
  REQUIRE(r.defect_mask.size() == r.heat_map.size());
  size_t ones = 0;
  for (size_t k = 0; k < r.heat_map.size(); ++k) {
    CHECK(r.defect_mask[k] == (r.heat_map[k] > o.pixel_threshold ? 1 : 0));
    ones += r.defect_mask[k];
  }
  CHECK(ones > 0);
  CHECK(ones < r.heat_map.size());
  o.image_threshold = r0.image_score + 1e-3f;
  CHECK_FALSE(Detector(o).score(rgba.data(), 32, 32, 4).anomalous);
}

TEST_CASE("options reach the settings; presets and overrides apply in order") {
  const std::string dir = test::temp_dir("api_opts");
  const std::string model = tiny_model(dir);
  DetectorOptions o = fast_options(model);
  o.lambda = 0.3f;
  o.samples = 2;
  o.variant = "paper";
  std::string js = Detector(o).settings_json();
  CHECK(js.find("\"round1_t\": 40") != std::string::npos);
  CHECK(js.find("\"samples\": 2") != std::string::npos);
  CHECK(js.find("\"variant\": \"paper\"") != std::string::npos);
  CHECK(js.find("\"guidance_norm\": \"squared\"") != std::string::npos);  // the paper's norm by default
  CHECK(js.find("\"blur_kernel\": 9") != std::string::npos);

  // A preset replaces the fields; an override beats the preset.
  const std::string ini = dir + "/p.ini";
  {
    std::FILE* f = std::fopen(ini.c_str(), "w");
    std::fputs("lambda = 0.25\nskip = 10\n", f);
    std::fclose(f);
  }
  o.preset = ini;
  o.overrides = {{"skip", "5"}};
  js = Detector(o).settings_json();
  CHECK(js.find("\"lambda\": 0.25") != std::string::npos);
  CHECK(js.find("\"skip\": 5") != std::string::npos);
}

TEST_CASE("the typed options' defaults are the settings table's defaults") {
  // DetectorOptions (a public header that includes nothing from the engine)
  // states its defaults as literals; they must be default_settings()'s.
  const EvalSettings d = default_settings();
  for (const auto& [k, v] : detector_option_settings(DetectorOptions{})) {
    INFO(k);
    REQUIRE(find_setting(k) != nullptr);
    CHECK(v == find_setting(k)->print(d));
  }
  // ... once built in layers as the command line builds them (Ns follows the protocol).
  const EvalSettings effective = SettingLayers(d).finish();
  CHECK(effective.rounds.samples == kCalibratedDefaultSamples);
  CHECK(detector_settings(DetectorOptions{}, nullptr).to_json() == effective.to_json());
  CHECK(DetectorOptions{}.samples == 0);  // the protocol's Ns
  DetectorOptions one;
  one.samples = 1;
  CHECK(detector_settings(one, nullptr).rounds.samples == 1);
  one.protocol = "authors";
  one.samples = 0;
  CHECK(detector_settings(one, nullptr).rounds.samples == 1);
  // And the C options start from them.
  mdps_options c;
  mdps_options_init(&c);
  DetectorOptions o;
  CHECK(c.round1_t == o.round1_t);
  CHECK(c.lambda == o.lambda);
  CHECK(c.seed == o.seed);
  CHECK(c.samples == o.samples);
  CHECK(std::isnan(c.eta) == std::isnan(o.eta));
  // eta NaN is "auto": it follows the model's size; a number is kept.
  CHECK(detector_settings(o, nullptr).at_size(64).map.eta == 28.f);
  o.eta = 7.f;
  CHECK(detector_settings(o, nullptr).at_size(64).map.eta == 7.f);
}

TEST_CASE("errors are exceptions that name the problem") {
  const std::string dir = test::temp_dir("api_err");
  const std::string model = tiny_model(dir);
  DetectorOptions o = fast_options(model);
  Detector det(o);
  std::vector<uint8_t> px(16 * 16 * 2, 1);
  CHECK_THROWS_WITH_AS(det.score(px.data(), 16, 16, 2), doctest::Contains("2 channels"), std::runtime_error);
  CHECK_THROWS_WITH_AS(det.score(nullptr, 16, 16, 3), doctest::Contains("null"), std::runtime_error);
  CHECK_THROWS_WITH_AS(det.score(px.data(), 16, 16, 1, 8), doctest::Contains("stride"), std::runtime_error);
  CHECK_THROWS_AS(det.score_batch({}), std::runtime_error);

  DetectorOptions bad = o;
  bad.unet_path = dir + "/missing.safetensors";
  CHECK_THROWS_WITH_AS(Detector{bad}, doctest::Contains("missing.safetensors"), std::runtime_error);
  bad = o;
  bad.overrides = {{"no-such-key", "1"}};
  CHECK_THROWS_WITH_AS(Detector{bad}, doctest::Contains("no-such-key"), std::runtime_error);
  bad = o;
  bad.preset = "mvtec/no_such_category";
  CHECK_THROWS_WITH_AS(Detector{bad}, doctest::Contains("no_such_category"), std::runtime_error);
  bad = o;
  bad.variant = "other";
  CHECK_THROWS_AS(Detector{bad}, std::runtime_error);
  bad = o;
  bad.features_path = model;  // a U-Net is not a ResNet
  CHECK_THROWS_WITH_AS(Detector{bad}, doctest::Contains("not a ResNet"), std::runtime_error);
}

TEST_CASE("resize_map keeps sizes and constants") {
  std::vector<float> m(6 * 4, 2.5f);
  CHECK(resize_map(m, 6, 4, 6, 4) == m);
  auto r = resize_map(m, 6, 4, 13, 9);
  REQUIRE(r.size() == 13u * 9u);
  for (float v : r) CHECK(v == doctest::Approx(2.5f));
  CHECK_THROWS_AS(resize_map(m, 5, 4, 2, 2), std::runtime_error);
}

TEST_CASE("the C interface, called from C, agrees with the C++ interface") {
  const std::string dir = test::temp_dir("api_c");
  const std::string model = tiny_model(dir);
  const int w = 40, h = 24;
  auto rgba = test_image(w, h, 6);
  float score = NAN;
  std::vector<float> heat(size_t(w) * h, NAN);
  char err[512] = {0};
  const std::string features = features_file();
  int rc = run_c_api_check(model.c_str(), features.empty() ? nullptr : features.c_str(), rgba.data(), w, h, &score,
                           heat.data(), err, sizeof err);
  INFO(err);
  REQUIRE(rc == 0);

  DetectorOptions o = fast_options(model);
  o.threads = 2;
  ScoreResult r = Detector(o).score(rgba.data(), w, h, 4);
  CHECK(score == r.image_score);
  CHECK(heat == resize_map(r.heat_map, r.width, r.height, w, h));
}

TEST_CASE("a detector bundle in place of the model: its settings and thresholds, through C++ and C") {
  const std::string dir = test::temp_dir("api_bundle");
  const std::string model = tiny_model(dir);
  auto rgba = test_image(40, 24, 7);
  // The separate files with fast settings, and a bundle of the same.
  DetectorOptions sep = fast_options(model);
  sep.protocol = "authors";  // as the EvalSettings below
  Detector det_sep(sep);
  ScoreResult r0 = det_sep.score(rgba.data(), 40, 24, 4);
  auto net = load_unet(model, cpu_backend());
  EvalSettings s;
  s.rounds.round1 = {40, 5.f};
  s.rounds.round2 = {40, 5.f};
  s.map.blur_kernel = 9;
  s.map.blur_sigma = 2.f;
  REQUIRE(s.to_json() == det_sep.settings_json());
  std::unique_ptr<SafeTensorsFile> fe;
  ResNetSource rs;
  if (!features_file().empty()) {
    fe = std::make_unique<SafeTensorsFile>(SafeTensorsFile::open(features_file()));
    rs = {fe.get(), find_resnet_prefix(*fe, features_file())};
  }
  auto [lo, hi] = std::minmax_element(r0.heat_map.begin(), r0.heat_map.end());
  Thresholds t{r0.image_score - 1e-3f, 0.5f * (*lo + *hi)};
  const std::string bundle = dir + "/detector.safetensors";
  write_bundle(bundle, *net, rs, s, t);

  DetectorOptions o;
  o.unet_path = bundle;
  Detector det(o);
  ScoreResult r = det.score(rgba.data(), 40, 24, 4);
  CHECK(r.heat_map == r0.heat_map);
  CHECK(r.image_score == r0.image_score);
  CHECK(r.has_decision);
  CHECK(r.anomalous);
  REQUIRE(r.defect_mask.size() == r.heat_map.size());
  for (size_t k = 0; k < r.heat_map.size(); ++k) CHECK(r.defect_mask[k] == (r.heat_map[k] > t.pixel ? 1 : 0));

  // C: the bundle alone gives the decision and the mask.
  mdps_options co;
  mdps_options_init(&co);
  co.unet_path = bundle.c_str();
  mdps_detector* cd = nullptr;
  REQUIRE(mdps_detector_create(&co, &cd) == MDPS_OK);
  float score = 0.f, ti = 0.f, tp = 0.f;
  int anomalous = -7;
  REQUIRE(mdps_score(cd, rgba.data(), 40, 24, 4, 0, &score, nullptr, 0, 0, &anomalous) == MDPS_OK);
  CHECK(score == r.image_score);
  CHECK(anomalous == 1);
  std::vector<uint8_t> mask(32 * 32, 9);
  REQUIRE(mdps_last_defect_mask(cd, mask.data(), 32, 32) == MDPS_OK);
  CHECK(mask == r.defect_mask);
  CHECK(mdps_detector_thresholds(cd, &ti, &tp) == MDPS_OK);
  CHECK(ti == t.image);
  CHECK(tp == t.pixel);
  mdps_detector_destroy(cd);
  // An explicit threshold beats the bundle's.
  co.image_threshold = r.image_score + 1.f;
  REQUIRE(mdps_detector_create(&co, &cd) == MDPS_OK);
  REQUIRE(mdps_score(cd, rgba.data(), 40, 24, 4, 0, &score, nullptr, 0, 0, &anomalous) == MDPS_OK);
  CHECK(anomalous == 0);
  mdps_detector_destroy(cd);
}
