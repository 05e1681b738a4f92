// The MDPS sampler (spec sections 3-4): DDIM posterior sampling of a normal
// image given an observation y, with masked epsilon fusion (paper) or
// normal-region replacement (authors), and the two-round mask protocol.
#pragma once
#include "engine/diffusion/noise.h"
#include "engine/diffusion/schedule.h"
#include "engine/model/unet.h"
#include <functional>

namespace mdps {

enum class Variant { Paper, Authors };
enum class GuidanceNorm {
  Squared,  // paper: ||y - x0||^2 per image
  L2,       // authors: ||y - x0|| over a group of images (the evaluation batch)
};
Variant parse_variant(const std::string& s);
GuidanceNorm parse_guidance_norm(const std::string& s);

struct RoundSettings {
  int t_start = 200;  // T: the start noise level; 0 disables a round
  float rho = 100.f;  // guidance weight (the authors' w)
};

struct SamplerSettings {
  Variant variant = Variant::Authors;
  GuidanceNorm norm = GuidanceNorm::L2;
  int skip = 20;          // DDIM stride; steps = t_start / skip
  float ddim_eta = 1.f;   // 1: the authors' DDIM noise; 0: deterministic
  // Images per guidance group (L2 norm): the evaluation batch. The batch passed
  // to sample() is split into consecutive groups of this size.
  int group = 8;
};

// The timesteps a round visits, first to last (e.g. 180, 160, ..., 0 for
// T = 200, skip 20); the step after the last goes to abar = 1.
std::vector<int> sampler_timesteps(int t_start, int skip);

// Called after each step with the step index, t, x_t (after) and x0_hat.
using StepCallback = std::function<void(int step, int t, const Tensor& x, const Tensor& x0_hat)>;

class Sampler {
 public:
  Sampler(const UNet& model, const SamplerSettings& settings);

  // One round over observations y [N,3,H,W]. mask [N,1,H,W] (1 = resample) or
  // undefined for m = 1. Draws, in order: the start noise z [N,3,H,W] (also the
  // fixed z of the authors' masked variant), then one fresh noise per step.
  // With Ns posterior samples stacked along the batch, repeat_size is the
  // batch of one repeat: guidance groups never span two repeats.
  Tensor sample(const Tensor& y, const Tensor& mask, const RoundSettings& round, NoiseSource& noise,
                const StepCallback& on_step = nullptr, int64_t repeat_size = 0) const;

  // The guidance gradient of the configured norm at x_t, and eps_theta(x_t, t)
  // from the same taped forward. grad is undefined when rho = 0 (no tape).
  void eps_and_guidance(const Tensor& x, const Tensor& y, int t, bool want_grad, Tensor& eps, Tensor& grad,
                        int64_t repeat_size = 0) const;

  const SamplerSettings& settings() const { return settings_; }

 private:
  const UNet& model_;
  SamplerSettings settings_;
  NoiseSchedule schedule_;
};

// The two-round protocol (spec section 4): anomaly maps [N,1,H,W] of round 1
// give the mask D > min + lambda (max - min), per image.
struct MdpsRounds {
  RoundSettings round1{200, 50.f};  // t_start 0: a single round with round2 and no mask
  RoundSettings round2{200, 100.f};
  float lambda = 0.12f;
  int samples = 1;  // Ns posterior samples per image
};
using AnomalyMapFn = std::function<Tensor(const Tensor& y, const Tensor& recon)>;

// The two-round sequence, written once: round 1 unmasked (unless its t_start
// is 0 or a mask is given), the mean over the Ns samples of map_fn's maps
// (Eq. 19), the mask from that mean, round 2 masked; Ns samples stacked along
// the batch (repeat r of image n at r*N + n), guidance groups never spanning
// two repeats. Both protocols (engine/eval/evaluate.h) run every batch or
// image through it; what differs between them is given here.
struct MdpsOutput {
  Tensor recon;       // [Ns*N,3,H,W] the final round's samples
  Tensor mask;        // [N,1,H,W] (undefined for a single unmasked round)
  Tensor round1;      // round-1 samples [Ns*N,...] (undefined if no round 1)
  Tensor round1_map;  // [N,1,H,W] the mean round-1 map the mask came from (idem)
  Tensor map;         // [N,1,H,W] the mean final map, when MdpsSteps::final_map is set
};
struct MdpsSteps {
  // The draws of round 2; null: round 1's source goes on drawing.
  NoiseSource* round2_noise = nullptr;
  // Round 1's mean map -> the mask; null: threshold_mask(map, lambda) per image.
  std::function<Tensor(const Tensor& round1_map)> mask;
  // Set: out.map is the mean over Ns of final_map(y, sample r) of round 2.
  AnomalyMapFn final_map;
  // Called after every step of round 2 (Sampler::sample's on_step).
  StepCallback round2_steps;
  // Stop after round 1 and its map (the first pass of a data-set-wide mask).
  bool round1_only = false;
};
MdpsOutput run_mdps(const Sampler& sampler, const Tensor& y, const MdpsRounds& rounds, NoiseSource& noise,
                    const AnomalyMapFn& map_fn, const Tensor& given_mask = Tensor(), const MdpsSteps& steps = {});
// Eq. 19: the mean over the Ns samples in `recon` ([Ns*N,...]) of map_fn(y, sample r), summed in sample order.
Tensor mean_map_over_samples(const AnomalyMapFn& map_fn, const Tensor& y, const Tensor& recon, int samples);
// Repeats a batch Ns times along dim 0.
Tensor repeat_batch(const Tensor& x, int times);
// Mean over the Ns repeats of [Ns*N,...] -> [N,...].
Tensor mean_over_repeats(const Tensor& x, int times);

// Per-image mask from an anomaly map [N,1,H,W].
Tensor threshold_mask(const Tensor& maps, float lambda);
Tensor threshold_mask(const Tensor& maps, float lambda, float lo, float hi);  // given min/max (dataset scope)

}  // namespace mdps
