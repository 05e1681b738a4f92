// report.html without a browser (tests/eval/test_report_browser.cpp renders
// it): escaping and base64, curve thinning and the SVG charts, and the page
// of a synthetic evaluation whose type and file names are hostile HTML.
#include <doctest/doctest.h>
#include "engine/core/json_mini.h"
#include "engine/eval/evaluate.h"
#include "engine/eval/html_text.h"
#include "engine/eval/report_html.h"
#include "engine/eval/svg_chart.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>

using namespace mdps;
namespace fs = std::filesystem;

TEST_CASE("html_escape and base64") {
  CHECK(html_escape("a<b>&\"c'd") == "a&lt;b&gt;&amp;&quot;c&#39;d");
  CHECK(html_escape("plain ü") == "plain ü");
  CHECK(base64(std::string("")) == "");
  CHECK(base64(std::string("f")) == "Zg==");
  CHECK(base64(std::string("fo")) == "Zm8=");
  CHECK(base64(std::string("foo")) == "Zm9v");
  CHECK(base64(std::string("foobar")) == "Zm9vYmFy");
  const uint8_t bytes[] = {0xff, 0xfe, 0x00};
  CHECK(base64(bytes, 3) == "//4A");
}

TEST_CASE("thin_curve keeps the ends, only curve points, and at most max_points") {
  std::vector<CurvePoint> c{{0, 0}};
  for (int i = 1; i <= 100000; ++i) {  // a staircase: x then y in small steps
    const double t = i / 100000.0;
    c.push_back({i % 2 ? t : c.back().x, std::sqrt(t)});
  }
  std::vector<CurvePoint> t = thin_curve(c, 1.0, 400);
  CHECK(t.size() <= 400);
  CHECK(t.size() > 100);  // not thinned to nothing
  CHECK(t.front().x == 0.0);
  CHECK(t.back().x == c.back().x);
  CHECK(t.back().y == c.back().y);
  size_t j = 0;  // every kept point is an input point, in order
  for (const CurvePoint& p : t) {
    while (j < c.size() && (c[j].x != p.x || c[j].y != p.y)) ++j;
    CHECK(j < c.size());
  }
  std::vector<CurvePoint> few{{0, 0}, {0.5, 0.5}, {1, 1}};
  CHECK(thin_curve(few, 1.0, 400).size() == 3);
  // x scaled by x_max: a PRO curve over [0, 0.3] thins as much as a ROC over [0, 1].
  std::vector<CurvePoint> pro;
  for (const CurvePoint& p : c) pro.push_back({0.3 * p.x, p.y});
  CHECK(thin_curve(pro, 0.3, 400).size() == t.size());
  CHECK_THROWS_AS(thin_curve(c, 1.0, 2), Error);
}

TEST_CASE("svg_curve_chart draws the points as a polyline and escapes its text") {
  CurveChart ch{"roc", "ROC <&>", "x", "y", 1.0, 5, true, {{0, 0}, {0, 1}, {1, 1}}};
  const std::string s = svg_curve_chart(ch);
  CHECK(s.rfind("<svg id=\"roc\"", 0) == 0);
  CHECK(s.find("ROC &lt;&amp;&gt;") != std::string::npos);
  CHECK(s.find("ROC <&>") == std::string::npos);
  // Plot 280 px from (52, 34): (0,0) -> (52, 314), (0,1) -> (52, 34), (1,1) -> (332, 34).
  CHECK(s.find("<polyline class=\"curve\" fill=\"none\" points=\"52.00,314.00 52.00,34.00 332.00,34.00\"/>") !=
        std::string::npos);
  CHECK(s.find("class=\"chance\"") != std::string::npos);
  ch.points.clear();
  CHECK(svg_curve_chart(ch).find("undefined") != std::string::npos);
  CHECK(svg_curve_chart(ch).find("<polyline") == std::string::npos);
}

namespace {

// n normal and n defective 8x8 images with a hostile type name; defective
// maps are brighter on their 2x2 defect.
EvalResult synthetic_result(int n) {
  EvalResult r;
  r.name = "cat<img src=x>";
  r.layout = "mvtec";
  r.H = r.W = 8;
  for (int i = 0; i < 2 * n; ++i) {
    const bool defect = i >= n;
    r.samples.push_back({cat("/data/", defect ? "a<b>\"&" : "good", "/", i, "<script>.png"), defect ? "a<b>\"&" : "good",
                         defect ? 1 : 0, ""});
    std::vector<float> m = test::random_floats(64, uint64_t(i + 1), 0.f, 1.f);
    std::vector<uint8_t> k(64, 0);
    if (defect)
      for (int p : {18, 19, 26, 27}) {
        k[size_t(p)] = 1;
        m[size_t(p)] += 0.5f * float(i % 3);
      }
    r.maps.insert(r.maps.end(), m.begin(), m.end());
    r.masks.insert(r.masks.end(), k.begin(), k.end());
    float mx = 0;
    for (float v : m) mx = std::max(mx, v);
    r.scores.push_back(mx);
  }
  r.seconds = 1;
  r.seconds_per_image = 1.0 / (2 * n);
  compute_eval_metrics(r);
  return r;
}

std::string fmt2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", 100 * v);
  return b;
}

}  // namespace

TEST_CASE("report.html: escaped names, the metrics of report.json, the top-scoring panels inlined") {
  const std::string dir = test::temp_dir("report_html");
  EvalResult r = synthetic_result(6);
  const std::string report = write_eval_report(r, "{\"seed\": 3, \"note\": \"</td><b>\"}", dir, "\"model\": \"m<1>.safetensors\"");
  const json::Value j = json::parse(report, "report.json");

  // Panels for all images but the highest-scoring normal one.
  const std::string panels = dir + "/panels";
  fs::create_directories(panels);
  std::vector<size_t> normal;
  for (size_t i = 0; i < r.samples.size(); ++i)
    if (!r.samples[i].label) normal.push_back(i);
  std::sort(normal.begin(), normal.end(), [&](size_t a, size_t b) { return r.scores[a] > r.scores[b]; });
  for (size_t i = 0; i < r.samples.size(); ++i)
    if (i != normal[0]) save_png(panel_path(panels, r.samples[i]), Image(2, 2, 3, float(10 * i)));

  write_eval_report_html(r, report, dir, panels);
  const std::string html = test::read_text(dir + "/report.html");
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  // Nothing from outside reaches the page unescaped.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<img src=x>") == std::string::npos);
  CHECK(html.find("<b>") == std::string::npos);
  CHECK(html.find("cat&lt;img src=x&gt;") != std::string::npos);
  CHECK(html.find("a&lt;b&gt;&quot;&amp;") != std::string::npos);
  CHECK(html.find("m&lt;1&gt;.safetensors") != std::string::npos);
  // No external resources: every src is inline.
  CHECK(html.find("src=\"http") == std::string::npos);
  CHECK(html.find("href=") == std::string::npos);

  // Each metric cell holds report.json's number and shows it in percent.
  for (const char* key : {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap"}) {
    const double v = j.find(key)->number;
    char exact[48];
    std::snprintf(exact, sizeof exact, "%.10g", v);
    const std::string cell = cat("data-key=\"", key, "\" data-value=\"", exact, "\">", fmt2(v), "</td>");
    CHECK_MESSAGE(html.find(cell) != std::string::npos, key, ": ", cell);
  }
  // Three charts with a polyline each.
  for (const char* id : {"roc-image", "roc-pixel", "pro"}) {
    const size_t at = html.find(cat("<svg id=\"", id, "\""));
    REQUIRE(at != std::string::npos);
    CHECK(html.find("<polyline class=\"curve\"", at) < html.find("</svg>", at));
  }
  // Panels: 3 normal (the top one is missing and listed as such) and 4 defective.
  std::regex img("<img alt=\"[^\"]*\" src=\"data:image/png;base64,[A-Za-z0-9+/=]+\">");
  CHECK(std::distance(std::sregex_iterator(html.begin(), html.end(), img), std::sregex_iterator()) == 7);
  CHECK(html.find("panel missing") != std::string::npos);
  const size_t normal_div = html.find("id=\"panels-normal\""), defect_div = html.find("id=\"panels-defective\"");
  REQUIRE(normal_div < defect_div);
  for (size_t k = 1; k < 4; ++k) {  // the next three normal ones, by score
    const size_t at = html.find(html_escape(r.samples[normal[k]].image_path), normal_div);
    CHECK(at < defect_div);
  }
  CHECK(html.find(html_escape(r.samples[normal[4]].image_path)) == std::string::npos);

  // Without panels the section says so and inlines nothing.
  const std::string bare = eval_report_html(r, report, "");
  CHECK(bare.find("data:image/png") == std::string::npos);
  CHECK(bare.find("No panels") != std::string::npos);
}

TEST_CASE("report.html shows mean and std with --repeat's numbers") {
  EvalResult r = synthetic_result(3);
  const std::string dir = test::temp_dir("report_html_repeat");
  const std::string report = write_eval_report(
      r, "{}", dir, "\"repeat\": {\"seeds\": [1, 2], \"image_auroc\": {\"mean\": 0.8125, \"std\": 0.0625}}");
  const std::string html = eval_report_html(r, report, "");
  CHECK(html.find("mean &plusmn; std over 2 seeds") != std::string::npos);
  CHECK(html.find("data-mean=\"0.8125\" data-std=\"0.0625\">81.25 &plusmn; 6.25</td>") != std::string::npos);
}
