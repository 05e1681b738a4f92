// Evaluation metrics of anomaly detection, in double precision:
// image/pixel ROC AUC (as scikit-learn's roc_auc_score), F1-max (as anomalib's
// F1Max), average precision (as scikit-learn's average_precision_score) and
// AUPRO (as the MVTec AD evaluation code).
//
// Labels are 0 (normal) or 1 (anomalous); anything else is an error, as are
// NaN scores and size mismatches. A higher score means "more anomalous".
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mdps {

// Area under the ROC curve, exact with ties: the trapezoid over all distinct
// thresholds (equal to the Mann-Whitney statistic with midranks). Throws when
// only one class is present.
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);
double roc_auc(const std::vector<float>& scores, const std::vector<int64_t>& labels);
double roc_auc(const float* scores, const uint8_t* labels, size_t n);

// Pixel-level ROC AUC over N maps of H x W scores and their masks (nonzero =
// defect), without copying the pixels into one array first.
double pixel_roc_auc(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks, int H,
                     int W);

// The best F1 = 2PR / (P + R) over the thresholds "score >= t", t each distinct
// score. Among thresholds reaching the same F1 the lowest is reported (the
// first argmax over ascending thresholds, as anomalib does). Throws without
// any positive label.
struct F1Max {
  double f1;
  double threshold;
};
F1Max f1_max(const std::vector<double>& scores, const std::vector<int>& labels);
F1Max f1_max(const std::vector<float>& scores, const std::vector<int64_t>& labels);

// Average precision, as scikit-learn's average_precision_score and
// torchmetrics' BinaryAveragePrecision (anomalib's AP): sum over the distinct
// thresholds t, descending, of (R_t - R_prev) P_t with P and R of "score >= t"
// (a step function, no interpolation; tied scores are one threshold). Throws
// without any positive label.
double average_precision(const std::vector<double>& scores, const std::vector<int>& labels);
double average_precision(const std::vector<float>& scores, const std::vector<int64_t>& labels);

// Area under the per-region-overlap curve up to max_fpr, divided by max_fpr,
// following MVTec AD's evaluation code (pro_curve_util.compute_pro and
// generic_util.trapezoid):
// - ground-truth regions are the 8-connected components of each mask
//   (nonzero = defect);
// - at threshold t (each distinct score, descending), FPR = share of all
//   normal pixels of all images with score >= t, PRO = mean over all regions
//   of all images of the share of the region's pixels with score >= t;
// - the curve starts at (0, 0), is integrated by the trapezoid rule up to
//   max_fpr, the last segment cut at max_fpr by linear interpolation.
// Images without defects add only normal pixels. Throws when there are no
// normal pixels or no regions. O(P log P) in the number of pixels P.
double aupro(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks, int H, int W,
             double max_fpr = 0.3);

// The curves behind the areas above, for plotting (the HTML report): points
// in order of descending threshold, starting at (0, 0), one per distinct
// score. trapezoid_area() of a ROC curve is its roc_auc / pixel_roc_auc (up
// to rounding: the AUCs are summed in integers); of pro_curve(..., max_fpr)
// it is max_fpr * aupro(..., max_fpr) exactly (aupro is computed from it).
// The same inputs and errors as the functions above.
struct CurvePoint {
  double x, y;  // ROC: (FPR, TPR); PRO: (FPR, PRO)
};
std::vector<CurvePoint> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);
std::vector<CurvePoint> pixel_roc_curve(const std::vector<const float*>& maps,
                                        const std::vector<const uint8_t*>& masks, int H, int W);
// Up to max_fpr: the points with FPR <= max_fpr, then, unless one lies on
// max_fpr, the point where the first segment crossing it meets max_fpr.
std::vector<CurvePoint> pro_curve(const std::vector<const float*>& maps, const std::vector<const uint8_t*>& masks,
                                  int H, int W, double max_fpr = 0.3);
// The trapezoid rule over the points in order: sum of (x_i - x_{i-1}) (y_i + y_{i-1}) / 2.
double trapezoid_area(const std::vector<CurvePoint>& points);

}  // namespace mdps
