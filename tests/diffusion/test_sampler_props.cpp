// Properties of the sampler that hold for any weights (a small random U-Net).
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "tests/tiny_fixtures.h"
#include "engine/detect/anomaly_map.h"
#include "engine/diffusion/sampler.h"
#include <cmath>

using namespace mdps;

namespace {

struct Fixture {
  UNet net{test::tiny_attention_unet_config(), cpu_backend()};
  Tensor y;
  Tensor mask;
  Fixture() {
    net.init_random(7);
    y = Tensor::from_vector({2, 3, 16, 16}, test::random_floats(2 * 3 * 256, 11, -1.f, 1.f));
    std::vector<float> m(2 * 256, 0.f);
    for (int i = 0; i < 2 * 256; ++i) m[size_t(i)] = (i % 16) > 8 && (i / 16) % 16 > 4 ? 1.f : 0.f;
    mask = Tensor::from_vector({2, 1, 16, 16}, m);
  }
};


}  // namespace

TEST_CASE("paper variant: x0_hat equals y exactly in the normal region at every step") {
  Fixture f;
  SamplerSettings s;
  s.variant = Variant::Paper;
  s.norm = GuidanceNorm::Squared;
  Sampler sampler(f.net, s);
  PhiloxNoise noise(1, 0);
  int steps = 0;
  int64_t normal_checked = 0, mismatches = 0;
  auto yv = f.y.to_vector();
  auto mv = f.mask.to_vector();
  sampler.sample(f.y, f.mask, {100, 100.f}, noise, [&](int, int, const Tensor&, const Tensor& x0) {
    ++steps;
    auto x0v = x0.to_vector();
    for (int64_t i = 0; i < int64_t(x0v.size()); ++i) {
      int64_t n = i / (3 * 256), p = i % 256;
      if (mv[size_t(n * 256 + p)] == 0.f) {
        ++normal_checked;
        if (x0v[size_t(i)] != yv[size_t(i)]) ++mismatches;
      }
    }
  });
  CHECK(steps == 5);
  CHECK(normal_checked > 0);
  CHECK(mismatches == 0);
}

TEST_CASE("paper variant with m = 1 and rho = 0 is plain DDIM") {
  Fixture f;
  SamplerSettings s;
  s.variant = Variant::Paper;
  s.skip = 25;
  Sampler sampler(f.net, s);
  PhiloxNoise noise(3, 1);
  Tensor out = sampler.sample(f.y, Tensor(), {100, 0.f}, noise);

  // The same draws, through a DDIM written out here.
  PhiloxNoise replay(3, 1);
  NoiseSchedule sched;
  Tensor z = Tensor::empty(f.y.shape());
  replay.normal(z);
  auto yv = f.y.to_vector(), zv = z.to_vector();
  std::vector<float> x(yv.size());
  double aT = sched.alpha_bar(100);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sqrt(aT) * yv[i]) + float(std::sqrt(1 - aT)) * zv[i];
  auto ts = sampler_timesteps(100, 25);
  for (size_t k = 0; k < ts.size(); ++k) {
    double a = sched.alpha_bar(ts[k]), an = sched.alpha_bar(k + 1 < ts.size() ? ts[k + 1] : -1);
    Tensor xt = Tensor::from_vector(f.y.shape(), x);
    auto eps = f.net.forward(Var(xt), Tensor::full({2}, float(ts[k]))).value.to_vector();
    Tensor fresh = Tensor::empty(f.y.shape());
    replay.normal(fresh);
    auto fz = fresh.to_vector();
    double sigma = std::sqrt((1 - an) / (1 - a)) * std::sqrt(1 - a / an);
    double dir = std::sqrt(std::max(0.0, 1 - an - sigma * sigma));
    for (size_t i = 0; i < x.size(); ++i) {
      double x0 = (double(x[i]) - std::sqrt(1 - a) * eps[i]) / std::sqrt(a);
      x[i] = float(std::sqrt(an) * x0 + dir * eps[i] + sigma * fz[i]);
    }
  }
  double e = test::rel_l2(out.to_vector(), x);
  INFO("rel L2 " << e);
  CHECK(e < 1e-5);
}

TEST_CASE("paper variant with ddim-eta 0 and rho 0 is deterministic for a given start") {
  Fixture f;
  SamplerSettings s;
  s.variant = Variant::Paper;
  s.ddim_eta = 0.f;
  Sampler sampler(f.net, s);
  // Same start noise (first draw), different step noise: the steps add none.
  Tensor start = Tensor::from_vector(f.y.shape(), test::random_floats(size_t(f.y.numel()), 5));
  auto draws = [&](uint64_t seed) {
    std::vector<Tensor> d{start};
    for (int i = 0; i < 5; ++i) d.push_back(Tensor::from_vector(f.y.shape(), test::random_floats(size_t(f.y.numel()), seed + i)));
    return d;
  };
  RecordedNoise n1(draws(100)), n2(draws(200));
  Tensor a = sampler.sample(f.y, f.mask, {100, 0.f}, n1);
  Tensor b = sampler.sample(f.y, f.mask, {100, 0.f}, n2);
  CHECK(test::same_bits(a, b));
  // and the step noise does matter when eta = 1
  SamplerSettings s1 = s;
  s1.ddim_eta = 1.f;
  Sampler noisy(f.net, s1);
  RecordedNoise n3(draws(100)), n4(draws(200));
  CHECK_FALSE(test::same_bits(noisy.sample(f.y, f.mask, {100, 0.f}, n3), noisy.sample(f.y, f.mask, {100, 0.f}, n4)));
}

TEST_CASE("authors' variant with m = 0 everywhere ends at y + sqrt((1-a0)/a0) (z - eps_hat)") {
  Fixture f;
  SamplerSettings s;
  s.variant = Variant::Authors;
  s.group = 2;
  Sampler sampler(f.net, s);
  Tensor zero_mask = Tensor::zeros({2, 1, 16, 16});
  PhiloxNoise noise(9, 2);
  Tensor out = sampler.sample(f.y, zero_mask, {60, 50.f}, noise);

  PhiloxNoise replay(9, 2);
  Tensor z = Tensor::empty(f.y.shape());
  replay.normal(z);  // the fixed z is the first draw
  NoiseSchedule sched;
  const double a0 = sched.alpha_bar(0);
  auto yv = f.y.to_vector(), zv = z.to_vector();
  std::vector<float> xl(yv.size());
  for (size_t i = 0; i < xl.size(); ++i) xl[i] = float(std::sqrt(a0)) * yv[i] + float(std::sqrt(1 - a0)) * zv[i];
  Tensor eps, grad;
  sampler.eps_and_guidance(Tensor::from_vector(f.y.shape(), xl), f.y, 0, true, eps, grad);
  auto ev = eps.to_vector(), gv = grad.to_vector();
  std::vector<float> expect(yv.size());
  for (size_t i = 0; i < yv.size(); ++i) {
    double eps_hat = ev[i] + std::sqrt(1 - a0) * 50.0 * gv[i];
    expect[i] = float(yv[i] + std::sqrt((1 - a0) / a0) * (zv[i] - eps_hat));
  }
  double e = test::rel_l2(out.to_vector(), expect);
  INFO("rel L2 " << e);
  CHECK(e < 1e-5);
}

TEST_CASE("guidance groups never span repeats, and rho = 0 takes no gradient") {
  Fixture f;
  SamplerSettings s;
  s.group = 8;
  Sampler sampler(f.net, s);
  // Two repeats of a batch of 2 stacked: the L2 norm is per repeat, so each
  // repeat's gradient equals that of the batch alone.
  Tensor x = Tensor::from_vector(f.y.shape(), test::random_floats(size_t(f.y.numel()), 21));
  Tensor eps1, g1, eps2, g2;
  sampler.eps_and_guidance(x, f.y, 40, true, eps1, g1);
  sampler.eps_and_guidance(repeat_batch(x, 2), repeat_batch(f.y, 2), 40, true, eps2, g2, 2);
  CHECK(test::rel_l2(g2.slice_batch(2, 4).to_vector(), g1.to_vector()) < 1e-6);
  CHECK(test::rel_l2(g2.slice_batch(0, 2).to_vector(), g1.to_vector()) < 1e-6);
  Tensor eps3, g3;
  sampler.eps_and_guidance(x, f.y, 40, false, eps3, g3);
  CHECK_FALSE(g3.defined());
  CHECK(test::rel_l2(eps3.to_vector(), eps1.to_vector()) < 1e-6);
}

TEST_CASE("threshold mask and the two-round protocol") {
  Fixture f;
  Tensor maps = Tensor::from_vector({1, 1, 1, 4}, {0.f, 1.f, 2.f, 10.f});
  CHECK(threshold_mask(maps, 0.15f).to_vector() == std::vector<float>{0, 0, 1, 1});
  SamplerSettings s;
  Sampler sampler(f.net, s);
  MdpsRounds r;
  r.round1 = {40, 10.f};
  r.round2 = {40, 20.f};
  r.samples = 2;
  PhiloxNoise noise(4, 0);
  MdpsOutput o = run_mdps(sampler, f.y, r, noise, pixel_anomaly_map);
  CHECK(o.recon.shape() == Shape{4, 3, 16, 16});
  CHECK(o.round1.shape() == Shape{4, 3, 16, 16});
  CHECK(o.mask.shape() == Shape{2, 1, 16, 16});
  auto mv = o.mask.to_vector();
  double frac = 0;
  for (float v : mv) frac += v;
  CHECK(frac > 0);  // lambda < 1 marks at least the maximum
  CHECK(mean_over_repeats(o.recon, 2).shape() == Shape{2, 3, 16, 16});
}
