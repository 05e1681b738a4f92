// report.html as a browser renders it: `mdps eval` on a tiny model and data
// set, then headless Chromium (Debian's `chromium`) dumps the page's DOM
// after parsing and takes a screenshot. The DOM must hold report.json's
// numbers in the metric cells, the three curves as SVG polylines and the
// 4 + 4 inlined panels; the screenshot must have the window's size and show
// ink, the curves' red and the panels' dark background.
// Without Chromium the suite exits 77 (CTest: skipped), unless
// MDPS_REQUIRE_CHROMIUM=1 (CI sets it): then that is a failure.
// Chromium: MDPS_CHROMIUM, else `chromium` / `chromium-browser` on PATH.
#include <doctest/doctest.h>
#include "engine/core/common.h"
#include "engine/core/json_mini.h"
#include "engine/io/image.h"
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>

using namespace mdps;
namespace fs = std::filesystem;

namespace {

std::string find_chromium() {
  if (const char* e = std::getenv("MDPS_CHROMIUM"); e && *e) return e;
  std::string out;
  for (const char* name : {"chromium", "chromium-browser"})
    if (test::run_command(std::string("command -v ") + name, out) == 0 && !out.empty()) {
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
      return out;
    }
  return "";
}

const std::string& chromium() {
  static const std::string path = [] {
    std::string p = find_chromium();
    if (p.empty()) {
      const char* req = std::getenv("MDPS_REQUIRE_CHROMIUM");
      if (req && std::string(req) == "1") {
        std::printf("FAILED: MDPS_REQUIRE_CHROMIUM=1 but no chromium found (apt-get install chromium)\n");
        std::fflush(stdout);
        std::exit(1);
      }
      std::printf("SKIPPED: no chromium on PATH (Debian: apt-get install chromium; or set MDPS_CHROMIUM)\n");
      std::fflush(stdout);
      std::exit(77);
    }
    return p;
  }();
  return path;
}

// Headless Chromium with a throwaway profile; stdout only (its log goes to a file).
int run_chromium(const std::string& args, const std::string& dir, std::string& out) {
  // --disable-dev-shm-usage: containers often have a tiny /dev/shm.
  return test::run_command("timeout 60 '" + chromium() +
                               "' --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run "
                               "--user-data-dir='" + dir + "/profile' " + args + " 2>'" + dir + "/chromium.log'",
                           out);
}

std::string number_text(const json::Value* v) {
  if (!v || v->kind != json::Kind::Number) return "null";
  char b[48];
  std::snprintf(b, sizeof b, "%.10g", v->number);
  return b;
}
std::string percent_text(const json::Value* v) {
  if (!v || v->kind != json::Kind::Number) return "\u2013";  // &ndash; as the DOM serialises it
  char b[48];
  std::snprintf(b, sizeof b, "%.2f", 100.0 * v->number);
  return b;
}

// The <img> elements of `html` whose src is a base64 PNG data: URI (no
// std::regex: its recursion overflows the stack on a long match).
int inlined_pngs(const std::string& html) {
  const std::string head = "src=\"data:image/png;base64,";
  int n = 0;
  for (size_t at = html.find("<img "); at != std::string::npos; at = html.find("<img ", at + 1)) {
    const size_t end = html.find('>', at), src = html.find(head, at);
    if (src == std::string::npos || src > end) continue;
    const size_t b = src + head.size(), e = html.find('"', b);
    if (e == b || e > end) continue;
    bool ok = true;
    for (size_t k = b; k < e && ok; ++k) ok = std::isalnum(static_cast<unsigned char>(html[k])) || html[k] == '+' ||
                                               html[k] == '/' || html[k] == '=';
    n += ok;
  }
  return n;
}

const char* kMetricKeys[] = {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap"};

}  // namespace

TEST_CASE("report.html renders in headless Chromium with report.json's numbers, curves and panels") {
  chromium();  // skip (77) before any work when there is none
  const std::string dir = fs::absolute(test::temp_dir("report_browser")).string();
  const std::string root = test::make_tiny_category(dir);
  const std::string model = test::write_tiny_model(dir);
  const std::string out = dir + "/ev";
  REQUIRE(test::run_mdps("eval --model " + model + " --dataset " + root +
                             " --round1-t 40 --round1-rho 5 --t-start 40 --rho 7 --lambda 0.2 --seed 5"
                             " --quiet --threads 2 --out " + out,
                         dir + "/eval.log") == 0);
  const json::Value rep = json::parse(test::read_text(out + "/report.json"), "report.json");
  REQUIRE(fs::exists(out + "/report.html"));

  std::string dom;
  REQUIRE(run_chromium("--dump-dom 'file://" + out + "/report.html'", dir, dom) == 0);
  INFO("chromium log: " << test::read_text(dir + "/chromium.log").substr(0, 2000));
  REQUIRE(dom.find("<html") != std::string::npos);
  REQUIRE(dom.find("</html>") != std::string::npos);
  CHECK(dom.find("<title>mdps eval: cat</title>") != std::string::npos);
  CHECK(dom.find("<script") == std::string::npos);

  // The metrics table: each cell carries report.json's value and shows it in percent.
  const size_t metrics_at = dom.find("<table id=\"metrics\">");
  REQUIRE(metrics_at != std::string::npos);
  const std::string metrics = dom.substr(metrics_at, dom.find("</table>", metrics_at) - metrics_at);
  for (const char* key : kMetricKeys) {
    const std::string cell = cat("data-key=\"", key, "\" data-value=\"", number_text(rep.find(key)), "\">",
                                 percent_text(rep.find(key)), "</td>");
    CHECK_MESSAGE(metrics.find(cell) != std::string::npos, "metrics table lacks ", cell);
  }
  // The per-type table: one row per type of report.json, with its numbers.
  const json::Value* per = rep.find("per_type");
  REQUIRE(per != nullptr);
  REQUIRE(per->members.size() == 2);
  for (const auto& [type, m] : per->members) {
    const size_t row_at = dom.find("<tr data-type=\"" + type + "\">");
    REQUIRE_MESSAGE(row_at != std::string::npos, "no row for type ", type);
    const std::string row = dom.substr(row_at, dom.find("</tr>", row_at) - row_at);
    for (const char* key : kMetricKeys)
      CHECK(row.find(cat("data-key=\"", key, "\" data-value=\"", number_text(m.find(key)), "\">")) !=
            std::string::npos);
  }
  // The three curves, each a polyline of at least the two ends inside its svg.
  const std::regex polyline("<polyline class=\"curve\" fill=\"none\" points=\"([0-9., ]+)\"");
  for (const char* id : {"roc-image", "roc-pixel", "pro"}) {
    const size_t at = dom.find(cat("<svg id=\"", id, "\""));
    REQUIRE_MESSAGE(at != std::string::npos, "no svg ", id);
    const std::string svg = dom.substr(at, dom.find("</svg>", at) - at);
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_search(svg, m, polyline), "no curve in ", id);
    const std::string pts = m[1].str();
    CHECK(std::count(pts.begin(), pts.end(), ',') >= 2);
  }
  // The panels: the 4 highest-scoring of the 4 normal and of the 6 defective images, inlined.
  for (const char* id : {"panels-normal", "panels-defective"}) {
    const size_t at = dom.find(cat("<div id=\"", id, "\">"));
    REQUIRE(at != std::string::npos);
    const std::string div = dom.substr(at, dom.find("</div>", at) - at);
    CHECK(inlined_pngs(div) == 4);
  }

  // What a person sees: a screenshot of the window, not blank, with the
  // curves' red (#c0392b) and the panels' background (32, 32, 32).
  const std::string shot = dir + "/shot.png";
  std::string ignored;
  REQUIRE(run_chromium("--hide-scrollbars --window-size=1200,3200 --screenshot='" + shot + "' 'file://" + out +
                           "/report.html'",
                       dir, ignored) == 0);
  REQUIRE(fs::exists(shot));
  Image s = load_image(shot);
  CHECK(s.width == 1200);
  CHECK(s.height == 3200);
  size_t ink = 0, red = 0, panel_bg = 0;
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      const float r = s.at(x, y, 0), g = s.at(x, y, 1), b = s.at(x, y, 2);
      ink += r < 250 || g < 250 || b < 250;
      red += std::abs(r - 192) <= 24 && std::abs(g - 57) <= 24 && std::abs(b - 43) <= 24;
      panel_bg += std::abs(r - 32) <= 2 && std::abs(g - 32) <= 2 && std::abs(b - 32) <= 2;
    }
  MESSAGE("screenshot: ", ink, " non-white, ", red, " curve-red, ", panel_bg, " panel-background pixels");
  CHECK(ink > size_t(s.width) * s.height / 50);
  CHECK(red > 300);
  CHECK(panel_bg > 20000);
}
