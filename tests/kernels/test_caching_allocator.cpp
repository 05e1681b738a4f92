// The CUDA backend's caching allocator (kernels/cuda/caching_allocator.h)
// over a fake device memory, so its bookkeeping runs without a GPU: size
// rounding, reuse without the driver, the retry after out-of-memory with the
// cache handed back, release(), errors, and what goes back at destruction.
// What only a GPU shows (stream-ordered reuse under real concurrency) is
// test_cuda_backend's.
#include <doctest/doctest.h>
#include "kernels/cuda/caching_allocator.h"
#include <cstdlib>
#include <set>
#include <thread>

using namespace mdps;
using mdps::cuda::CachingAllocator;

namespace {

// Host memory with a capacity; counts what the cache asks of it.
class FakeMemory final : public cuda::DeviceMemory {
 public:
  explicit FakeMemory(size_t capacity) : capacity_(capacity) {}
  ~FakeMemory() override {
    for (auto& [p, n] : blocks_) std::free(p);
  }
  void* malloc(size_t bytes) override {
    ++mallocs;
    if (fail_next) {
      fail_next = false;
      throw Error("fake device: driver error");
    }
    if (used + bytes > capacity_) return nullptr;
    void* p = std::malloc(bytes);
    blocks_[p] = bytes;
    used += bytes;
    return p;
  }
  void free(void* p) override {
    ++frees;
    auto it = blocks_.find(p);
    REQUIRE(it != blocks_.end());  // the cache only gives back what it got
    used -= it->second;
    std::free(p);
    blocks_.erase(it);
  }
  void synchronize() override { ++syncs; }
  std::string name() const override { return "fake device"; }

  size_t used = 0;
  int mallocs = 0, frees = 0, syncs = 0;
  bool fail_next = false;

 private:
  size_t capacity_;
  std::map<void*, size_t> blocks_;
};

}  // namespace

TEST_CASE("caching allocator: sizes round to 512 B below 1 MiB and to 1 MiB above") {
  CHECK(CachingAllocator::round_size(1) == 512);
  CHECK(CachingAllocator::round_size(512) == 512);
  CHECK(CachingAllocator::round_size(513) == 1024);
  CHECK(CachingAllocator::round_size((1 << 20) - 1) == (1 << 20));
  CHECK(CachingAllocator::round_size((1 << 20) + 1) == (2 << 20));
  CHECK(CachingAllocator::round_size(5u << 20) == (5u << 20));
}

TEST_CASE("caching allocator: freed blocks are reused without the driver, per rounded size") {
  FakeMemory mem(64 << 20);
  {
    CachingAllocator a(mem);
    CHECK(a.allocate(0) == nullptr);
    CHECK(mem.mallocs == 0);
    void* p = a.allocate(1000);
    CHECK(mem.mallocs == 1);
    CHECK(a.live_bytes() == 1024);
    a.free(p);
    CHECK(a.cached_bytes() == 1024);
    CHECK(a.live_bytes() == 0);
    CHECK(mem.frees == 0);  // nothing waits or goes back in free()
    void* q = a.allocate(1023);  // same rounded size: the same block
    CHECK(q == p);
    CHECK(mem.mallocs == 1);
    CHECK(a.cached_bytes() == 0);
    CHECK(a.live_bytes() == 1024);  // a reused block counts as live again
    void* r = a.allocate(2000);  // another size: the driver
    CHECK(r != q);
    CHECK(mem.mallocs == 2);
    // Two live blocks of one size are distinct; both come back to the list.
    void* s = a.allocate(1000);
    CHECK(s != q);
    a.free(q);
    a.free(s);
    CHECK(a.cached_bytes() == 2048);
    std::set<void*> again{a.allocate(700), a.allocate(700)};
    CHECK(again == std::set<void*>{q, s});
    CHECK(mem.mallocs == 3);
    a.free(nullptr);  // a no-op, as for free(3)
    for (void* b : again) a.free(b);
    a.free(r);
  }
  // Destruction returned the cache: every block the driver gave is back.
  CHECK(mem.used == 0);
  CHECK(mem.frees == 3);
}

TEST_CASE("caching allocator: out of memory hands the cache back, waits, retries once") {
  FakeMemory mem(4 << 20);
  CachingAllocator a(mem);
  void* big = a.allocate(3 << 20);
  a.free(big);  // 3 MiB cached, 1 MiB free on the device
  CHECK(a.cached_bytes() == (3u << 20));
  void* other = a.allocate(2 << 20);  // does not fit beside the cache
  CHECK(other != nullptr);
  CHECK(mem.syncs == 1);  // queued work finished before the cached block went back
  CHECK(mem.frees == 1);
  CHECK(a.cached_bytes() == 0);
  CHECK(mem.mallocs == 3);  // first try, then the retry
  // Nothing cached and still too large: a clear error, no retry, nothing lost.
  CHECK_THROWS_WITH_AS(a.allocate(3 << 20), doctest::Contains("fake device: out of memory allocating 3145728 bytes"),
                       Error);
  CHECK(mem.syncs == 1);
  CHECK(a.live_bytes() == (2u << 20));
  a.free(other);
  // Driver errors other than out-of-memory pass through as they are.
  mem.fail_next = true;
  CHECK_THROWS_WITH_AS(a.allocate(5 << 20), doctest::Contains("driver error"), Error);
}

TEST_CASE("caching allocator: release() waits, then returns every cached block; foreign pointers are refused") {
  FakeMemory mem(16 << 20);
  CachingAllocator a(mem);
  void* p = a.allocate(100);
  void* q = a.allocate(2 << 20);
  a.free(p);
  a.release();
  CHECK(mem.syncs == 1);
  CHECK(mem.frees == 1);
  CHECK(a.cached_bytes() == 0);
  CHECK(a.live_bytes() == (2u << 20));  // live blocks stay with their owners
  int x = 0;
  CHECK_THROWS_WITH_AS(a.free(&x), doctest::Contains("did not allocate"), Error);
  CHECK_THROWS_AS(a.free(p), Error);  // a double free is refused too
  a.free(q);
}

TEST_CASE("caching allocator: threads allocating and freeing at once keep the books straight") {
  FakeMemory mem(size_t(1) << 30);
  CachingAllocator a(mem);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&a, t] {
      for (int i = 0; i < 2000; ++i) {
        void* p = a.allocate(size_t(512 * (1 + (i + t) % 7)));
        a.free(p);
      }
    });
  for (auto& t : ts) t.join();
  CHECK(a.live_bytes() == 0);
  CHECK(a.cached_bytes() == mem.used);  // everything the driver gave is cached, nothing leaked
  CHECK(mem.mallocs <= 4 * 7);          // at most one block per size per thread
}
