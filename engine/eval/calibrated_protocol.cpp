#include "engine/eval/calibrated_protocol.h"
#include "engine/diffusion/noise.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace mdps {
namespace {

// The draws of a batch of B images x Ns samples, laid out as run_mdps stacks
// them (row r*B + n: sample r of image n). Each row comes from the stream of
// its image's key, the round and its sample, at its own position, so a row's
// values never depend on how many samples or images are drawn beside it.
class ImageNoise : public NoiseSource {
 public:
  ImageNoise(uint64_t seed, std::vector<uint64_t> keys, int round, int samples)
      : seed_(seed), keys_(std::move(keys)), round_(round), pos_(keys_.size() * size_t(samples), 0) {}
  void normal(Tensor& out) override {
    MDPS_CHECK(out.defined() && out.dim(0) == int64_t(pos_.size()), "image noise: ", out.describe(), " for ",
               pos_.size(), " rows");
    const size_t B = keys_.size();
    for (size_t j = 0; j < pos_.size(); ++j) {
      Tensor row = out.slice_batch(int64_t(j), int64_t(j) + 1);
      row.backend().philox_normal(row, seed_, image_noise_stream(keys_[j % B], round_, int(j / B)), pos_[j]);
      pos_[j] += uint64_t(row.numel());
    }
  }

 private:
  uint64_t seed_;
  std::vector<uint64_t> keys_;
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

// What both the protocol and the statistics run need for a batch of images.
// A batch [B,3,S,S] runs as B*Ns rows through the U-Net (row r*B + n: sample
// r of image n), each row with its own noise streams and its own guidance
// norm, and every map, mask and term computed per image: on a backend whose
// ops are batch invariant (Backend::batch_invariant, tested in
// tests/model/test_unet_batch_invariance.cpp) an image's results are the bits
// it gets alone, whatever the batch. Elsewhere the batch is one image.
struct ImageBatches {
  const UNet& model;
  const ResNetFeatures* features;
  EvalSettings st;  // at the model's size
  Sampler sampler;
  int S, ns;
  size_t batch;  // images per U-Net call
  bool two_rounds;

  ImageBatches(const UNet& m, const ResNetFeatures* f, const EvalSettings& settings)
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
        batch(m.backend().batch_invariant() ? size_t(std::max(1, settings.batch)) : 1),
        two_rounds(settings.rounds.round1.t_start > 0) {
    st.validate();
  }

  // Images [b, e) as host [B,3,S,S] (checked) and on the model's backend, with their noise keys.
  struct Loaded {
    Tensor host, y;
    std::vector<uint64_t> keys;
  };
  Loaded load(const BatchLoader& loader, size_t b, size_t e) const {
    Loaded l;
    l.host = loader(b, e).to(cpu_backend());
    check_shape(l.host, {int64_t(e - b), 3, S, S}, "image");
    l.y = l.host.to(model.backend());
    for (size_t n = 0; n < e - b; ++n) l.keys.push_back(image_noise_key(l.host[int64_t(n)]));
    return l;
  }
  // Ns samples of one round [Ns*B,3,S,S] with the images' own noise streams.
  Tensor sample(const Loaded& l, const Tensor& mask, int round) const {
    ImageNoise noise(st.seed, l.keys, round, ns);
    const RoundSettings& rs = round == 1 ? st.rounds.round1 : st.rounds.round2;
    return sampler.sample(repeat_batch(l.y, ns), mask.defined() ? repeat_batch(mask, ns) : Tensor(), rs, noise,
                          nullptr, l.y.dim(0));
  }
  // map_fn of each image of the batch alone, stacked [B,1,S,S]: no maximum
  // or range is ever taken over two images.
  Tensor per_image(const Tensor& y, const Tensor& rec, const TermMaxima* maxima) const {
    const int64_t B = y.dim(0);
    Tensor out = Tensor::empty({B, 1, S, S}, model.backend());
    for (int64_t n = 0; n < B; ++n) {
      Tensor dst = out[n];
      dst.copy_from(anomaly_map(features, y[n], rec[n], st.map, maxima).combined);
    }
    return out;
  }
  // The blurred distance map of image y [1,3,S,S] to the feature memory (skip:
  // the memory image left out, -1 none), on the host.
  std::vector<float> memory_map(const FeatureMemory& mem, const Tensor& y, int skip) const {
    MDPS_CHECK(can_embed(features), "the detector carries a feature memory but its feature extractor ",
               features ? cat("reaches stage ", features->deepest_layer()) : std::string("is missing"),
               "; the memory needs stage ", memory_layers().back());
    return blurred(memory_distance_map(mem, *features, y, skip));
  }
  // The same for a memory image, from its rows in the memory (not embedded again).
  std::vector<float> memory_map_of_slot(const FeatureMemory& mem, int slot) const {
    const size_t per = mem.rows_per_image() * size_t(mem.dim);
    return blurred(memory_distance_map(mem, mem.rows.data() + size_t(slot) * per, mem.grid, mem.dim, S, S,
                                       model.backend(), slot));
  }
  std::vector<float> blurred(const Tensor& d) const {
    Tensor b = Tensor::empty(d.shape(), d.backend());
    d.backend().gaussian_blur(d, st.map.blur_kernel, st.map.blur_sigma, b);
    return b.to_vector();
  }
  // Each of the B maps laid one after another in `maps` fused with its image's memory term.
  void fuse_memory(std::vector<float>& maps, const Tensor& y, const NormalStats& fm) const {
    const size_t plane = size_t(S) * S;
    for (int64_t n = 0; n < y.dim(0); ++n) {
      const auto at = maps.begin() + long(size_t(n) * plane);
      const std::vector<float> c(at, at + long(plane));
      const std::vector<float> f =
          fuse_memory_term(c, memory_map(fm.memory, y[n], -1), fm.map_max, fm.memory_max, st.memory_weight);
      std::copy(f.begin(), f.end(), at);
    }
  }
  // Eq. 19: the mean of the samples' maps, in sample order, as mean_map_over_samples sums them.
  static Tensor mean(const std::vector<Tensor>& maps) {
    Tensor out = Tensor::zeros(maps[0].shape(), maps[0].backend());
    for (const Tensor& m : maps) m.backend().axpby(1.f / float(maps.size()), m, 1.f, out);
    return out;
  }
  // The samples' terms on the host, per image of the batch: pixel then
  // feature (when there is a feature extractor) per sample, and their maxima
  // folded into `max`.
  std::vector<std::vector<std::vector<float>>> terms(const Tensor& y, const Tensor& rec, TermMaxima& max) const {
    const int64_t B = y.dim(0);
    std::vector<std::vector<std::vector<float>>> out(static_cast<size_t>(B));
    for (int64_t n = 0; n < B; ++n)
      for (int k = 0; k < ns; ++k) {
        AnomalyMaps am = anomaly_map(features, y[n], rec[k * B + n], st.map);
        out[size_t(n)].push_back(am.pixel.to_vector());
        for (float v : out[size_t(n)].back()) max.pixel = std::max(max.pixel, v);
        if (features) {
          out[size_t(n)].push_back(am.feature.to_vector());
          for (float v : out[size_t(n)].back()) max.feature = std::max(max.feature, v);
        }
      }
    return out;
  }
  // One image's terms() combined with the maxima: the same bits as run_mdps's
  // mean map (mean_map_over_samples) with them.
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
  const ImageBatches ib(model, features, settings);
  const NormalStats* stats = ib.st.normal ? &*ib.st.normal : nullptr;
  const int S = ib.S;
  const size_t plane = size_t(S) * S;
  const int kept = hooks.all_samples ? ib.ns : 1;
  const auto t0 = std::chrono::steady_clock::now();
  ProtocolOutput out;
  out.size = S;
  out.maps.resize(N * plane);
  out.recon.resize(N * size_t(kept));
  if (hooks.keep_masks) out.masks.assign(N * plane, 0.f);
  // The eta combination's maxima of each round: the normal images' (else each image's own).
  const AnomalyMapFn round1_map = [&](const Tensor& y, const Tensor& rec) {
    return ib.per_image(y, rec, stats ? &stats->round1 : nullptr);
  };
  const AnomalyMapFn final_map = [&](const Tensor& y, const Tensor& rec) {
    return ib.per_image(y, rec, stats ? &stats->final : nullptr);
  };
  for (size_t b = 0; b < N; b += ib.batch) {
    const size_t e = std::min(N, b + ib.batch), B = e - b;
    const ImageBatches::Loaded l = ib.load(load, b, e);
    Tensor given;
    if (hooks.masks) {
      given = hooks.masks(b, e);
      check_shape(given, {int64_t(B), 1, S, S}, "given mask");
      given = given.to(model.backend());
    }
    ImageNoise noise1(ib.st.seed, l.keys, 1, ib.ns), noise2(ib.st.seed, l.keys, 2, ib.ns);
    MdpsSteps steps;
    steps.round2_noise = &noise2;
    steps.final_map = final_map;
    steps.round2_steps = hooks.round2_steps;
    // The mask range: the normal images' round-1 range (else each image's own).
    if (stats)
      steps.mask = [&](const Tensor& m1) {
        return threshold_mask(m1, ib.st.rounds.lambda, stats->round1_min, stats->round1_max);
      };
    MdpsOutput o = run_mdps(ib.sampler, l.y, ib.st.rounds, noise1, round1_map, given, steps);
    std::vector<float> m = o.map.to_vector();
    if (const NormalStats* fm = ib.st.fused_memory()) ib.fuse_memory(m, l.y, *fm);
    std::copy(m.begin(), m.end(), out.maps.begin() + b * plane);
    if (hooks.keep_masks && o.mask.defined()) {
      std::vector<float> mv = o.mask.to_vector();
      std::copy(mv.begin(), mv.end(), out.masks.begin() + b * plane);
    }
    Tensor rec = o.recon.slice_batch(0, int64_t(kept * B)).to(cpu_backend());
    for (int r = 0; r < kept; ++r)
      for (size_t n = 0; n < B; ++n) out.recon[size_t(r) * N + b + n] = recon_bytes(rec, int(r * B + n));
    if (progress)
      for (size_t n = b; n < e; ++n) progress(n + 1, N, seconds_since(t0), 0);
  }
  out.seconds = seconds_since(t0);
  return out;
}

NormalStats collect_normal_stats(const UNet& model, const ResNetFeatures* features, size_t N, const BatchLoader& load,
                                 const EvalSettings& settings, const EvalProgressFn& progress,
                                 std::vector<float>* final_maps) {
  MDPS_CHECK(N >= 1, "calibration: no normal images");
  MDPS_CHECK(settings.protocol == Protocol::Calibrated, "calibration statistics belong to the calibrated protocol");
  const ImageBatches ib(model, features, settings);
  const size_t plane = size_t(ib.S) * ib.S;
  const auto t0 = std::chrono::steady_clock::now();
  NormalStats stats;
  stats.images = int(N);
  // The maxima are exact whatever order the images come in, so batching
  // the passes changes no bit of the statistics.
  // Pass 1: round 1 of every image, its terms kept until the maxima are known.
  std::vector<std::vector<float>> round1_maps(N);
  if (ib.two_rounds) {
    std::vector<std::vector<std::vector<float>>> terms(N);
    for (size_t b = 0; b < N; b += ib.batch) {
      const size_t e = std::min(N, b + ib.batch);
      const ImageBatches::Loaded l = ib.load(load, b, e);
      auto t = ib.terms(l.y, ib.sample(l, Tensor(), 1), stats.round1);
      for (size_t n = b; n < e; ++n) {
        terms[n] = std::move(t[n - b]);
        if (progress) progress(n + 1, N, seconds_since(t0), 1);
      }
    }
    stats.round1_min = INFINITY;
    stats.round1_max = -INFINITY;
    for (size_t i = 0; i < N; ++i) {
      round1_maps[i] = ib.combine(terms[i], stats.round1).to_vector();
      auto [lo, hi] = std::minmax_element(round1_maps[i].begin(), round1_maps[i].end());
      stats.round1_min = std::min(stats.round1_min, *lo);
      stats.round1_max = std::max(stats.round1_max, *hi);
    }
  }
  // Pass 2: the final round with the masks the normal range gives.
  std::vector<std::vector<std::vector<float>>> terms(N);
  for (size_t b = 0; b < N; b += ib.batch) {
    const size_t e = std::min(N, b + ib.batch), B = e - b;
    const ImageBatches::Loaded l = ib.load(load, b, e);
    Tensor mask;
    if (ib.two_rounds) {
      std::vector<float> m;
      m.reserve(B * plane);
      for (size_t n = b; n < e; ++n) m.insert(m.end(), round1_maps[n].begin(), round1_maps[n].end());
      mask = threshold_mask(Tensor::from_vector({int64_t(B), 1, ib.S, ib.S}, m), ib.st.rounds.lambda,
                            stats.round1_min, stats.round1_max)
                 .to(model.backend());
    }
    auto t = ib.terms(l.y, ib.sample(l, mask, 2), stats.final);
    for (size_t n = b; n < e; ++n) {
      terms[n] = std::move(t[n - b]);
      if (progress) progress(n + 1, N, seconds_since(t0), ib.two_rounds ? 2 : 0);
    }
  }
  // The final maps, scored with the statistics: their per-pixel mean and std
  // are the statistics of the normal-z image score.
  std::vector<float> maps(N * plane);
  for (size_t i = 0; i < N; ++i) {
    std::vector<float> m = ib.combine(terms[i], stats.final).to_vector();
    std::copy(m.begin(), m.end(), maps.begin() + long(i * plane));
  }
  // The feature memory: the embeddings of the normal images (at most
  // kMaxMemoryImages of them, evenly spaced), then each image's distance map
  // against the memory without its own rows (leave one out; a memory image's
  // from its rows, embedded once), and the maps fused with the maxima both
  // give. One image has no others: no memory.
  if (ib.st.memory_weight > 0.f && can_embed(features) && N >= 2) {
    FeatureMemory& mem = stats.memory;
    const std::vector<size_t> kept = memory_image_indices(N);
    std::vector<int> slot(N, -1);  // each image's place in the memory, -1: not in it
    for (size_t k = 0; k < kept.size(); ++k) {
      slot[kept[k]] = int(k);
      const std::vector<float> rows = memory_embeddings(*features, ib.load(load, kept[k], kept[k] + 1).y, mem.grid, mem.dim);
      mem.rows.insert(mem.rows.end(), rows.begin(), rows.end());
    }
    mem.images = int(kept.size());
    mem.check("calibration: the feature memory");
    std::vector<float> dist(N * plane);
    for (size_t i = 0; i < N; ++i) {
      const std::vector<float> d =
          slot[i] >= 0 ? ib.memory_map_of_slot(mem, slot[i]) : ib.memory_map(mem, ib.load(load, i, i + 1).y, -1);
      std::copy(d.begin(), d.end(), dist.begin() + long(i * plane));
      if (progress) progress(i + 1, N, seconds_since(t0), 3);
    }
    stats.map_max = *std::max_element(maps.begin(), maps.end());
    stats.memory_max = *std::max_element(dist.begin(), dist.end());
    maps = fuse_memory_term(maps, dist, stats.map_max, stats.memory_max, ib.st.memory_weight);
  }
  stats.pixels = PixelNormals::of_maps(maps, N, ib.S, ib.S);
  if (final_maps) *final_maps = std::move(maps);
  return stats;
}

}  // namespace mdps
