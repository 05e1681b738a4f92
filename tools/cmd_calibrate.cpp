// `mdps calibrate`: decision thresholds for a detector from data (engine/
// calibrate.h), written into a detector bundle that `mdps score` and the
// library then apply.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "engine/eval/calibrate.h"
#include "engine/core/backend_registry.h"
#include "engine/core/json_mini.h"
#include "engine/core/file_checks.h"
#include <cstdio>

namespace mdps {
namespace {

struct CalibrateArgs {
  cli::SettingFlags flags;
  cli::DeviceFlags device;
  std::string detector, model, features, normal, labelled, out, json;
  double quantile = 0.99, pixel_quantile = 0.999;
  bool quiet = false;
  CLI::Option* quantile_opt = nullptr;
  CLI::Option* pixel_quantile_opt = nullptr;
};

void run_calibrate(const CalibrateArgs& a) {
  MDPS_USAGE_CHECK(!a.detector.empty() || !a.model.empty(), "give the detector: --detector BUNDLE, or --model M ",
                   "[--features F]");
  MDPS_USAGE_CHECK(a.detector.empty() != a.model.empty(), "give the detector as --detector BUNDLE or as --model M ",
                   "[--features F], not both");
  MDPS_USAGE_CHECK(!a.normal.empty() || !a.labelled.empty(), "give the calibration images: --normal DIR (quantiles ",
                   "of normal images) or --labelled ROOT (F1-optimal on a labelled set)");
  MDPS_USAGE_CHECK(a.normal.empty() != a.labelled.empty(), "give the images as --normal DIR (quantiles of normal ",
                   "images) or --labelled ROOT (F1-optimal on a labelled set), not both");
  // NaN passes CLI11's range check (every comparison with it is false).
  MDPS_USAGE_CHECK(a.quantile >= 0 && a.quantile <= 1, "--quantile must be in [0, 1], got ", a.quantile);
  MDPS_USAGE_CHECK(a.pixel_quantile >= 0 && a.pixel_quantile <= 1, "--pixel-quantile must be in [0, 1], got ",
                   a.pixel_quantile);
  MDPS_USAGE_CHECK(!a.normal.empty() || (!a.quantile_opt->count() && !a.pixel_quantile_opt->count()),
                   "--quantile and --pixel-quantile apply to --normal; --labelled finds the F1-optimal thresholds");
  // --out may be --detector itself (documented: the bundle is read whole first).
  check_distinct_files({{"--model", a.model}, {"--features", a.features}}, {{"--out", a.out}, {"--json", a.json}});
  check_distinct_files({{"--detector", a.detector}}, {{"--json", a.json}});
  Backend& be = a.device.backend();
  const std::string source = a.detector.empty() ? a.model : a.detector;
  DetectorFiles d = open_detector(source, a.features, be);
  MDPS_CHECK(a.detector.empty() || d.bundle, "--detector ", a.detector,
             ": not a detector bundle (write one with `mdps bundle`, or pass a model as --model)");
  EvalSettings s;
  a.flags.build(s, "", d.base_settings());
  if (d.bundle) s.normal = d.bundle->normal_stats();
  std::unique_ptr<ResNetFeatures> fe = d.load_features(s);
  if (!a.quiet && !fe) std::fprintf(stderr, "mdps calibrate: no feature extractor, the map is the pixel term only\n");

  Calibration c;
  if (!a.normal.empty()) {
    std::vector<std::string> images = normal_images(a.normal);
    c = calibrate_quantile(*d.net, fe.get(), images, s, a.quantile, a.pixel_quantile,
                           cli::progress_line("calibrate", a.quiet));
  } else {
    Dataset ds = read_dataset(a.labelled);
    c = calibrate_f1(*d.net, fe.get(), ds, s, cli::progress_line("calibrate", a.quiet));
  }

  // --normal under the calibrated protocol replaces the statistics too.
  if (c.normal) s.normal = c.normal;
  std::optional<SafeTensorsFile> features_file;
  const ResNetSource rs = d.resnet_source(features_file);
  write_bundle(a.out, *d.net, rs, s, c.thresholds, d.provenance());

  if (!a.json.empty()) {
    std::string extra = cat("\"detector\": ", json::quote(source), ", \"out\": ", json::quote(a.out),
                            ", \"images_source\": ", json::quote(a.normal.empty() ? a.labelled : a.normal),
                            ", \"settings\": ", s.to_json());
    write_text_atomic(a.json, calibration_json(c, extra));
  }
  size_t ng = 0;
  for (float v : c.scores) ng += is_anomalous(v, c.thresholds);
  if (c.method == "quantile") {
    std::printf("image threshold %.9g (quantile %g of %zu normal image scores; %zu of them NG)\n",
                double(c.thresholds.image), c.quantile, c.scores.size(), ng);
    std::printf("pixel threshold %.9g (quantile %g of their %zu map pixels)\n", double(c.thresholds.pixel),
                c.pixel_quantile, c.scores.size() * size_t(c.map_size) * size_t(c.map_size));
    if (c.normal) std::printf("normal statistics (calibrated protocol): %s\n", c.normal->to_json().c_str());
  } else {
    std::printf("image threshold %.9g (best image F1 %.4f over %zu labelled images; %zu NG)\n",
                double(c.thresholds.image), c.image_f1, c.scores.size(), ng);
    std::printf("pixel threshold %.9g (best pixel F1 %.4f)\n", double(c.thresholds.pixel), c.pixel_f1);
  }
  std::printf("bundle: %s\n", a.out.c_str());
  if (!a.json.empty()) std::printf("json: %s\n", a.json.c_str());
}

cli::Registrar reg("calibrate", 56, [](CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  auto* c = app.add_subcommand(
      "calibrate", "Set a detector's image and pixel thresholds from normal images or a labelled set; write a bundle");
  c->add_option("--detector", a->detector, "detector bundle (from `mdps bundle`)")->check(CLI::ExistingFile);
  c->add_option("--model", a->model, "instead of --detector: a U-Net model or checkpoint")->check(CLI::ExistingFile);
  c->add_option("--features", a->features, "ResNet weights (.safetensors) for --model (or replacing the bundle's)")
      ->check(CLI::ExistingFile);
  c->add_option("--normal", a->normal,
                "held-out normal images: a folder of images, or a category root (its test/good); under the "
                "calibrated protocol also the statistics the detector's maps and masks use");
  c->add_option("--labelled", a->labelled,
                "instead of --normal: a labelled category (MVTec AD / BTAD layout); F1-optimal thresholds");
  a->quantile_opt =
      c->add_option("--quantile", a->quantile, "with --normal: the image threshold's quantile of the scores")
          ->capture_default_str()
          ->check(CLI::Range(0.0, 1.0));
  a->pixel_quantile_opt = c->add_option("--pixel-quantile", a->pixel_quantile,
                                        "with --normal: the pixel threshold's quantile of all map pixels")
                              ->capture_default_str()
                              ->check(CLI::Range(0.0, 1.0));
  c->add_option("--out", a->out, "the bundle to write, with the thresholds (may be --detector itself)")->required();
  c->add_option("--json", a->json, "also write the thresholds and every image's score as JSON");
  a->flags.add_all(c, false);
  a->device.add(c);
  cli::add_image_limit_option(c);
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] { run_calibrate(*a); });
});

}  // namespace
}  // namespace mdps
