// `mdps score`: anomaly maps and image scores for individual images, no
// ground truth needed. Anomalous images are a result, not an error. With
// thresholds (from a detector bundle or the flags) each image also gets an
// OK/NG decision and a binary defect mask.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "engine/colormap.h"
#include "engine/image.h"
#include "engine/score_files.h"
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct ScoreArgs {
  cli::SettingFlags flags;
  cli::ThresholdFlags thresholds;
  std::string model, features, out, device = "cpu";
  std::vector<std::string> images;
  int threads = 0;
  bool quiet = false;
};

void run_score(const ScoreArgs& a) {
  Backend& be = backend_by_name(a.device);
  if (a.threads > 0) be.set_threads(a.threads);
  cli::DetectorFiles d = cli::open_detector(a.model, a.features, be);
  EvalSettings s;
  a.flags.build(s, "", d.base_settings());
  const Thresholds thr = a.thresholds.resolve(d);
  std::unique_ptr<ResNetFeatures> fe = d.load_features(s);
  std::vector<std::string> paths = expand_image_paths(a.images);
  MDPS_CHECK(!paths.empty(), "--images: no images given");
  FileScores r = score_files(*d.net, fe.get(), paths, s, cli::progress_line("score", a.quiet));
  const ProtocolOutput& po = r.protocol;
  const int S = po.size;
  const size_t plane = size_t(S) * S;
  fs::create_directories(a.out);
  auto [lo, hi] = std::minmax_element(po.maps.begin(), po.maps.end());
  std::string csv = thr.has_image() ? "file,score,decision\n" : "file,score\n";
  std::map<std::string, int> seen;
  int ng = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    std::string stem = fs::path(paths[i]).stem().string();
    if (seen[stem]++) stem += "_" + std::to_string(seen[stem] - 1);  // same name from two folders
    const float* map = po.maps.data() + i * plane;
    Image heat = colormap_jet(map, S, S, *lo, *hi);
    save_png((fs::path(a.out) / (stem + "_heatmap.png")).string(), heat);
    save_png((fs::path(a.out) / (stem + "_overlay.png")).string(), overlay(r.images[i], heat, 0.5f));
    save_png((fs::path(a.out) / (stem + "_recon.png")).string(), recon_image(po, i));
    if (thr.has_pixel()) {
      std::vector<uint8_t> m = defect_mask(map, plane, thr.pixel);
      Image mask(S, S, 1);
      for (size_t k = 0; k < plane; ++k) mask.pixels[k] = m[k] ? 255.f : 0.f;
      save_png((fs::path(a.out) / (stem + "_mask.png")).string(), mask);
    }
    char sc[32];
    std::snprintf(sc, sizeof sc, "%.9g", double(r.scores[i]));
    const char* decision = is_anomalous(r.scores[i], thr) ? "NG" : "OK";
    ng += thr.has_image() && is_anomalous(r.scores[i], thr);
    csv += cat(paths[i], ",", sc, thr.has_image() ? std::string(",") + decision : std::string(), "\n");
    std::printf("%s\t%s%s%s\n", paths[i].c_str(), sc, thr.has_image() ? "\t" : "", thr.has_image() ? decision : "");
  }
  write_text_atomic((fs::path(a.out) / "scores.csv").string(), csv);
  if (thr.has_image())
    std::printf("decisions: %d NG, %zu OK (image threshold %.9g)\n", ng, paths.size() - size_t(ng), double(thr.image));
  std::printf("scores: %s (%.2f s/image)\n", (fs::path(a.out) / "scores.csv").string().c_str(),
              po.seconds / double(paths.size()));
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
  c->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  c->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] { run_score(*a); });
});

}  // namespace
}  // namespace mdps
