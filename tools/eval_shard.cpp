#include "tools/eval_shard.h"
#include "tools/eval_flags.h"
#include "engine/eval/report_html.h"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps::cli {

void ShardFlags::add(CLI::App* c) {
  c->add_option("--shard", shard,
                "evaluate shard I of N (I/N, 0-based): a contiguous run of whole batches; writes "
                "OUT/part-I-of-N.safetensors for --merge (docs/scale-out.md)");
  c->add_option("--shard-index-env", index_env,
                "take the shard index I from this environment variable (SLURM_ARRAY_TASK_ID, "
                "JOB_COMPLETION_INDEX); needs --shard-count");
  c->add_option("--shard-count", count, "the number of shards N with --shard-index-env");
  c->add_option("--pass", pass,
                "with --mask-scope dataset over shards: 1 = round 1 only (OUT/round1-I-of-N.safetensors), 2 = the "
                "rest with --mask-range; with --merge: 1 merges pass-1 files into OUT/mask_range.json");
  c->add_option("--mask-range", mask_range, "pass 2: the mask_range.json of `mdps eval --merge --pass 1`");
  c->add_option("--merge", merge,
                "combine the parts in these folders (or part files) into OUT's report.json, images.csv and "
                "maps.safetensors");
}

ShardId ShardFlags::resolve() const {
  MDPS_CHECK(shard.empty() || (index_env.empty() && count == 0),
             "--shard I/N and --shard-index-env/--shard-count are alternatives: give one");
  if (!shard.empty()) return parse_shard(shard);
  if (index_env.empty() && count == 0) return ShardId{0, 1};  // --pass alone: one shard
  MDPS_CHECK(!index_env.empty() && count >= 1, "--shard-index-env and --shard-count N (N >= 1) go together");
  const char* v = std::getenv(index_env.c_str());
  MDPS_CHECK(v && *v, "--shard-index-env ", index_env, ": the environment variable is not set");
  return parse_shard(cat(v, "/", count), cat("--shard-index-env ", index_env, " (= '", v, "')"));
}

void run_eval_shard(const ShardFlags& f, const UNet& net, const ResNetFeatures* features, const Dataset& ds,
                    const EvalSettings& s, const std::string& identity, const std::string& extra,
                    const std::string& out_dir, const PanelOptions& panels, bool quiet) {
  ShardJob job;
  job.shard = f.resolve();
  job.pass = f.pass;
  job.mask_range = f.mask_range;
  job.identity = identity;
  job.extra_json = extra;
  job.panels = !panels.dir.empty() && job.pass != 1;  // pass 1 has no final maps to show
  job.image_threshold = panels.image_threshold;
  job.threshold_source = panels.threshold_source;
  std::string label = cat(fs::path(ds.root).filename().string(), " shard ", job.shard.str());
  ShardOutcome o = evaluate_shard(net, features, ds, s, job, out_dir, progress_line(label, quiet));
  std::printf("shard %s%s: images %zu..%zu of %zu (batches %zu..%zu), %.1f s\n", job.shard.str().c_str(),
              job.pass ? cat(" pass ", job.pass).c_str() : "", o.range.begin, o.range.end, o.total_images,
              o.range.first_batch, o.range.first_batch + o.range.batches, o.seconds);
  std::printf("%s: %s\n", job.pass == 1 ? "round-1 maps" : "part", o.path.c_str());
  std::fflush(stdout);
}

void run_eval_merge(const ShardFlags& f, const std::string& out_dir) {
  MDPS_CHECK(f.pass == 0 || f.pass == 1, "--merge --pass ", f.pass, ": only pass-1 files (--pass 1) and final parts "
             "(no --pass) are merged");
  MDPS_CHECK(f.shard.empty() && f.index_env.empty() && f.count == 0 && f.mask_range.empty(),
             "--merge takes no --shard, --shard-index-env, --shard-count or --mask-range");
  if (f.pass == 1) {
    MaskRange r = merge_round1(f.merge);
    const std::string path = (fs::path(out_dir) / "mask_range.json").string();
    write_mask_range(r, path);
    std::printf("mask range: min %.9g, max %.9g over the round-1 maps of %zu images in %d shards\n", double(r.min),
                double(r.max), r.images, r.shards);
    std::printf("mask range: %s (give it to --pass 2 --mask-range)\n", path.c_str());
    std::fflush(stdout);
    return;
  }
  MergedEval m = merge_parts(f.merge);
  if (!m.note.empty()) std::fprintf(stderr, "mdps eval: note: %s\n", m.note.c_str());
  const std::string report = write_eval_report(m.result, m.settings_json, out_dir, m.extra_json);
  const fs::path panels = fs::path(out_dir) / "panels";
  write_eval_report_html(m.result, report, out_dir, fs::is_directory(panels) ? panels.string() : "");
  std::printf("%s", format_eval_table(m.result).c_str());
  std::printf("merged %d shards; report: %s\n", m.shards, (fs::path(out_dir) / "report.json").string().c_str());
  std::printf("html: %s\n", (fs::path(out_dir) / "report.html").string().c_str());
  std::fflush(stdout);
}

}  // namespace mdps::cli
