#include "engine/diffusion/sampler.h"
#include "engine/core/trace.h"
#include "engine/core/ops.h"
#include <algorithm>
#include <cmath>

namespace mdps {

Variant parse_variant(const std::string& s) {
  if (s == "paper") return Variant::Paper;
  if (s == "authors") return Variant::Authors;
  throw Error(cat("unknown sampler variant '", s, "' (expected paper or authors)"));
}
GuidanceNorm parse_guidance_norm(const std::string& s) {
  if (s == "squared") return GuidanceNorm::Squared;
  if (s == "l2") return GuidanceNorm::L2;
  throw Error(cat("unknown guidance norm '", s, "' (expected squared or l2)"));
}

std::vector<int> sampler_timesteps(int t_start, int skip) {
  MDPS_CHECK(skip > 0, "skip must be positive, got ", skip);
  MDPS_CHECK(t_start > 0 && t_start < 1000, "T must be in 1..999, got ", t_start);
  // The authors' range(0, T, skip) walked backwards.
  std::vector<int> ts;
  for (int t = 0; t < t_start; t += skip) ts.push_back(t);
  std::reverse(ts.begin(), ts.end());
  return ts;
}

Sampler::Sampler(const UNet& model, const SamplerSettings& settings) : model_(model), settings_(settings) {
  MDPS_CHECK(settings.group > 0, "guidance group must be positive");
  MDPS_CHECK(settings.ddim_eta >= 0.f, "--ddim-eta must be >= 0");
}

void Sampler::eps_and_guidance(const Tensor& x, const Tensor& y, int t, bool want_grad, Tensor& eps,
                               Tensor& grad, int64_t repeat_size) const {
  Backend& be = x.backend();
  const int64_t N = x.dim(0);
  trace::Scope span("sampler.guidance", "span");
  if (span.active()) span.num("t", t).num("grad", want_grad ? 1 : 0);
  // The timesteps filled where the model runs (no host copy inside a step).
  Tensor tt = Tensor::empty({N}, be);
  be.fill(tt, float(t));
  if (!want_grad) {
    eps = model_.forward(Var(x), tt).value;
    grad = Tensor();
    return;
  }
  const double a = schedule_.alpha_bar(t);
  const float sa = float(std::sqrt(a)), s1a = float(std::sqrt(1.0 - a));
  Tape tape;
  Var xv = make_leaf(x, MemCategory::InputGrad);
  Var ev;
  {
    TapeScope rec(tape);
    ev = model_.forward(xv, tt);
  }
  eps = ev.value;
  // d = x0_prior - y, x0_prior = (x - s1a eps) / sa
  Tensor d = Tensor::empty(x.shape(), be);
  be.axpby(1.f / sa, x, 0.f, d);
  be.axpby(-s1a / sa, eps, 1.f, d);
  be.axpby(-1.f, y, 1.f, d);
  // G = dObjective/dx0_prior: d / ||d||_group (L2) or 2 d per image (squared).
  Tensor G = Tensor::empty(x.shape(), be);
  if (settings_.norm == GuidanceNorm::Squared) {
    be.scale(d, 2.f, G);
  } else {
    const int64_t g = settings_.group;
    const int64_t rep = repeat_size > 0 ? repeat_size : N;
    MDPS_CHECK(N % rep == 0, "guidance: batch ", N, " is not a whole number of repeats of ", rep);
    Tensor ss = Tensor::empty({1}, be);
    for (int64_t b = 0; b < N;) {
      // groups of g consecutive images, restarted at every repeat boundary
      int64_t e = std::min({N, b + g, (b / rep + 1) * rep});
      Tensor dg = d.slice_batch(b, e), Gg = G.slice_batch(b, e);
      be.sum_squares(dg, ss);
      be.scale_by_inverse_sqrt(dg, ss, Gg);  // the norm stays on the device: nothing waits
      b = e;
    }
  }
  // Chain rule through x0_prior: direct G/sa, and -s1a/sa G through eps.
  Tensor seed = Tensor::empty(x.shape(), be);
  be.scale(G, -s1a / sa, seed);
  tape.backward(ev, seed);
  grad = xv.grad();
  MDPS_CHECK(grad.defined(), "guidance: no gradient reached the U-Net input");
  Tensor total = Tensor::empty(x.shape(), be);
  be.scale(grad, 1.f, total);
  be.axpby(1.f / sa, G, 1.f, total);
  grad = total;
}

Tensor Sampler::sample(const Tensor& y, const Tensor& mask, const RoundSettings& round, NoiseSource& noise,
                       const StepCallback& on_step, int64_t repeat_size) const {
  Backend& be = y.backend();
  MDPS_CHECK(y.ndim() == 4, "sampler: observation ", y.describe(), " is not NCHW");
  if (mask.defined()) check_shape(mask, {y.dim(0), 1, y.dim(2), y.dim(3)}, "sampler mask");
  const std::vector<int> ts = sampler_timesteps(round.t_start, settings_.skip);
  const bool guided = round.rho != 0.f;
  trace::Scope round_span("sampler.round", "span");
  if (round_span.active())
    round_span.shape("y", y.shape()).num("T", round.t_start).num("rho", round.rho).num("masked", mask.defined());

  // Start: x_T = sqrt(abar_T) y + sqrt(1 - abar_T) z.
  Tensor z = Tensor::empty(y.shape(), be);
  noise.normal(z);
  const double aT = schedule_.alpha_bar(round.t_start);
  Tensor x = Tensor::empty(y.shape(), be);
  be.scale(y, float(std::sqrt(aT)), x);
  be.axpby(float(std::sqrt(1.0 - aT)), z, 1.f, x);

  const bool authors_masked = settings_.variant == Variant::Authors && mask.defined();
  const Tensor* step_mask = settings_.variant == Variant::Paper && mask.defined() ? &mask : nullptr;
  Tensor fresh = Tensor::empty(y.shape(), be), x_next = Tensor::empty(y.shape(), be),
         x0 = Tensor::empty(y.shape(), be);
  for (size_t i = 0; i < ts.size(); ++i) {
    const int t = ts[i];
    const int s = i + 1 < ts.size() ? ts[i + 1] : -1;
    trace::Scope span("sampler.step", "span");
    if (span.active()) span.num("step", double(i)).num("t", t);
    const double a = schedule_.alpha_bar(t), a_next = schedule_.alpha_bar(s);
    StepCoeffs c;
    c.sqrt_a = float(std::sqrt(a));
    c.sqrt_1ma = float(std::sqrt(1.0 - a));
    c.sqrt_a_next = float(std::sqrt(a_next));
    double sigma = settings_.ddim_eta * std::sqrt((1.0 - a_next) / (1.0 - a)) * std::sqrt(1.0 - a / a_next);
    c.sigma = float(sigma);
    c.dir = float(std::sqrt(std::max(0.0, 1.0 - a_next - sigma * sigma)));
    c.guidance = float(round.rho * std::sqrt(1.0 - a));

    if (authors_masked) {
      trace::Scope op("replace_normal");
      be.replace_normal(x, y, z, mask, c.sqrt_a, c.sqrt_1ma);
    }
    Tensor eps, grad;
    eps_and_guidance(x, y, t, guided, eps, grad, repeat_size);
    {
      trace::Scope op("noise.normal");
      noise.normal(fresh);
    }
    {
      trace::Scope op("mdps_step");
      if (op.active()) op.shape("x", x.shape()).bytes(int64_t(x.numel()) * 4 * (grad.defined() ? 7 : 6));
      be.mdps_step(x, y, eps, grad.defined() ? &grad : nullptr, step_mask, &fresh, c, x_next, &x0);
    }
    std::swap(x, x_next);
    if (on_step) on_step(int(i), t, x, x0);
  }
  return x;
}

Tensor repeat_batch(const Tensor& x, int times) {
  MDPS_CHECK(times >= 1, "repeat count must be >= 1, got ", times);
  if (times == 1) return x;
  Shape s = x.shape();
  const int64_t n = s[0];
  s[0] *= times;
  Tensor out = Tensor::empty(s, x.backend());
  for (int r = 0; r < times; ++r) {
    Tensor dst = out.slice_batch(r * n, (r + 1) * n);
    dst.copy_from(x);
  }
  return out;
}

Tensor mean_over_repeats(const Tensor& x, int times) {
  if (times == 1) return x;
  Shape s = x.shape();
  MDPS_CHECK(s[0] % times == 0, "mean over ", times, " repeats of ", x.describe());
  const int64_t n = s[0] / times;
  s[0] = n;
  Tensor out = Tensor::zeros(s, x.backend());
  for (int r = 0; r < times; ++r) x.backend().axpby(1.f / float(times), x.slice_batch(r * n, (r + 1) * n), 1.f, out);
  return out;
}

Tensor mean_map_over_samples(const AnomalyMapFn& map_fn, const Tensor& y, const Tensor& recon, int samples) {
  const int64_t n = y.dim(0);
  MDPS_CHECK(recon.dim(0) == n * samples, "mean map: ", recon.describe(), " is not ", samples, " samples of ", n,
             " images");
  Tensor maps;
  for (int r = 0; r < samples; ++r) {
    Tensor m = map_fn(y, recon.slice_batch(r * n, (r + 1) * n));
    if (!maps.defined()) maps = Tensor::zeros(m.shape(), m.backend());
    m.backend().axpby(1.f / float(samples), m, 1.f, maps);
  }
  return maps;
}

MdpsOutput run_mdps(const Sampler& sampler, const Tensor& y, const MdpsRounds& rounds, NoiseSource& noise,
                    const AnomalyMapFn& map_fn, const Tensor& given_mask, const MdpsSteps& steps) {
  MDPS_CHECK(rounds.samples >= 1, "--samples must be >= 1, got ", rounds.samples);
  const int ns = rounds.samples;
  const int64_t n = y.dim(0);
  Tensor ys = repeat_batch(y, ns);
  MdpsOutput out;
  Tensor mask = given_mask;
  if (!mask.defined() && rounds.round1.t_start > 0) {
    out.round1 = sampler.sample(ys, Tensor(), rounds.round1, noise, nullptr, n);
    MDPS_CHECK(map_fn, "run_mdps: a mask round needs an anomaly-map function");
    out.round1_map = mean_map_over_samples(map_fn, y, out.round1, ns);
    if (steps.round1_only) return out;
    mask = steps.mask ? steps.mask(out.round1_map) : threshold_mask(out.round1_map, rounds.lambda);
  }
  MDPS_CHECK(!steps.round1_only, "run_mdps: a round-1-only run needs round 1 (round1 t_start > 0, no given mask)");
  NoiseSource& noise2 = steps.round2_noise ? *steps.round2_noise : noise;
  out.mask = mask;
  out.recon = sampler.sample(ys, mask.defined() ? repeat_batch(mask, ns) : Tensor(), rounds.round2, noise2,
                             steps.round2_steps, n);
  if (steps.final_map) out.map = mean_map_over_samples(steps.final_map, y, out.recon, ns);
  return out;
}

Tensor threshold_mask(const Tensor& maps, float lambda, float lo, float hi) {
  Tensor m = Tensor::empty(maps.shape());
  std::vector<float> v = maps.to_vector();
  float thr = lo + lambda * (hi - lo);
  float* pm = m.data();
  for (size_t i = 0; i < v.size(); ++i) pm[i] = v[i] > thr ? 1.f : 0.f;
  return m.to(maps.backend());
}

Tensor threshold_mask(const Tensor& maps, float lambda) {
  MDPS_CHECK(maps.ndim() == 4 && maps.dim(1) == 1, "threshold_mask: maps ", maps.describe(), " are not [N,1,H,W]");
  const int64_t N = maps.dim(0);
  Tensor out = Tensor::empty(maps.shape(), maps.backend());
  for (int64_t n = 0; n < N; ++n) {
    std::vector<float> v = maps[n].to_vector();
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    Tensor mn = threshold_mask(maps[n], lambda, *lo, *hi);
    Tensor dst = out[n];
    dst.copy_from(mn);
  }
  return out;
}


}  // namespace mdps
