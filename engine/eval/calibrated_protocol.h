// The calibrated protocol (Protocol::Calibrated, engine/evaluate.h): scores
// that depend only on the image and the detector.
//
// - Every image as if alone: its Ns posterior samples run through the U-Net
//   together, and the guidance norm is taken per sample (a group of one),
//   so no image ever shares a norm or a maximum with another. --batch B runs
//   B images x Ns samples per U-Net call where the backend's ops are batch
//   invariant (Backend::batch_invariant: the CPU), one image per call
//   elsewhere; it changes the speed only, never a bit of a result. With the
//   authors' L2 norm, rho is divided by sqrt(kAuthorsGroup): the strength
//   their norm over a batch of 8 alike images gives each one.
// NOTE: kAuthorsGroup is the authors' evaluation batch, not --batch.
// - Noise: every sample draws from its own Philox stream, derived from the
//   seed, image_noise_key(image) (a hash of the image's pixels at the model's
//   size), the round and the sample index. The same pixels draw the same noise
//   wherever they sit in a run: `mdps score IMAGE` alone gives the image's row
//   of `mdps eval` bit for bit.
// - The eta combination's maxima and the round-1 map range of the mask
//   threshold min + lambda (max - min) come from normal images (NormalStats,
//   `mdps calibrate --normal`). Without them each image uses its own maxima
//   and range (the paper's per-image form).
// - Blur and image-score pixel count follow the image size
//   (EvalSettings::at_size).
#pragma once
#include "engine/eval/evaluate.h"

namespace mdps {

// The authors' evaluation batch: the images that share one guidance norm.
constexpr int kAuthorsGroup = 8;

// run_protocol's body for the calibrated protocol (run_protocol dispatches).
ProtocolOutput run_calibrated_protocol(const UNet& model, const ResNetFeatures* features, size_t N,
                                       const BatchLoader& load, const EvalSettings& settings,
                                       const EvalProgressFn& progress, const ProtocolHooks& hooks);

// The Philox stream of sample `k` of round `round` (1 or 2) of the image with
// noise key `key`: a 64-bit mix of the three (splitmix64 finaliser).
uint64_t image_noise_stream(uint64_t key, int round, int k);

}  // namespace mdps
