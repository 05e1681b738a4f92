#include "engine/diffusion/trainer.h"
#include "engine/core/backend_registry.h"
#include "engine/core/trace.h"
#include "engine/model/checkpoint.h"
#include "engine/io/dataset.h"
#include "engine/io/image.h"
#include "engine/diffusion/noise.h"
#include "engine/core/ops.h"
#include "engine/model/optimizer.h"
#include "engine/io/safetensors.h"
#include "engine/diffusion/schedule.h"
#include "engine/core/csv.h"
#include "engine/core/option_checks.h"
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

namespace fs = std::filesystem;

namespace mdps {

std::string default_csv_path(const std::string& out_path) {
  fs::path p(out_path);
  return p.replace_extension(".csv").string();
}

namespace {

constexpr int kTimesteps = 1000;
constexpr size_t kLossWindow = 20;

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string text(int v) { return std::to_string(v); }
std::string text(uint64_t v) { return std::to_string(v); }
std::string text(int64_t v) { return std::to_string(v); }
std::string text(float v) { return float_to_text(v); }
std::string text(bool v) { return v ? "on" : "off"; }
std::string text(const std::vector<int>& v) { return join(v); }

// A flag given together with --resume must equal the checkpoint's value.
template <typename T>
T resolve(const std::optional<T>& given, const T& fallback, const std::optional<T>& stored, const char* flag,
          const std::string& ckpt) {
  if (!stored) return given ? *given : fallback;
  if (given && !(*given == *stored))
    throw Error(cat(flag, " ", text(*given), " differs from the checkpoint '", ckpt, "', which was trained with ",
                text(*stored), "; omit the flag or give the same value"));
  return *stored;
}

struct Settings {
  UNetConfig config;
  int batch = 8;
  AdamParams adam;
  uint64_t seed = 0;
};

Settings resolve_settings(const TrainOptions& o, const SafeTensorsFile* ck, const TrainState* st) {
  Settings s;
  const std::string ckpt = ck ? ck->path() : "";
  std::optional<UNetConfig> c;
  if (ck) c = UNet::config_from_file(*ck);
  auto opt = [&](auto member) { return c ? std::optional<std::decay_t<decltype((*c).*member)>>((*c).*member) : std::nullopt; };
  UNetConfig d;
  s.config.image_size = resolve(o.image_size, d.image_size, opt(&UNetConfig::image_size), "--image-size", ckpt);
  s.config.base_channels =
      resolve(o.base_channels, d.base_channels, opt(&UNetConfig::base_channels), "--base-channels", ckpt);
  s.config.res_blocks = resolve(o.res_blocks, d.res_blocks, opt(&UNetConfig::res_blocks), "--res-blocks", ckpt);
  s.config.heads = resolve(o.heads, d.heads, opt(&UNetConfig::heads), "--heads", ckpt);
  s.config.attention_resolutions = resolve(o.attention, d.attention_resolutions,
                                           opt(&UNetConfig::attention_resolutions), "--attention", ckpt);
  std::optional<std::vector<int>> stored_mults;
  if (c) stored_mults = c->mults();
  s.config.channel_mults = resolve(o.channel_mults, UNetConfig::default_channel_mults(s.config.image_size),
                                   stored_mults, "--channel-mult", ckpt);
  if (c) s.config.in_channels = c->in_channels, s.config.dropout = c->dropout;
  s.config.validate();

  auto sv = [&](auto v) { return st ? std::optional<decltype(v)>(v) : std::nullopt; };
  s.batch = resolve(o.batch, 8, st ? std::optional<int>(st->batch) : std::nullopt, "--batch", ckpt);
  MDPS_CHECK(s.batch > 0, "--batch ", s.batch, " must be positive");
  s.adam.lr = resolve(o.lr, 3e-4f, sv(st ? st->adam.lr : 0.f), "--lr", ckpt);
  s.adam.weight_decay = resolve(o.weight_decay, 0.05f, sv(st ? st->adam.weight_decay : 0.f), "--weight-decay", ckpt);
  s.adam.decoupled = resolve(o.adamw, false, sv(st ? st->adam.decoupled : false), "--adamw", ckpt);
  s.seed = resolve(o.seed, uint64_t(0), sv(st ? st->seed : uint64_t(0)), "--seed", ckpt);
  MDPS_CHECK(s.adam.lr > 0 && std::isfinite(s.adam.lr), "--lr ", s.adam.lr, " must be a positive number");
  MDPS_CHECK(s.adam.weight_decay >= 0 && std::isfinite(s.adam.weight_decay), "--weight-decay ", s.adam.weight_decay,
             " must be zero or positive");
  return s;
}

// Every training image decoded once, as CHW floats in [-1, 1].
struct ImageSet {
  std::vector<std::vector<float>> images;
  std::vector<std::string> skipped;
};

ImageSet load_images(const std::vector<std::string>& files, const std::string& dir, int size, bool skip_bad,
                     const std::function<void(const std::string&)>& warn) {
  ImageSet set;
  for (const auto& path : files) {
    try {
      Image img = load_model_image(path, size);
      set.images.push_back(image_to_tensor(img).to_vector());
    } catch (const Error& e) {
      if (!skip_bad) throw Error(cat(e.what(), " (pass --skip-bad to train without unreadable images)"));
      warn(cat("skipping unreadable image: ", e.what()));
      set.skipped.push_back(path);
    }
  }
  MDPS_CHECK(!set.images.empty(), "no readable training images in '", dir, "' (", set.skipped.size(),
             " unreadable)");
  return set;
}

struct Batch {
  std::vector<float> x0, noise, t;
  std::vector<int> t_int;
};

// The draws of one step; a pure function of the step (see trainer.h).
class BatchMaker {
 public:
  BatchMaker(const ImageSet& set, int batch, uint64_t seed) : set_(set), batch_(batch), seed_(seed) {
    chw_ = int64_t(set.images.front().size());
  }
  Batch make(int64_t step) {
    Batch b;
    const int64_t n = int64_t(set_.images.size());
    b.x0.resize(size_t(batch_ * chw_));
    b.noise.resize(b.x0.size());
    for (int i = 0; i < batch_; ++i) {
      const uint64_t k = uint64_t(step) * uint64_t(batch_) + uint64_t(i);
      const auto& perm = permutation(int64_t(k / uint64_t(n)));
      const auto& img = set_.images[size_t(perm[size_t(k % uint64_t(n))])];
      std::copy(img.begin(), img.end(), b.x0.begin() + i * chw_);
      int t = 1 + int(philox_uniform_int(seed_, kTimestepStream, k, kTimesteps - 1));
      b.t_int.push_back(t);
      b.t.push_back(float(t));
      philox_fill_normal(b.noise.data() + i * chw_, chw_, seed_, kNoiseStream, k * uint64_t(chw_));
    }
    return b;
  }

 private:
  const std::vector<int64_t>& permutation(int64_t epoch) {
    if (epoch != perm_epoch_) {
      const int64_t n = int64_t(set_.images.size());
      perm_.resize(size_t(n));
      for (int64_t j = 0; j < n; ++j) perm_[size_t(j)] = j;
      for (int64_t j = n - 1; j > 0; --j) {
        auto r = philox_uniform_int(seed_, kPermStream, uint64_t(epoch) * uint64_t(n) + uint64_t(j), uint64_t(j + 1));
        std::swap(perm_[size_t(j)], perm_[size_t(r)]);
      }
      perm_epoch_ = epoch;
    }
    return perm_;
  }

  const ImageSet& set_;
  int batch_;
  uint64_t seed_;
  int64_t chw_ = 0;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Prepares the batches of [first, last) on its own thread, at most two ahead,
// so the next batch is ready when the model finishes a step.
class Loader {
 public:
  Loader(BatchMaker& maker, int64_t first, int64_t last) : maker_(maker) {
    thread_ = std::thread([this, first, last] { run(first, last); });
  }
  ~Loader() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Batch next() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !queue_.empty() || error_; });
    if (error_) std::rethrow_exception(error_);
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return b;
  }

 private:
  void run(int64_t first, int64_t last) {
    try {
      for (int64_t s = first; s < last; ++s) {
        {
          std::unique_lock<std::mutex> l(mu_);
          cv_.wait(l, [&] { return queue_.size() < 2 || stop_; });
          if (stop_) return;
        }
        Batch b = maker_.make(s);
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(std::move(b));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> l(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
    }
  }

  BatchMaker& maker_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stop_ = false;
  std::exception_ptr error_;
};

Tensor upload(const Shape& shape, const std::vector<float>& v, Backend& be) {
  Tensor t = Tensor::from_vector(shape, v);
  return be.device() == Device::CPU ? t : t.to(be);
}

// One record of the loss log, flushed at once (`tail -f` follows the run) and
// checked: a full disk stops the run with the file named, not a silent gap.
void log_line(FILE* f, const std::string& line, const std::string& path) {
  const bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size() && std::fflush(f) == 0;
  MDPS_CHECK(ok, "--log-csv '", path, "': writing failed: ", std::strerror(errno),
             " (the checkpoint written last is kept)");
}

void check_output_path(const std::string& out) {
  MDPS_CHECK(!out.empty(), "--out: no output file given");
  fs::path p(out);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  MDPS_CHECK(fs::is_directory(dir), "--out '", out, "': folder '", dir.string(), "' does not exist");
  MDPS_CHECK(!fs::is_directory(p), "--out '", out, "' is a folder; give a .safetensors file name");
}

}  // namespace

TrainResult train(const TrainOptions& o, const ProgressFn& progress) {
  auto warn = o.on_warning ? o.on_warning : [](const std::string& m) { std::fprintf(stderr, "warning: %s\n", m.c_str()); };
  check_output_path(o.out_path);

  // Resume: the checkpoint's settings, and where it stopped.
  std::optional<SafeTensorsFile> ck;
  std::optional<TrainState> st;
  if (!o.resume.empty()) {
    ck = SafeTensorsFile::open(o.resume);
    st = read_train_state(*ck);
  }
  Settings s = resolve_settings(o, ck ? &*ck : nullptr, st ? &*st : nullptr);

  std::string data_dir = o.data_dir;
  if (data_dir.empty()) {
    MDPS_CHECK(st, "--data: no training folder given");
    data_dir = st->data;
  }
  // --holdout: the held-out files are chosen before decoding, by position, so
  // a resumed run holds out the same ones.
  std::vector<std::string> files = training_images(data_dir), held;
  const int64_t holdout = resolve(o.holdout, int64_t(0), st ? std::optional<int64_t>(st->holdout) : std::nullopt,
                                  "--holdout", ck ? ck->path() : "");
  MDPS_CHECK(holdout >= 0 && holdout < int64_t(files.size()), "--holdout ", holdout, " must be in 0..",
             files.size() - 1, ": '", data_dir, "' has ", files.size(), " images and at least one must be trained on");
  if (holdout > 0) {
    std::vector<std::string> kept;
    std::vector<bool> out(files.size(), false);
    for (size_t i : evenly_spaced(files.size(), size_t(holdout))) out[i] = true;
    for (size_t i = 0; i < files.size(); ++i) (out[i] ? held : kept).push_back(files[i]);
    files = std::move(kept);
  }
  ImageSet set = load_images(files, data_dir, s.config.image_size, o.skip_bad, warn);
  const int64_t n_images = int64_t(set.images.size());
  if (st)
    MDPS_CHECK(st->images == n_images, "--resume '", o.resume, "': the checkpoint was trained on ", st->images,
               " images, but '", data_dir, "' gives ", n_images, "; resume on the same data");

  int64_t target = 0;
  MDPS_CHECK(!(o.steps && o.epochs), "give --steps or --epochs, not both");
  if (o.steps) {
    target = *o.steps;
    check_steps(target, "--steps");
  } else if (o.epochs) {
    target = steps_for_epochs(*o.epochs, n_images, s.batch);  // checked: no overflow
  } else {
    MDPS_CHECK(st, "give the length of the run: --steps N or --epochs N");
    target = st->target_steps;
  }
  const int64_t first = st ? st->step : 0;
  MDPS_CHECK(target > 0, "--steps ", target, " must be positive");
  MDPS_CHECK(target >= first, "--steps ", target, " is below the step the checkpoint '", o.resume, "' reached (",
             first, "); --steps is the total step count of the run");
  MDPS_CHECK(o.checkpoint_every >= 0, "--checkpoint-every ", o.checkpoint_every, " must not be negative");

  check_threads(o.threads, "--threads");
  // The CPU's bf16 covers the forward and the input gradient (sampling and
  // scoring); its weight gradients stay fp32, so a "bf16" training run would
  // be a mixed one nobody measured: refused rather than half honoured.
  const Precision precision = parse_precision(o.precision);
  const bool on_cpu = o.device == "cpu" || (o.device == "auto" && !find_backend("cuda"));
  MDPS_CHECK(!(precision == Precision::BF16 && on_cpu),
             "--precision bf16: training on the CPU runs in fp32 only (bf16 on the CPU is for sampling and scoring; "
             "train with --precision fp32, or bf16 with --device cuda)");
  Backend& be = backend_by_name(o.device, precision);
  if (o.threads > 0) be.set_threads(o.threads);
  if (o.threads > 0 && be.device() != Device::CPU) cpu_backend().set_threads(o.threads);

  UNet net(s.config, be);
  if (!ck) net.init_random(s.seed);
  net.set_requires_grad(true);
  Adam adam(net, s.adam);
  if (ck) {
    load_checkpoint(*ck, net, adam);
    MDPS_CHECK(adam.step_count() == first, "--resume '", o.resume, "': optimiser step ", adam.step_count(),
               " differs from the training step ", first);
    ck.reset();  // the output may replace this very file
  }

  TrainResult r;
  r.config = s.config;
  r.first_step = first;
  r.final_step = first;
  r.images = n_images;
  r.batch = s.batch;
  r.out_path = o.out_path;
  r.skipped = set.skipped;
  r.held_out = held;

  TrainState state;
  state.seed = s.seed;
  state.target_steps = target;
  state.batch = s.batch;
  state.adam = s.adam;
  state.data = data_dir;
  state.images = n_images;
  state.holdout = holdout;
  auto set_position = [&](int64_t step) {
    state.step = step;
    state.rng_position = uint64_t(step) * uint64_t(s.batch);
    state.epoch = int64_t(state.rng_position / uint64_t(n_images));
  };

  // Everything checked: from here on files are written.
  FILE* csv = nullptr;
  if (o.write_csv) {
    r.csv_path = o.log_csv.empty() ? default_csv_path(o.out_path) : o.log_csv;
    const bool append = st && fs::exists(r.csv_path);
    csv = std::fopen(r.csv_path.c_str(), append ? "a" : "w");
    MDPS_CHECK(csv, "--log-csv '", r.csv_path, "': cannot open for writing: ", std::strerror(errno));
    if (!append) log_line(csv, csv_row({"step", "loss", "seconds"}), r.csv_path);
  }
  struct CsvCloser {
    FILE*& f;
    ~CsvCloser() {
      if (f) std::fclose(f);
    }
  } closer{csv};

  const int H = s.config.image_size, W = s.config.image_size, C = 3;
  const Shape xshape{s.batch, C, H, W};
  NoiseSchedule sched;
  BatchMaker maker(set, s.batch, s.seed);
  Loader loader(maker, first, target);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::deque<float> window;
  double window_sum = 0;

  for (int64_t step = first; step < target; ++step) {
    trace::Scope span("train.step", "span");
    if (span.active()) span.num("step", double(step + 1));
    Batch b = loader.next();
    std::vector<float> sa, s1a;
    for (int t : b.t_int) {
      double a = sched.alpha_bar(t);
      sa.push_back(float(std::sqrt(a)));
      s1a.push_back(float(std::sqrt(1.0 - a)));
    }
    Tensor x0 = upload(xshape, b.x0, be), noise = upload(xshape, b.noise, be);
    Tensor t = upload({s.batch}, b.t, be);
    Var xt = ops::add(ops::scale_per_sample(Var(x0), sa), ops::scale_per_sample(Var(noise), s1a));
    Tape tape;
    Var loss;
    {
      TapeScope rec(tape);
      loss = ops::sse_loss(net.forward(xt, t), Var(noise));
    }
    const float lv = loss.value.to_vector().at(0);
    MDPS_CHECK(std::isfinite(lv), "training diverged: the loss is ", lv, " at step ", step + 1,
               " (the last checkpoint is kept; try a smaller --lr)");
    tape.backward(loss);
    adam.step();
    net.zero_grad();
    span.close();  // logging and checkpoints are not the step

    const int64_t done = step + 1;
    set_position(done);
    r.losses.push_back(lv);
    window.push_back(lv);
    window_sum += lv;
    if (window.size() > kLossWindow) {
      window_sum -= window.front();
      window.pop_front();
    }
    const double secs = elapsed();
    if (csv) {
      char loss[32], sec[32];
      std::snprintf(loss, sizeof loss, "%.6g", double(lv));
      std::snprintf(sec, sizeof sec, "%.3f", secs);
      log_line(csv, csv_row({std::to_string(done), loss, sec}), r.csv_path);
    }

    if (o.checkpoint_every > 0 && done % o.checkpoint_every == 0 && done != target)
      save_checkpoint(o.out_path, net, adam, state);
    if (progress) {
      TrainProgress p;
      p.step = done;
      p.total_steps = target;
      p.first_step = first;
      p.epoch = int64_t((uint64_t(step) * uint64_t(s.batch)) / uint64_t(n_images)) + 1;
      p.loss = lv;
      p.loss_avg = window_sum / double(window.size());
      p.seconds = secs;
      const double steps_run = double(done - first);
      p.images_per_s = secs > 0 ? steps_run * s.batch / secs : 0;
      p.eta_s = steps_run > 0 ? secs / steps_run * double(target - done) : 0;
      p.done = done == target;
      progress(p);
    }
  }

  set_position(target);
  save_checkpoint(o.out_path, net, adam, state);
  if (csv) {
    FILE* f = csv;
    csv = nullptr;
    MDPS_CHECK(std::fclose(f) == 0, "--log-csv '", r.csv_path, "': closing failed: ", std::strerror(errno));
  }
  r.final_step = target;
  r.seconds = elapsed();
  r.images_per_s = r.seconds > 0 ? double(target - first) * s.batch / r.seconds : 0;
  r.final_loss_avg = window.empty() ? 0 : window_sum / double(window.size());
  return r;
}

}  // namespace mdps
