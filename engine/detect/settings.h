// The detector's settings: every value that decides a map and a score (the
// sampler, the two rounds, the anomaly map, the image score, the mask scope,
// the batch) in one struct, readable and writable by its `mdps eval` option
// names. Presets (engine/detect/presets.h), detector bundles
// (engine/detect/bundle.h), report.json and the command line all go through
// set() / values() / to_json() / validate(), which read the one table of
// settings (engine/detect/setting_table.h), so a setting is spelled once.
#pragma once
#include "engine/detect/anomaly_map.h"
#include "engine/detect/feature_memory.h"
#include "engine/detect/presets.h"
#include "engine/diffusion/sampler.h"
#include <cstdint>
#include <optional>
#include <string>

namespace mdps {

// How ground-truth masks reach the model's size before the metrics.
enum class GtResize {
  Bilinear,  // the authors' (torchvision Resize on the PIL image): Pillow bilinear
             // with its antialiasing support when shrinking, 8-bit, then > 0,
             // so every pixel a defect touches counts and thin defects survive
  Nearest,   // Pillow nearest neighbour, then > 0 (mdps before issue 18)
};

// Which protocol turns images into maps (docs/cli.md "Protocols").
enum class Protocol {
  // The authors' code exactly: batches of `batch` images share the guidance
  // norm and the eta maxima, the mask range is per image or over the test set
  // (mask_scope), noise streams follow the batch index, blur and image-score
  // pixel count are the 256x256 values whatever the size. An image's score
  // depends on the images it is evaluated with.
  Authors,
  // Scores that depend only on the image and the detector: every image as if
  // alone (its Ns samples through the U-Net with `batch` images per call on a
  // batch-invariant backend, speed only; the guidance norm per sample), noise streams derived from the seed and the image's pixels, the
  // eta maxima and the mask range from normal images (NormalStats, `mdps
  // calibrate --normal`; without them: the image's own), blur and image-score
  // pixel count scaled with the image size (engine/eval/calibrated_protocol.h).
  Calibrated,
};
const char* protocol_name(Protocol p);

// What the calibrated protocol takes from normal images (`mdps calibrate
// --normal`, stored in a detector bundle): the maxima of the pixel and
// feature terms of round 1 and of the final round over all their samples, and
// the range (min, max) of their round-1 maps, from which the mask threshold is
// min + lambda (max - min). `pixels`: the per-pixel mean and std of their
// final maps, which the normal-z image score standardises a map by (a
// bundle stores them as tensors, not in the JSON; empty in bundles written
// before they existed). `memory`: the normal images' feature embeddings
// (engine/detect/feature_memory.h), with map_max and memory_max, the maxima
// of their MDPS maps and of their (leave-one-out) blurred distance maps that
// the fused map divides by; empty where the detector has none (no feature
// extractor reaching stage 3, memory weight 0, or calibrated before it existed).
struct NormalStats {
  int images = 0;
  TermMaxima round1, final;
  float round1_min = 0.f, round1_max = 0.f;
  PixelNormals pixels;
  FeatureMemory memory;
  float map_max = 0.f, memory_max = 0.f;
  std::string to_json() const;
  // Reads to_json()'s text; throws naming `what` for anything else.
  static NormalStats from_json(const std::string& text, const std::string& what);
};

struct EvalSettings {
  SamplerSettings sampler;  // sampler.group is set to `batch`
  MdpsRounds rounds;
  AnomalyMapSettings map;
  ImageScoreKind score_kind = ImageScoreKind::Authors;
  int score_k = 500;
  bool dataset_scope = false;  // --mask-scope dataset
  int batch = 8;
  int limit = 0;      // at most this many images per test type (0: all)
  float crop = 1.f;   // centre-crop fraction of maps and masks before the metrics and scores
  uint64_t seed = 0;
  bool panels = true; // OUT/panels/<type>_<stem>.png
  // Not a detector setting: run_protocol writes every intermediate there
  // (engine/eval/protocol_dump.h; `mdps eval --dump-intermediates`). Empty: none.
  std::string dump_intermediates;
  GtResize gt_resize = GtResize::Bilinear;  // --gt-resize (evaluation only, not stored in a bundle)
  // The struct's default reproduces the authors (the golden tests); the
  // defaults of the command line and the library are default_settings()
  // (engine/detect/setting_table.h).
  Protocol protocol = Protocol::Authors;
  std::optional<NormalStats> normal;  // Calibrated: from a bundle or a calibration run
  float score_fraction = 0.01f;       // --image-score-fraction (topk-fraction)
  // Calibrated protocol only: while set, blur sigma, blur kernel, the
  // image-score pixel count and eta follow the image size S (sigma 4 S/256,
  // kernel 33 S/256 made odd and >= 3, k 500 (S/256)^2 >= 1, eta
  // 7 max(1, 128/S)^2; the authors' values at 256). set() of the key clears
  // its flag; "auto" sets it again. Under the authors' protocol the fields
  // are used as they are. eta grows below 128 because the perceptual term
  // comes from ResNet stages at S/8 and S/16 (8x8 and 4x4 at 64): there it is
  // far coarser than the pixel term; at 128 (16x16) it still helps (measured
  // on tire, issue 18).
  bool auto_blur_sigma = true, auto_blur_kernel = true, auto_score_k = true, auto_eta = true;
  // The weight w of the feature-memory term in the final map (engine/detect/
  // feature_memory.h); 0: the MDPS map alone. auto (auto_memory_weight):
  // kCalibratedMemoryWeight under the calibrated protocol, 0 under the
  // authors'. It takes effect where the detector carries a memory (normal
  // statistics taken with a feature extractor reaching stage 3).
  float memory_weight = 0.f;
  bool auto_memory_weight = true;
  // The image score "auto" (set() of "image-score" clears it; "auto" sets it
  // again and score_kind to authors): at_size() makes it normal-z under the
  // calibrated protocol when the settings carry per-pixel normal statistics
  // (a detector calibrated on normal images), else leaves score_kind.
  bool auto_score_kind = true;
  // Sets one value by its `mdps eval` option name without dashes (the preset
  // keys: t-start, rho, round1-t, round1-rho, lambda, eta, skip, samples,
  // crop, ...). Throws for an unknown key or a bad value.
  void set(const std::string& key, const std::string& value);
  void validate() const;
  std::string to_json() const;
  // Every setting of the detector as (set() key, text) pairs that set() reads
  // back to the same values bit for bit: what a detector
  // bundle stores. `limit` is left out: it selects test images, it is not
  // part of a detector; so is gt_resize; `normal` is stored beside them.
  PresetValues values() const;
  // The per-pixel normal statistics (normal-z), or null when there are none.
  const PixelNormals* pixel_normals() const {
    return normal && !normal->pixels.empty() ? &normal->pixels : nullptr;
  }
  // The memory weight in effect (auto resolved).
  float memory_weight_in_effect() const;
  // The feature memory the final map fuses (calibrated protocol, weight > 0,
  // normal statistics with a memory), or null.
  const NormalStats* fused_memory() const;
  // A copy with the size-dependent values in effect for a model of size S
  // (the auto ones of the calibrated protocol replaced), the flags cleared.
  EvalSettings at_size(int S) const;
};

// w of the fused map under auto (calibrated protocol). Measured on tire at
// 64x64 (bench/RESULTS.md, issue 18): w 1 / 2 / 4 / 8 / 16 give image AUROC
// (max) 0.62 / 0.66 / 0.69 / 0.69 / 0.70 and pixel AUROC 0.96 / 0.97 /
// 0.97 / 0.97 / 0.97; 4 is where the gain levels off while the
// reconstruction's map still carries a fifth of the fused map.
constexpr float kCalibratedMemoryWeight = 4.f;

// What image-score "auto" stands for in `s` (EvalSettings::auto_score_kind):
// topk-fraction under the calibrated protocol when the final map fuses a
// feature memory (tire, 64x64, three seeds, bench/RESULTS.md: image AUROC
// 0.687 +- 0.008 against max 0.691 +- 0.016, topk-mean 0.686 +- 0.007 and
// normal-z 0.593 +- 0.005; the mean of the top 1% holds at every size and
// halves max's spread across seeds), else normal-z under the calibrated protocol with per-pixel
// normal statistics, else score_kind (authors, which parsing "auto" sets).
ImageScoreKind auto_score_kind_of(const EvalSettings& s);

}  // namespace mdps
