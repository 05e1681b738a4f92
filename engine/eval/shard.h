// Scale-out of the evaluation (docs/scale-out.md): the test list is cut into
// n contiguous shards at evaluation-batch boundaries, each evaluated on its
// own (another process, node or GPU), and the parts merged into the report a
// single run writes, bit for bit on the CPU.
//
// Why it is exact: the evaluation batch couples its images (guidance norm,
// eta maxima), so shards are whole batches; the noise of batch b is Philox
// streams 2b / 2b+1 with b the global batch index (ProtocolPart::first_batch);
// scores are per image; the metrics are computed once, at the merge, over
// the concatenated maps. With the dataset mask scope the threshold needs the
// min/max of all round-1 maps, hence three steps: pass 1 on every shard
// (round-1 maps), a merge of their ranges (mask_range.json), pass 2 on every
// shard with that range.
//
// Files, all written atomically (temporary name, then rename):
//   OUT/part-<i>-of-<n>.safetensors    a shard's final maps, masks, labels,
//                                      scores and, as JSON in the metadata
//                                      key "mdps_part", its samples, settings,
//                                      range and fingerprint
//   OUT/round1-<i>-of-<n>.safetensors  pass 1: the shard's round-1 maps and
//                                      their min/max
//   mask_range.json                    the merge of the pass-1 files
// Distinct names per shard let every shard write into one shared folder.
#pragma once
#include "engine/eval/evaluate.h"
#include <limits>
#include <string>
#include <vector>

namespace mdps {

struct ShardId {
  int index = 0, count = 1;  // 0 <= index < count
  std::string str() const;   // "i/n"
};
// "i/n" (0-based i); throws naming `what` (the option) for anything else.
ShardId parse_shard(const std::string& text, const std::string& what = "--shard");

// The images of one shard: [begin, end) of the test list (after --limit),
// batches [first_batch, first_batch + batches) of the whole run.
struct ShardRange {
  size_t begin = 0, end = 0, first_batch = 0, batches = 0;
};
// Shard i gets batches floor(i*K/n) .. floor((i+1)*K/n) of the K batches of
// `batch` images: contiguous, in order, sizes differing by at most one batch.
// More shards than batches is an error (an empty shard is almost always a
// mistake in the job's size, and would leave a node idle).
ShardRange shard_range(size_t images, int batch, ShardId id);

// FNV-1a (64 bit) of a file's bytes as 16 hex digits; names the file when it
// cannot be read.
std::string file_digest(const std::string& path);
// What makes two shards parts of the same run: engine version, category,
// layout, the test list after --limit (paths, types, labels, masks), the
// settings and `identity` (the CLI: the model's and features' digests).
std::string eval_fingerprint(const std::string& category, const std::string& layout,
                             const std::vector<Sample>& samples, const std::string& settings_json,
                             const std::string& identity);

struct ShardJob {
  ShardId shard;
  // 0: the whole protocol on the shard; with the dataset mask scope and more
  // than one shard: 1, round 1 only, or 2, round 2 with `mask_range`.
  int pass = 0;
  std::string mask_range;  // pass 2: the mask_range.json of the pass-1 merge
  std::string identity;    // into the fingerprint
  std::string extra_json;  // report members passed on to the merged report.json
  bool panels = true;      // OUT/panels/<type>_<stem>.png, one colour scale per shard
  // The panels' decision threshold and its source (PanelOptions, engine/eval/evaluate.h).
  float image_threshold = std::numeric_limits<float>::quiet_NaN();
  std::string threshold_source;
};

std::string part_file_name(ShardId id);    // part-<i>-of-<n>.safetensors
std::string round1_file_name(ShardId id);  // round1-<i>-of-<n>.safetensors

struct ShardOutcome {
  std::string path;  // the file written
  ShardRange range;
  size_t total_images = 0;
  double seconds = 0;
};
// Evaluates the shard of `ds` and writes its file into out_dir (created).
// Throws for a bad shard (i >= n, n above the batch count), a pass that does
// not fit the settings, or (pass 2) a mask range or pass-1 file of another run.
ShardOutcome evaluate_shard(const UNet& model, const ResNetFeatures* features, const Dataset& ds,
                            const EvalSettings& settings, const ShardJob& job, const std::string& out_dir,
                            const EvalProgressFn& progress = {});

// The part files of `inputs`: a file is taken as is, a folder contributes its
// files named <prefix>-<i>-of-<n>.safetensors (prefix "part" or "round1").
std::vector<std::string> find_part_files(const std::vector<std::string>& inputs, const std::string& prefix);

// The parts in `inputs` (folders or part files) as one evaluation: each shard
// 0..n-1 exactly once, one fingerprint, contiguous ranges covering the list;
// maps, scores and samples concatenated in order and the metrics computed
// over them. result.seconds is the sum over the shards.
struct MergedEval {
  EvalResult result;
  std::string settings_json, extra_json;  // as shard 0 recorded them
  int shards = 0;
  std::string note;  // non-empty when the parts differ in device or CPU thread count
};
MergedEval merge_parts(const std::vector<std::string>& inputs);

// The min/max of all round-1 maps of a run, from its pass-1 files.
struct MaskRange {
  float min = 0.f, max = 0.f;
  std::string fingerprint;
  int shards = 0;
  size_t images = 0;
  double seconds = 0;  // pass 1 over all shards
};
MaskRange merge_round1(const std::vector<std::string>& inputs);
// JSON; min/max printed with 9 significant digits, which read back as the
// same floats.
void write_mask_range(const MaskRange& r, const std::string& path);
MaskRange read_mask_range(const std::string& path);

}  // namespace mdps
