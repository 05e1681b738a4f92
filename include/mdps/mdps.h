// mdps: unsupervised visual anomaly detection with Masked Diffusion Posterior
// Sampling, as a library. This is the whole public C++ interface; it includes
// nothing from the engine, so it compiles on its own with any C++17 compiler.
// The C interface over it is mdps/mdps_c.h; docs/embedding.md has the guide.
//
//   mdps::DetectorOptions o;
//   o.unet_path = "model.safetensors";
//   o.features_path = "resnet18.safetensors";
//   mdps::Detector det(o);                       // loads both files once
//   mdps::ScoreResult r = det.score(rgb, w, h, 3);
//   // r.image_score, r.heat_map (r.width x r.height), r.anomalous ...
//
// Errors: every failure (a missing or malformed file, a bad option, bad
// pixels) is thrown as a std::runtime_error whose what() names the thing at
// fault and the problem; nothing ever exits the process. Out of memory is
// std::bad_alloc, or, for the engine's own buffers, a std::runtime_error
// whose message says "out of memory allocating N bytes" and for what.
//
// Ownership: the caller owns the pixels it passes (read during the call only,
// never kept) and every ScoreResult it gets back. A Detector owns its model
// and feature weights; it is movable, not copyable.
//
// Threads: a Detector may be used from any thread, and several detectors may
// live in one process. Calls that compute (construction, score, score_batch)
// are serialised by one process-wide lock, because the CPU backend's worker
// pool and the GPU stream are process-wide: concurrent calls take turns, each
// using all the worker threads. For throughput, pass several images to
// score_batch, or run several processes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mdps {

// "0.1.0": the library's version.
const char* library_version();

struct DetectorOptions {
  // The U-Net model or training checkpoint (.safetensors), or a detector
  // bundle (`mdps bundle` / `mdps calibrate`), required. A bundle brings its
  // feature extractor, settings and thresholds: its settings replace the
  // fields below (round1_t ... seed), as a preset would; `preset` and
  // `overrides` still apply on top, and features_path and the thresholds
  // below, when set, replace the bundle's.
  std::string unet_path;
  // ResNet feature extractor (.safetensors). Empty: the bundle's, else the
  // anomaly map is the pixel term only (worse; for tests and quick looks).
  std::string features_path;
  // Tensor-name prefix inside features_path; empty: found automatically
  // ("", "resnet.", "module.", "model.", "backbone.").
  std::string features_prefix;

  // The protocol's settings, as the `mdps eval` options of the same names:
  // the library reads each through the engine's settings table by that name,
  // and its defaults are the table's (tests/api/test_api.cpp checks them).
  int round1_t = 200;        // --round1-t (0: a single unmasked round)
  float round1_rho = 50.f;   // --round1-rho
  int round2_t = 200;        // --t-start
  float round2_rho = 100.f;  // --rho
  float lambda = 0.12f;      // --lambda
  // --eta; NaN (the default): auto, 7 max(1, 128/S)^2 under the calibrated
  // protocol (S the model's image size: 28 at 64), the authors' 7 under theirs
  float eta = std::numeric_limits<float>::quiet_NaN();
  int skip = 20;             // --skip
  int samples = 0;           // --samples (Ns); 0: the protocol's (2 calibrated, 1 authors)
  int batch = 8;             // --batch: images per guidance group in score_batch
  std::string variant = "authors";      // --variant: authors or paper
  // --image-score: auto (topk-fraction where the bundle's map fuses a feature memory,
  // i.e. calibrated on normal images with a feature extractor; normal-z with a
  // bundle calibrated on normal images without one; else authors), authors,
  // topk-mean, max, topk-fraction or normal-z. The feature memory's weight is
  // the override "memory-weight" (auto: 4 calibrated; "0": off; docs/cli.md).
  std::string image_score = "auto";
  // --protocol: "calibrated" (the default: an image's score depends only on
  // the image and the detector, no coupling between the images of a batch;
  // with a bundle from `mdps calibrate --normal`, the normal images'
  // statistics) or "authors" (the authors' batch-coupled code, as the
  // presets and the golden tests).
  std::string protocol = "calibrated";
  uint64_t seed = 0;                    // --seed

  // A preset (e.g. "mvtec/bottle" or a path to an .ini). Its values replace
  // the fields above; `overrides` are applied after it.
  std::string preset;
  // Any further `mdps eval` setting by option name without dashes, applied
  // last, e.g. {"layers", "2,3"}, {"blur-sigma", "4"}, {"ddim-eta", "0"}.
  std::vector<std::pair<std::string, std::string>> overrides;

  std::string device = "cpu";  // cpu, cuda or auto
  std::string precision = "fp32";  // fp32, tf32 (CUDA only) or bf16 (CUDA, or a CPU with AVX512-BF16); process-wide like the device
  // CPU worker threads, 0: all cores. Process-wide: the last detector
  // constructed with threads > 0 sets it for all.
  int threads = 0;

  // Decisions: NaN (the default) means none (or the bundle's). anomalous =
  // image_score > image_threshold; defect_mask pixel = heat map value >
  // pixel_threshold. `mdps calibrate` finds both from data.
  float image_threshold = std::numeric_limits<float>::quiet_NaN();
  float pixel_threshold = std::numeric_limits<float>::quiet_NaN();
};

// Pixels in memory: 8-bit, interleaved, rows `stride_bytes` apart (0: packed,
// width * channels). channels: 1 (gray), 3 (RGB) or 4 (RGBA, alpha ignored).
struct ImageView {
  const uint8_t* pixels = nullptr;
  int width = 0, height = 0, channels = 3;
  int stride_bytes = 0;
};

struct ScoreResult {
  float image_score = 0.f;
  // The anomaly map at the model's resolution (width = height = image_size()),
  // row-major; larger is more anomalous. Use resize_map() for the input size.
  int width = 0, height = 0;
  std::vector<float> heat_map;
  // Set when the detector has an image threshold (options or bundle).
  bool has_decision = false;
  bool anomalous = false;
  // width * height values 0/1 when the detector has a pixel threshold, else empty.
  std::vector<uint8_t> defect_mask;
  // The reconstruction (the normal image the sampler found; the first of Ns),
  // width * height * 3 RGB values in [0,255].
  std::vector<float> reconstruction;
};

class Detector {
 public:
  // Loads the model and the feature extractor; throws for anything missing,
  // malformed or out of range.
  explicit Detector(const DetectorOptions& options);
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // One image of any size; it is resized (bilinear, as Pillow) to
  // image_size() x image_size() first. With the calibrated protocol an
  // image's result is the same alone, in any batch and in `mdps eval`, bit
  // for bit; with the authors' protocol the guidance and the map's maxima
  // couple the images of a batch, so a batch's scores differ from single calls.
  ScoreResult score(const uint8_t* pixels, int width, int height, int channels, int stride_bytes = 0);
  ScoreResult score(const ImageView& image);
  // Several images, in groups of options.batch (the evaluation batch).
  std::vector<ScoreResult> score_batch(const std::vector<ImageView>& images);
  // The same, reporting progress after every batch: images done, images in
  // all, seconds since the call began (called on the calling thread).
  using ProgressFn = std::function<void(size_t done, size_t total, double seconds)>;
  std::vector<ScoreResult> score_batch(const std::vector<ImageView>& images, const ProgressFn& progress);
  // The same for a piece of a longer list that starts at batch `first_batch`
  // of it (the images before it: first_batch * batch). With the authors'
  // protocol batch k of the piece draws the noise of batch first_batch + k,
  // so a list scored piece by piece, each piece whole batches but the last,
  // gives the results of one call on the whole list bit for bit (`mdps
  // score` streams this way). The calibrated protocol ignores it.
  std::vector<ScoreResult> score_batch(const std::vector<ImageView>& images, const ProgressFn& progress,
                                       size_t first_batch);

  // The model's input size (images are square).
  int image_size() const;
  // The settings in effect after the bundle, preset and overrides, as JSON.
  std::string settings_json() const;
  // The thresholds in effect (options, else the bundle's); NaN: none.
  float image_threshold() const;
  float pixel_threshold() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A heat map (width x height, row-major) resized bilinearly to out_w x out_h,
// e.g. back to the input image's size.
std::vector<float> resize_map(const std::vector<float>& map, int width, int height, int out_w, int out_h);

}  // namespace mdps
