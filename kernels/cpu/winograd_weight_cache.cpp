// WinogradWeightCache (winograd_weight_cache.h).
#include "kernels/cpu/winograd_weight_cache.h"

namespace mdps::cpu {

const float* WinogradWeightCache::get(const float* key, Kind kind, uint64_t version, int64_t len, float* scratch,
                                      const std::function<void(float*)>& pack) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[{reinterpret_cast<uintptr_t>(key), int(kind)}];
  if (e.version == version && e.len == len) {
    if (e.packed.empty()) {  // the second call that finds these weights unchanged: keep them
      e.packed.resize(size_t(len));
      pack(e.packed.data());
      bytes_ += e.packed.size() * sizeof(float);
    }
    return e.packed.data();
  }
  bytes_ -= e.packed.size() * sizeof(float);
  std::vector<float>().swap(e.packed);
  e.version = version;
  e.len = len;
  pack(scratch);
  return scratch;
}

void WinogradWeightCache::drop(const void* begin, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.empty()) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin), hi = lo + bytes;
  for (auto it = entries_.lower_bound({lo, 0}); it != entries_.end() && it->first.first < hi;) {
    bytes_ -= it->second.packed.size() * sizeof(float);
    it = entries_.erase(it);
  }
}

void WinogradWeightCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
  bytes_ = 0;
}

size_t WinogradWeightCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace mdps::cpu
