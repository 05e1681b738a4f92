// The scale-out flags of `mdps eval` (engine/eval/shard.h, docs/scale-out.md):
// --shard / --shard-index-env + --shard-count, --pass, --mask-range, and the
// --merge mode that combines the parts.
#pragma once
#include "engine/eval/shard.h"
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace mdps::cli {

struct ShardFlags {
  std::string shard;      // "i/n"
  std::string index_env;  // the variable holding i (job arrays)
  int count = 0;          // n with index_env
  int pass = 0;           // 1 or 2 with --mask-scope dataset
  std::string mask_range;
  std::vector<std::string> merge;

  void add(CLI::App* c);
  bool merging() const { return !merge.empty(); }
  // Whether this run evaluates one shard (any shard flag given).
  bool sharded() const {
    return !shard.empty() || !index_env.empty() || count > 0 || pass != 0 || !mask_range.empty();
  }
  // The shard from --shard or from the environment; 0/1 with --pass alone.
  ShardId resolve() const;
};

// One shard of a category: evaluates it and writes its part (or pass-1 file)
// into out_dir; `identity` goes into the fingerprint, `extra` into the part
// for the merged report.
void run_eval_shard(const ShardFlags& f, const UNet& net, const ResNetFeatures* features, const Dataset& ds,
                    const EvalSettings& s, const std::string& identity, const std::string& extra,
                    const std::string& out_dir, const PanelOptions& panels, bool quiet);

// `mdps eval --merge DIR... --out DIR [--pass 1]`: report.json etc. and
// report.html (with the panels found in OUT/panels, if the shards wrote there).
void run_eval_merge(const ShardFlags& f, const std::string& out_dir);

}  // namespace mdps::cli
