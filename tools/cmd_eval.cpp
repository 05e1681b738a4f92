// `mdps eval`: the whole protocol over an MVTec AD / BTAD test set (or a
// folder of such categories), the metrics, and the report files.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/trace_flag.h"
#include "tools/eval_flags.h"
#include "tools/eval_shard.h"
#include "engine/core/json_mini.h"
#include "engine/core/file_checks.h"
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct EvalArgs {
  cli::SettingFlags flags;
  cli::ShardFlags shard;
  std::string model, features, dataset, out, device = "cpu", precision = "fp32", trace, dump;
  int threads = 0;
  bool no_panels = false, quiet = false;
};

EvalResult eval_category(const EvalArgs& a, const cli::DetectorFiles& d, const std::string& root,
                         const std::string& out_dir) {
  const UNet& net = *d.net;
  Dataset ds = read_dataset(root);
  std::string name = fs::path(root).filename().string();
  EvalSettings s;
  std::string preset = a.flags.build(s, ds.layout + "/" + name, d.base_settings());
  std::unique_ptr<ResNetFeatures> fe = d.load_features(s);
  s.dump_intermediates = a.dump;
  if (!a.quiet)
    std::fprintf(stderr, "mdps eval: %s (%s layout)%s%s, %s\n", root.c_str(), ds.layout.c_str(),
                 preset.empty() ? "" : ", preset ", preset.c_str(),
                 fe ? (d.features_path.empty() ? "the bundle's ResNet features" : "ResNet features")
                    : "pixel term only (no --features)");
  const std::string features = d.features_source();
  std::string extra = cat("\"model\": ", json::quote(a.model), ", \"bundle\": ", d.bundle ? "true" : "false",
                          ", \"features\": ", features.empty() ? std::string("null") : json::quote(features),
                          ", \"dataset\": ", json::quote(root), ", \"preset\": ",
                          preset.empty() ? std::string("null") : json::quote(preset), ", \"device\": ",
                          json::quote(net.backend().name()));
  if (a.shard.sharded()) {
    // Parts of one run share the model and features bytes, not just their paths.
    std::string identity = cat("model ", file_digest(a.model), " features ",
                               features.empty() ? std::string("none") : file_digest(features));
    cli::run_eval_shard(a.shard, net, fe.get(), ds, s, identity, extra, out_dir, !a.no_panels, a.quiet);
    return {};  // a shard has no metrics; only a single category root gets here
  }
  EvalResult r = evaluate(net, fe.get(), ds, s, a.no_panels ? "" : (fs::path(out_dir) / "panels").string(),
                          cli::progress_line(name, a.quiet));
  write_eval_report(r, s, out_dir, extra);
  std::printf("%s", format_eval_table(r).c_str());
  std::printf("report: %s\n", (fs::path(out_dir) / "report.json").string().c_str());
  if (!a.no_panels) std::printf("panels: %s\n", (fs::path(out_dir) / "panels").string().c_str());
  std::fflush(stdout);
  return r;
}

void run_eval(const EvalArgs& a) {
  if (a.shard.merging()) {
    bool others = !a.model.empty() || !a.features.empty() || !a.dataset.empty() || !a.flags.preset.empty();
    for (const auto& [key, opt] : a.flags.options) others = others || opt->count() > 0;
    MDPS_CHECK(!others, "--merge takes only the parts, --out and --pass 1: the settings, model and data set come from "
               "the parts");
    cli::run_eval_merge(a.shard, a.out);
    return;
  }
  MDPS_USAGE_CHECK(!a.model.empty(), "--model is required (except with --merge)");
  MDPS_USAGE_CHECK(!a.dataset.empty(), "--dataset is required (except with --merge)");
  Backend& be = backend_by_name(a.device, parse_precision(a.precision));
  if (a.threads > 0) be.set_threads(a.threads);
  cli::DetectorFiles d = cli::open_detector(a.model, a.features, be);
  if (d.has_features()) {
    // Fail on a bad features file before any sampling starts.
    EvalSettings s;
    a.flags.build(s, "", d.base_settings());
    d.load_features(s);
  }
  MDPS_CHECK(a.dump.empty() || !a.shard.sharded(), "--dump-intermediates takes a whole run, not --shard or --pass");
  if (!a.dump.empty()) {
    // Fail before the (long) sampling, not when the file is written at the end.
    fs::path dir = fs::path(a.dump).parent_path();
    MDPS_CHECK(dir.empty() || fs::is_directory(dir), "--dump-intermediates '", a.dump, "': the folder '",
               dir.string(), "' does not exist");
  }
  if (is_category_root(a.dataset)) {
    eval_category(a, d, a.dataset, a.out);
    return;
  }
  MDPS_CHECK(a.dump.empty(), "--dump-intermediates '", a.dump, "': takes one category root, not the folder of ",
             "categories '", a.dataset, "'");
  std::vector<std::string> cats = list_categories(a.dataset);
  MDPS_CHECK(!cats.empty(), "--dataset '", a.dataset,
             "': neither a category (train/good or train/ok) nor a folder of categories");
  MDPS_CHECK(!a.shard.sharded(), "--dataset '", a.dataset,
             "': --shard and --pass take one category root (run one job per category)");
  std::vector<EvalResult> results;
  for (const auto& c : cats) {
    results.push_back(eval_category(a, d, c, (fs::path(a.out) / fs::path(c).filename()).string()));
    std::printf("\n");
  }
  std::string table = write_eval_summary(results, a.out);
  std::printf("%s", table.c_str());
  std::printf("summary: %s\n", (fs::path(a.out) / "summary.json").string().c_str());
}

cli::Registrar reg("eval", 50, [](CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* c = app.add_subcommand("eval", "Evaluate on an MVTec AD / BTAD test set: maps, scores, AUROC, AUPRO, F1");
  c->add_option("--model", a->model,
                "U-Net model or checkpoint, or a detector bundle (its settings replace the category's preset); "
                "required except with --merge")
      ->check(CLI::ExistingFile);
  c->add_option("--features", a->features,
                "ResNet weights (.safetensors); a bundle brings its own; without either the map is the pixel term only")
      ->check(CLI::ExistingFile);
  c->add_option("--dataset", a->dataset,
                "category root (MVTec AD / BTAD layout) or a folder of categories; required except with --merge");
  c->add_option("--out", a->out,
                "output folder: report.json, images.csv, maps.safetensors, panels/ (with --shard: the part file)")
      ->required();
  a->flags.add_all(c, true);
  a->shard.add(c);
  cli::add_threads_option(c, a->threads);
  cli::add_image_limit_option(c);
  c->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  cli::add_precision_option(c, a->precision);
  c->add_flag("--no-panels", a->no_panels, "do not write the panel PNGs");
  c->add_option("--dump-intermediates", a->dump,
                "write every intermediate (inputs, noise, round-1 reconstructions and maps, masks, final "
                "reconstructions and maps) to this .safetensors file, for bench/pytorch_twin.py --protocol");
  c->add_flag("--quiet", a->quiet, "no progress line");
  cli::add_trace_option(c, a->trace);
  c->callback([a] {
    // Before the trace session starts: it writes its file even when the command fails.
    const fs::path out(a->out);
    check_distinct_files({{"--model", a->model}, {"--features", a->features}},
                         {{"--trace", a->trace}, {"--out", (out / "report.json").string()},
                          {"--out", (out / "images.csv").string()}, {"--out", (out / "maps.safetensors").string()}});
    trace::Session trace_session(a->trace);
    run_eval(*a);
    trace_session.finish();
  });
});

}  // namespace
}  // namespace mdps
