// `mdps score`: anomaly maps and image scores for individual images, no
// ground truth needed. Anomalous images are a result, not an error.
#include "tools/command.h"
#include "tools/eval_flags.h"
#include "engine/colormap.h"
#include "engine/image.h"
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct ScoreArgs {
  cli::SettingFlags flags;
  std::string model, features, out, device = "cpu";
  std::vector<std::string> images;
  int threads = 0;
  bool quiet = false;
};

void run_score(const ScoreArgs& a) {
  Backend& be = backend_by_name(a.device);
  if (a.threads > 0) be.set_threads(a.threads);
  auto net = load_unet(a.model, be);
  EvalSettings s;
  a.flags.build(s);
  std::unique_ptr<ResNetFeatures> fe;
  if (!a.features.empty()) fe = load_features(a.features, s.map.layers, be);
  std::vector<std::string> paths;
  for (const auto& p : a.images) {
    if (fs::is_directory(p)) {
      for (auto& f : list_images(p)) paths.push_back(f);
    } else {
      paths.push_back(p);
    }
  }
  MDPS_CHECK(!paths.empty(), "--images: no images given");
  const int S = net->config().image_size;
  std::vector<Image> imgs;
  for (const auto& p : paths) imgs.push_back(load_model_image(p, S));  // every file is checked before sampling
  ProtocolOutput po = run_protocol(
      *net, fe.get(), paths.size(),
      [&](size_t b, size_t e) { return images_to_tensor(std::vector<Image>(imgs.begin() + b, imgs.begin() + e)); }, s,
      cli::progress_line("score", a.quiet));
  const size_t plane = size_t(S) * S;
  std::vector<float> scores =
      image_scores(Tensor::from_vector({int64_t(paths.size()), 1, S, S}, po.maps), s.score_kind, s.score_k);
  fs::create_directories(a.out);
  auto [lo, hi] = std::minmax_element(po.maps.begin(), po.maps.end());
  std::string csv = "file,score\n";
  std::map<std::string, int> seen;
  for (size_t i = 0; i < paths.size(); ++i) {
    std::string stem = fs::path(paths[i]).stem().string();
    if (seen[stem]++) stem += "_" + std::to_string(seen[stem] - 1);  // same name from two folders
    Image heat = colormap_jet(po.maps.data() + i * plane, S, S, *lo, *hi);
    save_png((fs::path(a.out) / (stem + "_heatmap.png")).string(), heat);
    save_png((fs::path(a.out) / (stem + "_overlay.png")).string(), overlay(imgs[i], heat, 0.5f));
    save_png((fs::path(a.out) / (stem + "_recon.png")).string(), recon_image(po, i));
    char sc[32];
    std::snprintf(sc, sizeof sc, "%.9g", double(scores[i]));
    csv += cat(paths[i], ",", sc, "\n");
    std::printf("%s\t%s\n", paths[i].c_str(), sc);
  }
  write_text_atomic((fs::path(a.out) / "scores.csv").string(), csv);
  std::printf("scores: %s (%.2f s/image)\n", (fs::path(a.out) / "scores.csv").string().c_str(),
              po.seconds / double(paths.size()));
}

cli::Registrar reg("score", 40, [](CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* c = app.add_subcommand("score", "Anomaly maps and image scores for images (heat map, overlay, reconstruction)");
  c->add_option("--model", a->model, "U-Net model or checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  c->add_option("--features", a->features, "ResNet weights (.safetensors); without it the map is the pixel term only")
      ->check(CLI::ExistingFile);
  c->add_option("--images", a->images, "image files or folders of images")->required()->expected(1, -1);
  c->add_option("--out", a->out, "output folder: <stem>_heatmap.png, _overlay.png, _recon.png, scores.csv")
      ->required();
  a->flags.add_all(c, false);
  c->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  c->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] { run_score(*a); });
});

}  // namespace
}  // namespace mdps
