#include "engine/eval/svg_chart.h"
#include "engine/core/common.h"
#include "engine/eval/html_text.h"
#include <cmath>
#include <cstdio>

namespace mdps {
namespace {

constexpr double kWidth = 360, kHeight = 356, kLeft = 52, kTop = 34, kPlot = 280;

std::string fmt(const char* f, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::vector<CurvePoint> thin_curve(const std::vector<CurvePoint>& points, double x_max, size_t max_points) {
  MDPS_CHECK(max_points >= 3, "thin_curve: max_points ", max_points, " (at least 3)");
  MDPS_CHECK(x_max > 0, "thin_curve: x_max ", x_max);
  if (points.size() <= max_points) return points;
  const double step = 2.0 / double(max_points - 2);
  std::vector<CurvePoint> out{points.front()};
  for (size_t i = 1; i + 1 < points.size(); ++i) {
    const CurvePoint& last = out.back();
    if (std::fabs(points[i].x - last.x) / x_max + std::fabs(points[i].y - last.y) >= step) out.push_back(points[i]);
  }
  out.push_back(points.back());
  return out;
}

std::string svg_curve_chart(const CurveChart& c) {
  MDPS_CHECK(c.x_max > 0 && c.x_ticks >= 1, "svg_curve_chart: x_max ", c.x_max, ", x_ticks ", c.x_ticks);
  auto px = [&](double x) { return kLeft + std::min(x, c.x_max) / c.x_max * kPlot; };
  auto py = [&](double y) { return kTop + (1.0 - y) * kPlot; };
  std::string s = cat("<svg id=\"", html_escape(c.id), "\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" ",
                      "width=\"", kWidth, "\" height=\"", kHeight, "\" viewBox=\"0 0 ", kWidth, " ", kHeight,
                      "\" role=\"img\">\n");
  s += cat("<title>", html_escape(c.title), "</title>\n");
  s += cat("<text x=\"", kLeft, "\" y=\"20\" class=\"chart-title\">", html_escape(c.title), "</text>\n");
  s += cat("<rect x=\"", kLeft, "\" y=\"", kTop, "\" width=\"", kPlot, "\" height=\"", kPlot,
           "\" fill=\"#fff\" stroke=\"#444\"/>\n");
  for (int i = 0; i <= c.x_ticks; ++i) {  // grid and tick labels
    const double x = c.x_max * i / c.x_ticks;
    s += cat("<line x1=\"", fmt("%.2f", px(x)), "\" y1=\"", kTop, "\" x2=\"", fmt("%.2f", px(x)), "\" y2=\"",
             kTop + kPlot, "\" class=\"grid\"/><text x=\"", fmt("%.2f", px(x)), "\" y=\"", kTop + kPlot + 16,
             "\" text-anchor=\"middle\" class=\"tick\">", fmt("%.3g", x), "</text>\n");
  }
  for (int i = 0; i <= 5; ++i) {
    const double y = i / 5.0;
    s += cat("<line x1=\"", kLeft, "\" y1=\"", fmt("%.2f", py(y)), "\" x2=\"", kLeft + kPlot, "\" y2=\"",
             fmt("%.2f", py(y)), "\" class=\"grid\"/><text x=\"", kLeft - 6, "\" y=\"", fmt("%.2f", py(y) + 4),
             "\" text-anchor=\"end\" class=\"tick\">", fmt("%.3g", y), "</text>\n");
  }
  s += cat("<text x=\"", kLeft + kPlot / 2, "\" y=\"", kHeight - 4, "\" text-anchor=\"middle\" class=\"axis\">",
           html_escape(c.x_label), "</text>\n");
  s += cat("<text x=\"14\" y=\"", kTop + kPlot / 2, "\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 ",
           kTop + kPlot / 2, ")\">", html_escape(c.y_label), "</text>\n");
  if (c.diagonal)
    s += cat("<line x1=\"", px(0), "\" y1=\"", py(0), "\" x2=\"", px(c.x_max), "\" y2=\"", py(c.x_max),
             "\" class=\"chance\"/>\n");
  if (c.points.empty()) {
    s += cat("<text x=\"", kLeft + kPlot / 2, "\" y=\"", kTop + kPlot / 2,
             "\" text-anchor=\"middle\" class=\"undefined\">undefined</text>\n");
  } else {
    std::string pts;
    for (const CurvePoint& p : c.points) pts += cat(pts.empty() ? "" : " ", fmt("%.2f", px(p.x)), ",", fmt("%.2f", py(p.y)));
    s += cat("<polygon class=\"area\" points=\"", fmt("%.2f", px(c.points.front().x)), ",", fmt("%.2f", py(0)), " ",
             pts, " ", fmt("%.2f", px(c.points.back().x)), ",", fmt("%.2f", py(0)), "\"/>\n");
    s += cat("<polyline class=\"curve\" fill=\"none\" points=\"", pts, "\"/>\n");
  }
  s += "</svg>\n";
  return s;
}

}  // namespace mdps
