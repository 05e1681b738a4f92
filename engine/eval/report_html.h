// report.html: what `mdps eval` measured, as one self-contained page a
// person opens in a browser. No script, no external file: curves are inline
// SVG, panels inline PNG data: URIs. Its contents:
//   - the run: data set, layout, model, features, preset, protocol, device,
//     calibration, seeds;
//   - the metrics table (image/pixel AUROC, AUPRO, image/pixel F1-max,
//     image/pixel AP) and, with --repeat, each one's mean ± std over the seeds;
//     the image AUROC of every image-score kind;
//   - the per-type table;
//   - image ROC, pixel ROC and PRO (up to FPR 0.3) curves, the pixel-level
//     ones thinned to at most 400 points (engine/eval/svg_chart.h);
//   - the panels (OUT/panels/<type>_<stem>.png) of the 4 highest-scoring
//     normal images (the likeliest false alarms) and the 4 highest-scoring
//     defective images, so the page stays a few MB at most;
//   - the warnings and every setting.
// Every number comes from the report.json text it is given (each metric
// cell carries the value as data-value="%.10g", the shown text is 100 x the
// value to 2 decimals), the curves from the result's maps, scores and
// masks. Every string from outside (file names, types, paths, settings) is
// HTML-escaped.
#pragma once
#include "engine/eval/evaluate.h"
#include <string>

namespace mdps {

// The page for result `r` and its report.json text; panels are read from
// panels_dir (missing files are listed as missing; "" = none were written).
std::string eval_report_html(const EvalResult& r, const std::string& report_json, const std::string& panels_dir);

// eval_report_html() into OUT/report.html, written atomically; panels_dir
// as above ("" when the run wrote none, so older files there are not shown).
void write_eval_report_html(const EvalResult& r, const std::string& report_json, const std::string& out_dir,
                            const std::string& panels_dir);

// The panel file of sample `s` in `panels_dir`: <type>_<stem>.png.
std::string panel_path(const std::string& panels_dir, const Sample& s);

}  // namespace mdps
