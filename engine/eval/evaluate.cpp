#include "engine/eval/evaluate.h"
#include "engine/eval/calibrated_protocol.h"
#include "engine/eval/colormap.h"
#include "engine/eval/panel.h"
#include "engine/eval/report_html.h"
#include "engine/io/image.h"
#include "engine/core/json_mini.h"
#include "engine/eval/metrics.h"
#include "engine/eval/protocol_dump.h"
#include "engine/io/safetensors.h"
#include "engine/core/csv.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace mdps {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

template <class F>
double guarded(F f) {
  try {
    return f();
  } catch (const Error&) {
    return kNaN;  // a metric that is undefined on this subset (one class only)
  }
}

// Each metric under the engine's name and again under anomalib's (its
// metric collection's prefix_ClassName keys), so either reader finds it.
std::string metrics_json(const EvalMetrics& m) {
  return cat("\"image_auroc\": ", num(m.image_auroc), ", \"pixel_auroc\": ", num(m.pixel_auroc),
             ", \"aupro\": ", num(m.aupro), ", \"image_f1_max\": ", num(m.image_f1_max),
             ", \"pixel_f1_max\": ", num(m.pixel_f1_max), ", \"image_ap\": ", num(m.image_ap),
             ", \"pixel_ap\": ", num(m.pixel_ap), ", \"image_AUROC\": ", num(m.image_auroc),
             ", \"pixel_AUROC\": ", num(m.pixel_auroc), ", \"pixel_AUPRO\": ", num(m.aupro),
             ", \"image_F1Max\": ", num(m.image_f1_max), ", \"pixel_F1Max\": ", num(m.pixel_f1_max),
             ", \"image_AP\": ", num(m.image_ap), ", \"pixel_AP\": ", num(m.pixel_ap));
}

std::string pct(double v) {
  if (!std::isfinite(v)) return "     -";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%6.2f", 100.0 * v);
  return buf;
}

// Crops [N,1,S,S] (host vector) to the centre side x side.
std::vector<float> crop_planes(const std::vector<float>& v, int64_t n, int size, int side) {
  const int off = (size - side) / 2;
  std::vector<float> out(size_t(n) * side * side);
  for (int64_t i = 0; i < n; ++i)
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x)
        out[(size_t(i) * side + y) * side + x] = v[(size_t(i) * size + y + off) * size + x + off];
  return out;
}

}  // namespace

std::optional<PixelNormals> normals_for_scoring(const EvalSettings& settings, int side) {
  const PixelNormals* pn = settings.pixel_normals();
  if (!pn) return std::nullopt;
  if (side == pn->height && side == pn->width) return *pn;
  MDPS_CHECK(pn->height == pn->width && side <= pn->height, "normal-z: statistics of ", pn->height, "x", pn->width,
             " maps do not crop to ", side, "x", side);
  return PixelNormals{side, side, crop_planes(pn->mean, 1, pn->height, side), crop_planes(pn->std, 1, pn->height, side)};
}

int crop_side(int size, float crop) {
  int s = int(std::lround(double(size) * crop));
  return std::clamp(s, 1, size);
}

EvalMetrics compute_metrics(const std::vector<float>& maps, const std::vector<uint8_t>& masks,
                            const std::vector<int>& labels, const std::vector<float>& scores, int H, int W) {
  const size_t n = labels.size(), hw = size_t(H) * W;
  MDPS_CHECK(scores.size() == n && maps.size() == n * hw && masks.size() == n * hw, "metrics: ", n, " labels, ",
             scores.size(), " scores, ", maps.size(), " map values and ", masks.size(), " mask values for ", H, "x",
             W, " maps");
  std::vector<double> s(scores.begin(), scores.end());
  std::vector<const float*> mp;
  std::vector<const uint8_t*> kp;
  for (size_t i = 0; i < n; ++i) {
    mp.push_back(maps.data() + i * hw);
    kp.push_back(masks.data() + i * hw);
  }
  EvalMetrics m;
  m.image_auroc = guarded([&] { return roc_auc(s, labels); });
  m.image_f1_max = guarded([&] { return f1_max(s, labels).f1; });
  m.image_ap = guarded([&] { return average_precision(s, labels); });
  m.pixel_auroc = guarded([&] { return pixel_roc_auc(mp, kp, H, W); });
  m.aupro = guarded([&] { return aupro(mp, kp, H, W, 0.3); });
  {
    std::vector<double> ps(maps.begin(), maps.end());
    std::vector<int> pl(masks.size());
    for (size_t i = 0; i < masks.size(); ++i) pl[i] = masks[i] ? 1 : 0;
    m.pixel_f1_max = guarded([&] { return f1_max(ps, pl).f1; });
    m.pixel_ap = guarded([&] { return average_precision(ps, pl); });
  }
  return m;
}

std::vector<Sample> limit_samples(const std::vector<Sample>& test, int limit) {
  if (limit <= 0) return test;
  std::map<std::string, int> taken;
  std::vector<Sample> out;
  for (const auto& s : test)
    if (taken[s.defect_type]++ < limit) out.push_back(s);
  return out;
}

std::vector<uint8_t> resize_gt_mask(const Image& gt, int size, GtResize how) {
  MDPS_CHECK(gt.channels == 1, "resize_gt_mask: a mask has one channel, got ", gt.channels);
  Image r = gt;
  if (gt.width != size || gt.height != size)
    r = how == GtResize::Nearest ? resize_nearest(gt, size, size) : resize_bilinear(gt, size, size, true);
  std::vector<uint8_t> m(size_t(size) * size);
  for (size_t k = 0; k < m.size(); ++k) m[k] = r.pixels[k] > 0.f ? 1 : 0;
  return m;
}

EvalBatch load_eval_batch(const std::vector<Sample>& samples, size_t begin, size_t end, int size, GtResize how) {
  EvalBatch b;
  for (size_t i = begin; i < end; ++i) {
    const Sample& s = samples[i];
    Image raw = load_image(s.image_path);
    std::vector<uint8_t> m(size_t(size) * size, 0);
    if (!s.mask_path.empty()) {
      Image gt = load_image_gray(s.mask_path);
      MDPS_CHECK(gt.width == raw.width && gt.height == raw.height, "ground-truth mask '", s.mask_path, "' is ",
                 gt.width, "x", gt.height, " but its image '", s.image_path, "' is ", raw.width, "x", raw.height);
      m = resize_gt_mask(gt, size, how);
    } else {
      MDPS_CHECK(s.label == 0, "defective test image '", s.image_path, "' has no ground-truth mask");
    }
    b.masks.insert(b.masks.end(), m.begin(), m.end());
    b.images.push_back(raw.width == size && raw.height == size ? raw : resize_bilinear(raw, size, size));
  }
  b.y = images_to_tensor(b.images);
  return b;
}

std::vector<uint8_t> recon_bytes(const Tensor& recon, int index) {
  const Image im = tensor_to_image(recon, index);
  std::vector<uint8_t> px(im.pixels.size());
  for (size_t k = 0; k < px.size(); ++k) px[k] = uint8_t(std::lround(std::clamp(im.pixels[k], 0.f, 255.f)));
  return px;
}

ProtocolOutput run_protocol(const UNet& model, const ResNetFeatures* features, size_t N, const BatchLoader& load,
                            const EvalSettings& st, const EvalProgressFn& progress, const ProtocolPart& part,
                            const ProtocolHooks& hooks) {
  st.validate();
  MDPS_CHECK(!hooks.masks || !st.dataset_scope, "protocol: given masks replace round 1, which the data-set-wide ",
             "mask scope needs");
  if (st.protocol == Protocol::Calibrated) {
    MDPS_CHECK(!part.round1_only && !part.round1_maps, "protocol: the two-pass mask of --mask-scope dataset is the ",
               "authors' protocol");
    return run_calibrated_protocol(model, features, N, load, st, progress, hooks);
  }
  Backend& be = model.backend();
  const int S = model.config().image_size;
  SamplerSettings ss = st.sampler;
  ss.group = st.batch;
  Sampler sampler(model, ss);
  const int ns = st.rounds.samples;
  const bool two_rounds = st.rounds.round1.t_start > 0;
  const size_t B = size_t(st.batch), nbatches = (N + B - 1) / B;
  const size_t plane = size_t(S) * S;
  const AnomalyMapFn map_fn = [&](const Tensor& y, const Tensor& recon) {
    return anomaly_map(features, y, recon, st.map).combined;
  };
  auto load_checked = [&](size_t begin, size_t end) {
    Tensor y = load(begin, end);
    check_shape(y, {int64_t(end - begin), 3, S, S}, "evaluation batch");
    return y.to(be);
  };

  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  const size_t b0 = part.first_batch;  // noise streams are keyed by the global batch index
  MDPS_CHECK(!part.round1_only || (two_rounds && st.dataset_scope),
             "protocol: a round-1-only pass needs the dataset mask scope and two rounds");
  MDPS_CHECK(!part.round1_maps || (two_rounds && st.dataset_scope),
             "protocol: given round-1 maps need the dataset mask scope and two rounds");
  MDPS_CHECK(!part.round1_maps || part.round1_maps->size() == N * plane, "protocol: ",
             part.round1_maps ? part.round1_maps->size() : 0, " round-1 map values given for ", N, " images of ", S,
             "x", S);

  ProtocolDump dump(st.dump_intermediates);
  // Pass 1 (dataset scope): all round-1 maps first, for the global min/max.
  std::vector<float> round1_maps;
  float lo = part.round1_min, hi = part.round1_max;
  if (two_rounds && st.dataset_scope && !part.round1_maps) {
    round1_maps.resize(N * plane);
    MdpsSteps round1_only;
    round1_only.round1_only = true;
    for (size_t b = 0; b < nbatches; ++b) {
      size_t begin = b * B, end = std::min(N, begin + B);
      Tensor y = load_checked(begin, end);
      PhiloxNoise noise(st.seed, 2 * (b0 + b));
      MdpsOutput o = run_mdps(sampler, y, st.rounds, dump.noise(noise, cat("b", b, ".round1.")), map_fn, Tensor(),
                              round1_only);
      dump.add(cat("b", b, ".y"), y);
      dump.add(cat("b", b, ".round1.recon"), o.round1);
      dump.add(cat("b", b, ".round1.map"), o.round1_map);
      std::vector<float> m = o.round1_map.to_vector();
      std::copy(m.begin(), m.end(), round1_maps.begin() + begin * plane);
      if (progress) progress(end, N, elapsed(), 1);
    }
    auto [a, c] = std::minmax_element(round1_maps.begin(), round1_maps.end());
    lo = *a;
    hi = *c;
    dump.add("round1_min", Tensor::full({1}, lo));
    dump.add("round1_max", Tensor::full({1}, hi));
  }

  ProtocolOutput out;
  out.size = S;
  if (part.round1_only) {
    out.round1_maps = std::move(round1_maps);
    out.seconds = elapsed();
    return out;
  }
  const std::vector<float>& r1 = part.round1_maps ? *part.round1_maps : round1_maps;
  const int kept = hooks.all_samples ? ns : 1;
  out.maps.resize(N * plane);
  out.recon.resize(N * size_t(kept));
  if (hooks.keep_masks) out.masks.assign(N * plane, 0.f);
  for (size_t b = 0; b < nbatches; ++b) {
    size_t begin = b * B, end = std::min(N, begin + B);
    Tensor y = load_checked(begin, end);
    const int64_t n = y.dim(0);
    Tensor given;
    if (hooks.masks) {
      given = hooks.masks(begin, end);
      check_shape(given, {n, 1, S, S}, "given masks");
      given = given.to(be);
    } else if (two_rounds && st.dataset_scope) {
      std::vector<float> m(r1.begin() + begin * plane, r1.begin() + end * plane);
      given = threshold_mask(Tensor::from_vector({n, 1, S, S}, m), st.rounds.lambda, lo, hi).to(be);
    }
    // Round 1 draws stream 2b, round 2 stream 2b+1, so both mask scopes draw the same noise.
    PhiloxNoise noise1(st.seed, 2 * (b0 + b)), noise2(st.seed, 2 * (b0 + b) + 1);
    MdpsSteps steps;
    steps.round2_noise = &dump.noise(noise2, cat("b", b, ".round2."));
    steps.final_map = map_fn;
    steps.round2_steps = hooks.round2_steps;
    MdpsOutput o = run_mdps(sampler, y, st.rounds, dump.noise(noise1, cat("b", b, ".round1.")), map_fn, given, steps);
    if (o.round1.defined()) {
      dump.add(cat("b", b, ".round1.recon"), o.round1);
      dump.add(cat("b", b, ".round1.map"), o.round1_map);
    }
    if (o.mask.defined()) dump.add(cat("b", b, ".mask"), o.mask);
    if (!(two_rounds && st.dataset_scope)) dump.add(cat("b", b, ".y"), y);
    dump.add(cat("b", b, ".round2.recon"), o.recon);
    dump.add(cat("b", b, ".map"), o.map);
    std::vector<float> m = o.map.to_vector();
    std::copy(m.begin(), m.end(), out.maps.begin() + begin * plane);
    if (hooks.keep_masks && o.mask.defined()) {
      std::vector<float> mv = o.mask.to_vector();
      std::copy(mv.begin(), mv.end(), out.masks.begin() + begin * plane);
    }
    Tensor rec = o.recon.slice_batch(0, n * kept).to(cpu_backend());
    for (int r = 0; r < kept; ++r)
      for (int64_t i = 0; i < n; ++i) out.recon[size_t(r) * N + begin + size_t(i)] = recon_bytes(rec, int(r * n + i));
    if (progress) progress(end, N, elapsed(), st.dataset_scope && two_rounds ? 2 : 0);
  }
  out.seconds = elapsed();
  dump.write(st.to_json(), nbatches);
  return out;
}

Image recon_image(const ProtocolOutput& p, size_t i) {
  Image rec(p.size, p.size, 3);
  for (size_t k = 0; k < rec.pixels.size(); ++k) rec.pixels[k] = p.recon[i][k];
  return rec;
}

EvalResult evaluate(const UNet& model, const ResNetFeatures* features, const Dataset& ds, const EvalSettings& st,
                    const PanelOptions& panels, const EvalProgressFn& progress) {
  st.validate();
  std::vector<Sample> samples = limit_samples(ds.test, st.limit);
  check_normal_and_defective(samples, ds.root);
  EvalResult r = evaluate_samples(model, features, samples, st, panels, progress);
  r.name = fs::path(ds.root).filename().string();
  if (r.name.empty()) r.name = fs::path(ds.root).parent_path().filename().string();
  r.layout = ds.layout;
  compute_eval_metrics(r);
  return r;
}

void check_normal_and_defective(const std::vector<Sample>& samples, const std::string& root) {
  int normal = 0, anomalous = 0;
  for (const auto& s : samples) (s.label ? anomalous : normal)++;
  MDPS_CHECK(normal > 0 && anomalous > 0, "data set '", root, "': the evaluation needs normal and defective test ",
             "images (has ", normal, " normal and ", anomalous, " defective)");
}

EvalResult evaluate_samples(const UNet& model, const ResNetFeatures* features, const std::vector<Sample>& samples,
                            const EvalSettings& st, const PanelOptions& panels, const EvalProgressFn& progress,
                            const ProtocolPart& part) {
  st.validate();
  MDPS_CHECK(!part.round1_only, "evaluate: a round-1-only pass has no final maps (call run_protocol)");
  const int S = model.config().image_size;
  EvalResult r;
  r.samples = samples;
  const size_t N = r.samples.size();
  const size_t plane = size_t(S) * S;
  std::vector<uint8_t> full_masks(N * plane);
  // Every image and mask is checked before the (long) sampling starts.
  for (size_t i = 0; i < N; ++i) {
    EvalBatch lb = load_eval_batch(r.samples, i, i + 1, S, st.gt_resize);
    std::copy(lb.masks.begin(), lb.masks.end(), full_masks.begin() + i * plane);
  }
  ProtocolOutput po = run_protocol(
      model, features, N, [&](size_t begin, size_t end) { return load_eval_batch(r.samples, begin, end, S).y; }, st,
      progress, part);
  const std::vector<float>& full_maps = po.maps;

  // Scores and metrics on the centre crop (the region the metrics see).
  const int side = crop_side(S, st.crop);
  r.H = r.W = side;
  r.maps = crop_planes(full_maps, int64_t(N), S, side);
  {
    std::vector<float> mk(full_masks.begin(), full_masks.end());
    std::vector<float> c = crop_planes(mk, int64_t(N), S, side);
    r.masks.resize(c.size());
    for (size_t i = 0; i < c.size(); ++i) r.masks[i] = c[i] > 0.f ? 1 : 0;
  }
  const EvalSettings sized = st.at_size(S);
  const std::optional<PixelNormals> normals = normals_for_scoring(sized, side);  // normal-z: cropped alike
  r.scores = image_scores(Tensor::from_vector({int64_t(N), 1, side, side}, r.maps), sized.score_kind, sized.score_k,
                          sized.score_fraction, normals ? &*normals : nullptr);
  r.seconds = po.seconds;
  r.seconds_per_image = r.seconds / double(N);

  if (!panels.dir.empty()) {
    fs::create_directories(panels.dir);
    auto [a, c] = std::minmax_element(full_maps.begin(), full_maps.end());
    const float mlo = *a, mhi = *c;  // one scale for the set, so normal images look calm
    for (size_t i = 0; i < N; ++i) {
      const Sample& s = r.samples[i];
      Image img = load_model_image(s.image_path, S);
      Image rec = recon_image(po, i);
      Image gt(S, S, 1);
      for (size_t k = 0; k < plane; ++k) gt.pixels[k] = full_masks[i * plane + k] ? 255.f : 0.f;
      Image heat = colormap_jet(full_maps.data() + i * plane, S, S, mlo, mhi);
      save_png(panel_path(panels.dir, s),
               captioned_panel({img, rec, gt, heat}, {"image", "reconstruction", "ground truth", "anomaly map"},
                               eval_panel_caption(s.defect_type, fs::path(s.image_path).filename().string(),
                                                  r.scores[i], s.label, panels.image_threshold,
                                                  panels.threshold_source),
                               panels.min_tile));
    }
  }
  return r;
}

void compute_eval_metrics(EvalResult& r) {
  const size_t N = r.samples.size();
  const size_t hw = size_t(r.H) * r.W;
  r.type_counts.clear();
  r.per_type.clear();
  r.warnings.clear();
  for (const auto& s : r.samples) r.type_counts[s.defect_type]++;
  std::vector<int> labels;
  for (const auto& s : r.samples) labels.push_back(s.label);
  r.overall = compute_metrics(r.maps, r.masks, labels, r.scores, r.H, r.W);
  for (const auto& [type, count] : r.type_counts) {
    if (type == "good") continue;
    std::vector<float> m, sc;
    std::vector<uint8_t> k;
    std::vector<int> l;
    for (size_t i = 0; i < N; ++i) {
      const Sample& s = r.samples[i];
      if (s.defect_type != type && s.label != 0) continue;
      m.insert(m.end(), r.maps.begin() + i * hw, r.maps.begin() + (i + 1) * hw);
      k.insert(k.end(), r.masks.begin() + i * hw, r.masks.begin() + (i + 1) * hw);
      l.push_back(s.label);
      sc.push_back(r.scores[i]);
    }
    r.per_type[type] = compute_metrics(m, k, l, sc, r.H, r.W);
    // Masks that vanished at the map size: say so instead of a silent null.
    int defective = 0, empty = 0;
    for (size_t i = 0; i < N; ++i) {
      if (r.samples[i].defect_type != type || r.samples[i].label == 0) continue;
      ++defective;
      empty += std::none_of(r.masks.begin() + i * hw, r.masks.begin() + (i + 1) * hw, [](uint8_t v) { return v != 0; });
    }
    if (defective > 0 && empty == defective)
      r.warnings.push_back(cat("type '", type, "': all ", defective, " ground-truth masks are empty at ", r.H, "x", r.W,
                               " (after resizing and the crop); its pixel metrics are undefined (null)"));
    else if (empty > 0)
      r.warnings.push_back(cat("type '", type, "': ", empty, " of ", defective, " ground-truth masks are empty at ", r.H,
                               "x", r.W, " (after resizing and the crop)"));
  }
}

std::string write_eval_report(const EvalResult& r, const EvalSettings& s, const std::string& out_dir,
                              const std::string& extra) {
  return write_eval_report(r, s.to_json(), out_dir, extra);
}

std::string write_eval_report(const EvalResult& r, const std::string& settings_json, const std::string& out_dir,
                              const std::string& extra) {
  fs::create_directories(out_dir);
  const size_t N = r.samples.size();
  std::string per_type;
  for (const auto& [type, m] : r.per_type)
    per_type += cat(per_type.empty() ? "" : ",\n    ", json::quote(type), ": {\"images\": ", r.type_counts.at(type),
                    ", ", metrics_json(m), "}");
  int normal = 0;
  for (const auto& x : r.samples) normal += x.label == 0;
  std::string warnings;
  for (const auto& w : r.warnings) warnings += cat(warnings.empty() ? "" : ", ", json::quote(w));
  std::string report =
      cat("{\n  \"engine\": \"mdps\",\n  \"engine_version\": \"", MDPS_VERSION, "\",\n  \"category\": ",
          json::quote(r.name), ",\n  \"layout\": ", json::quote(r.layout), ",\n  \"images\": ", N,
          ",\n  \"normal_images\": ", normal, ",\n  \"anomalous_images\": ", N - size_t(normal),
          ",\n  \"map_size\": [", r.H, ", ", r.W, "],\n  ", metrics_json(r.overall), ",\n  \"per_type\": {\n    ",
          per_type, "\n  },\n  \"seconds\": ", num(r.seconds), ",\n  \"seconds_per_image\": ",
          num(r.seconds_per_image), ",\n  \"warnings\": [", warnings, "],\n  \"settings\": ", settings_json, extra.empty() ? "" : ",\n  ", extra,
          "\n}\n");
  json::parse(report, "report.json");  // never write a report other readers would reject
  write_text_atomic((fs::path(out_dir) / "report.json").string(), report);

  std::string csv = csv_row({"file", "type", "label", "score"});
  for (size_t i = 0; i < N; ++i) {
    char sc[32];
    std::snprintf(sc, sizeof sc, "%.9g", double(r.scores[i]));
    csv += csv_row({r.samples[i].image_path, r.samples[i].defect_type, std::to_string(r.samples[i].label), sc});
  }
  write_text_atomic((fs::path(out_dir) / "images.csv").string(), csv);

  SafeTensorsWriter w;
  const int64_t n = int64_t(N);
  w.add_f32("anomaly_maps", {n, r.H, r.W}, r.maps);
  std::vector<float> mk(r.masks.begin(), r.masks.end());
  w.add_f32("gt_masks", {n, r.H, r.W}, mk);
  std::vector<int64_t> labels;
  for (const auto& x : r.samples) labels.push_back(x.label);
  w.add_i64("labels", {n}, labels);
  w.add_f32("image_scores", {n}, r.scores);
  w.set_metadata("engine_version", MDPS_VERSION);
  w.set_metadata("category", r.name);
  w.write((fs::path(out_dir) / "maps.safetensors").string());
  return report;
}

std::string format_eval_table(const EvalResult& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.3f", r.seconds_per_image);
  std::string out = cat(r.name, " (", r.samples.size(), " test images, ", buf, " s/image)\n");
  std::snprintf(buf, sizeof buf, "%-22s %6s %8s %8s %8s %8s %8s %8s %8s\n", "type", "images", "img-AUC", "pix-AUC",
                "AUPRO", "img-F1", "pix-F1", "img-AP", "pix-AP");
  out += buf;
  auto row = [&](const std::string& name, int n, const EvalMetrics& m) {
    std::snprintf(buf, sizeof buf, "%-22s %6d %8s %8s %8s %8s %8s %8s %8s\n", name.c_str(), n,
                  pct(m.image_auroc).c_str(), pct(m.pixel_auroc).c_str(), pct(m.aupro).c_str(),
                  pct(m.image_f1_max).c_str(), pct(m.pixel_f1_max).c_str(), pct(m.image_ap).c_str(),
                  pct(m.pixel_ap).c_str());
    out += buf;
  };
  for (const auto& [type, m] : r.per_type) row(type, r.type_counts.at(type), m);
  row("overall", int(r.samples.size()), r.overall);
  return out;
}

std::string write_eval_summary(const std::vector<EvalResult>& results, const std::string& out_dir) {
  fs::create_directories(out_dir);
  EvalMetrics mean;
  std::string items;
  char buf[256];
  std::string table;
  std::snprintf(buf, sizeof buf, "%-22s %6s %8s %8s %8s %8s %8s %8s\n", "category", "images", "img-AUC", "pix-AUC",
                "AUPRO", "img-F1", "pix-F1", "s/img");
  table += buf;
  auto add = [](double& acc, double v) { acc += v; };  // NaN propagates: a mean over an undefined metric is undefined
  for (const auto& r : results) {
    add(mean.image_auroc, r.overall.image_auroc);
    add(mean.pixel_auroc, r.overall.pixel_auroc);
    add(mean.aupro, r.overall.aupro);
    add(mean.image_f1_max, r.overall.image_f1_max);
    add(mean.pixel_f1_max, r.overall.pixel_f1_max);
    add(mean.image_ap, r.overall.image_ap);
    add(mean.pixel_ap, r.overall.pixel_ap);
    items += cat(items.empty() ? "" : ",\n    ", "{\"category\": ", json::quote(r.name), ", \"images\": ",
                 r.samples.size(), ", ", metrics_json(r.overall), ", \"seconds_per_image\": ",
                 num(r.seconds_per_image), "}");
    std::snprintf(buf, sizeof buf, "%-22s %6zu %8s %8s %8s %8s %8s %8.3f\n", r.name.c_str(), r.samples.size(),
                  pct(r.overall.image_auroc).c_str(), pct(r.overall.pixel_auroc).c_str(), pct(r.overall.aupro).c_str(),
                  pct(r.overall.image_f1_max).c_str(), pct(r.overall.pixel_f1_max).c_str(), r.seconds_per_image);
    table += buf;
  }
  const double k = results.empty() ? 1.0 : double(results.size());
  mean.image_auroc /= k, mean.pixel_auroc /= k, mean.aupro /= k, mean.image_f1_max /= k, mean.pixel_f1_max /= k;
  mean.image_ap /= k, mean.pixel_ap /= k;
  std::snprintf(buf, sizeof buf, "%-22s %6s %8s %8s %8s %8s %8s\n", "mean", "", pct(mean.image_auroc).c_str(),
                pct(mean.pixel_auroc).c_str(), pct(mean.aupro).c_str(), pct(mean.image_f1_max).c_str(),
                pct(mean.pixel_f1_max).c_str());
  table += buf;
  std::string js = cat("{\n  \"engine\": \"mdps\",\n  \"engine_version\": \"", MDPS_VERSION, "\",\n  \"categories\": [\n    ",
                       items, "\n  ],\n  \"mean\": {", metrics_json(mean), "}\n}\n");
  json::parse(js, "summary.json");
  write_text_atomic((fs::path(out_dir) / "summary.json").string(), js);
  return table;
}

}  // namespace mdps
