// `mdps eval`: the whole protocol over an MVTec AD / BTAD test set (or a
// folder of such categories), the metrics, and the report files.
#include "tools/command.h"
#include "tools/trace_flag.h"
#include "tools/eval_flags.h"
#include "engine/json_mini.h"
#include "engine/thread_pool.h"
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct EvalArgs {
  cli::SettingFlags flags;
  std::string model, features, dataset, out, device = "cpu", trace;
  int threads = 0;
  bool no_panels = false, quiet = false;
};

EvalResult eval_category(const EvalArgs& a, const UNet& net, const std::string& root, const std::string& out_dir) {
  Dataset ds = read_dataset(root);
  std::string name = fs::path(root).filename().string();
  EvalSettings s;
  std::string preset = a.flags.build(s, ds.layout + "/" + name);
  std::unique_ptr<ResNetFeatures> fe;
  if (!a.features.empty()) fe = load_features(a.features, s.map.layers, net.backend());
  if (!a.quiet)
    std::fprintf(stderr, "mdps eval: %s (%s layout)%s%s, %s\n", root.c_str(), ds.layout.c_str(),
                 preset.empty() ? "" : ", preset ", preset.c_str(),
                 fe ? "ResNet features" : "pixel term only (no --features)");
  EvalResult r = evaluate(net, fe.get(), ds, s, a.no_panels ? "" : (fs::path(out_dir) / "panels").string(),
                          cli::progress_line(name, a.quiet));
  std::string extra = cat("\"model\": ", json::quote(a.model), ", \"features\": ",
                          a.features.empty() ? std::string("null") : json::quote(a.features),
                          ", \"dataset\": ", json::quote(root), ", \"preset\": ",
                          preset.empty() ? std::string("null") : json::quote(preset), ", \"device\": ",
                          json::quote(net.backend().name()));
  write_eval_report(r, s, out_dir, extra);
  std::printf("%s", format_eval_table(r).c_str());
  std::printf("report: %s\n", (fs::path(out_dir) / "report.json").string().c_str());
  if (!a.no_panels) std::printf("panels: %s\n", (fs::path(out_dir) / "panels").string().c_str());
  std::fflush(stdout);
  return r;
}

void run_eval(const EvalArgs& a) {
  Backend& be = backend_by_name(a.device);
  if (a.threads > 0) be.set_threads(a.threads);
  auto net = load_unet(a.model, be);
  if (!a.features.empty()) {
    // Fail on a bad features file before any sampling starts.
    EvalSettings s;
    a.flags.build(s);
    load_features(a.features, s.map.layers, be);
  }
  if (is_category_root(a.dataset)) {
    eval_category(a, *net, a.dataset, a.out);
    return;
  }
  std::vector<std::string> cats = list_categories(a.dataset);
  MDPS_CHECK(!cats.empty(), "--dataset '", a.dataset,
             "': neither a category (train/good or train/ok) nor a folder of categories");
  std::vector<EvalResult> results;
  for (const auto& c : cats) {
    results.push_back(eval_category(a, *net, c, (fs::path(a.out) / fs::path(c).filename()).string()));
    std::printf("\n");
  }
  std::string table = write_eval_summary(results, a.out);
  std::printf("%s", table.c_str());
  std::printf("summary: %s\n", (fs::path(a.out) / "summary.json").string().c_str());
}

cli::Registrar reg("eval", 50, [](CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* c = app.add_subcommand("eval", "Evaluate on an MVTec AD / BTAD test set: maps, scores, AUROC, AUPRO, F1");
  c->add_option("--model", a->model, "U-Net model or checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  c->add_option("--features", a->features, "ResNet weights (.safetensors); without it the map is the pixel term only")
      ->check(CLI::ExistingFile);
  c->add_option("--dataset", a->dataset, "category root (MVTec AD / BTAD layout) or a folder of categories")
      ->required();
  c->add_option("--out", a->out, "output folder: report.json, images.csv, maps.safetensors, panels/")->required();
  a->flags.add_all(c, true);
  c->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  c->add_option("--device", a->device, "cpu, cuda or auto")->capture_default_str();
  c->add_flag("--no-panels", a->no_panels, "do not write the panel PNGs");
  c->add_flag("--quiet", a->quiet, "no progress line");
  cli::add_trace_option(c, a->trace);
  c->callback([a] {
    trace::Session trace_session(a->trace);
    run_eval(*a);
    trace_session.finish();
  });
});

}  // namespace
}  // namespace mdps
