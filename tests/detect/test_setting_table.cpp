// The settings table (engine/detect/setting_table.h): report.json's members
// (a contract with scripts), keys, round trips, help defaults printed from
// the defaults, the checks' messages, and the guidance-norm rule.
#include <doctest/doctest.h>
#include "engine/core/json_mini.h"
#include "engine/core/option_checks.h"
#include "engine/detect/setting_table.h"
#include <cmath>
#include <set>

using namespace mdps;

TEST_CASE("report.json's settings members keep their names, order and formats") {
  // Scripts read these names; shard fingerprints hash this text.
  const std::vector<std::string> want = {
      "variant",  "guidance_norm", "skip",       "ddim_eta",      "round1_t",    "round1_rho",
      "t_start",  "rho",           "lambda",     "samples",       "eta",         "blur_sigma",
      "blur_kernel", "layers",     "image_score", "image_score_k", "image_score_fraction", "protocol",
      "normal_stats", "mask_scope", "batch",     "limit",         "gt_resize",   "crop",
      "seed",     "memory_weight"};
  const json::Value v = json::parse(EvalSettings{}.to_json(), "to_json");
  REQUIRE(v.kind == json::Kind::Object);
  std::vector<std::string> got;
  for (const auto& [k, x] : v.members) got.push_back(k);
  CHECK(got == want);
  // The text of the authors' defaults, exactly as report.json has always had it.
  CHECK(EvalSettings{}.to_json() ==
        "{\"variant\": \"authors\", \"guidance_norm\": \"l2\", \"skip\": 20, \"ddim_eta\": 1, \"round1_t\": 200, "
        "\"round1_rho\": 50, \"t_start\": 200, \"rho\": 100, \"lambda\": 0.12, \"samples\": 1, \"eta\": 7, "
        "\"blur_sigma\": 4, \"blur_kernel\": 33, \"layers\": [2,3], \"image_score\": \"authors\", "
        "\"image_score_k\": 500, \"image_score_fraction\": 0.01, \"protocol\": \"authors\", \"normal_stats\": null, "
        "\"mask_scope\": \"image\", \"batch\": 8, \"limit\": 0, \"gt_resize\": \"bilinear\", \"crop\": 1, \"seed\": 0, "
        "\"memory_weight\": 0}");
}

TEST_CASE("every key is unique and every stored value reads back to the same settings") {
  std::set<std::string> keys, json_keys;
  for (const SettingEntry& e : setting_table()) {
    CHECK(json_keys.insert(e.json).second);
    if (!e.key) continue;
    CHECK(keys.insert(e.key).second);
    CHECK(find_setting(e.key) == &e);
    CHECK(std::string(e.help).size() > 0);
  }
  CHECK(find_setting("bogus") == nullptr);
  CHECK_THROWS_WITH_AS(EvalSettings{}.set("bogus", "1"), "unknown setting 'bogus'", UsageError);

  // values(): every stored key once, nothing that only selects test images.
  EvalSettings s = default_settings();
  s.protocol = Protocol::Calibrated;
  s.rounds.round1.rho = 0.1f;
  s.auto_blur_kernel = false;
  s.map.blur_kernel = 5;
  s.limit = 3;
  s.gt_resize = GtResize::Nearest;
  std::set<std::string> stored;
  for (const auto& [k, v] : s.values()) {
    CHECK(stored.insert(k).second);
    CHECK(find_setting(k)->stored);
  }
  CHECK(stored.count("limit") == 0);
  CHECK(stored.count("gt-resize") == 0);
  EvalSettings back;
  for (const auto& [k, v] : s.values()) back.set(k, v);
  back.limit = s.limit;
  back.gt_resize = s.gt_resize;
  CHECK(back.to_json() == s.to_json());
  CHECK(back.auto_blur_sigma);   // "auto" survives the round trip
  CHECK(back.auto_eta);
  CHECK_FALSE(back.auto_blur_kernel);
  for (const auto& [k, v] : s.values()) {
    if (k == "blur-sigma" || k == "eta") CHECK(v == "auto");
    if (k == "blur-kernel") CHECK(v == "5");
    if (k == "round1-rho") CHECK(v == "0.1");
  }
  CHECK(setting_text(0.12f) == "0.12");
  CHECK(std::strtof(setting_text(std::nextafter(0.12f, 1.f)).c_str(), nullptr) == std::nextafter(0.12f, 1.f));
}

TEST_CASE("help states the default from the defaults, not retyped") {
  const EvalSettings d = default_settings();
  const std::string protocol = setting_help(*find_setting("protocol"));
  CHECK(protocol.find(cat("(default ", protocol_name(d.protocol), ")")) != std::string::npos);
  CHECK(setting_help(*find_setting("t-start")).find(cat("(default ", d.rounds.round2.t_start, ")")) !=
        std::string::npos);
  CHECK(setting_help(*find_setting("lambda")).find("(default 0.12)") != std::string::npos);
  CHECK(setting_help(*find_setting("layers")).find("(default 2,3)") != std::string::npos);
}

TEST_CASE("a bad value is refused naming its option") {
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"lambda", "x"}, {"samples", "1.5"}, {"variant", "diffusion"}, {"guidance-norm", "l1"},
           {"protocol", "paper"}, {"mask-scope", "all"}, {"gt-resize", "cubic"}, {"image-score", "mean"},
           {"layers", ""}, {"seed", "-1"}, {"eta", "nan"}}) {
    INFO(k, " = ", v);
    CHECK_THROWS_WITH_AS(EvalSettings{}.set(k, v), doctest::Contains(("--" + k).c_str()), UsageError);
  }
  CHECK_THROWS_WITH_AS(EvalSettings{}.set("image-score", "mean"),
                       "--image-score: 'mean' is not auto, authors, topk-mean, max, topk-fraction or normal-z", UsageError);
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"lambda", "2"}, {"samples", "0"}, {"batch", "0"}, {"t-start", "1000"}, {"round1-t", "-1"},
           {"skip", "0"}, {"rho", "-1"}, {"image-score-k", "0"}, {"image-score-fraction", "0"}, {"crop", "0"},
           {"limit", "-1"}, {"blur-kernel", "0"}}) {
    INFO(k, " = ", v);
    EvalSettings s;
    s.set(k, v);
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains(("--" + k).c_str()), UsageError);
  }
  EvalSettings s;
  s.set("protocol", "calibrated");
  s.set("mask-scope", "dataset");
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("--mask-scope dataset"), UsageError);
}

TEST_CASE("the guidance norm follows the variant unless a layer chose it") {
  auto norm = [](const SettingLayers& l) { return l.finish().sampler.norm; };
  {
    SettingLayers l(default_settings());
    l.chosen({{"variant", "paper"}});
    CHECK(norm(l) == GuidanceNorm::Squared);
  }
  {
    SettingLayers l(default_settings());
    l.chosen({{"variant", "paper"}, {"guidance-norm", "l2"}});
    CHECK(norm(l) == GuidanceNorm::L2);
  }
  {  // a bundle's norm stands while its variant does
    SettingLayers l(default_settings());
    l.bundle({{"variant", "paper"}, {"guidance-norm", "l2"}});
    CHECK(norm(l) == GuidanceNorm::L2);
    l.chosen({{"seed", "3"}});
    CHECK(norm(l) == GuidanceNorm::L2);
    l.chosen({{"variant", "paper"}});
    CHECK(norm(l) == GuidanceNorm::Squared);
  }
  {  // keys a later layer sets are skipped, bad values there included
    SettingLayers l(default_settings());
    l.bundle({{"lambda", "oops"}, {"eta", "3"}}, [](const std::string& k) { return k == "lambda"; });
    CHECK(l.finish().map.eta == 3.f);
  }
  {  // a preset's error names the preset
    SettingLayers l(default_settings());
    CHECK_THROWS_WITH_AS(l.chosen({{"lambda", "oops"}}, "preset 'p.ini': "), doctest::Contains("preset 'p.ini': --lambda"),
                         Error);
  }
  CHECK(guidance_norm_of(Variant::Authors) == GuidanceNorm::L2);
  CHECK(guidance_norm_of(Variant::Paper) == GuidanceNorm::Squared);
}

TEST_CASE("Ns follows the protocol unless a layer chose it") {
  auto ns = [](const SettingLayers& l) { return l.finish().rounds.samples; };
  CHECK(kCalibratedDefaultSamples != 1);  // else this case tests nothing
  {  // the default protocol (calibrated)
    SettingLayers l(default_settings());
    CHECK(ns(l) == kCalibratedDefaultSamples);
    l.chosen({{"protocol", "authors"}});  // the authors' released setting
    CHECK(ns(l) == 1);
  }
  {  // chosen by the user, a preset or a bundle: kept under either protocol
    SettingLayers l(default_settings());
    l.chosen({{"samples", "1"}});
    CHECK(ns(l) == 1);
    SettingLayers m(default_settings());
    m.chosen({{"samples", "3"}, {"protocol", "authors"}});
    CHECK(ns(m) == 3);
    SettingLayers b(default_settings());
    b.bundle({{"protocol", "calibrated"}, {"samples", "1"}});
    CHECK(ns(b) == 1);
  }
  {  // a bundle without the key (older) runs the authors' protocol and its Ns
    SettingLayers l(default_settings());
    l.bundle({{"eta", "3"}});
    CHECK(ns(l) == 1);
  }
  CHECK(default_samples(Protocol::Calibrated) == kCalibratedDefaultSamples);
  CHECK(default_samples(Protocol::Authors) == 1);
}
