// A caching device allocator for the CUDA backend's single stream: freed
// blocks go to a free list per (rounded) size and are handed out again
// without cudaMalloc/cudaFree. Reuse is stream-ordered: every kernel, copy and
// library call of the backend runs on one stream, so work enqueued after a
// block is re-allocated runs after all work that used it before it was freed;
// nothing waits in free(). Cached blocks go back to the driver when a
// cudaMalloc fails (then retried once) and on release().
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

struct CUstream_st;

namespace mdps::cuda {

class CachingAllocator {
 public:
  CachingAllocator() = default;
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws mdps::Error when the device is out of memory even after release().
  void* allocate(size_t bytes);
  void free(void* p);
  // Returns every cached block to the driver (waits for `stream` first, since
  // queued work may still use them).
  void release(CUstream_st* stream);
  size_t cached_bytes() const;

  // Sizes are rounded up so that blocks of nearby sizes share a free list.
  static size_t round_size(size_t bytes);

 private:
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;   // rounded size -> cached blocks
  std::unordered_map<void*, size_t> live_;      // block -> rounded size
  size_t cached_ = 0;
};

}  // namespace mdps::cuda
