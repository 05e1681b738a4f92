#include "engine/eval/report_html.h"
#include "engine/core/atomic_file.h"
#include "engine/core/json_mini.h"
#include "engine/eval/html_text.h"
#include "engine/eval/metrics.h"
#include "engine/eval/svg_chart.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace mdps {
namespace {

constexpr size_t kPanelsPerSide = 4, kCurvePoints = 400;
constexpr double kMaxFpr = 0.3;  // AUPRO's integration limit (compute_metrics)

struct MetricRow {
  const char* key;    // report.json's name
  const char* label;  // shown
};
constexpr MetricRow kMetrics[] = {
    {"image_auroc", "Image AUROC"},       {"pixel_auroc", "Pixel AUROC"},
    {"aupro", "AUPRO (FPR up to 0.3)"},   {"image_f1_max", "Image F1-max"},
    {"pixel_f1_max", "Pixel F1-max"},     {"image_ap", "Image AP"},
    {"pixel_ap", "Pixel AP"},
};

const char* kStyle = R"(body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f0f0}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart .grid{stroke:#e4e4e4}.chart .tick{font-size:11px;fill:#555}
.chart .axis{font-size:12px}.chart .chart-title{font-size:13px;font-weight:bold}
.chart .curve{stroke:#c0392b;stroke-width:2}.chart .area{fill:#c0392b;fill-opacity:.12;stroke:none}
.chart .chance{stroke:#999;stroke-dasharray:4 4}.chart .undefined{fill:#999}
figure{margin:8px 0}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:.9em;color:#444}code,pre{font-size:.9em}.note{color:#666}
)";

// A number as report.json wrote it ("%.10g"), or "null".
std::string exact(const json::Value* v) {
  if (!v || v->kind != json::Kind::Number) return "null";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.10g", v->number);
  return buf;
}
// 100 x v to 2 decimals, or a dash for undefined.
std::string percent(const json::Value* v) {
  if (!v || v->kind != json::Kind::Number) return "&ndash;";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", 100.0 * v->number);
  return buf;
}
std::string metric_cell(const json::Value* v, const std::string& key) {
  return cat("<td class=\"num\" data-key=\"", key, "\" data-value=\"", exact(v), "\">", percent(v), "</td>");
}

// A member shown as text: strings as they are, anything else as JSON.
std::string member_text(const json::Value& root, const char* key) {
  const json::Value* v = root.find(key);
  if (!v || v->kind == json::Kind::Null) return "&ndash;";
  return html_escape(v->kind == json::Kind::String ? v->str : json::text(*v));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class F>
std::vector<CurvePoint> curve_or_empty(F f) {
  try {
    return f();
  } catch (const Error&) {
    return {};  // undefined (one class only): the chart says so
  }
}

std::string fixed(double v, const char* f = "%.4f") {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string run_section(const json::Value& j) {
  std::string s = "<h2>Run</h2>\n<table id=\"run\">\n";
  const std::pair<const char*, const char*> rows[] = {
      {"Data set", "dataset"}, {"Layout", "layout"},   {"Model", "model"},   {"Features", "features"},
      {"Preset", "preset"},    {"Protocol", "protocol"}, {"Device", "device"}, {"Engine version", "engine_version"}};
  for (const auto& [label, key] : rows)
    s += cat("<tr><th>", label, "</th><td data-key=\"", key, "\">", member_text(j, key), "</td></tr>\n");
  if (const json::Value* c = j.find("calibration"); c && c->kind == json::Kind::Object)
    s += cat("<tr><th>Calibration</th><td data-key=\"calibration\">", member_text(*c, "source"), "</td></tr>\n");
  if (const json::Value* rep = j.find("repeat"); rep && rep->kind == json::Kind::Object)
    s += cat("<tr><th>Seeds (--repeat)</th><td data-key=\"seeds\">", member_text(*rep, "seeds"), "</td></tr>\n");
  return s + "</table>\n";
}

std::string metrics_section(const json::Value& j) {
  const json::Value* rep = j.find("repeat");
  const bool repeated = rep && rep->kind == json::Kind::Object;
  std::string s = "<h2>Metrics</h2>\n<table id=\"metrics\">\n<tr><th>metric</th><th>value (%)</th>";
  if (repeated) {
    const json::Value* seeds = rep->find("seeds");
    s += cat("<th>mean &plusmn; std over ", seeds ? seeds->items.size() : 0, " seeds (%)</th>");
  }
  s += "</tr>\n";
  for (const MetricRow& m : kMetrics) {
    s += cat("<tr><th>", m.label, "</th>", metric_cell(j.find(m.key), m.key));
    if (repeated) {
      const json::Value* x = rep->find(m.key);
      if (x && x->kind == json::Kind::Object)
        s += cat("<td class=\"num\" data-key=\"", m.key, "_mean_std\" data-mean=\"", exact(x->find("mean")),
                 "\" data-std=\"", exact(x->find("std")), "\">", percent(x->find("mean")), " &plusmn; ",
                 percent(x->find("std")), "</td>");
      else
        s += "<td class=\"num\">&ndash;</td>";
    }
    s += "</tr>\n";
  }
  s += "</table>\n";
  if (const json::Value* by = j.find("image_auroc_by_score"); by && by->kind == json::Kind::Object) {
    s += "<p>Image AUROC of each image-score kind on the same maps (the report's kind is the setting "
         "<code>score</code>):</p>\n<table id=\"by-score\">\n<tr><th>score kind</th><th>image AUROC (%)</th></tr>\n";
    for (const auto& [kind, v] : by->members)
      s += cat("<tr><th>", html_escape(kind), "</th>", metric_cell(v.find("mean"), "by_score_" + kind), "</tr>\n");
    s += "</table>\n";
  }
  return s;
}

std::string per_type_section(const json::Value& j) {
  std::string s = "<h2>Per defect type</h2>\n<p class=\"note\">Each type's images with the normal ones.</p>\n"
                  "<table id=\"per-type\">\n<tr><th>type</th><th>images</th>";
  for (const MetricRow& m : kMetrics) s += cat("<th>", m.label, " (%)</th>");
  s += "</tr>\n";
  if (const json::Value* pt = j.find("per_type"); pt && pt->kind == json::Kind::Object)
    for (const auto& [type, v] : pt->members) {
      s += cat("<tr data-type=\"", html_escape(type), "\"><th>", html_escape(type), "</th><td class=\"num\">",
               exact(v.find("images")), "</td>");
      for (const MetricRow& m : kMetrics) s += metric_cell(v.find(m.key), m.key);
      s += "</tr>\n";
    }
  return s + "</table>\n";
}

std::string curves_section(const EvalResult& r) {
  const size_t n = r.samples.size(), hw = size_t(r.H) * r.W;
  std::vector<double> scores(r.scores.begin(), r.scores.end());
  std::vector<int> labels;
  std::vector<const float*> maps;
  std::vector<const uint8_t*> masks;
  for (size_t i = 0; i < n; ++i) {
    labels.push_back(r.samples[i].label);
    maps.push_back(r.maps.data() + i * hw);
    masks.push_back(r.masks.data() + i * hw);
  }
  CurveChart image{"roc-image", "", "false positive rate (images)", "true positive rate", 1.0, 5, true, {}};
  image.points = curve_or_empty([&] { return roc_curve(scores, labels); });
  CurveChart pixel{"roc-pixel", "", "false positive rate (pixels)", "true positive rate", 1.0, 5, true, {}};
  CurveChart pro{"pro", "", "false positive rate (pixels)", "per-region overlap", kMaxFpr, 3, false, {}};
  if (n > 0 && hw > 0) {
    pixel.points = curve_or_empty([&] { return pixel_roc_curve(maps, masks, r.H, r.W); });
    pro.points = curve_or_empty([&] { return pro_curve(maps, masks, r.H, r.W, kMaxFpr); });
  }
  auto titled = [](CurveChart& c, const std::string& name, double area) {
    c.title = c.points.empty() ? name + ": undefined" : cat(name, " (area ", fixed(area), ")");
  };
  titled(image, "Image ROC", trapezoid_area(image.points));
  titled(pixel, "Pixel ROC", trapezoid_area(pixel.points));
  titled(pro, "PRO up to FPR 0.3", trapezoid_area(pro.points) / kMaxFpr);
  const size_t pixel_points = pixel.points.size(), pro_points = pro.points.size();
  pixel.points = thin_curve(pixel.points, 1.0, kCurvePoints);
  pro.points = thin_curve(pro.points, kMaxFpr, kCurvePoints);
  return cat("<h2>Curves</h2>\n<p class=\"note\">Areas as the metrics above compute them (AUPRO divided by 0.3); "
             "pixel curves drawn through ", pixel.points.size(), " of ", pixel_points, " (ROC) and ",
             pro.points.size(), " of ", pro_points, " (PRO) points.</p>\n<div class=\"charts\">\n",
             svg_curve_chart(image), svg_curve_chart(pixel), svg_curve_chart(pro), "</div>\n");
}

std::string panels_section(const EvalResult& r, const std::string& panels_dir) {
  std::string s = "<h2>Panels</h2>\n";
  if (panels_dir.empty()) return s + "<p class=\"note\">No panels were written (--no-panels).</p>\n";
  s += "<p class=\"note\">Each panel: the image, its reconstruction, the ground truth and the anomaly map at "
       "the model's size, enlarged.</p>\n";
  auto group = [&](int label, const char* id, const char* heading) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < r.samples.size(); ++i)
      if (r.samples[i].label == label) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return r.scores[a] > r.scores[b]; });
    if (idx.size() > kPanelsPerSide) idx.resize(kPanelsPerSide);
    std::string g = cat("<h3>", heading, "</h3>\n<div id=\"", id, "\">\n");
    for (size_t i : idx) {
      const Sample& smp = r.samples[i];
      const std::string path = panel_path(panels_dir, smp);
      const std::string png = read_bytes(path);
      const std::string caption = cat(html_escape(smp.defect_type), " &middot; ",
                                      html_escape(fs::path(smp.image_path).filename().string()), " &middot; score ",
                                      fixed(r.scores[i], "%.6g"));
      if (png.empty()) {
        g += cat("<p class=\"note missing\">panel missing: ", html_escape(path), " (", caption, ")</p>\n");
        continue;
      }
      g += cat("<figure class=\"panel\"><img alt=\"", html_escape(smp.defect_type + " " + smp.image_path),
               "\" src=\"data:image/png;base64,", base64(png), "\"><figcaption>", caption, "</figcaption></figure>\n");
    }
    return g + "</div>\n";
  };
  s += group(0, "panels-normal", "Highest-scoring normal images (the likeliest false alarms)");
  s += group(1, "panels-defective", "Highest-scoring defective images");
  return s;
}

}  // namespace

std::string panel_path(const std::string& panels_dir, const Sample& s) {
  return (fs::path(panels_dir) / (s.defect_type + "_" + fs::path(s.image_path).stem().string() + ".png")).string();
}

std::string eval_report_html(const EvalResult& r, const std::string& report_json, const std::string& panels_dir) {
  const json::Value j = json::parse(report_json, "report.json");
  const std::string category = j.find("category") ? j.find("category")->str : r.name;
  std::string h = cat("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>mdps eval: ",
                      html_escape(category), "</title>\n<style>\n", kStyle, "</style>\n</head>\n<body>\n");
  h += cat("<h1>mdps eval: <span id=\"category\">", html_escape(category), "</span></h1>\n");
  h += cat("<p id=\"summary\">", exact(j.find("images")), " test images (", exact(j.find("normal_images")),
           " normal, ", exact(j.find("anomalous_images")), " defective), maps ", r.H, "&times;", r.W,
           " after the crop, ", fixed(r.seconds_per_image, "%.3f"), " s per image.</p>\n");
  h += run_section(j);
  h += metrics_section(j);
  h += per_type_section(j);
  h += curves_section(r);
  h += panels_section(r, panels_dir);
  if (const json::Value* w = j.find("warnings"); w && !w->items.empty()) {
    h += "<h2>Warnings</h2>\n<ul id=\"warnings\">\n";
    for (const auto& x : w->items) h += cat("<li>", html_escape(x.str), "</li>\n");
    h += "</ul>\n";
  }
  h += "<h2>Settings</h2>\n<table id=\"settings\">\n";
  if (const json::Value* st = j.find("settings"); st && st->kind == json::Kind::Object)
    for (const auto& [key, v] : st->members)
      h += cat("<tr><th>", html_escape(key), "</th><td><code>", html_escape(json::text(v)), "</code></td></tr>\n");
  h += "</table>\n<p class=\"note\">Written by mdps eval next to report.json (the same numbers); "
       "self-contained: no scripts, no external files.</p>\n</body>\n</html>\n";
  return h;
}

void write_eval_report_html(const EvalResult& r, const std::string& report_json, const std::string& out_dir,
                            const std::string& panels_dir) {
  fs::create_directories(out_dir);
  write_text_atomic((fs::path(out_dir) / "report.html").string(), eval_report_html(r, report_json, panels_dir));
}

}  // namespace mdps
