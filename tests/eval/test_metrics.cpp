// ROC AUC, F1-max and AUPRO on cases small enough to compute by hand, against
// brute force, and (ROC AUC) against scikit-learn's values in the golden set.
#include <doctest/doctest.h>
#include "engine/core/common.h"
#include "engine/eval/metrics.h"
#include "engine/io/safetensors.h"
#include "tests/test_util.h"
#include <algorithm>
#include <cmath>
#include <vector>

using namespace mdps;

namespace {

// Mann-Whitney over all (positive, negative) pairs, ties counting 1/2.
double brute_auc(const std::vector<double>& s, const std::vector<int>& l) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!l[i]) continue;
    for (size_t j = 0; j < s.size(); ++j) {
      if (l[j]) continue;
      pairs += 1;
      wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    }
  }
  return wins / pairs;
}

}  // namespace

TEST_CASE("roc_auc on hand cases with ties") {
  CHECK(roc_auc(std::vector<double>{0.1, 0.4, 0.35, 0.8}, std::vector<int>{0, 0, 1, 1}) == doctest::Approx(0.75));
  CHECK(roc_auc(std::vector<double>{0.5, 0.5, 0.5, 0.5}, std::vector<int>{0, 1, 0, 1}) == doctest::Approx(0.5));
  // Pairs (pos, neg): (0.9,0.2) (0.9,0.5) (0.5,0.2) win, (0.5,0.5) ties: 3.5 / 4.
  CHECK(roc_auc(std::vector<double>{0.2, 0.5, 0.5, 0.9}, std::vector<int>{0, 1, 0, 1}) == doctest::Approx(0.875));
  CHECK(roc_auc(std::vector<double>{3, 2, 1}, std::vector<int>{0, 1, 1}) == doctest::Approx(0.0));
  CHECK(roc_auc(std::vector<float>{0.2f, 0.5f, 0.5f, 0.9f}, std::vector<int64_t>{0, 1, 0, 1}) ==
        doctest::Approx(0.875));
}

TEST_CASE("roc_auc equals the pairwise statistic on heavily tied data") {
  std::vector<float> r = test::random_floats(500, 3, 0.f, 1.f);
  std::vector<double> s(r.size());
  std::vector<int> l(r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    l[i] = (i * 7919) % 3 == 0;
    s[i] = std::floor(r[i] * 8) + (l[i] ? 1 : 0);  // 9 distinct values, classes overlapping
  }
  CHECK(roc_auc(s, l) == doctest::Approx(brute_auc(s, l)).epsilon(1e-12));
}

TEST_CASE("roc_auc rejects bad input") {
  CHECK_THROWS_WITH_AS(roc_auc(std::vector<double>{0.1, 0.2}, std::vector<int>{1, 1}),
                       doctest::Contains("both classes"), Error);
  CHECK_THROWS_AS(roc_auc(std::vector<double>{0.1, 0.2}, std::vector<int>{0, 2}), Error);
  CHECK_THROWS_AS(roc_auc(std::vector<double>{0.1, NAN}, std::vector<int>{0, 1}), Error);
  CHECK_THROWS_AS(roc_auc(std::vector<double>{0.1}, std::vector<int>{0, 1}), Error);
}

TEST_CASE("pixel_roc_auc equals roc_auc over the concatenated pixels") {
  const int H = 3, W = 4;
  std::vector<float> a = test::random_floats(H * W, 1, 0.f, 1.f), b = test::random_floats(H * W, 2, 0.f, 1.f);
  std::vector<uint8_t> ma(H * W, 0), mb(H * W, 0);
  ma[1] = ma[5] = 255;
  mb[11] = 1;
  b[3] = a[0];  // a tie across images
  std::vector<float> all(a);
  all.insert(all.end(), b.begin(), b.end());
  std::vector<int64_t> labels;
  for (uint8_t m : ma) labels.push_back(m != 0);
  for (uint8_t m : mb) labels.push_back(m != 0);
  CHECK(pixel_roc_auc({a.data(), b.data()}, {ma.data(), mb.data()}, H, W) ==
        doctest::Approx(roc_auc(all, labels)).epsilon(1e-15));
}

TEST_CASE("roc_auc matches scikit-learn on the golden scores") {
  SafeTensorsFile f = SafeTensorsFile::open(test::golden_dir() + "/auroc.safetensors");
  const std::vector<float> scores = f.read_f32_vector("scores");
  const std::vector<int64_t> labels = f.read_i64("labels");
  const double want = f.read_f64("auroc").at(0);
  CHECK(std::fabs(roc_auc(scores, labels) - want) < 1e-6);

  const std::vector<float> pscores = f.read_f32_vector("pixel_scores");
  const std::vector<int64_t> plabels = f.read_i64("pixel_labels");
  const double pwant = f.read_f64("pixel_auroc").at(0);
  CHECK(std::fabs(roc_auc(pscores, plabels) - pwant) < 1e-6);
}

TEST_CASE("f1_max on hand cases") {
  // Thresholds 0.9 .. 0.5 (predict score >= t), pos = 2, F1 = 2tp / (2tp + fp + fn):
  // 0.9: tp1 fp0 fn1 -> 2/3; 0.8: tp1 fp1 fn1 -> 1/2; 0.7: tp2 fp1 fn0 -> 4/5;
  // 0.6: tp2 fp2 -> 2/3; 0.5: tp2 fp3 -> 4/7. Best 0.8 at 0.7.
  F1Max r = f1_max(std::vector<double>{0.9, 0.8, 0.7, 0.6, 0.5}, std::vector<int>{1, 0, 1, 0, 0});
  CHECK(r.f1 == doctest::Approx(0.8));
  CHECK(r.threshold == 0.7);

  // 4: tp1 fp0 fn1 -> 2/3; 3: 2/4; 2: 2/5; 1: tp2 fp2 fn0 -> 4/6 = 2/3. The
  // tie goes to the lowest threshold, as anomalib's argmax over ascending ones.
  F1Max t = f1_max(std::vector<float>{4, 3, 2, 1}, std::vector<int64_t>{1, 0, 0, 1});
  CHECK(t.f1 == doctest::Approx(2.0 / 3.0));
  CHECK(t.threshold == 1.0);

  // Tied scores form one threshold: at 0.5 both the positive and the negative
  // are predicted positive -> tp1 fp1 -> 2/3, better than 0.1's 2/(2+2) = 1/2.
  F1Max g = f1_max(std::vector<double>{0.5, 0.5, 0.1, 0.1}, std::vector<int>{1, 0, 0, 0});
  CHECK(g.f1 == doctest::Approx(2.0 / 3.0));
  CHECK(g.threshold == 0.5);

  CHECK_THROWS_WITH_AS(f1_max(std::vector<double>{0.1, 0.2}, std::vector<int>{0, 0}),
                       doctest::Contains("positive"), Error);
}

TEST_CASE("average_precision on hand cases") {
  // Descending thresholds, AP = sum (R_t - R_prev) P_t, pos = 3:
  // 0.9: tp1 fp0 R 1/3 P 1 -> 1/3; 0.8: R unchanged; 0.7: tp2 fp1 R 2/3 P 2/3 -> 2/9;
  // 0.6: unchanged; 0.5: tp3 fp2 R 1 P 3/5 -> 1/5. AP = 34/45 (scikit-learn: 0.7555...).
  CHECK(average_precision(std::vector<double>{0.9, 0.8, 0.7, 0.6, 0.5}, std::vector<int>{1, 0, 1, 0, 1}) ==
        doctest::Approx(34.0 / 45.0).epsilon(1e-15));
  // Input order does not matter; float scores and int64 labels give the same.
  CHECK(average_precision(std::vector<float>{0.5f, 0.7f, 0.9f, 0.6f, 0.8f}, std::vector<int64_t>{1, 1, 1, 0, 0}) ==
        doctest::Approx(34.0 / 45.0).epsilon(1e-7));
  // Tied scores are one threshold: 0.5 holds a positive and a negative -> tp1
  // fp1 R 1/2 P 1/2 -> 1/4; 0.3 the same again -> 1/4. AP = 1/2 (an
  // interpolating or per-sample sum would give more).
  CHECK(average_precision(std::vector<double>{0.5, 0.5, 0.3, 0.3}, std::vector<int>{1, 0, 1, 0}) ==
        doctest::Approx(0.5).epsilon(1e-15));
  // 0.9: R 1/2 P 1 -> 1/2; 0.5 (a positive and a negative): tp2 fp1 R 1 P 2/3 -> 1/3. AP = 5/6.
  CHECK(average_precision(std::vector<double>{0.9, 0.5, 0.5, 0.1}, std::vector<int>{1, 1, 0, 0}) ==
        doctest::Approx(5.0 / 6.0).epsilon(1e-15));
  // A perfect ranking is 1; all positives ranked last: AP = mean over k of k / (negatives + k).
  CHECK(average_precision(std::vector<double>{3, 2, 1}, std::vector<int>{1, 1, 0}) == 1.0);
  CHECK(average_precision(std::vector<double>{3, 2, 1}, std::vector<int>{0, 0, 1}) == doctest::Approx(1.0 / 3.0));
  CHECK_THROWS_WITH_AS(average_precision(std::vector<double>{0.1, 0.2}, std::vector<int>{0, 0}),
                       doctest::Contains("positive"), Error);
  CHECK_THROWS_WITH_AS(average_precision(std::vector<double>{0.1, 0.2}, std::vector<int>{1, 2}),
                       doctest::Contains("0 or 1"), Error);
  CHECK_THROWS_WITH_AS(average_precision(std::vector<double>{0.1, NAN}, std::vector<int>{1, 0}),
                       doctest::Contains("NaN"), Error);
}

TEST_CASE("average_precision equals the mean precision at each positive on untied data") {
  // Without ties, AP = (1/pos) sum over positives of the precision at its rank.
  std::vector<double> s;
  std::vector<int> l;
  for (int i = 0; i < 40; ++i) {
    s.push_back(double((i * 37) % 41) + 0.25 * (i % 3));
    l.push_back((i * 7) % 5 < 2 ? 1 : 0);
  }
  std::vector<size_t> order(s.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  double sum = 0;
  int tp = 0, pos = 0;
  for (size_t k = 0; k < order.size(); ++k)
    if (l[order[k]]) sum += double(++tp) / double(k + 1);
  for (int x : l) pos += x;
  CHECK(average_precision(s, l) == doctest::Approx(sum / pos).epsilon(1e-12));
}

TEST_CASE("aupro: one image, one 2-pixel region") {
  // 4x4 image; the region is pixels 0 and 1 (scores 0.9, 0.5); 14 normal
  // pixels: one 0.7, one 0.3, twelve 0.1. Curve points (FPR, PRO), one per
  // distinct score descending, from (0,0):
  //   0.9 -> (0, 1/2)  0.7 -> (1/14, 1/2)  0.5 -> (1/14, 1)  0.3 -> (2/14, 1)  0.1 -> (1, 1)
  // Area to 0.3: 1/2 * 1/14 + 1 * 1/14 + 1 * (0.3 - 2/14) = 0.3 - 1/28,
  // divided by 0.3.
  std::vector<float> map(16, 0.1f);
  std::vector<uint8_t> mask(16, 0);
  mask[0] = mask[1] = 1;
  map[0] = 0.9f;
  map[1] = 0.5f;
  map[7] = 0.7f;
  map[12] = 0.3f;
  CHECK(aupro({map.data()}, {mask.data()}, 4, 4) == doctest::Approx((0.3 - 1.0 / 28) / 0.3).epsilon(1e-12));
}

TEST_CASE("aupro: two regions of different coverage, a defect-free image, interpolation at max_fpr") {
  // Image A (4x4): region R1 = the 2x2 block at the top left (scores 0.8,
  // 0.8, 0.4, 0.2), region R2 = pixel (3,3) (score 0.6); one normal pixel of A
  // scores 0.6 too, the other 10 score 0. Image B: no defects, one pixel 0.5,
  // 15 at 0. Normal pixels: 11 + 16 = 27; regions: 2.
  // Points (FPR, PRO = mean of the two coverages):
  //   0.8 -> (0, (2/4 + 0)/2 = 1/4)       0.6 -> (1/27, (2/4 + 1)/2 = 3/4)
  //   0.5 -> (2/27, 3/4)   0.4 -> (2/27, 7/8)   0.2 -> (2/27, 1)   0 -> (1, 1)
  std::vector<float> a(16, 0.f), b(16, 0.f);
  std::vector<uint8_t> ma(16, 0), mb(16, 0);
  ma[0] = ma[1] = ma[4] = ma[5] = 1;
  ma[15] = 1;
  a[0] = a[1] = 0.8f;
  a[4] = 0.4f;
  a[5] = 0.2f;
  a[15] = 0.6f;
  a[10] = 0.6f;  // normal, tied with R2: one merged point
  b[6] = 0.5f;
  const std::vector<const float*> maps{a.data(), b.data()};
  const std::vector<const uint8_t*> masks{ma.data(), mb.data()};

  // Up to 0.3: (1/4 + 3/4)/2 * 1/27 + 3/4 * 1/27 + 1 * (0.3 - 2/27) = 0.3 - 0.75/27.
  CHECK(aupro(maps, masks, 4, 4) == doctest::Approx((0.3 - 0.75 / 27) / 0.3).epsilon(1e-12));
  // max_fpr on a curve point: only the first slanted segment, 1/2 * 1/27, / (1/27).
  CHECK(aupro(maps, masks, 4, 4, 1.0 / 27) == doctest::Approx(0.5).epsilon(1e-12));
  // max_fpr inside that segment: PRO interpolates to 1/2 at FPR 0.5/27, so the
  // area is (1/4 + 1/2)/2 * 0.5/27, / (0.5/27) = 0.375.
  CHECK(aupro(maps, masks, 4, 4, 0.5 / 27) == doctest::Approx(0.375).epsilon(1e-12));
  // The whole curve: 1/2 * 1/27 + 3/4 * 1/27 + 1 * 25/27.
  CHECK(aupro(maps, masks, 4, 4, 1.0) == doctest::Approx((0.5 + 0.75 + 25) / 27).epsilon(1e-12));
}

TEST_CASE("aupro: regions are 8-connected") {
  // Mask pixels (0,0), (1,1), (1,2) touch only diagonally: one region of 3
  // under 8-connectivity (4-connectivity would give {(0,0)} and {(1,1),(1,2)}
  // and PRO 1/2 instead of 1/3). (0,0) scores 0.9, the other two 0.1, normal
  // pixels 0.5: PRO is 1/3 over FPR (0, 1], so the full-range AUPRO is 1/3.
  std::vector<float> map(9, 0.5f);
  std::vector<uint8_t> mask(9, 0);
  mask[0] = mask[4] = mask[5] = 1;
  map[0] = 0.9f;
  map[4] = map[5] = 0.1f;
  CHECK(aupro({map.data()}, {mask.data()}, 3, 3, 1.0) == doctest::Approx(1.0 / 3.0).epsilon(1e-12));
}

TEST_CASE("aupro: a perfect map scores 1 and any monotone rescaling scores the same") {
  std::vector<float> map = test::random_floats(64, 9, 0.f, 1.f), scaled(64);
  std::vector<uint8_t> mask(64, 0);
  for (int i : {9, 10, 17, 18, 45, 63}) mask[size_t(i)] = 1;
  for (size_t i = 0; i < map.size(); ++i) scaled[i] = 3.f * map[i] * map[i] - 7.f;
  CHECK(aupro({map.data()}, {mask.data()}, 8, 8) == doctest::Approx(aupro({scaled.data()}, {mask.data()}, 8, 8)));
  std::vector<float> perfect(64);
  for (size_t i = 0; i < 64; ++i) perfect[i] = mask[i] ? 2.f + map[i] : map[i];
  CHECK(aupro({perfect.data()}, {mask.data()}, 8, 8) == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("aupro rejects bad input") {
  std::vector<float> map(4, 0.f);
  std::vector<uint8_t> none(4, 0), all(4, 1), some{1, 0, 0, 0};
  CHECK_THROWS_WITH_AS(aupro({map.data()}, {none.data()}, 2, 2), doctest::Contains("no defect"), Error);
  CHECK_THROWS_WITH_AS(aupro({map.data()}, {all.data()}, 2, 2), doctest::Contains("no normal"), Error);
  CHECK_THROWS_AS(aupro({map.data()}, {some.data()}, 2, 2, 0.0), Error);
  CHECK_THROWS_AS(aupro({map.data()}, {}, 2, 2), Error);
  map[2] = NAN;
  CHECK_THROWS_AS(aupro({map.data()}, {some.data()}, 2, 2), Error);
}

namespace {
bool same_points(const std::vector<CurvePoint>& got, const std::vector<CurvePoint>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::fabs(got[i].x - want[i].x) > 1e-12 || std::fabs(got[i].y - want[i].y) > 1e-12) return false;
  return true;
}
}  // namespace

TEST_CASE("roc_curve: the points of a hand case with ties, and its area is roc_auc") {
  // Descending: 0.9 (1) -> (0, 1/2); 0.5 (1 and 0, one threshold) -> (1/2, 1); 0.2 (0) -> (1, 1).
  const std::vector<double> s{0.2, 0.5, 0.5, 0.9};
  const std::vector<int> l{0, 1, 0, 1};
  std::vector<CurvePoint> c = roc_curve(s, l);
  CHECK(same_points(c, {{0, 0}, {0, 0.5}, {0.5, 1}, {1, 1}}));
  CHECK(trapezoid_area(c) == doctest::Approx(roc_auc(s, l)).epsilon(1e-15));
  CHECK(trapezoid_area(c) == doctest::Approx(0.875).epsilon(1e-15));
  CHECK_THROWS_WITH_AS(roc_curve(std::vector<double>{0.1, 0.2}, std::vector<int>{1, 1}), doctest::Contains("both"),
                       Error);
}

TEST_CASE("roc_curve and pixel_roc_curve areas equal roc_auc and pixel_roc_auc on heavily tied and golden data") {
  std::vector<double> s;
  std::vector<int> l;
  for (int i = 0; i < 300; ++i) {
    s.push_back(double((i * 13) % 17));  // 17 distinct values: many ties
    l.push_back((i * 7) % 3 == 0 ? 1 : 0);
  }
  std::vector<CurvePoint> c = roc_curve(s, l);
  CHECK(c.size() == 18);  // (0,0) and one point per distinct score
  CHECK(c.back().x == 1.0);
  CHECK(c.back().y == 1.0);
  CHECK(std::fabs(trapezoid_area(c) - roc_auc(s, l)) < 1e-12);

  SafeTensorsFile f = SafeTensorsFile::open(test::golden_dir() + "/auroc.safetensors");
  const std::vector<float> ps = f.read_f32_vector("pixel_scores");
  const std::vector<int64_t> pl = f.read_i64("pixel_labels");
  // As one "map" of 1 x P pixels: the pixel curve over the golden pixels.
  std::vector<uint8_t> mask(pl.begin(), pl.end());
  std::vector<CurvePoint> pc = pixel_roc_curve({ps.data()}, {mask.data()}, 1, int(ps.size()));
  const double auc = pixel_roc_auc({ps.data()}, {mask.data()}, 1, int(ps.size()));
  CHECK(std::fabs(trapezoid_area(pc) - auc) < 1e-12);
  CHECK(std::fabs(auc - f.read_f64("pixel_auroc").at(0)) < 1e-6);
  for (size_t i = 1; i < pc.size(); ++i) {  // monotone: thresholds descend
    CHECK(pc[i].x >= pc[i - 1].x);
    CHECK(pc[i].y >= pc[i - 1].y);
  }
}

TEST_CASE("pro_curve: the hand-computed points, cut at max_fpr, and max_fpr * aupro as its area") {
  // The two-region case above: (0,0), (0,1/4), (1/27,3/4), (2/27,3/4), (2/27,7/8), (2/27,1), then (1,1)
  // crosses 0.3: cut at (0.3, 1).
  std::vector<float> a(16, 0.f), b(16, 0.f);
  std::vector<uint8_t> ma(16, 0), mb(16, 0);
  ma[0] = ma[1] = ma[4] = ma[5] = ma[15] = 1;
  a[0] = a[1] = 0.8f;
  a[4] = 0.4f;
  a[5] = 0.2f;
  a[15] = a[10] = 0.6f;
  b[6] = 0.5f;
  const std::vector<const float*> maps{a.data(), b.data()};
  const std::vector<const uint8_t*> masks{ma.data(), mb.data()};
  const double e = 1.0 / 27;
  std::vector<CurvePoint> c = pro_curve(maps, masks, 4, 4, 0.3);
  CHECK(same_points(c, {{0, 0}, {0, 0.25}, {e, 0.75}, {2 * e, 0.75}, {2 * e, 0.875}, {2 * e, 1}, {0.3, 1}}));
  CHECK(trapezoid_area(c) / 0.3 == aupro(maps, masks, 4, 4, 0.3));
  CHECK(trapezoid_area(c) == doctest::Approx(0.3 - 0.75 / 27).epsilon(1e-12));
  // Inside the first slanted segment: interpolated to PRO 1/2 at FPR 0.5/27.
  CHECK(same_points(pro_curve(maps, masks, 4, 4, 0.5 * e), {{0, 0}, {0, 0.25}, {0.5 * e, 0.5}}));
  // On a point: no extra point.
  CHECK(same_points(pro_curve(maps, masks, 4, 4, e), {{0, 0}, {0, 0.25}, {e, 0.75}}));
  // The whole curve ends at (1, 1).
  std::vector<CurvePoint> whole = pro_curve(maps, masks, 4, 4, 1.0);
  CHECK(whole.back().x == 1.0);
  CHECK(whole.back().y == 1.0);
  CHECK(trapezoid_area(whole) == doctest::Approx((0.5 + 0.75 + 25) / 27).epsilon(1e-12));
}
