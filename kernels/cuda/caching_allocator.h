// The caching logic of the CUDA backend's device allocator, over an abstract
// DeviceMemory (cudaMalloc/cudaFree in device_allocator.cpp; a fake in
// tests/kernels/test_caching_allocator.cpp, so that this code runs on machines without
// a GPU). Freed blocks go to a free list per rounded size and are handed out
// again without touching the driver. Reuse is stream-ordered: every kernel,
// copy and library call of the backend runs on one stream, so work enqueued
// after a block is re-allocated runs after all work that used it before it was
// freed; nothing waits in free(). Cached blocks go back to the driver when an
// allocation fails (then retried once) and on release(). Header-only and free
// of CUDA headers.
#pragma once
#include "engine/core/common.h"
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mdps::cuda {

// What the cache needs from the driver.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // A block of `bytes`, or nullptr when the device is out of memory; throws
  // mdps::Error for any other failure.
  virtual void* malloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  // Returns once no queued work can still use a freed block.
  virtual void synchronize() = 0;
  // Names the memory in errors ("CUDA device 0").
  virtual std::string name() const = 0;
};

class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceMemory& mem) : mem_(mem) {}
  // Blocks still live belong to tensors that outlive the backend (statics at
  // exit); the process is ending, so only the cache is returned.
  ~CachingAllocator() { drop_cache(); }
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Sizes are rounded up so that blocks of nearby sizes share a free list:
  // 512 B granules below 1 MiB, 1 MiB granules above (little waste for the
  // many small activations, few distinct lists for the large ones).
  static size_t round_size(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = size_t(1) << 20;
    if (bytes < kLarge) return (bytes + kSmall - 1) / kSmall * kSmall;
    return (bytes + kLarge - 1) / kLarge * kLarge;
  }

  // nullptr for 0 bytes; throws mdps::Error when the device is out of memory
  // even after the cache went back to the driver.
  void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      live_[p] = size;
      in_use_ += size;
      return p;
    }
    void* p = mem_.malloc(size);
    if (!p && cached_ > 0) {
      // The cache holds memory another size could use: give it back and retry.
      mem_.synchronize();
      drop_cache();
      p = mem_.malloc(size);
    }
    if (!p)
      throw OutOfMemoryError(cat(mem_.name(), ": out of memory allocating ", bytes, " bytes (", in_use_,
                                 " bytes in use by live tensors and scratch, the cache returned to the driver)"));
    live_[p] = size;
    in_use_ += size;
    return p;
  }

  void free(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    MDPS_CHECK(it != live_.end(), mem_.name(), " allocator: free of a pointer it did not allocate");
    free_[it->second].push_back(p);
    cached_ += it->second;
    in_use_ -= it->second;
    live_.erase(it);
  }

  // Returns every cached block to the driver, after waiting for queued work.
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    mem_.synchronize();
    drop_cache();
  }

  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }
  // Rounded bytes of the blocks handed out and not yet freed.
  size_t live_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_use_;
  }

 private:
  void drop_cache() {
    for (auto& [sz, blocks] : free_)
      for (void* b : blocks) mem_.free(b);
    free_.clear();
    cached_ = 0;
  }

  DeviceMemory& mem_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // rounded size -> cached blocks
  std::unordered_map<void*, size_t> live_;     // block -> rounded size
  size_t cached_ = 0, in_use_ = 0;
};

}  // namespace mdps::cuda
