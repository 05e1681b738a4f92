// `mdps eval`: the whole protocol over an MVTec AD / BTAD test set (or a
// folder of such categories), the metrics, and the report files.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/trace_flag.h"
#include "tools/eval_flags.h"
#include "engine/core/backend_registry.h"
#include "tools/eval_shard.h"
#include "engine/eval/calibrate.h"
#include "engine/core/json_mini.h"
#include "engine/core/file_checks.h"
#include "engine/eval/metrics.h"
#include "engine/eval/report_html.h"
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;

namespace mdps {
namespace {

struct EvalArgs {
  cli::SettingFlags flags;
  cli::ShardFlags shard;
  cli::DeviceFlags device;
  std::string model, features, dataset, out, trace, dump, normal;
  int repeat = 1, calib_images = 16;
  bool no_panels = false, quiet = false;
};

// The normal images an uncalibrated detector takes its statistics from
// (calibrated protocol): --normal, else `calib_images` of the data set's
// training images, evenly spaced in file order.
std::vector<std::string> calibration_images(const EvalArgs& a, const Dataset& ds, std::string& source) {
  if (!a.normal.empty()) {
    source = a.normal;
    return normal_images(a.normal);
  }
  MDPS_CHECK(!ds.train.empty(), "--dataset ", ds.root, ": no training images to calibrate on (give --normal DIR)");
  std::vector<std::string> out;
  for (size_t i : evenly_spaced(ds.train.size(), size_t(a.calib_images))) out.push_back(ds.train[i]);
  source = cat(ds.root, "/train (training images: the statistics may be optimistic; give --normal with held-out ones)");
  return out;
}

// mean and sample standard deviation (n - 1; 0 for one value); NaN values propagate.
std::pair<double, double> mean_std(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  double q = 0;
  for (double x : v) q += (x - m) * (x - m);
  return {m, v.size() > 1 ? std::sqrt(q / double(v.size() - 1)) : 0.0};
}

std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

EvalResult eval_category(const EvalArgs& a, const DetectorFiles& d, const std::string& root,
                         const std::string& out_dir) {
  const UNet& net = *d.net;
  Dataset ds = read_dataset(root);
  std::string name = fs::path(root).filename().string();
  EvalSettings s;
  std::string preset = a.flags.build(s, ds.layout + "/" + name, d.base_settings());
  if (d.bundle) s.normal = d.bundle->normal_stats();
  std::unique_ptr<ResNetFeatures> fe = d.load_features(s);
  s.dump_intermediates = a.dump;
  MDPS_CHECK(a.dump.empty() || s.protocol == Protocol::Authors, "--dump-intermediates '", a.dump,
             "': records the authors' protocol; add --protocol authors (this run is ", protocol_name(s.protocol), ")");
  if (!a.quiet)
    std::fprintf(stderr, "mdps eval: %s (%s layout)%s%s, %s, %s protocol\n", root.c_str(), ds.layout.c_str(),
                 preset.empty() ? "" : ", preset ", preset.c_str(),
                 fe ? (d.features_path.empty() ? "the bundle's ResNet features" : "ResNet features")
                    : "pixel term only (no --features)",
                 protocol_name(s.protocol));
  const std::string features = d.features_source();
  std::string extra = cat("\"model\": ", json::quote(a.model), ", \"bundle\": ", d.bundle ? "true" : "false",
                          ", \"features\": ", features.empty() ? std::string("null") : json::quote(features),
                          ", \"dataset\": ", json::quote(root), ", \"preset\": ",
                          preset.empty() ? std::string("null") : json::quote(preset), ", \"device\": ",
                          json::quote(net.backend().name()));
  // Calibrated protocol without the bundle's statistics: take them from
  // normal images first (again for every seed of --repeat: they are part of
  // the detector the seed makes).
  const bool calibrate_here = s.protocol == Protocol::Calibrated && !s.normal;
  std::string calib_source;
  std::vector<std::string> calib_files;
  if (calibrate_here) calib_files = calibration_images(a, ds, calib_source);
  MDPS_CHECK(a.normal.empty() || calibrate_here, "--normal: the detector ",
             s.protocol == Protocol::Authors ? "runs the authors' protocol, which takes no normal statistics"
                                             : "already carries normal statistics (the bundle's)");
  double calib_seconds = 0;
  // The panels' decision: the bundle's image threshold, else the one this
  // run's calibration takes (of the first seed); none without either.
  PanelOptions panels;
  if (!a.no_panels) panels.dir = (fs::path(out_dir) / "panels").string();
  if (d.bundle && d.bundle->thresholds().has_image()) {
    panels.image_threshold = d.bundle->thresholds().image;
    panels.threshold_source = "bundle";
  }
  auto calibrate = [&](EvalSettings& st) {
    if (!calibrate_here) return;
    if (!a.quiet)
      std::fprintf(stderr, "mdps eval: calibrating on %zu normal images (%s), seed %llu\n", calib_files.size(),
                   calib_source.c_str(), (unsigned long long)st.seed);
    Calibration c = calibrate_quantile(net, fe.get(), calib_files, st, 0.99, 0.999,
                                       cli::progress_line(name + " calibration", a.quiet));
    st.normal = c.normal;
    calib_seconds += c.seconds;
    if (std::isnan(panels.image_threshold) && c.thresholds.has_image()) {
      panels.image_threshold = c.thresholds.image;
      panels.threshold_source = "calibration";
    }
  };
  auto calibration_json = [&](const EvalSettings& st) {
    if (st.protocol == Protocol::Authors) return std::string("null");
    if (!calibrate_here)
      return cat("{\"source\": ", st.normal ? "\"bundle\"" : "null", ", \"stats\": ",
                 st.normal ? st.normal->to_json() : std::string("null"), "}");
    return cat("{\"source\": ", json::quote(calib_source), ", \"images\": ", calib_files.size(),
               ", \"seconds\": ", jnum(calib_seconds), ", \"stats\": ", st.normal->to_json(), "}");
  };
  if (a.shard.sharded()) {
    MDPS_CHECK(a.repeat == 1, "--repeat runs whole evaluations; it does not combine with --shard");
    calibrate(s);
    // Parts of one run share the model and features bytes, not just their paths.
    std::string identity = cat("model ", file_digest(a.model), " features ",
                               features.empty() ? std::string("none") : file_digest(features));
    cli::run_eval_shard(a.shard, net, fe.get(), ds, s, identity, extra, out_dir, panels, a.quiet);
    return {};  // a shard has no metrics; only a single category root gets here
  }
  std::vector<EvalResult> runs;
  std::vector<EvalSettings> run_settings;  // each seed's, with its calibration
  std::vector<uint64_t> seeds;
  EvalSettings first;
  std::string first_calibration;
  for (int r = 0; r < a.repeat; ++r) {
    EvalSettings st = s;
    st.seed = s.seed + uint64_t(r);
    calibrate(st);
    runs.push_back(evaluate(net, fe.get(), ds, st, r == 0 ? panels : PanelOptions{},
                            cli::progress_line(a.repeat > 1 ? cat(name, " seed ", st.seed) : name, a.quiet)));
    seeds.push_back(st.seed);
    run_settings.push_back(st);
    if (r == 0) {
      first = st;
      first_calibration = calibration_json(st);
    }
  }
  EvalResult& r = runs.front();
  extra += cat(", \"protocol\": \"", protocol_name(s.protocol), "\", \"calibration\": ", first_calibration);
  // Every image score kind on the same maps, so the kinds can be compared
  // (normal-z where the run has per-pixel normal statistics).
  std::vector<ImageScoreKind> kinds = {ImageScoreKind::Authors, ImageScoreKind::TopKMean, ImageScoreKind::Max,
                                       ImageScoreKind::TopFraction};
  if (std::all_of(run_settings.begin(), run_settings.end(), [](const EvalSettings& st) { return st.pixel_normals(); }))
    kinds.push_back(ImageScoreKind::NormalZ);
  const EvalSettings sized = first.at_size(net.config().image_size);
  size_t run_index = 0;
  auto auroc_by_kind = [&](const EvalResult& x) {
    std::vector<int> labels;
    for (const auto& smp : x.samples) labels.push_back(smp.label);
    const std::optional<PixelNormals> normals = normals_for_scoring(run_settings[run_index++], x.H);
    std::vector<double> out;
    for (ImageScoreKind k : kinds) {
      std::vector<float> sc = image_scores(Tensor::from_vector({int64_t(x.samples.size()), 1, x.H, x.W}, x.maps), k,
                                           sized.score_k, sized.score_fraction, normals ? &*normals : nullptr);
      double auc = NAN;
      try {
        auc = roc_auc(std::vector<double>(sc.begin(), sc.end()), labels);
      } catch (const Error&) {
      }
      out.push_back(auc);
    }
    return out;
  };
  std::vector<std::vector<double>> by_kind;  // [run][kind]
  for (const auto& x : runs) by_kind.push_back(auroc_by_kind(x));
  {
    std::string js;
    for (size_t k = 0; k < kinds.size(); ++k) {
      std::vector<double> v;
      std::string vals;
      for (const auto& row : by_kind) {
        v.push_back(row[k]);
        vals += cat(vals.empty() ? "" : ", ", jnum(row[k]));
      }
      auto [mean, sd] = mean_std(v);
      js += cat(js.empty() ? "" : ", ", "\"", image_score_name(kinds[k]), "\": {\"mean\": ", jnum(mean),
                ", \"std\": ", jnum(sd), ", \"values\": [", vals, "]}");
    }
    extra += cat(", \"image_auroc_by_score\": {", js, "}");
  }
  std::string table_extra;
  if (a.repeat > 1) {
    std::string js = "\"seeds\": [";
    for (size_t i = 0; i < seeds.size(); ++i) js += cat(i ? ", " : "", seeds[i]);
    js += "]";
    using M = double EvalMetrics::*;
    const std::pair<const char*, M> metrics[] = {{"image_auroc", &EvalMetrics::image_auroc},
                                                 {"pixel_auroc", &EvalMetrics::pixel_auroc},
                                                 {"aupro", &EvalMetrics::aupro},
                                                 {"image_f1_max", &EvalMetrics::image_f1_max},
                                                 {"pixel_f1_max", &EvalMetrics::pixel_f1_max},
                                                 {"image_ap", &EvalMetrics::image_ap},
                                                 {"pixel_ap", &EvalMetrics::pixel_ap}};
    char buf[160];
    for (const auto& [key, m] : metrics) {
      std::vector<double> v;
      std::string vals;
      for (const auto& x : runs) {
        v.push_back(x.overall.*m);
        vals += cat(vals.empty() ? "" : ", ", jnum(x.overall.*m));
      }
      auto [mean, sd] = mean_std(v);
      js += cat(", \"", key, "\": {\"mean\": ", jnum(mean), ", \"std\": ", jnum(sd), ", \"values\": [", vals, "]}");
      std::snprintf(buf, sizeof buf, "%-14s mean %7.2f  std %6.2f  (%zu seeds)\n", key, 100.0 * mean, 100.0 * sd,
                    runs.size());
      table_extra += buf;
    }
    // Item 3 of issue 18 asks for less variance per image: how far an image's
    // score moves between seeds, against how far the images' scores lie apart.
    // A ratio near 1 means the seed decides the ranking; AUROC spreads alone
    // cannot show this on a small set.
    {
      const size_t n = runs.front().scores.size();
      std::vector<double> seed_sd, mean_score;
      for (size_t i = 0; i < n; ++i) {
        std::vector<double> v;
        for (const auto& x : runs) v.push_back(x.scores.at(i));
        auto [m, sd] = mean_std(v);
        seed_sd.push_back(sd);
        mean_score.push_back(m);
      }
      const double within = mean_std(seed_sd).first, between = mean_std(mean_score).second;
      js += cat(", \"image_score_spread\": {\"seed_std_mean\": ", jnum(within), ", \"between_images_std\": ",
                jnum(between), ", \"ratio\": ", jnum(between > 0 ? within / between : NAN), "}");
      std::snprintf(buf, sizeof buf, "%-14s seed std %.3g / between-image std %.3g = %.3f\n", "image score", within,
                    between, between > 0 ? within / between : NAN);
      table_extra += buf;
    }
    std::vector<double> spi;
    for (const auto& x : runs) spi.push_back(x.seconds_per_image);
    auto [mean, sd] = mean_std(spi);
    js += cat(", \"seconds_per_image\": {\"mean\": ", jnum(mean), ", \"std\": ", jnum(sd), "}");
    extra += cat(", \"repeat\": {", js, "}");
  }
  for (const auto& w : r.warnings) std::fprintf(stderr, "mdps eval: warning: %s\n", w.c_str());
  const std::string report = write_eval_report(r, first.at_size(net.config().image_size), out_dir, extra);
  write_eval_report_html(r, report, out_dir, panels.dir);
  std::printf("%s", format_eval_table(r).c_str());
  if (!table_extra.empty())
    std::printf("over %d seeds from %llu (the table above: seed %llu):\n%s", a.repeat,
                (unsigned long long)s.seed, (unsigned long long)s.seed, table_extra.c_str());
  std::printf("report: %s\n", (fs::path(out_dir) / "report.json").string().c_str());
  std::printf("html: %s\n", (fs::path(out_dir) / "report.html").string().c_str());
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
  Backend& be = a.device.backend();
  DetectorFiles d = open_detector(a.model, a.features, be);
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
                "output folder: report.json, report.html, images.csv, maps.safetensors, panels/ (with --shard: "
                "the part file)")
      ->required();
  a->flags.add_all(c, true);
  c->add_option("--normal", a->normal,
                "calibrated protocol, a model without normal statistics: calibrate on these held-out normal images "
                "(a folder, or a category root's test/good) before evaluating (default: --calib-images of the "
                "data set's training images)")
      ->check(CLI::ExistingDirectory);
  c->add_option("--calib-images", a->calib_images,
                "calibrated protocol without --normal or a calibrated bundle: this many training images, evenly "
                "spaced")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_option("--repeat", a->repeat,
                "run N seeds (--seed, --seed+1, ...) and report each metric's mean and standard deviation "
                "(report.json `repeat`); files and panels are seed --seed's")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  a->shard.add(c);
  a->device.add(c);
  cli::add_image_limit_option(c);
  c->add_flag("--no-panels", a->no_panels,
              "do not write the panel PNGs (OUT/panels/<type>_<stem>.png: image, reconstruction, ground truth, map "
              "enlarged, with type, file, score and decision); report.html then shows none");
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
                          {"--out", (out / "images.csv").string()}, {"--out", (out / "maps.safetensors").string()},
                          {"--out", (out / "report.html").string()}});
    trace::Session trace_session(a->trace);
    run_eval(*a);
    trace_session.finish();
  });
});

}  // namespace
}  // namespace mdps
