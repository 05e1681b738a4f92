// `mdps score`: anomaly maps and image scores for individual images, no
// ground truth needed, through the public library (include/mdps/mdps.h):
// the command reads files and writes files, the Detector does the rest. Anomalous images are a result, not an error. With
// thresholds (from a detector bundle or the flags) each image also gets an
// OK/NG decision and a binary defect mask.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "tools/score_images.h"
#include "include/mdps/mdps.h"
#include "engine/eval/colormap.h"
#include "engine/io/image.h"
#include "engine/eval/score_files.h"
#include "engine/core/csv.h"
#include "engine/core/file_checks.h"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct ScoreArgs {
  cli::SettingFlags flags;
  cli::ThresholdFlags thresholds;
  std::string model, features, out, device = "cpu", precision = "fp32";
  std::vector<std::string> images;
  int threads = 0;
  bool quiet = false;
};

// The command line's options as the library's DetectorOptions: the same
// settings keys, so `mdps score` is the public Detector plus files.
DetectorOptions detector_options(const ScoreArgs& a) {
  DetectorOptions o;
  o.unet_path = a.model;
  o.features_path = a.features;
  o.preset = a.flags.preset;
  for (const auto& [key, opt] : a.flags.options)
    if (opt->count() > 0) o.overrides.emplace_back(key, a.flags.values.at(key));
  o.device = a.device;
  o.precision = a.precision;
  o.threads = a.threads;
  if (a.thresholds.image_opt->count()) o.image_threshold = a.thresholds.image;
  if (a.thresholds.pixel_opt->count()) o.pixel_threshold = a.thresholds.pixel;
  MDPS_USAGE_CHECK(!a.thresholds.image_opt->count() || std::isfinite(a.thresholds.image), "--image-threshold: ",
                   a.thresholds.image, " is not finite");
  MDPS_USAGE_CHECK(!a.thresholds.pixel_opt->count() || std::isfinite(a.thresholds.pixel), "--pixel-threshold: ",
                   a.thresholds.pixel, " is not finite");
  return o;
}

// An input image as decoded (8-bit RGB) at its own size, for the pictures
// written beside its score; one at a time, so memory stays bounded by one.
Image rgb8_image(const std::vector<uint8_t>& rgb, int w, int h) {
  Image img(w, h, 3);
  for (size_t k = 0; k < img.pixels.size(); ++k) img.pixels[k] = rgb[k];
  return img;
}

void run_score(const ScoreArgs& a) {
  std::vector<std::string> paths = expand_image_paths(a.images);
  MDPS_CHECK(!paths.empty(), "--images: no images given");
  // The output names, checked against every input before anything runs.
  std::vector<std::string> stems;
  {
    std::map<std::string, int> seen;
    for (const auto& p : paths) {
      std::string stem = fs::path(p).stem().string();
      if (seen[stem]++) stem += "_" + std::to_string(seen[stem] - 1);  // same name from two folders
      stems.push_back(stem);
    }
    std::vector<NamedPath> inputs{{"--model", a.model}, {"--features", a.features}}, outputs;
    for (const auto& p : paths) inputs.push_back({"--images", p});
    for (const auto& stem : stems)
      for (const char* suffix : {"_heatmap.png", "_overlay.png", "_recon.png", "_mask.png"})
        outputs.push_back({"--out", (fs::path(a.out) / (stem + suffix)).string()});
    outputs.push_back({"--out", (fs::path(a.out) / "scores.csv").string()});
    check_distinct_files(inputs, outputs);
  }
  Detector det(detector_options(a));
  // Every file is decoded before any sampling starts (a bad one fails first),
  // kept as 8-bit RGB (3 bytes a pixel).
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<ImageView> views;
  for (const auto& p : paths) {
    ImageView v;
    bytes.push_back(load_image_rgb8(p, v.width, v.height));
    v.channels = 3;
    views.push_back(v);
  }
  for (size_t i = 0; i < paths.size(); ++i) views[i].pixels = bytes[i].data();
  const EvalProgressFn line = cli::progress_line("score", a.quiet);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<ScoreResult> res = det.score_batch(views, [&](size_t done, size_t total, double secs) {
    if (line) line(done, total, secs, 0);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool decide = !std::isnan(det.image_threshold());
  fs::create_directories(a.out);
  float lo = INFINITY, hi = -INFINITY;  // one colour scale over all images of the call
  for (const auto& r : res)
    for (float v : r.heat_map) lo = std::min(lo, v), hi = std::max(hi, v);
  std::string csv = decide ? csv_row({"file", "score", "decision"}) : csv_row({"file", "score"});
  int ng = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    const ScoreResult& r = res[i];
    const std::string& stem = stems[i];
    cli::write_score_images(a.out, stem, rgb8_image(bytes[i], views[i].width, views[i].height), r, lo, hi,
                            det.pixel_threshold());
    char sc[32];
    std::snprintf(sc, sizeof sc, "%.9g", double(r.image_score));
    const char* decision = r.anomalous ? "NG" : "OK";
    ng += decide && r.anomalous;
    csv += decide ? csv_row({paths[i], sc, decision}) : csv_row({paths[i], sc});
    std::printf("%s\t%s%s%s\n", paths[i].c_str(), sc, decide ? "\t" : "", decide ? decision : "");
  }
  write_text_atomic((fs::path(a.out) / "scores.csv").string(), csv);
  if (decide)
    std::printf("decisions: %d NG, %zu OK (image threshold %.9g)\n", ng, paths.size() - size_t(ng),
                double(det.image_threshold()));
  std::printf("scores: %s (%.2f s/image)\n", (fs::path(a.out) / "scores.csv").string().c_str(),
              seconds / double(paths.size()));
}

cli::Registrar reg("score", 40, [](CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* c = app.add_subcommand("score", "Anomaly maps and image scores for images (heat map, overlay, reconstruction)");
  c->add_option("--model", a->model, "U-Net model or checkpoint, or a detector bundle (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--features", a->features,
                "ResNet weights (.safetensors); a bundle brings its own; without either the map is the pixel term only")
      ->check(CLI::ExistingFile);
  c->add_option("--images", a->images, "image files or folders of images")->required()->expected(1, -1);
  c->add_option("--out", a->out,
                "output folder: <stem>_heatmap.png, _overlay.png, _recon.png, _mask.png (with a pixel threshold), "
                "scores.csv")
      ->required();
  a->flags.add_all(c, false);
  a->thresholds.add(c, " (default: the bundle's, else none)");
  cli::add_threads_option(c, a->threads);
  cli::add_image_limit_option(c);
  c->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  cli::add_precision_option(c, a->precision);
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] { run_score(*a); });
});

}  // namespace
}  // namespace mdps
