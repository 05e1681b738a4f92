// `mdps train`: the flags, the progress display and the summary; the training
// itself is engine/diffusion/trainer.h.
#include "tools/command.h"
#include "tools/trace_flag.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "engine/eval/calibrate.h"
#include "engine/diffusion/trainer.h"
#include "engine/core/backend_registry.h"
#include "engine/core/file_checks.h"
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>

namespace mdps {
namespace {

std::vector<int> parse_list(const std::string& s, const char* flag) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long x = std::strtol(item.c_str(), &end, 10);
    MDPS_CHECK(!item.empty() && end && *end == 0 && x > 0, flag, " '", s, "' is not a comma list of positive integers");
    v.push_back(int(x));
  }
  MDPS_CHECK(!v.empty(), flag, ": empty list");
  return v;
}

std::string duration(double s) {
  long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// A bar redrawn in place on a terminal; otherwise a line every 10% or 30 s.
class ProgressDisplay {
 public:
  explicit ProgressDisplay(bool quiet) : quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}
  void operator()(const TrainProgress& p) {
    if (quiet_) return;
    if (tty_) {
      if (!p.done && p.seconds - last_draw_ < 0.1) return;
      last_draw_ = p.seconds;
      const int width = 30;
      int fill = int(double(p.step) / double(p.total_steps) * width);
      std::string bar(size_t(fill), '#');
      bar += std::string(size_t(width - fill), '.');
      std::fprintf(stderr, "\r[%s] step %lld/%lld  epoch %lld  loss %.4f  %.1f img/s  ETA %s   ", bar.c_str(),
                   static_cast<long long>(p.step), static_cast<long long>(p.total_steps),
                   static_cast<long long>(p.epoch), p.loss_avg, p.images_per_s, duration(p.eta_s).c_str());
      if (p.done) std::fprintf(stderr, "\n");
      std::fflush(stderr);
      return;
    }
    const int64_t run = p.total_steps - p.first_step;
    const int64_t tenth = run >= 10 ? run / 10 : 1;
    const bool due = (p.step - p.first_step) % tenth == 0 || p.seconds - last_draw_ >= 30 || p.done;
    if (!due) return;
    last_draw_ = p.seconds;
    std::fprintf(stderr, "step %lld/%lld  epoch %lld  loss %.4f  %.1f img/s  elapsed %s  ETA %s\n",
                 static_cast<long long>(p.step), static_cast<long long>(p.total_steps),
                 static_cast<long long>(p.epoch), p.loss_avg, p.images_per_s, duration(p.seconds).c_str(),
                 duration(p.eta_s).c_str());
    std::fflush(stderr);
  }

 private:
  bool quiet_, tty_;
  double last_draw_ = -1e9;
};

// Nothing the run writes may destroy what it reads or another output, and a
// finished run is never replaced by accident (a long run by a short one).
void check_train_files(const TrainOptions& o, const std::string& trace, bool overwrite) {
  const std::string csv = o.write_csv ? (o.log_csv.empty() ? default_csv_path(o.out_path) : o.log_csv) : "";
  // --out may be the --resume checkpoint: it is read whole before the first write.
  check_distinct_files({{"--resume", o.resume}}, {{"--log-csv", csv}, {"--trace", trace}});
  check_distinct_files({}, {{"--out", o.out_path}, {"--log-csv", csv}, {"--trace", trace}});
  std::error_code ec;
  const bool exists = std::filesystem::exists(o.out_path, ec);
  MDPS_USAGE_CHECK(!exists || overwrite || (!o.resume.empty() && same_file(o.out_path, o.resume)), "--out '",
                   o.out_path, "' already exists: continue that run with --resume ", o.out_path,
                   ", or replace it with --overwrite");
}

struct Flags {
  TrainOptions o;
  int image_size = 256, base_channels = 64, res_blocks = 2, heads = 4, batch = 8;
  std::string channel_mult, attention;
  float lr = 3e-4f, weight_decay = 0.05f;
  bool adamw = false, quiet = false, overwrite = false;
  std::string trace;
  uint64_t seed = 0;
  int64_t steps = 0, epochs = 0, holdout = 0;
  std::string calibrate, features;  // --calibrate BUNDLE [--features F]
};

// --calibrate: the finished model calibrated on the held-out images under the
// calibrated protocol (`mdps calibrate --protocol calibrated --normal`), as a
// detector bundle: statistics and thresholds from normal images the model has
// never seen.
void calibrate_on_holdout(const Flags& f, const TrainResult& r) {
  Backend& be = backend_by_name(f.o.device, parse_precision(f.o.precision));
  DetectorFiles d = open_detector(r.out_path, f.features, be);
  EvalSettings s;
  s.protocol = Protocol::Calibrated;
  s.rounds.samples = default_samples(s.protocol);  // as `mdps calibrate` without --samples
  s.validate();
  std::unique_ptr<ResNetFeatures> fe = d.load_features(s);
  Calibration c = calibrate_quantile(*d.net, fe.get(), r.held_out, s, 0.99, 0.999,
                                     cli::progress_line("calibrate", f.quiet));
  s.normal = c.normal;
  std::optional<SafeTensorsFile> features_file;
  write_bundle(f.calibrate, *d.net, d.resnet_source(features_file), s, c.thresholds, d.provenance());
  if (!f.quiet)
    std::printf("detector bundle: %s (calibrated protocol; image threshold %.9g, pixel threshold %.9g, from %zu "
                "held-out images)\n", f.calibrate.c_str(), double(c.thresholds.image), double(c.thresholds.pixel),
                r.held_out.size());
}

cli::Registrar reg("train", 20, [](CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train the diffusion prior (U-Net) on a folder of normal images");
  auto f = std::make_shared<Flags>();
  TrainOptions& o = f->o;
  cmd->add_option("--data", o.data_dir, "MVTec/BTAD category root (uses train/good) or a folder of images");
  cmd->add_option("--out", o.out_path, "output checkpoint (.safetensors), also the model for the other commands")
      ->required();
  auto* image_size = cmd->add_option("--image-size", f->image_size, "image size (default 256)");
  auto* base = cmd->add_option("--base-channels", f->base_channels, "U-Net base channels (default 64)");
  auto* mult = cmd->add_option("--channel-mult", f->channel_mult, "channel multipliers, e.g. 1,1,2,2,4,4 (default by size)");
  auto* res = cmd->add_option("--res-blocks", f->res_blocks, "residual blocks per level (default 2)");
  auto* attn = cmd->add_option("--attention", f->attention, "resolutions with attention (default 32,16,8)");
  auto* heads = cmd->add_option("--heads", f->heads, "attention heads (default 4)");
  auto* batch = cmd->add_option("--batch", f->batch, "batch size (default 8)");
  auto* lr = cmd->add_option("--lr", f->lr, "learning rate (default 3e-4)");
  auto* wd = cmd->add_option("--weight-decay", f->weight_decay, "weight decay (default 0.05, added to the gradient)");
  auto* adamw = cmd->add_flag("--adamw", f->adamw, "decoupled weight decay (AdamW) instead of the authors' coupled L2");
  auto* epochs = cmd->add_option("--epochs", f->epochs, "train this many passes over the data");
  auto* steps = cmd->add_option("--steps", f->steps, "total optimiser steps of the run (counting resumed ones)");
  epochs->excludes(steps);
  auto* seed = cmd->add_option("--seed", f->seed, "seed of the weights, order, timesteps and noise (default 0)");
  auto* holdout = cmd->add_option("--holdout", f->holdout,
                                  "keep N images of --data out of training, evenly spaced in file order: normal "
                                  "images the model never sees, for calibration (default 0)");
  cmd->add_option("--calibrate", f->calibrate,
                  "after training, calibrate on the --holdout images (calibrated protocol, quantiles 0.99 / 0.999 "
                  "as `mdps calibrate`) and write this detector bundle");
  cmd->add_option("--features", f->features,
                  "with --calibrate: the ResNet weights (.safetensors) of the bundle's perceptual term")
      ->check(CLI::ExistingFile);
  cli::add_threads_option(cmd, o.threads);
  cli::add_image_limit_option(cmd);
  cli::add_device_option(cmd, o.device);
  cli::add_precision_option(cmd, o.precision);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "also write --out every N steps");
  cmd->add_option("--resume", o.resume, "continue from this checkpoint up to --steps");
  cmd->add_flag("--overwrite", f->overwrite,
                "replace an existing --out (without it, an existing --out is refused unless it is the --resume "
                "checkpoint)");
  cmd->add_flag("--skip-bad", o.skip_bad, "skip unreadable images with a warning instead of failing");
  cmd->add_option("--log-csv", o.log_csv, "CSV of step,loss,seconds (default: OUT with extension .csv)");
  cmd->add_flag("--quiet", f->quiet, "no progress output");
  cli::add_trace_option(cmd, f->trace);

  cmd->callback([=] {
    TrainOptions& o = f->o;
    if (image_size->count()) o.image_size = f->image_size;
    if (base->count()) o.base_channels = f->base_channels;
    if (res->count()) o.res_blocks = f->res_blocks;
    if (heads->count()) o.heads = f->heads;
    if (mult->count()) o.channel_mults = parse_list(f->channel_mult, "--channel-mult");
    if (attn->count()) o.attention = parse_list(f->attention, "--attention");
    if (batch->count()) o.batch = f->batch;
    if (lr->count()) o.lr = f->lr;
    if (wd->count()) o.weight_decay = f->weight_decay;
    if (adamw->count()) o.adamw = f->adamw;
    if (seed->count()) o.seed = f->seed;
    if (steps->count()) o.steps = f->steps;
    if (epochs->count()) o.epochs = f->epochs;
    if (holdout->count()) o.holdout = f->holdout;
    MDPS_USAGE_CHECK(f->calibrate.empty() || (holdout->count() && f->holdout > 0) || !o.resume.empty(),
                     "--calibrate needs --holdout N: the images to calibrate on are the held-out ones");
    MDPS_USAGE_CHECK(f->features.empty() || !f->calibrate.empty(), "--features is the perceptual term of the "
                     "--calibrate bundle; give --calibrate BUNDLE too");
    if (!f->calibrate.empty()) {
      check_distinct_files({{"--data", o.data_dir}, {"--features", f->features}},
                           {{"--calibrate", f->calibrate}, {"--out", o.out_path}});
      MDPS_USAGE_CHECK(!same_file(f->calibrate, o.out_path), "--calibrate '", f->calibrate,
                       "' is --out; give the bundle its own name");
    }
    MDPS_USAGE_CHECK(!o.data_dir.empty() || !o.resume.empty(), "--data: give the folder of training images");
    check_train_files(o, f->trace, f->overwrite);
    ProgressDisplay display(f->quiet);
    trace::Session trace_session(f->trace);
    TrainResult r = train(o, [&](const TrainProgress& p) { display(p); });
    trace_session.finish();
    if (!f->quiet) {
      std::printf("trained %lld steps (%lld to %lld) of batch %lld on %lld images in %s: %.1f images/s\n",
                  static_cast<long long>(r.final_step - r.first_step), static_cast<long long>(r.first_step),
                  static_cast<long long>(r.final_step), static_cast<long long>(r.batch),
                  static_cast<long long>(r.images), duration(r.seconds).c_str(), r.images_per_s);
      std::printf("final loss (mean of the last 20 steps): %.5f\n", r.final_loss_avg);
      if (!r.skipped.empty()) std::printf("skipped %zu unreadable images\n", r.skipped.size());
      if (!r.held_out.empty())
        std::printf("held out %zu images (not trained on), the first %s\n", r.held_out.size(),
                    r.held_out.front().c_str());
      std::printf("checkpoint: %s\n", r.out_path.c_str());
      if (!r.csv_path.empty()) std::printf("loss log: %s\n", r.csv_path.c_str());
    }
    if (!f->calibrate.empty()) {
      MDPS_CHECK(!r.held_out.empty(), "--calibrate: the run held out no images (--holdout 0)");
      calibrate_on_holdout(*f, r);
    }
  });
});

}  // namespace
}  // namespace mdps
