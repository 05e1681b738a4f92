// Curves as inline SVG for the HTML report: a square plot of one monotone
// curve (ROC or PRO) with axes, ticks, labels and its area in the title; no
// script, no external file. Curves with many points (pixel-level ones have
// one point per distinct map value) are thinned first.
#pragma once
#include "engine/eval/metrics.h"
#include <string>
#include <vector>

namespace mdps {

// A curve monotone in x and y within [0, x_max] x [0, 1] (ROC, PRO),
// thinned to at most max_points (>= 3) points: the first and the last are
// kept, and of the others each one whose |dx|/x_max + |dy| from the last
// kept point reaches 2 / (max_points - 2); the curve's total such length is
// at most 2, so no more points are kept. Fewer points than that are
// returned as they are. Every point returned is a point of the curve.
std::vector<CurvePoint> thin_curve(const std::vector<CurvePoint>& points, double x_max, size_t max_points);

struct CurveChart {
  std::string id;     // the svg element's id
  std::string title;  // drawn above the plot (escaped here)
  std::string x_label, y_label;
  double x_max = 1.0;  // the x axis spans [0, x_max]; y spans [0, 1]
  int x_ticks = 5;     // intervals on the x axis
  bool diagonal = false;  // the chance line y = x (ROC)
  std::vector<CurvePoint> points;  // drawn as given (thin them first)
};

// <svg ...>...</svg>: the plot, the curve as <polyline class="curve">, the
// area under it as <polygon class="area">, the diagonal as <line
// class="chance">. An empty curve gives the axes and the text "undefined".
std::string svg_curve_chart(const CurveChart& chart);

}  // namespace mdps
