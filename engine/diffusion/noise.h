// Where the sampler and the trainer get their Gaussian draws: a Philox stream
// (reproducible, resumable, the same on every backend) or a recording (to
// replay the draws of a reference run, e.g. the golden sampler tests).
#pragma once
#include "engine/core/philox_draws.h"
#include "engine/core/tensor.h"
#include <cstdint>
#include <vector>

namespace mdps {

class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  // Fills `out` (F32, any backend) with standard normal draws.
  virtual void normal(Tensor& out) = 0;
};

// Standard normals philox::normal_at(seed, stream, position + i) for element i;
// the position then advances by out.numel(), so filling a tensor in two halves
// gives the same values as filling it at once.
class PhiloxNoise : public NoiseSource {
 public:
  PhiloxNoise(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  void normal(Tensor& out) override;

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  // Elements drawn so far; saved in checkpoints and restored to resume.
  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }

 private:
  uint64_t seed_, stream_;
  uint64_t position_ = 0;
};

// Hands back the recorded tensors in order; each request must have the shape
// of the next recording, and asking past the last one is an error.
class RecordedNoise : public NoiseSource {
 public:
  explicit RecordedNoise(std::vector<Tensor> draws) : draws_(std::move(draws)) {}
  void normal(Tensor& out) override;

  size_t used() const { return next_; }
  size_t size() const { return draws_.size(); }

 private:
  std::vector<Tensor> draws_;
  size_t next_ = 0;
};

}  // namespace mdps
