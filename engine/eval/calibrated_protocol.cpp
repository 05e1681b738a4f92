#include "engine/eval/calibrated_protocol.h"
#include "engine/diffusion/noise.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace mdps {
namespace {

// Row r of every draw comes from the stream of sample r of this image and
// round; each row keeps its own position, so a row's values never depend on
// how many samples are drawn beside it.
class ImageNoise : public NoiseSource {
 public:
  ImageNoise(uint64_t seed, uint64_t key, int round, int samples)
      : seed_(seed), key_(key), round_(round), pos_(size_t(samples), 0) {}
  void normal(Tensor& out) override {
    MDPS_CHECK(out.defined() && out.dim(0) == int64_t(pos_.size()), "image noise: ", out.describe(), " for ",
               pos_.size(), " samples");
    for (size_t r = 0; r < pos_.size(); ++r) {
      Tensor row = out.slice_batch(int64_t(r), int64_t(r) + 1);
      row.backend().philox_normal(row, seed_, image_noise_stream(key_, round_, int(r)), pos_[r]);
      pos_[r] += uint64_t(row.numel());
    }
  }

 private:
  uint64_t seed_, key_;
  int round_;
  std::vector<uint64_t> pos_;
};

// The per-sample guidance norm at the authors' strength. Their L2 norm is
// taken over a batch of kAuthorsGroup images, ||R|| ~ sqrt(8) ||r_i|| when
// the images' residuals are alike, so each image is pulled by rho r_i /
// (sqrt(8) ||r_i||). A norm of one sample alone pulls sqrt(8) times harder
// at the same rho: the reconstruction then copies the image, defects
// included (image AUROC 0.38 against the authors' 0.69 on tire, bench/
// RESULTS.md). Dividing rho by sqrt(8) gives the authors' strength, so
// --rho means the same in both protocols. The squared norm (the paper's)
// is per image in both, and is left as it is.
EvalSettings guidance_per_sample(EvalSettings s) {
  if (s.sampler.norm == GuidanceNorm::L2) {
    const float f = 1.f / std::sqrt(float(kAuthorsGroup));
    s.rounds.round1.rho *= f;
    s.rounds.round2.rho *= f;
  }
  return s;
}

// What both the protocol and the statistics run need for one image at a time.
struct OneImage {
  const UNet& model;
  const ResNetFeatures* features;
  EvalSettings st;  // at the model's size
  Sampler sampler;
  int S, ns;
  bool two_rounds;

  OneImage(const UNet& m, const ResNetFeatures* f, const EvalSettings& settings)
      : model(m),
        features(f),
        st(guidance_per_sample(settings.at_size(m.config().image_size))),
        sampler(m, [&] {
          SamplerSettings ss = settings.sampler;
          ss.group = 1;  // the guidance norm of every sample is its own
          return ss;
        }()),
        S(m.config().image_size),
        ns(settings.rounds.samples),
        two_rounds(settings.rounds.round1.t_start > 0) {
    st.validate();
  }

  // Image i as host [1,3,S,S] (checked) and on the model's backend.
  std::pair<Tensor, Tensor> load(const BatchLoader& loader, size_t i) const {
    Tensor host = loader(i, i + 1).to(cpu_backend());
    check_shape(host, {1, 3, S, S}, "image");
    return {host, host.to(model.backend())};
  }
  // Ns samples of one round [ns,3,S,S] with the image's own noise streams.
  Tensor sample(const Tensor& y, const Tensor& mask, int round, uint64_t key) const {
    ImageNoise noise(st.seed, key, round, ns);
    const RoundSettings& rs = round == 1 ? st.rounds.round1 : st.rounds.round2;
    return sampler.sample(repeat_batch(y, ns), mask.defined() ? repeat_batch(mask, ns) : Tensor(), rs, noise, nullptr,
                          1);
  }
  // Eq. 19: the mean of the samples' maps, in sample order, as mean_map_over_samples sums them.
  static Tensor mean(const std::vector<Tensor>& maps) {
    Tensor out = Tensor::zeros(maps[0].shape(), maps[0].backend());
    for (const Tensor& m : maps) m.backend().axpby(1.f / float(maps.size()), m, 1.f, out);
    return out;
  }
  // The samples' terms on the host: pixel then feature (when there is a
  // feature extractor) per sample, and their maxima folded into `max`.
  std::vector<std::vector<float>> terms(const Tensor& y, const Tensor& rec, TermMaxima& max) const {
    std::vector<std::vector<float>> out;
    for (int k = 0; k < ns; ++k) {
      AnomalyMaps am = anomaly_map(features, y, rec.slice_batch(k, k + 1), st.map);
      out.push_back(am.pixel.to_vector());
      for (float v : out.back()) max.pixel = std::max(max.pixel, v);
      if (features) {
        out.push_back(am.feature.to_vector());
        for (float v : out.back()) max.feature = std::max(max.feature, v);
      }
    }
    return out;
  }
  // terms() combined with the maxima: the same bits as run_mdps's mean map
  // (mean_map_over_samples) with them.
  Tensor combine(const std::vector<std::vector<float>>& t, const TermMaxima& maxima) const {
    std::vector<Tensor> maps;
    const size_t per = features ? 2 : 1;
    Backend& be = model.backend();
    for (int k = 0; k < ns; ++k) {
      Tensor p = Tensor::from_vector({1, 1, S, S}, t[size_t(k) * per]).to(be);
      Tensor f = features ? Tensor::from_vector({1, 1, S, S}, t[size_t(k) * per + 1]).to(be) : Tensor();
      maps.push_back(combine_anomaly_terms(p, f, st.map, &maxima));
    }
    return mean(maps);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

uint64_t image_noise_stream(uint64_t key, int round, int k) {
  uint64_t z = key ^ (uint64_t(uint32_t(round)) << 32) ^ uint64_t(uint32_t(k)) ^ 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t image_noise_key(const Tensor& y) {
  MDPS_CHECK(y.defined() && y.ndim() == 4 && y.dim(0) == 1, "image noise key: ", y.describe(), " is not one image");
  const std::vector<float> v = y.to_vector();
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (float f : v) {
    unsigned char b[sizeof f];
    std::memcpy(b, &f, sizeof f);
    for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ull;
  }
  return h;
}

ProtocolOutput run_calibrated_protocol(const UNet& model, const ResNetFeatures* features, size_t N,
                                       const BatchLoader& load, const EvalSettings& settings,
                                       const EvalProgressFn& progress, const ProtocolHooks& hooks) {
  const OneImage one(model, features, settings);
  const NormalStats* stats = one.st.normal ? &*one.st.normal : nullptr;
  const int S = one.S;
  const size_t plane = size_t(S) * S;
  const int kept = hooks.all_samples ? one.ns : 1;
  const auto t0 = std::chrono::steady_clock::now();
  ProtocolOutput out;
  out.size = S;
  out.maps.resize(N * plane);
  out.recon.resize(N * size_t(kept));
  if (hooks.keep_masks) out.masks.assign(N * plane, 0.f);
  // The eta combination's maxima of each round: the normal images' (else the image's own).
  const AnomalyMapFn round1_map = [&](const Tensor& y, const Tensor& rec) {
    return anomaly_map(features, y, rec, one.st.map, stats ? &stats->round1 : nullptr).combined;
  };
  const AnomalyMapFn final_map = [&](const Tensor& y, const Tensor& rec) {
    return anomaly_map(features, y, rec, one.st.map, stats ? &stats->final : nullptr).combined;
  };
  for (size_t i = 0; i < N; ++i) {
    auto [host, y] = one.load(load, i);
    const uint64_t key = image_noise_key(host);
    Tensor given;
    if (hooks.masks) {
      given = hooks.masks(i, i + 1);
      check_shape(given, {1, 1, S, S}, "given mask");
      given = given.to(model.backend());
    }
    ImageNoise noise1(one.st.seed, key, 1, one.ns), noise2(one.st.seed, key, 2, one.ns);
    MdpsSteps steps;
    steps.round2_noise = &noise2;
    steps.final_map = final_map;
    steps.round2_steps = hooks.round2_steps;
    // The mask range: the normal images' round-1 range (else the image's own).
    if (stats)
      steps.mask = [&](const Tensor& m1) {
        return threshold_mask(m1, one.st.rounds.lambda, stats->round1_min, stats->round1_max);
      };
    MdpsOutput o = run_mdps(one.sampler, y, one.st.rounds, noise1, round1_map, given, steps);
    std::vector<float> m = o.map.to_vector();
    std::copy(m.begin(), m.end(), out.maps.begin() + i * plane);
    if (hooks.keep_masks && o.mask.defined()) {
      std::vector<float> mv = o.mask.to_vector();
      std::copy(mv.begin(), mv.end(), out.masks.begin() + i * plane);
    }
    Tensor rec = o.recon.slice_batch(0, kept).to(cpu_backend());
    for (int r = 0; r < kept; ++r) out.recon[size_t(r) * N + i] = recon_bytes(rec, r);
    if (progress) progress(i + 1, N, seconds_since(t0), 0);
  }
  out.seconds = seconds_since(t0);
  return out;
}

NormalStats collect_normal_stats(const UNet& model, const ResNetFeatures* features, size_t N, const BatchLoader& load,
                                 const EvalSettings& settings, const EvalProgressFn& progress,
                                 std::vector<float>* final_maps) {
  MDPS_CHECK(N >= 1, "calibration: no normal images");
  MDPS_CHECK(settings.protocol == Protocol::Calibrated, "calibration statistics belong to the calibrated protocol");
  const OneImage one(model, features, settings);
  const size_t plane = size_t(one.S) * one.S;
  const auto t0 = std::chrono::steady_clock::now();
  NormalStats stats;
  stats.images = int(N);
  // Pass 1: round 1 of every image, its terms kept until the maxima are known.
  std::vector<std::vector<float>> round1_maps(N);
  if (one.two_rounds) {
    std::vector<std::vector<std::vector<float>>> terms(N);
    for (size_t i = 0; i < N; ++i) {
      auto [host, y] = one.load(load, i);
      terms[i] = one.terms(y, one.sample(y, Tensor(), 1, image_noise_key(host)), stats.round1);
      if (progress) progress(i + 1, N, seconds_since(t0), 1);
    }
    stats.round1_min = INFINITY;
    stats.round1_max = -INFINITY;
    for (size_t i = 0; i < N; ++i) {
      round1_maps[i] = one.combine(terms[i], stats.round1).to_vector();
      auto [lo, hi] = std::minmax_element(round1_maps[i].begin(), round1_maps[i].end());
      stats.round1_min = std::min(stats.round1_min, *lo);
      stats.round1_max = std::max(stats.round1_max, *hi);
    }
  }
  // Pass 2: the final round with the masks the normal range gives.
  std::vector<std::vector<std::vector<float>>> terms(N);
  for (size_t i = 0; i < N; ++i) {
    auto [host, y] = one.load(load, i);
    Tensor mask;
    if (one.two_rounds)
      mask = threshold_mask(Tensor::from_vector({1, 1, one.S, one.S}, round1_maps[i]), one.st.rounds.lambda,
                            stats.round1_min, stats.round1_max)
                 .to(model.backend());
    terms[i] = one.terms(y, one.sample(y, mask, 2, image_noise_key(host)), stats.final);
    if (progress) progress(i + 1, N, seconds_since(t0), one.two_rounds ? 2 : 0);
  }
  if (final_maps) {
    final_maps->resize(N * plane);
    for (size_t i = 0; i < N; ++i) {
      std::vector<float> m = one.combine(terms[i], stats.final).to_vector();
      std::copy(m.begin(), m.end(), final_maps->begin() + i * plane);
    }
  }
  return stats;
}

}  // namespace mdps
