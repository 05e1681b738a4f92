// The Winograd-transformed weights (conv_winograd.h's U) of the weights a
// model uses again unchanged: sampling, scoring and evaluation call every
// convolution with the same weights thousands of times, and transforming
// them on every call was 2.8% of the U-Net's forward (AMD Zen 5, 2 threads:
// 4 ms of 141, the transform writing 16/9 of the 3x3 weights each call).
//
// Contract:
// - An entry is keyed by the weights' address and the transform (forward, or
//   the data gradient's flipped kernel), and valid while the storage's
//   version (Tensor::version: touched whenever a writable pointer into it is
//   handed out, as the optimizer and the weight loaders do) is the one it
//   recorded, and the packed length matches.
// - It keeps a transform only on the second call that finds the weights
//   unchanged: a training step writes its weights between uses, and there an
//   entry only records the version (no memory held, the caller packs into
//   its scratch as before).
// - The owner (CpuBackend::raw_free) drops the entries inside a block it
//   frees, so an address reused by new weights never finds the old
//   transform.
// - Thread-safe; the transform runs under the cache's lock (a second thread
//   on the same weights waits for it, rather than transforming twice).
// - Memory: 16/9 of the 3x3 weights per transform kept (about 40 MB for the
//   64x64 U-Net's forward, as much again for the data gradient under
//   guidance), freed with the weights or by clear().
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace mdps::cpu {

class WinogradWeightCache {
 public:
  enum Kind : int { Forward = 0, Flipped = 1 };

  // The packed weights of `key` (the weights' address) at `version`, `len`
  // floats: the kept copy when there is one; otherwise pack(dst) fills
  // either a new kept copy (the second call at this version) or `scratch`.
  const float* get(const float* key, Kind kind, uint64_t version, int64_t len, float* scratch,
                   const std::function<void(float*)>& pack);

  // Drops the entries whose key lies in [begin, begin + bytes).
  void drop(const void* begin, size_t bytes);
  void clear();
  // Bytes held by kept transforms.
  size_t bytes() const;

 private:
  struct Entry {
    uint64_t version = 0;
    int64_t len = 0;
    std::vector<float> packed;  // empty until the second call at `version`
  };
  mutable std::mutex mu_;
  std::map<std::pair<uintptr_t, int>, Entry> entries_;  // (address, Kind)
  size_t bytes_ = 0;
};

}  // namespace mdps::cpu
