// `mdps score`: anomaly maps and image scores for individual images, no
// ground truth needed, through the public library (include/mdps/mdps.h):
// the command reads files and writes files, the Detector does the rest. Anomalous images are a result, not an error. With
// thresholds (from a detector bundle or the flags) each image also gets an
// OK/NG decision and a binary defect mask.
//
// Streaming: the images are listed, then decoded, scored and written one
// batch at a time, so memory is bounded by --batch, not by the number of
// images; rows go to scores.csv (and --jsonl) as each batch finishes
// (tools/score_log.h says why those two are appended rather than renamed
// into place), and --resume carries on a run from its rows.
#include "tools/command.h"
#include "tools/detector_files.h"
#include "tools/eval_flags.h"
#include "tools/score_images.h"
#include "tools/score_log.h"
#include "tools/score_run.h"
#include "engine/core/atomic_file.h"
#include "engine/core/json_mini.h"
#include "include/mdps/mdps.h"
#include "engine/eval/colormap.h"
#include "engine/io/image.h"
#include "engine/eval/score_files.h"
#include "engine/core/csv.h"
#include "engine/core/file_checks.h"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

namespace fs = std::filesystem;

namespace mdps {
namespace {

using cli::AppendLog;
using cli::CsvLog;
using cli::JsonlLog;
using cli::read_csv_log;
using cli::read_jsonl_log;

struct ScoreArgs {
  cli::SettingFlags flags;
  cli::ThresholdFlags thresholds;
  cli::DeviceFlags device;
  std::string model, features, out;
  std::vector<std::string> images;
  std::string jsonl;
  std::vector<float> heat_range;
  bool quiet = false, resume = false, recursive = false, no_images = false;
};

// The command line's options as the library's DetectorOptions: the same
// settings keys, so `mdps score` is the public Detector plus files.
DetectorOptions detector_options(const ScoreArgs& a) {
  DetectorOptions o;
  o.unet_path = a.model;
  o.features_path = a.features;
  o.preset = a.flags.preset;
  for (const auto& [key, opt] : a.flags.options)
    if (opt->count() > 0) o.overrides.emplace_back(key, a.flags.values.at(key));
  o.device = a.device.device;
  o.precision = a.device.precision;
  o.threads = a.device.threads;
  if (a.thresholds.image_opt->count()) o.image_threshold = a.thresholds.image;
  if (a.thresholds.pixel_opt->count()) o.pixel_threshold = a.thresholds.pixel;
  MDPS_USAGE_CHECK(!a.thresholds.image_opt->count() || std::isfinite(a.thresholds.image), "--image-threshold: ",
                   a.thresholds.image, " is not finite");
  MDPS_USAGE_CHECK(!a.thresholds.pixel_opt->count() || std::isfinite(a.thresholds.pixel), "--pixel-threshold: ",
                   a.thresholds.pixel, " is not finite");
  return o;
}

// An input image as decoded (8-bit RGB) at its own size, for the pictures
// written beside its score.
Image rgb8_image(const std::vector<uint8_t>& rgb, int w, int h) {
  Image img(w, h, 3);
  for (size_t k = 0; k < img.pixels.size(); ++k) img.pixels[k] = rgb[k];
  return img;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) s += (k ? sep : "") + v[k];
  return s;
}

std::string score_text(float v) {
  char sc[32];
  std::snprintf(sc, sizeof sc, "%.9g", double(v));
  return sc;
}

// One image's line of the --jsonl log. The keys are a contract with
// pipelines: file, score, decision ("OK"/"NG", null without an image
// threshold), map (the heat map's path, null with --no-images).
std::string jsonl_line(const std::string& file, const std::string& score, const std::string& decision,
                       const std::string& map) {
  const bool finite = std::isfinite(std::strtod(score.c_str(), nullptr));
  return cat("{\"file\": ", json::quote(file), ", \"score\": ", finite ? score : std::string("null"),
             ", \"decision\": ", decision.empty() ? std::string("null") : json::quote(decision),
             ", \"map\": ", map.empty() ? std::string("null") : json::quote(map), "}\n");
}

// The heat map's colour scale of one image: --heat-range, else [0, 2 Y]
// with a pixel threshold Y > 0 (the threshold mid-scale), else the image's
// own range. Never the range of other images: the pictures are written as
// each batch finishes, before the other images are scored.
std::pair<float, float> heat_scale(const ScoreArgs& a, const ScoreResult& r, float pixel_threshold) {
  if (a.heat_range.size() == 2) return {a.heat_range[0], a.heat_range[1]};
  if (pixel_threshold > 0.f) return {0.f, 2.f * pixel_threshold};
  auto [lo, hi] = std::minmax_element(r.heat_map.begin(), r.heat_map.end());
  return {*lo, *hi};
}

// What --resume keeps: the rows of an earlier run's scores.csv that belong to
// images of this list (each row matches one occurrence of its file), and the
// images of the list they cover.
struct Resumed {
  std::vector<char> done;               // per input
  std::vector<std::vector<std::string>> row;  // per input: its CSV fields when done
  std::map<std::string, long> rows_of;  // file -> its rows in the CSV
  size_t stray = 0;                     // rows of files not in the list
  size_t csv_bytes = 0;
  bool has_header = false;              // else the file is empty or torn before its first "\n": a fresh start
};

Resumed read_resumed(const std::string& csv_path, const std::vector<std::string>& header,
                     const std::vector<ImageInput>& inputs) {
  Resumed r;
  r.done.assign(inputs.size(), 0);
  r.row.resize(inputs.size());
  CsvLog log = read_csv_log(csv_path);
  r.csv_bytes = log.complete_bytes;
  if (log.records.empty()) return r;
  r.has_header = true;
  MDPS_CHECK(log.records[0] == header, "--resume: '", csv_path, "' has the columns ", join(log.records[0], ","),
             " but this run writes ", join(header, ","),
             " (a different image threshold?): resume with the same options, or run without --resume");
  std::map<std::string, std::vector<size_t>> rows;  // file -> its rows, in order
  for (size_t k = 1; k < log.records.size(); ++k) {
    MDPS_CHECK(log.records[k].size() == header.size(), "--resume: '", csv_path, "' record ", k + 1, " has ",
               log.records[k].size(), " fields, not ", header.size());
    rows[log.records[k][0]].push_back(k);
    ++r.rows_of[log.records[k][0]];
  }
  std::map<std::string, size_t> used;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto it = rows.find(inputs[i].path);
    if (it == rows.end()) continue;
    size_t& u = used[inputs[i].path];
    if (u >= it->second.size()) continue;
    r.done[i] = 1;
    r.row[i] = std::move(log.records[it->second[u++]]);
  }
  for (const auto& [file, ks] : rows) {
    auto u = used.find(file);
    r.stray += ks.size() - (u == used.end() ? 0 : u->second);
  }
  return r;
}

void run_score(const ScoreArgs& a) {
  MDPS_USAGE_CHECK(a.heat_range.empty() || (a.heat_range.size() == 2 && std::isfinite(a.heat_range[0]) &&
                                            std::isfinite(a.heat_range[1]) && a.heat_range[0] < a.heat_range[1]),
                   "--heat-range: give LO,HI, two finite numbers with LO < HI");
  const std::vector<ImageInput> inputs = list_image_inputs(a.images, a.recursive);
  MDPS_CHECK(!inputs.empty(), "--images: no images given");
  const size_t N = inputs.size();
  const fs::path out(a.out);
  const std::string csv_path = (out / "scores.csv").string();
  const std::string record_path = (out / "score_run.json").string();  // tools/score_run.h
  // The output names (<subfolder>/<stem>; a stem met twice gets _1, _2, ...),
  // checked against every input before anything runs.
  std::vector<std::string> stems;
  {
    std::map<std::string, int> seen;
    for (const auto& in : inputs) {
      std::string stem = (fs::path(in.subdir) / fs::path(in.path).stem()).generic_string();
      if (seen[stem]++) stem += "_" + std::to_string(seen[stem] - 1);  // same name from two folders
      stems.push_back(stem);
    }
    std::vector<NamedPath> ins{{"--model", a.model}, {"--features", a.features}}, outs;
    for (const auto& in : inputs) ins.push_back({"--images", in.path});
    if (!a.no_images)
      for (const auto& stem : stems)
        for (const char* suffix : {"_heatmap.png", "_overlay.png", "_recon.png", "_mask.png"})
          outs.push_back({"--out", (out / (stem + suffix)).string()});
    outs.push_back({"--out", csv_path});
    outs.push_back({"--out", record_path});
    outs.push_back({"--jsonl", a.jsonl});
    check_distinct_files(ins, outs);
  }
  auto picture = [&](size_t i, const char* suffix) { return (out / (stems[i] + suffix)).string(); };

  Detector det(detector_options(a));
  const json::Value settings = json::parse(det.settings_json(), "the detector's settings");
  const size_t B = size_t(settings.find("batch")->number);
  const bool authors = settings.find("protocol")->str == "authors";
  const bool decide = !std::isnan(det.image_threshold());
  const std::vector<std::string> header =
      decide ? std::vector<std::string>{"file", "score", "decision"} : std::vector<std::string>{"file", "score"};

  const std::string run_record =
      cli::score_run_record(a.model, a.features, det.image_threshold(), det.pixel_threshold(), det.settings_json());
  bool write_record = true;  // after this run's first rows (tools/score_run.h says why then)

  AppendLog csv(csv_path, decide ? csv_row({"file", "score", "decision"}) : csv_row({"file", "score"}));
  std::unique_ptr<AppendLog> jsonl = a.jsonl.empty() ? nullptr : std::make_unique<AppendLog>(a.jsonl, "");
  Resumed res;
  res.done.assign(N, 0);
  size_t first_batch = 0, already = 0;
  if (a.resume && fs::exists(csv_path)) {
    res = read_resumed(csv_path, header, inputs);
    for (char d : res.done) already += size_t(d);
    if (authors) {
      // The authors' protocol couples the images of a batch and keys its
      // noise by the batch's place in the list: only an earlier run of this
      // list that stopped after whole batches can be carried on unchanged.
      size_t prefix = 0;
      while (prefix < N && res.done[prefix]) ++prefix;
      MDPS_CHECK(prefix == already && res.stray == 0 && (prefix % B == 0 || prefix == N), "--resume: '", csv_path,
                 "' holds ", already + res.stray, " rows that are not the first whole batches of --batch ", B,
                 " of these images; the authors' protocol couples the images of a batch, so scoring the rest "
                 "would not give the rows of one uninterrupted run: rerun without --resume, or use --protocol "
                 "calibrated (each image's score its own)");
      first_batch = prefix / B;
    }
    if (res.has_header) {
      if (fs::exists(record_path)) {
        cli::check_score_run(record_path, run_record);
        write_record = false;
      } else {
        std::fprintf(stderr,
                     "mdps score: warning: --resume: no '%s' beside the rows (a run of an older mdps): cannot check "
                     "that they come from this detector\n",
                     record_path.c_str());
      }
      csv.resume_after(res.csv_bytes);
    }
  }
  if (jsonl) {
    // Rows in scores.csv but not yet in the JSON Lines log (a run stopped
    // between the two appends, or one without --jsonl): written from the
    // CSV, the same text.
    std::string missing;
    std::map<std::string, long> unlogged = res.rows_of;  // file -> its CSV rows not yet in the JSONL log
    if (a.resume && fs::exists(a.jsonl)) {
      const JsonlLog jl = read_jsonl_log(a.jsonl);
      for (const auto& f : jl.files)
        MDPS_CHECK(--unlogged[f] >= 0, "--resume: '", a.jsonl, "' holds '", f, "' more often than '", csv_path,
                   "' does: the two are not the logs of one run; rerun without --resume");
      jsonl->resume_after(jl.complete_bytes);
    }
    for (size_t i = 0; i < N; ++i)
      if (res.done[i] && unlogged[inputs[i].path]-- > 0)
        missing += jsonl_line(inputs[i].path, res.row[i][1], decide ? res.row[i][2] : "",
                              a.no_images ? "" : picture(i, "_heatmap.png"));
    if (!missing.empty()) jsonl->append(missing);
  }
  std::vector<size_t> todo;
  for (size_t i = 0; i < N; ++i)
    if (!res.done[i]) todo.push_back(i);
  if (a.resume)
    std::printf("resume: %zu of %zu images already in %s, %zu to score\n", already, N, csv_path.c_str(),
                todo.size());

  // Batch by batch: decode, score, write the pictures, then the rows.
  const EvalProgressFn line = cli::progress_line("score", a.quiet);
  const auto t0 = std::chrono::steady_clock::now();
  const float pixel_threshold = det.pixel_threshold();
  int ng = 0;
  for (size_t b = 0; b * B < todo.size(); ++b) {
    const size_t begin = b * B, end = std::min(todo.size(), begin + B);
    std::vector<std::vector<uint8_t>> bytes(end - begin);
    std::vector<ImageView> views(end - begin);
    for (size_t j = 0; j < views.size(); ++j) {
      bytes[j] = load_image_rgb8(inputs[todo[begin + j]].path, views[j].width, views[j].height);
      views[j].channels = 3;
      views[j].pixels = bytes[j].data();
    }
    const std::vector<ScoreResult> results = det.score_batch(
        views,
        [&](size_t done, size_t, double) {
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (line) line(begin + done, todo.size(), secs, 0);
        },
        first_batch + b);
    std::string rows, lines;
    for (size_t j = 0; j < results.size(); ++j) {
      const size_t i = todo[begin + j];
      const ScoreResult& r = results[j];
      if (!a.no_images) {
        fs::create_directories(fs::path(picture(i, "")).parent_path());
        auto [lo, hi] = heat_scale(a, r, pixel_threshold);
        cli::write_score_images(out.string(), stems[i], rgb8_image(bytes[j], views[j].width, views[j].height), r,
                                lo, hi, pixel_threshold);
      }
      const std::string sc = score_text(r.image_score);
      const char* decision = r.anomalous ? "NG" : "OK";
      ng += decide && r.anomalous;
      rows += decide ? csv_row({inputs[i].path, sc, decision}) : csv_row({inputs[i].path, sc});
      if (jsonl) lines += jsonl_line(inputs[i].path, sc, decide ? decision : "", a.no_images ? "" : picture(i, "_heatmap.png"));
      std::printf("%s\t%s%s%s\n", inputs[i].path.c_str(), sc.c_str(), decide ? "\t" : "", decide ? decision : "");
    }
    if (b == 0 && !fs::exists(out)) fs::create_directories(out);
    csv.append(rows);
    if (write_record) {
      write_text_atomic(record_path, run_record);
      write_record = false;
    }
    if (jsonl) jsonl->append(lines);
    std::fflush(stdout);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (decide)
    std::printf("decisions: %d NG, %zu OK (image threshold %.9g)%s\n", ng, todo.size() - size_t(ng),
                double(det.image_threshold()), already ? " of the images scored now" : "");
  std::printf("scores: %s (%.2f s/image)\n", csv_path.c_str(), todo.empty() ? 0.0 : seconds / double(todo.size()));
}

cli::Registrar reg("score", 40, [](CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* c = app.add_subcommand("score", "Anomaly maps and image scores for images (heat map, overlay, reconstruction)");
  c->add_option("--model", a->model, "U-Net model or checkpoint, or a detector bundle (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--features", a->features,
                "ResNet weights (.safetensors); a bundle brings its own; without either the map is the pixel term only")
      ->check(CLI::ExistingFile);
  c->add_option("--images", a->images, "image files or folders of images")->required()->expected(1, -1);
  c->add_option("--out", a->out,
                "output folder: <stem>_heatmap.png, _overlay.png, _recon.png, _mask.png (with a pixel threshold), "
                "scores.csv; written batch by batch, a row appended as soon as its image's batch is done")
      ->required();
  c->add_flag("--recursive", a->recursive,
              "read folders at every depth (sorted as paths); an image in SUB/ of a folder has its pictures in "
              "OUT/SUB/");
  c->add_option("--jsonl", a->jsonl,
                "also write one JSON object a line per image, {\"file\", \"score\", \"decision\" (OK/NG or null), "
                "\"map\" (the heat map's path or null)}, appended batch by batch");
  c->add_flag("--resume", a->resume,
              "carry on an interrupted run: images already in OUT/scores.csv are skipped, the rest appended "
              "(with --protocol authors only after whole batches of the same list); refused when OUT/score_run.json "
              "says the rows came from another model, features, thresholds or settings; without it an existing "
              "scores.csv and --jsonl file are replaced");
  c->add_flag("--no-images", a->no_images, "write only scores.csv (and --jsonl), no pictures");
  c->add_option("--heat-range", a->heat_range,
                "LO,HI: the heat map's colour scale for every image (default: [0, 2 x pixel threshold] with a "
                "pixel threshold, else each image's own range)")
      ->delimiter(',')
      ->expected(2);
  a->flags.add_all(c, false);
  a->thresholds.add(c, " (default: the bundle's, else none)");
  a->device.add(c);
  cli::add_image_limit_option(c);
  c->add_flag("--quiet", a->quiet, "no progress line");
  c->callback([a] { run_score(*a); });
});

}  // namespace
}  // namespace mdps
