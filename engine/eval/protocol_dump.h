// `mdps eval --dump-intermediates FILE`: every intermediate of the evaluation
// protocol (run_protocol) in one safetensors file, so that another
// implementation (bench/pytorch_twin.py --protocol, or the authors' code) can
// be fed the same inputs and noise and compared stage by stage.
//
// Contract. A disabled dump (empty path) ignores every call at no cost, so
// run_protocol calls it unconditionally. Names, b = batch index in the run:
//   b{b}.y                      [n,3,S,S] the batch in [-1,1], as sampled
//   b{b}.round1.noise{k}        the k-th Gaussian draw of round 1 (k = 0 the
//   b{b}.round2.noise{k}        start noise z, then one per step), [n*Ns,3,S,S]
//   b{b}.round1.recon           round 1's reconstructions [n*Ns,3,S,S] (float)
//   b{b}.round1.map             round 1's maps [n,1,S,S] (mean over Ns)
//   b{b}.mask                   the round-2 mask [n,1,S,S] (0/1)
//   b{b}.round2.recon, b{b}.map round 2's reconstructions and final maps
//   round1_min, round1_max      [1], the dataset-scope threshold's range
// Metadata "settings" holds EvalSettings::to_json(), "batches" the count.
// write() stores the file atomically (SafeTensorsWriter::write).
#pragma once
#include "engine/diffusion/noise.h"
#include "engine/io/safetensors.h"
#include "engine/core/tensor.h"
#include <memory>
#include <string>
#include <vector>

namespace mdps {

class ProtocolDump {
 public:
  explicit ProtocolDump(std::string path) : path_(std::move(path)) {}
  bool enabled() const { return !path_.empty(); }

  // `t` copied to the host under `name`.
  void add(const std::string& name, const Tensor& t);
  // `inner` itself when disabled; else a source that hands out inner's draws
  // and records each as prefix + "noise" + k. Valid as long as the dump.
  NoiseSource& noise(NoiseSource& inner, const std::string& prefix);
  void write(const std::string& settings_json, size_t batches);

 private:
  class Recording;
  std::string path_;
  SafeTensorsWriter w_;
  std::vector<std::unique_ptr<NoiseSource>> tees_;  // one per noise() call
};

}  // namespace mdps
