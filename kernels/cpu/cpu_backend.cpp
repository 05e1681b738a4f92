// CPU backend: memory, copies, threads. Ops are in the sibling files.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/cpu_features.h"
#include "engine/core/thread_pool.h"
#include <cblas.h>
#include <cstdlib>
#include <cstring>
#include <new>
#include <mutex>

namespace mdps {

CpuBackend::CpuBackend() {
  // One pool drives the parallelism: OpenBLAS runs on one thread and
  // cpu::sgemm spreads a product's fixed blocks over the pool (cpu_util.h:
  // OpenBLAS's own threads changed the bits with the thread count).
  openblas_set_num_threads(1);
}

// A caching allocator: a step of the U-Net allocates the same sizes every
// time, and returning large blocks to the system costs a page fault per 4 KiB
// on the next use (measured: ~12% of a train step). Freed blocks are kept per
// exact (64-byte rounded) size and reused; the cache is bounded.
namespace {
constexpr size_t kMaxCachedBytes = size_t(1) << 31;  // 2 GiB
size_t round_size(size_t bytes) { return bytes ? (bytes + 63) / 64 * 64 : 64; }
}  // namespace

void* CpuBackend::raw_alloc(size_t bytes) {
  const size_t rounded = round_size(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(rounded);
    if (it != cache_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= rounded;
    }
  }
  if (!p) p = std::aligned_alloc(64, rounded);
  if (!p) {
    trim_cache();
    p = std::aligned_alloc(64, rounded);
  }
  if (!p) throw OutOfMemoryError(cat("out of memory allocating ", bytes, " bytes on the CPU"));
  stats_.on_alloc(bytes, MemCategoryScope::current());
  return p;
}

void CpuBackend::raw_free(void* p, size_t bytes) {
  if (!p) return;
  stats_.on_free(bytes);
  const size_t rounded = round_size(bytes);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cached_bytes_ + rounded <= kMaxCachedBytes) {
      cache_[rounded].push_back(p);
      cached_bytes_ += rounded;
      return;
    }
  }
  std::free(p);
}

void CpuBackend::trim_cache() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  for (auto& kv : cache_)
    for (void* p : kv.second) std::free(p);
  cache_.clear();
  cached_bytes_ = 0;
}
void CpuBackend::copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuBackend::copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuBackend::copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuBackend::fill(Tensor& x, float value) {
  float* p = x.data();
  int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) p[i] = value;
}

void CpuBackend::set_precision(Precision p) {
  MDPS_CHECK(p != Precision::TF32,
             "--precision tf32: the cpu backend computes in fp32 or bf16 only (tf32 is for --device cuda)");
  MDPS_CHECK(p != Precision::BF16 || cpu::has_avx512_bf16(),
             "--precision bf16 on the CPU needs AVX512-BF16; this CPU has none (use --precision fp32, or "
             "--device cuda)");
  precision_ = p;
}

void CpuBackend::set_threads(int n) {
  ThreadPool::global().set_threads(n);
}
int CpuBackend::threads() const { return ThreadPool::global().threads(); }

std::string CpuBackend::paths() const {
  if (precision() != Precision::FP32) return "";
  std::string s = cpu::direct_conv_tiles_description();
  if (cpu::winograd_enabled()) s = "winograd: F(2x2, 3x3) on 3x3 stride-1 convolutions 8 or more wide; " + s;
  return s;
}

Backend& cpu_backend() {
  // Never destroyed: tensors in other static objects may outlive any
  // destruction order we could pick.
  static CpuBackend* backend = new CpuBackend;
  return *backend;
}

Backend* cpu_backend_instance() { return &cpu_backend(); }

}  // namespace mdps
