// The evaluation protocol (spec sections 4-6) as a library: a data set in
// MVTec AD / BTAD layout in, anomaly maps, image scores and every metric out,
// plus the report files `mdps eval` writes.
//
// Two protocols (Protocol, engine/detect/settings.h). The calibrated one:
// engine/eval/calibrated_protocol.h. The authors' one:
// batches of `batch` test images in file order: round 1 (Ns repeats
// stacked), anomaly maps averaged over Ns, the mask (per image, or with
// mask_scope "dataset" min/max over all round-1 maps of the set: two passes),
// round 2, final maps averaged over Ns, image scores. The evaluation batch is
// also the guidance group and the group of the eta combination's maxima.
// Noise: Philox(seed, stream 2b) for round 1 and 2b+1 for round 2 of batch b,
// so both mask scopes draw the same noise; b counts batches over the whole
// run, also when a shard evaluates part of it (ProtocolPart, engine/eval/shard.h).
#pragma once
#include "engine/core/atomic_file.h"
#include "engine/detect/anomaly_map.h"
#include "engine/detect/settings.h"
#include "engine/eval/detector_files.h"
#include "engine/io/dataset.h"
#include "engine/io/image.h"
#include "engine/detect/presets.h"
#include "engine/model/resnet.h"
#include "engine/diffusion/sampler.h"
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mdps {

// Every metric as a fraction in [0,1]; NaN when undefined (e.g. one class only).
// ap: average precision (engine/metrics.h).
struct EvalMetrics {
  double image_auroc = 0, pixel_auroc = 0, aupro = 0, image_f1_max = 0, pixel_f1_max = 0;
  double image_ap = 0, pixel_ap = 0;
};

// maps/masks: N images of H x W (masks nonzero = defect). Metrics that cannot
// be computed (a single class) are NaN.
EvalMetrics compute_metrics(const std::vector<float>& maps, const std::vector<uint8_t>& masks,
                            const std::vector<int>& labels, const std::vector<float>& scores, int H, int W);

struct EvalResult {
  std::string name;  // category name (the root's folder name)
  std::string layout;
  std::vector<Sample> samples;  // evaluated images, in file order
  std::vector<float> scores;
  int H = 0, W = 0;             // after the crop
  std::vector<float> maps;      // N*H*W, cropped
  std::vector<uint8_t> masks;   // N*H*W, cropped, 0/1
  EvalMetrics overall;
  std::map<std::string, EvalMetrics> per_type;  // that type's images plus the good ones
  std::map<std::string, int> type_counts;
  double seconds = 0, seconds_per_image = 0;
  // Problems the metrics cannot show by themselves, e.g. a defect type whose
  // ground-truth masks all vanished at the map size (its pixel metrics are
  // then undefined). Written to report.json and printed by `mdps eval`.
  std::vector<std::string> warnings;
};

// done images, total images, seconds since the start; pass is 1 or 2 with
// mask_scope dataset (pass 1 only runs round 1) and in a calibration's
// statistics run (round 1, then round 2), 3 for the calibration's feature
// memory (each normal image's distance map), else 0.
using EvalProgressFn = std::function<void(size_t done, size_t total, double seconds, int pass)>;

// The protocol on N images given batch by batch: load(begin, end) returns
// the images [end-begin,3,S,S] in [-1,1] at the model's size S. Maps are
// full size (no crop); recon holds repeat 0's reconstruction of each image
// as 8-bit HWC RGB (every repeat's with ProtocolHooks::all_samples).
struct ProtocolOutput {
  int size = 0;
  std::vector<float> maps;                  // N*S*S
  std::vector<std::vector<uint8_t>> recon;  // N of S*S*3 (Ns*N: repeat r of image i at r*N + i)
  std::vector<float> round1_maps;           // N*S*S with ProtocolPart::round1_only, else empty
  std::vector<float> masks;                 // N*S*S round-2 masks (0/1) with ProtocolHooks::keep_masks
  double seconds = 0;
};
// Where the N images sit in a larger, sharded evaluation (engine/eval/shard.h).
// The default is a whole run.
struct ProtocolPart {
  // Global index of the first batch: batch b of this run draws the noise
  // streams of batch first_batch + b, so a shard samples what a single run would.
  size_t first_batch = 0;
  // Dataset scope, pass 1 of a shard: round 1 only, its maps in round1_maps.
  bool round1_only = false;
  // Dataset scope, pass 2 of a shard: these images' round-1 maps (N*S*S) and
  // the min/max of all round-1 maps of the set, instead of pass 1.
  const std::vector<float>* round1_maps = nullptr;
  float round1_min = 0.f, round1_max = 0.f;
};
using BatchLoader = std::function<Tensor(size_t begin, size_t end)>;
// What `mdps sample` asks of a run beyond the maps; the default asks nothing.
struct ProtocolHooks {
  // Masks [end-begin,1,S,S] (1 = resample) for images [begin, end) that
  // replace round 1 (not with the data-set-wide mask scope).
  BatchLoader masks;
  // Called after every step of round 2 with x_t of the batch's samples.
  StepCallback round2_steps;
  bool all_samples = false;  // recon holds every repeat, not only the first
  bool keep_masks = false;   // masks holds the round-2 masks (zeros for a single unmasked round)
};
// The calibrated protocol's noise key of one image [1,3,S,S] (host values at
// the model's size): FNV-1a over its float bytes, so the same pixels draw the
// same noise wherever the image sits in a run.
uint64_t image_noise_key(const Tensor& y);
// The one protocol function: `mdps eval` (evaluate), `mdps score` and
// mdps::Detector (score_batch), `mdps calibrate` and `mdps sample` all run it;
// it runs every batch (or, calibrated, every image) through run_mdps
// (engine/diffusion/sampler.h).
ProtocolOutput run_protocol(const UNet& model, const ResNetFeatures* features, size_t N, const BatchLoader& load,
                            const EvalSettings& settings, const EvalProgressFn& progress = {},
                            const ProtocolPart& part = {}, const ProtocolHooks& hooks = {});
// The 8-bit HWC RGB of sample `index` of reconstructions [B,3,S,S] in [-1,1].
std::vector<uint8_t> recon_bytes(const Tensor& recon, int index);
Image recon_image(const ProtocolOutput& p, size_t i);

// The calibrated protocol on N normal images without statistics: round 1 on
// all, the round-1 maxima and map range over all of them, then round 2 with
// the masks that range gives, and the final maxima, and the per-pixel mean
// and std of the final maps (NormalStats::pixels). Returns the statistics;
// `final_maps` (if given) receives the N*S*S final maps scored with them,
// exactly as run_protocol with these statistics would compute them.
NormalStats collect_normal_stats(const UNet& model, const ResNetFeatures* features, size_t N, const BatchLoader& load,
                                 const EvalSettings& settings, const EvalProgressFn& progress = {},
                                 std::vector<float>* final_maps = nullptr);

// The test samples after --limit (at most `limit` per type, in file order).
std::vector<Sample> limit_samples(const std::vector<Sample>& test, int limit);

// samples[begin, end) at the model's size S: images [n,3,S,S] in [-1,1] and
// ground-truth masks n*S*S (0/1, resized as `gt` says). Throws for an
// unreadable file or a mask whose size differs from its image.
struct EvalBatch {
  Tensor y;
  std::vector<Image> images;
  std::vector<uint8_t> masks;
};
EvalBatch load_eval_batch(const std::vector<Sample>& samples, size_t begin, size_t end, int size,
                          GtResize gt = GtResize::Bilinear);
// A ground-truth mask image (any size) as size x size 0/1 values.
std::vector<uint8_t> resize_gt_mask(const Image& gt, int size, GtResize how);

// The panels `mdps eval` writes, one PNG per test image,
// dir/<type>_<stem>.png (engine/eval/panel.h): image, reconstruction, ground
// truth and anomaly map (one colour scale over the images evaluated
// together) enlarged to at least min_tile pixels, with the type, file name,
// score and the decision "score > image_threshold" (NG/OK) written on them,
// or the ground truth when there is no threshold (NaN).
struct PanelOptions {
  std::string dir;  // "": no panels
  float image_threshold = std::numeric_limits<float>::quiet_NaN();
  std::string threshold_source;  // e.g. "bundle", shown next to the threshold
  int min_tile = 256;

  PanelOptions() = default;
  explicit PanelOptions(std::string panels_dir, float threshold = std::numeric_limits<float>::quiet_NaN(),
                        std::string source = "")
      : dir(std::move(panels_dir)), image_threshold(threshold), threshold_source(std::move(source)) {}
};

// Loads `samples` at the model's size and runs the protocol; writes the panels
// when panels.dir is not empty. Throws for unreadable images,
// masks whose size differs from their image, or a data set without both
// normal and defective images.
EvalResult evaluate(const UNet& model, const ResNetFeatures* features, const Dataset& ds,
                    const EvalSettings& settings, const PanelOptions& panels = {},
                    const EvalProgressFn& progress = {});
// evaluate()'s per-image half on an already limited list of samples (a whole
// set or one shard of it): maps, masks, scores, timing and panels (one colour
// scale over these samples), with name, layout, metrics and type counts left
// empty. Every image and mask is checked before the sampling starts.
EvalResult evaluate_samples(const UNet& model, const ResNetFeatures* features, const std::vector<Sample>& samples,
                            const EvalSettings& settings, const PanelOptions& panels = {},
                            const EvalProgressFn& progress = {}, const ProtocolPart& part = {});
// Throws (naming the data set root) unless `samples` has both normal and
// defective images: the metrics need both.
void check_normal_and_defective(const std::vector<Sample>& samples, const std::string& root);
// evaluate()'s other half: type_counts, overall and per-type metrics from
// r.samples, r.maps, r.masks and r.scores; r.warnings for defect types whose
// masks are empty at the map size.
void compute_eval_metrics(EvalResult& r);

// report.json, images.csv, maps.safetensors into out_dir (created), each
// written atomically. `extra` is merged into the report's settings (model
// and features paths etc., as JSON members "key": value without braces).
// Returns report.json's text (for report.html: engine/eval/report_html.h).
std::string write_eval_report(const EvalResult& r, const EvalSettings& s, const std::string& out_dir,
                              const std::string& extra_json_members = "");
// The same with the settings as their to_json() text (a merge of shards has
// the text, not the object).
std::string write_eval_report(const EvalResult& r, const std::string& settings_json, const std::string& out_dir,
                              const std::string& extra_json_members = "");
// The text table of overall and per-type metrics.
std::string format_eval_table(const EvalResult& r);
// Summary over categories: summary.json into out_dir and the table as text.
std::string write_eval_summary(const std::vector<EvalResult>& results, const std::string& out_dir);

// Centre crop of an H x W plane: side round(H*crop), offset (H - side)/2.
int crop_side(int size, float crop);
// The normal-z statistics of the maps an evaluation scores (EvalResult::maps,
// centre-cropped to `side`): the settings' per-pixel statistics cropped
// alike, or null when the settings have none.
std::optional<PixelNormals> normals_for_scoring(const EvalSettings& settings, int side);

}  // namespace mdps
