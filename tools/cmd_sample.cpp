// `mdps sample`: reconstruct a normal version of one image with MDPS: the
// protocol every other command runs (run_protocol, engine/eval/evaluate.h),
// on one image, writing its reconstructions, its mask and, if asked, every
// step of the final round.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "tools/trace_flag.h"
#include "engine/core/file_checks.h"
#include "engine/eval/evaluate.h"
#include "engine/io/image.h"
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace mdps {
namespace {

struct SampleArgs {
  // The protocol settings, as `mdps score` takes them: with a bundle, those
  // not given keep the bundle's values.
  cli::SettingFlags flags;
  cli::DeviceFlags device;
  std::string model, image, out, features, mask = "auto", save_steps;
  std::string features_prefix, trace;
};

// Ns as --samples gives it (1 when not given); checked as every setting is.
int samples_given(const SampleArgs& a) {
  if (!a.flags.user_set("samples")) return 1;
  EvalSettings s;
  s.set("samples", a.flags.values.at("samples"));
  s.validate();
  return s.rounds.samples;
}

std::string with_suffix(const std::string& path, const std::string& suffix) {
  std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + suffix + p.extension().string())).string();
}

// The files sample writes: the reconstruction(s) and the mask next to --out.
void check_sample_files(const SampleArgs& a, int samples) {
  std::string ext = std::filesystem::path(a.out).extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  MDPS_USAGE_CHECK(ext == ".png", "--out '", a.out, "': reconstructions are written as PNG; give a name ending in .png");
  std::vector<NamedPath> inputs{{"--model", a.model}, {"--image", a.image}, {"--features", a.features}};
  if (a.mask != "auto" && a.mask != "none") inputs.push_back({"--mask", a.mask});
  std::vector<NamedPath> outputs{{"--trace", a.trace}};
  for (int k = 0; k < samples; ++k)
    outputs.push_back({"--out", samples == 1 ? a.out : with_suffix(a.out, "_" + std::to_string(k))});
  if (a.mask != "none") outputs.push_back({"--out (its mask)", with_suffix(a.out, "_mask")});
  check_distinct_files(inputs, outputs);
}

// The protocol (run_protocol, as eval and score run it) on one image: the
// reconstructions are those `mdps score` and `mdps eval` compute for it.
void run_sample(const SampleArgs& a) {
  Backend& be = a.device.backend();
  DetectorFiles d = open_detector(a.model, a.features, be, a.features_prefix);
  const int size = d.net->config().image_size;

  // Defaults (or the bundle's settings and statistics), then the preset and the flags given.
  EvalSettings es;
  if (d.bundle) es.normal = d.bundle->normal_stats();
  a.flags.build(es, "", d.base_settings());
  es.dataset_scope = false;  // one image: the data set's mask range is its own
  if (a.mask == "none") es.rounds.round1.t_start = 0;
  es.validate();
  const int samples = es.rounds.samples;
  if (samples != 1) check_sample_files(a, samples);  // a bundle's Ns

  ProtocolHooks hooks;
  hooks.all_samples = true;
  hooks.keep_masks = true;
  Tensor given_mask;
  if (a.mask != "auto" && a.mask != "none") {
    // As eval's ground-truth masks: the mask must cover its image exactly,
    // then it follows the image to the model's size.
    Image m = load_image_gray(a.mask);
    int iw = 0, ih = 0;
    load_image_rgb8(a.image, iw, ih);
    MDPS_USAGE_CHECK(m.width == iw && m.height == ih, "--mask '", a.mask, "' is ", m.width, "x", m.height,
                     " but --image '", a.image, "' is ", iw, "x", ih, "; a mask must have its image's size");
    if (m.width != size || m.height != size) m = resize_nearest(m, size, size);
    std::vector<float> v(m.pixels.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = m.pixels[i] > 0.f ? 1.f : 0.f;
    given_mask = Tensor::from_vector({1, 1, size, size}, v);
    hooks.masks = [&](size_t, size_t) { return given_mask; };
  }
  const bool has_mask = given_mask.defined() || (a.mask == "auto" && es.rounds.round1.t_start > 0);
  if (!a.save_steps.empty()) {
    std::filesystem::create_directories(a.save_steps);
    hooks.round2_steps = [&](int step, int t, const Tensor& x, const Tensor&) {
      save_png(cat(a.save_steps, "/step", step, "_t", t, ".png"), tensor_to_image(x.to(cpu_backend()), 0));
    };
  }
  const Tensor y = image_to_tensor(load_model_image(a.image, size));
  std::unique_ptr<ResNetFeatures> features = d.load_features(es);
  const ProtocolOutput po =
      run_protocol(*d.net, features.get(), 1, [&](size_t, size_t) { return y; }, es, {}, {}, hooks);

  for (int k = 0; k < samples; ++k) {
    std::string path = samples == 1 ? a.out : with_suffix(a.out, "_" + std::to_string(k));
    save_png(path, recon_image(po, size_t(k)));
    std::printf("%s\n", path.c_str());
  }
  if (has_mask) {
    Image mi(size, size, 1);
    for (size_t i = 0; i < mi.pixels.size(); ++i) mi.pixels[i] = po.masks[i] * 255.f;
    std::string path = with_suffix(a.out, "_mask");
    save_png(path, mi);
    std::printf("%s\n", path.c_str());
  }
  if (!a.save_steps.empty()) std::printf("steps written to %s\n", a.save_steps.c_str());
  std::fprintf(stderr, "mdps sample: %.2f s (%d sample%s, %s protocol)\n", po.seconds, samples,
               samples == 1 ? "" : "s", protocol_name(es.protocol));
}

cli::Registrar reg("sample", 30, [](CLI::App& app) {
  auto a = std::make_shared<SampleArgs>();
  auto* c = app.add_subcommand("sample", "Reconstruct a normal version of an image (MDPS posterior sampling)");
  c->add_option("--model", a->model,
                "U-Net model or checkpoint, or a detector bundle (its settings are the defaults of the options below)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--image", a->image, "the observed image")->required()->check(CLI::ExistingFile);
  c->add_option("--out", a->out, "reconstruction PNG (with Ns > 1, the calibrated protocol's default 2 included: OUT_0.png, OUT_1.png ...)")->required();
  c->add_option("--features", a->features,
                "ResNet feature extractor (.safetensors) of the anomaly maps (round 1's gives the mask); a bundle "
                "brings its own");
  c->add_option("--features-prefix", a->features_prefix, "name prefix of the ResNet tensors in --features");
  c->add_option("--mask", a->mask, "auto (round 1 then threshold), none (one unmasked round), or a mask image")
      ->capture_default_str();
  a->flags.add_all(c, false);
  a->device.add(c);
  cli::add_image_limit_option(c);
  c->add_option("--save-steps", a->save_steps, "write every x_t of the final round into this folder");
  cli::add_trace_option(c, a->trace);
  c->callback([a] {
    // Before the trace session starts: it writes its file even when the command fails.
    check_sample_files(*a, samples_given(*a));
    trace::Session trace_session(a->trace);
    run_sample(*a);
    trace_session.finish();
  });
});

}  // namespace
}  // namespace mdps
