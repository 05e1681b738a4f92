#include "engine/eval/metrics.h"
#include "engine/core/common.h"
#include <algorithm>
#include <cmath>

namespace mdps {

namespace {

struct Scored {
  float score;
  uint8_t label;
};
struct ScoredD {
  double score;
  uint8_t label;
};

template <typename L>
uint8_t check_label(L l, size_t i, const char* what) {
  MDPS_CHECK(l == L(0) || l == L(1), what, ": label ", i, " is ", +l, "; labels must be 0 or 1");
  return uint8_t(l);
}

// (score, label) pairs, checked, sorted by score descending.
template <typename P, typename S, typename L>
std::vector<P> sorted_pairs(const S* scores, const L* labels, size_t n, const char* what) {
  std::vector<P> v(n);
  for (size_t i = 0; i < n; ++i) {
    MDPS_CHECK(!std::isnan(scores[i]), what, ": score ", i, " is NaN");
    v[i].score = scores[i];
    v[i].label = check_label(labels[i], i, what);
  }
  std::sort(v.begin(), v.end(), [](const P& a, const P& b) { return a.score > b.score; });
  return v;
}

// Walks groups of equal score in descending order, calling
// f(score, tp, fp) with the cumulative counts after each group.
template <typename P, typename F>
void sweep(const std::vector<P>& v, F&& f) {
  uint64_t tp = 0, fp = 0;
  size_t i = 0;
  while (i < v.size()) {
    size_t j = i;
    for (; j < v.size() && v[j].score == v[i].score; ++j) {
      if (v[j].label) ++tp; else ++fp;
    }
    f(double(v[i].score), tp, fp);
    i = j;
  }
}

template <typename P>
double auc_of_sorted(const std::vector<P>& v, const char* what) {
  uint64_t pos = 0;
  for (const P& p : v) pos += p.label;
  const uint64_t neg = v.size() - pos;
  MDPS_CHECK(pos > 0 && neg > 0, what, ": ROC AUC needs both classes, got ", pos, " positive and ", neg,
             " negative labels");
  // Twice the area in units of (1/pos)(1/neg): each group adds a trapezoid of
  // width fp_d and heights tp_prev, tp_prev + tp_d; integers keep it exact.
  uint64_t twice_area = 0, prev_tp = 0, prev_fp = 0;
  sweep(v, [&](double, uint64_t tp, uint64_t fp) {
    twice_area += (fp - prev_fp) * (prev_tp + tp);
    prev_tp = tp;
    prev_fp = fp;
  });
  return double(twice_area) / (2.0 * double(pos) * double(neg));
}

template <typename P>
std::vector<CurvePoint> roc_points_of_sorted(const std::vector<P>& v, const char* what) {
  uint64_t pos = 0;
  for (const P& p : v) pos += p.label;
  const uint64_t neg = v.size() - pos;
  MDPS_CHECK(pos > 0 && neg > 0, what, ": the ROC curve needs both classes, got ", pos, " positive and ", neg,
             " negative labels");
  std::vector<CurvePoint> out{{0.0, 0.0}};
  sweep(v, [&](double, uint64_t tp, uint64_t fp) { out.push_back({double(fp) / double(neg), double(tp) / double(pos)}); });
  return out;
}

template <typename P, typename S, typename L>
F1Max f1_max_impl(const std::vector<S>& scores, const std::vector<L>& labels) {
  MDPS_CHECK(scores.size() == labels.size(), "f1_max: ", scores.size(), " scores but ", labels.size(), " labels");
  std::vector<P> v = sorted_pairs<P>(scores.data(), labels.data(), scores.size(), "f1_max");
  uint64_t pos = 0;
  for (const P& p : v) pos += p.label;
  MDPS_CHECK(pos > 0, "f1_max: no positive labels among ", v.size());
  F1Max best{0.0, 0.0};
  bool any = false;
  sweep(v, [&](double t, uint64_t tp, uint64_t fp) {
    // 2PR / (P + R) = 2 tp / (2 tp + fp + fn), 0 when tp = 0.
    const double f1 = tp == 0 ? 0.0 : 2.0 * double(tp) / double(2 * tp + fp + (pos - tp));
    if (!any || f1 >= best.f1) best = {f1, t};  // >=: descending sweep, so the lowest tie wins
    any = true;
  });
  return best;
}

template <typename P, typename S, typename L>
double average_precision_impl(const std::vector<S>& scores, const std::vector<L>& labels) {
  MDPS_CHECK(scores.size() == labels.size(), "average_precision: ", scores.size(), " scores but ", labels.size(),
             " labels");
  std::vector<P> v = sorted_pairs<P>(scores.data(), labels.data(), scores.size(), "average_precision");
  uint64_t pos = 0;
  for (const P& p : v) pos += p.label;
  MDPS_CHECK(pos > 0, "average_precision: no positive labels among ", v.size());
  // Recall only grows when tp does: sum (tp - tp_prev) / pos * tp / (tp + fp).
  double ap = 0.0;
  uint64_t prev_tp = 0;
  sweep(v, [&](double, uint64_t tp, uint64_t fp) {
    if (tp > prev_tp) ap += double(tp - prev_tp) / double(pos) * (double(tp) / double(tp + fp));
    prev_tp = tp;
  });
  return ap;
}

// 8-connected components of one mask: labels[i] = 0 for normal pixels, else
// first_id + k for component k; returns the number of components and appends
// their sizes.
uint32_t label_components(const uint8_t* mask, int H, int W, uint32_t first_id, std::vector<uint32_t>& labels,
                          std::vector<uint64_t>& sizes, std::vector<int64_t>& stack) {
  const int64_t n = int64_t(H) * W;
  std::fill(labels.begin(), labels.begin() + n, 0u);
  uint32_t count = 0;
  for (int64_t s = 0; s < n; ++s) {
    if (!mask[s] || labels[s]) continue;
    const uint32_t id = first_id + count++;
    uint64_t size = 0;
    labels[s] = id;
    stack.assign(1, s);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      ++size;
      const int y = int(p / W), x = int(p % W);
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
          const int64_t q = int64_t(yy) * W + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = id;
            stack.push_back(q);
          }
        }
      }
    }
    sizes.push_back(size);
  }
  return count;
}

void check_maps(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks, int H, int W,
                const char* what) {
  MDPS_CHECK(maps.size() == masks.size(), what, ": ", maps.size(), " maps but ", masks.size(), " masks");
  MDPS_CHECK(!maps.empty(), what, ": no maps");
  MDPS_CHECK(H > 0 && W > 0, what, ": bad map size ", H, "x", W);
  for (size_t i = 0; i < maps.size(); ++i) MDPS_CHECK(maps[i] && masks[i], what, ": map or mask ", i, " is null");
}

}  // namespace

double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  MDPS_CHECK(scores.size() == labels.size(), "roc_auc: ", scores.size(), " scores but ", labels.size(), " labels");
  return auc_of_sorted(sorted_pairs<ScoredD>(scores.data(), labels.data(), scores.size(), "roc_auc"), "roc_auc");
}

double roc_auc(const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  MDPS_CHECK(scores.size() == labels.size(), "roc_auc: ", scores.size(), " scores but ", labels.size(), " labels");
  return auc_of_sorted(sorted_pairs<Scored>(scores.data(), labels.data(), scores.size(), "roc_auc"), "roc_auc");
}

double roc_auc(const float* scores, const uint8_t* labels, size_t n) {
  return auc_of_sorted(sorted_pairs<Scored>(scores, labels, n, "roc_auc"), "roc_auc");
}

namespace {
// Every pixel of every map with its mask label, sorted by score descending.
std::vector<Scored> sorted_pixels(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks,
                                  int H, int W, const char* what) {
  check_maps(maps, masks, H, W, what);
  const size_t hw = size_t(H) * size_t(W);
  std::vector<Scored> v(maps.size() * hw);
  for (size_t m = 0; m < maps.size(); ++m) {
    for (size_t i = 0; i < hw; ++i) {
      MDPS_CHECK(!std::isnan(maps[m][i]), what, ": map ", m, " pixel ", i, " is NaN");
      v[m * hw + i] = {maps[m][i], uint8_t(masks[m][i] != 0)};
    }
  }
  std::sort(v.begin(), v.end(), [](const Scored& a, const Scored& b) { return a.score > b.score; });
  return v;
}
}  // namespace

double pixel_roc_auc(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks, int H,
                     int W) {
  return auc_of_sorted(sorted_pixels(maps, masks, H, W, "pixel_roc_auc"), "pixel_roc_auc");
}

std::vector<CurvePoint> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  MDPS_CHECK(scores.size() == labels.size(), "roc_curve: ", scores.size(), " scores but ", labels.size(), " labels");
  return roc_points_of_sorted(sorted_pairs<ScoredD>(scores.data(), labels.data(), scores.size(), "roc_curve"),
                              "roc_curve");
}

std::vector<CurvePoint> pixel_roc_curve(const std::vector<const float*>& maps,
                                        const std::vector<const uint8_t*>& masks, int H, int W) {
  return roc_points_of_sorted(sorted_pixels(maps, masks, H, W, "pixel_roc_curve"), "pixel_roc_curve");
}

double trapezoid_area(const std::vector<CurvePoint>& points) {
  double area = 0.0;
  for (size_t i = 1; i < points.size(); ++i)
    area += 0.5 * (points[i].y + points[i - 1].y) * (points[i].x - points[i - 1].x);
  return area;
}

F1Max f1_max(const std::vector<double>& scores, const std::vector<int>& labels) {
  return f1_max_impl<ScoredD>(scores, labels);
}

F1Max f1_max(const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  return f1_max_impl<Scored>(scores, labels);
}

double average_precision(const std::vector<double>& scores, const std::vector<int>& labels) {
  return average_precision_impl<ScoredD>(scores, labels);
}

double average_precision(const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  return average_precision_impl<Scored>(scores, labels);
}

std::vector<CurvePoint> pro_curve(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks,
                                  int H, int W, double max_fpr) {
  check_maps(maps, masks, H, W, "aupro");
  MDPS_CHECK(max_fpr > 0 && max_fpr <= 1, "aupro: max_fpr ", max_fpr, " must be in (0, 1]");
  const size_t hw = size_t(H) * size_t(W);
  MDPS_CHECK(maps.size() * hw < (uint64_t(1) << 32), "aupro: too many pixels (", maps.size() * hw, ")");

  // Each pixel carries its region id (0: normal pixel).
  struct Pixel {
    float score;
    uint32_t region;
  };
  std::vector<Pixel> px(maps.size() * hw);
  std::vector<uint64_t> sizes(1, 0);  // sizes[0] unused
  std::vector<uint32_t> labels(hw);
  std::vector<int64_t> stack;
  uint64_t num_ok = 0;
  for (size_t m = 0; m < maps.size(); ++m) {
    label_components(masks[m], H, W, uint32_t(sizes.size()), labels, sizes, stack);
    for (size_t i = 0; i < hw; ++i) {
      MDPS_CHECK(std::isfinite(maps[m][i]), "aupro: map ", m, " pixel ", i, " is not finite");
      px[m * hw + i] = {maps[m][i], labels[i]};
      num_ok += labels[i] == 0;
    }
  }
  const uint64_t num_regions = sizes.size() - 1;
  MDPS_CHECK(num_ok > 0, "aupro: the masks have no normal pixels");
  MDPS_CHECK(num_regions > 0, "aupro: the masks have no defect regions");
  std::vector<double> inv_size(sizes.size(), 0.0);
  for (size_t r = 1; r < sizes.size(); ++r) inv_size[r] = 1.0 / double(sizes[r]);

  std::sort(px.begin(), px.end(), [](const Pixel& a, const Pixel& b) { return a.score > b.score; });

  // The (FPR, PRO) points, one per distinct score, starting at (0, 0), as
  // generic_util.trapezoid(x, y, x_max) integrates them: the points up to
  // x_max, plus, unless some point lies exactly on x_max, the interpolated
  // value where the first segment crossing x_max meets it.
  std::vector<CurvePoint> out{{0.0, 0.0}};
  double px_prev = 0.0, py_prev = 0.0;
  uint64_t fp = 0;
  double pro_sum = 0.0;
  size_t i = 0;
  while (i < px.size()) {
    size_t j = i;
    for (; j < px.size() && px[j].score == px[i].score; ++j) {
      if (px[j].region == 0) ++fp;
      else pro_sum += inv_size[px[j].region];
    }
    i = j;
    const double x = std::min(double(fp) / double(num_ok), 1.0);
    const double y = std::min(pro_sum / double(num_regions), 1.0);
    if (x <= max_fpr) {
      out.push_back({x, y});
      px_prev = x;
      py_prev = y;
      continue;
    }
    if (px_prev < max_fpr) out.push_back({max_fpr, py_prev + (y - py_prev) * (max_fpr - px_prev) / (x - px_prev)});
    break;
  }
  return out;
}

double aupro(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks, int H, int W,
             double max_fpr) {
  // The same sum in the same order as the streaming trapezoid it replaces.
  return trapezoid_area(pro_curve(maps, masks, H, W, max_fpr)) / max_fpr;
}

}  // namespace mdps
