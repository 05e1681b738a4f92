// Training the DDIM prior on a folder of normal images (spec section 1), as a
// library call; `mdps train` (tools/cmd_train.cpp) is a thin layer over it.
//
// Randomness: every draw is a pure function of (seed, stream, index) (Philox),
// addressed by the global sample index k = step * batch + i:
//   epoch e = k / N, position k % N of a Fisher-Yates permutation of the N
//   images drawn for epoch e (stream kPermStream),
//   timestep t_k = 1 + uniform_int(999) at index k (stream kTimestepStream),
//   noise of sample k: normals [k*CHW, (k+1)*CHW) of stream kNoiseStream.
// Batches run across epoch boundaries (always full), so a run of S steps
// is the same whether or not it was stopped and resumed in between.
#pragma once
#include "engine/model/unet.h"
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mdps {

constexpr uint64_t kPermStream = 0x7472'0001;
constexpr uint64_t kTimestepStream = 0x7472'0002;
constexpr uint64_t kNoiseStream = 0x7472'0003;

struct TrainOptions {
  std::string data_dir;  // an MVTec/BTAD category root (train/good, train/ok) or a folder of images
  std::string out_path;  // always a full checkpoint

  // Model, data and optimiser settings. Unset: the default on a fresh run, the
  // checkpoint's value when resuming (a set value must then equal it).
  std::optional<int> image_size, base_channels, res_blocks, heads;  // 256, 64, 2, 4
  std::optional<std::vector<int>> channel_mults;                    // default by image size
  std::optional<std::vector<int>> attention;                        // 32,16,8
  std::optional<int> batch;                                         // 8
  std::optional<float> lr, weight_decay;                            // 3e-4, 0.05
  std::optional<bool> adamw;                                        // false: coupled L2 as the authors
  std::optional<uint64_t> seed;                                     // 0
  // Images of the data folder kept out of training, evenly spaced in file
  // order (evenly_spaced, engine/io/dataset.h): normal images the model has
  // never seen, for `mdps calibrate` (TrainResult::held_out). 0: none.
  std::optional<int64_t> holdout;                                   // 0

  // Length: the total step count, or whole epochs (steps = ceil(epochs * N / batch)).
  // Neither: the checkpoint's target when resuming, else an error.
  std::optional<int64_t> steps;
  std::optional<int64_t> epochs;

  int threads = 0;              // CPU worker threads; 0 leaves the backend's setting
  std::string device = "cpu";   // cpu | cuda | auto
  std::string precision = "fp32";  // fp32 | tf32 | bf16 (see Backend::set_precision; bf16 refused on the CPU)
  int64_t checkpoint_every = 0; // also write --out every N steps (0: only at the end)
  std::string resume;           // a checkpoint to continue from
  bool skip_bad = false;        // warn about and skip unreadable images instead of failing
  std::string log_csv;          // empty: OUT with extension .csv
  bool write_csv = true;

  std::function<void(const std::string&)> on_warning;  // default: stderr
};

struct TrainProgress {
  int64_t step = 0, total_steps = 0;  // steps done / the run's target
  int64_t epoch = 0;                  // the epoch being trained (1-based)
  int64_t first_step = 0;             // where this run started (non-zero when resumed)
  double loss = 0;                    // the last step's loss
  double loss_avg = 0;                // over the last (up to) 20 steps
  double seconds = 0;                 // since this run's first step began
  double images_per_s = 0;
  double eta_s = 0;
  bool done = false;
};
using ProgressFn = std::function<void(const TrainProgress&)>;

struct TrainResult {
  UNetConfig config;
  int64_t first_step = 0, final_step = 0;
  int64_t images = 0, batch = 0;
  std::vector<float> losses;  // one per step of this run
  double final_loss_avg = 0;  // over the last 20 steps
  double seconds = 0;
  double images_per_s = 0;
  std::string out_path, csv_path;
  std::vector<std::string> skipped;  // unreadable files passed over (--skip-bad)
  std::vector<std::string> held_out; // the --holdout images, in file order (not trained on)
};

// Validates everything (data, config, resume compatibility, output folder)
// before writing anything; on error throws mdps::Error and leaves no output.
TrainResult train(const TrainOptions& opts, const ProgressFn& progress = {});

// OUT.safetensors -> OUT.csv (same folder).
std::string default_csv_path(const std::string& out_path);

}  // namespace mdps
