// `mdps bundle`: one detector file (engine/detect/bundle.h) from a model, a feature
// extractor, the protocol settings (preset and flags) and the thresholds, so
// that a deployment ships and loads a single file.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "engine/core/file_checks.h"
#include <cstdio>
#include <filesystem>

namespace mdps {
namespace {

struct BundleArgs {
  cli::SettingFlags flags;
  cli::ThresholdFlags thresholds;
  std::string model, features, out;
};

void run_bundle(const BundleArgs& a) {
  check_distinct_files({{"--model", a.model}, {"--features", a.features}}, {{"--out", a.out}});
  DetectorFiles d = open_detector(a.model, a.features, cpu_backend());
  EvalSettings s;
  const std::string preset = a.flags.build(s, "", d.base_settings());
  const Thresholds t = a.thresholds.resolve(d);
  std::optional<SafeTensorsFile> features_file;
  const ResNetSource rs = d.resnet_source(features_file);
  if (rs.file) {
    // The stages the settings use must load, as every command will load them.
    ResNetFeatures::load(*rs.file, rs.prefix, deepest_stage(s.map.layers), cpu_backend());
  }
  write_bundle(a.out, *d.net, rs, s, t, d.provenance());

  Bundle b = Bundle::open(a.out);  // what every reader will see
  std::printf("%s: detector bundle, %zu tensors, %.1f MiB\n", a.out.c_str(), b.file().size(),
              double(b.file().file_bytes()) / (1024.0 * 1024.0));
  std::printf("  U-Net %s\n", b.unet_config().to_json().c_str());
  std::string layers;
  for (int l : s.map.layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
  if (b.has_features())
    std::printf("  ResNet stages 1..%d stored (the map uses %s)\n", b.resnet_layers(), layers.c_str());
  else
    std::printf("  no feature extractor: the anomaly map is the pixel term only\n");
  if (!preset.empty()) std::printf("  preset %s\n", preset.c_str());
  std::printf("  settings %s\n", s.to_json().c_str());
  if (t.has_image()) std::printf("  image threshold %.9g\n", double(t.image));
  if (t.has_pixel()) std::printf("  pixel threshold %.9g\n", double(t.pixel));
  if (!t.has_image() && !t.has_pixel()) std::printf("  no thresholds (`mdps calibrate` sets them)\n");
}

cli::Registrar reg("bundle", 55, [](CLI::App& app) {
  auto a = std::make_shared<BundleArgs>();
  auto* c =
      app.add_subcommand("bundle", "Write one detector file: U-Net, the ResNet stages used, settings and thresholds");
  c->add_option("--model", a->model, "U-Net model or checkpoint (or a bundle, to change its settings)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--features", a->features,
                "ResNet weights (.safetensors); only the stages up to the deepest of --layers are stored; "
                "without it the bundle has no feature extractor (pixel term only)")
      ->check(CLI::ExistingFile);
  c->add_option("--out", a->out, "the bundle (.safetensors), written atomically")->required();
  a->flags.add_all(c, true);
  // --limit selects test images; it is no property of a detector.
  c->remove_option(a->flags.options.at("limit"));
  a->flags.options.erase("limit");
  a->thresholds.add(c, " (default: the --model bundle's, else none)");
  c->callback([a] { run_bundle(*a); });
});

}  // namespace
}  // namespace mdps
