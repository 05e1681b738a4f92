// CPU backend: memory, copies, threads. Ops are in the sibling files.
#include "kernels/cpu/cpu_backend.h"
#include "engine/thread_pool.h"
#include <cblas.h>
#include <cstdlib>
#include <cstring>
#include <new>

namespace mdps {

CpuBackend::CpuBackend() {
  // One pool drives the parallelism: BLAS calls are made from inside our
  // parallel regions or with all threads, never both, so OpenBLAS keeps the
  // same thread count as the pool (set_threads keeps them equal).
  openblas_set_num_threads(ThreadPool::global().threads());
}

void* CpuBackend::raw_alloc(size_t bytes) {
  // 64-byte alignment for vector loads; size rounded up as aligned_alloc requires.
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) throw Error(cat("out of memory allocating ", bytes, " bytes on the CPU"));
  stats_.on_alloc(bytes, MemCategoryScope::current());
  return p;
}
void CpuBackend::raw_free(void* p, size_t bytes) {
  if (!p) return;
  std::free(p);
  stats_.on_free(bytes);
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

void CpuBackend::set_threads(int n) {
  ThreadPool::global().set_threads(n);
  openblas_set_num_threads(ThreadPool::global().threads());
}
int CpuBackend::threads() const { return ThreadPool::global().threads(); }

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace mdps
