// CPU stand-in of the CUDA runtime calls the backend makes (see standin.h):
// memory, copies, streams, events, devices, errors, and the kernel launches of
// the host-compiled launchers (kernels/cuda/kernel_launch.h). Semantics from
// the CUDA Runtime API reference; what a GPU reports asynchronously (illegal
// addresses in kernels) is reported at the launch and stays sticky.
#include "tests/standin/standin.h"
#include <cuda_runtime.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <deque>
#include <map>
#include <mutex>
#include <set>

struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  bool recorded = false;
  std::chrono::steady_clock::time_point at;
};

namespace mdps::standin {

namespace {

struct State {
  std::recursive_mutex mu;
  std::map<uintptr_t, size_t> live;   // start -> bytes
  std::map<uintptr_t, size_t> freed;  // blocks freed since, still held (quarantine)
  std::deque<std::pair<void*, size_t>> quarantine;
  size_t quarantined = 0;
  std::set<const void*> streams, events;
  size_t live_bytes = 0, limit = size_t(16) << 30;
  int64_t misuses = 0;
  std::string last;
  cudaError_t last_error = cudaSuccess;  // cudaGetLastError
  cudaError_t sticky = cudaSuccess;      // a device fault
  int device = 0;
};
State& st() {
  static State* s = new State;  // never destroyed: backends may be torn down at exit
  return *s;
}

int device_count() {
  const char* e = std::getenv("MDPS_STANDIN_DEVICES");
  return e ? std::atoi(e) : 1;
}

// Records e as the last error and returns it (cudaSuccess untouched).
cudaError_t ret(cudaError_t e) {
  State& s = st();
  if (e != cudaSuccess) s.last_error = e;
  return e;
}
cudaError_t refuse(const char* fn, cudaError_t e, const std::string& why) {
  misuse(fn, why);
  return ret(e);
}

}  // namespace

int64_t misuse_count() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().misuses;
}
std::string last_misuse() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().last;
}
void reset_misuse() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  st().misuses = 0;
  st().last.clear();
  st().sticky = cudaSuccess;
  st().last_error = cudaSuccess;
}
size_t live_bytes() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().live_bytes;
}
size_t live_blocks() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().live.size();
}
void set_memory_limit(size_t bytes) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  st().limit = bytes ? bytes : size_t(16) << 30;
}

void misuse(const char* function, const std::string& why) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  ++st().misuses;
  st().last = std::string(function) + ": " + why;
  std::fprintf(stderr, "cuda stand-in: %s\n", st().last.c_str());
}

Where locate(const void* p, size_t bytes) {
  State& s = st();
  std::lock_guard<std::recursive_mutex> l(s.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto in = [&](const std::map<uintptr_t, size_t>& m) -> const std::pair<const uintptr_t, size_t>* {
    auto it = m.upper_bound(a);
    if (it == m.begin()) return nullptr;
    --it;
    if (a >= it->first && a < it->first + std::max<size_t>(it->second, 1)) return &*it;
    return nullptr;
  };
  if (auto* b = in(s.live)) return a + bytes <= b->first + b->second ? Where::Live : Where::Overrun;
  if (in(s.freed)) return Where::Freed;
  return Where::Host;
}

std::string device_range_problem(const void* p, size_t bytes) {
  if (!p) return "null pointer";
  switch (locate(p, bytes)) {
    case Where::Live: return "";
    case Where::Host: return "not device memory (a host pointer?)";
    case Where::Freed: return "freed device memory (use after free)";
    case Where::Overrun: return "runs past the end of its allocation (" + std::to_string(bytes) + " bytes)";
  }
  return "?";
}

void device_fault(const char* function, const std::string& why) {
  misuse(function, "device fault: " + why);
  std::lock_guard<std::recursive_mutex> l(st().mu);
  st().sticky = cudaErrorIllegalAddress;
  st().last_error = cudaErrorIllegalAddress;
}
bool faulted() {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().sticky != cudaSuccess;
}
bool stream_live(const void* stream) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return !stream || st().streams.count(stream) > 0;
}

uint16_t float_to_bf16_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if (std::isnan(v)) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
float round_to_bf16(float v) { return bf16_to_float(float_to_bf16_bits(v)); }
float round_to_tf32(float v) {
  // 10 explicit mantissa bits, nearest even (13 low bits dropped).
  if (!std::isfinite(v)) return v;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0xfffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

}  // namespace mdps::standin

using namespace mdps::standin;

namespace {
// The sticky fault every call returns once a kernel or library faulted.
bool dead(cudaError_t* e) {
  State& s = st();
  if (s.sticky == cudaSuccess) return false;
  *e = s.sticky;
  s.last_error = s.sticky;
  return true;
}
bool stream_ok(cudaStream_t s) { return stream_live(s); }
}  // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return refuse("cudaGetDeviceCount", cudaErrorInvalidValue, "null count");
  *count = device_count();
  if (*count <= 0) {
    *count = 0;
    return ret(cudaErrorNoDevice);
  }
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (device_count() <= 0) return ret(cudaErrorNoDevice);
  if (device < 0 || device >= device_count())
    return refuse("cudaSetDevice", cudaErrorInvalidDevice, "device " + std::to_string(device) + " does not exist");
  st().device = device;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  State& s = st();
  cudaError_t e = s.last_error;
  s.last_error = s.sticky;  // a sticky error is never cleared
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  return st().last_error;
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unrecognized error code (stand-in)";
  }
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  State& s = st();
  cudaError_t e;
  if (dead(&e)) return e;
  if (!p) return refuse("cudaMalloc", cudaErrorInvalidValue, "null devPtr");
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (s.live_bytes + bytes > s.limit) return ret(cudaErrorMemoryAllocation);
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* m = std::aligned_alloc(256, rounded);
  if (!m) return ret(cudaErrorMemoryAllocation);
  std::memset(m, 0xff, rounded);  // NaN floats and doubles: device memory is not cleared
  const uintptr_t a = reinterpret_cast<uintptr_t>(m);
  // A freed block the allocator handed out again is live, not freed.
  for (auto it = s.freed.begin(); it != s.freed.end();) {
    if (it->first < a + rounded && a < it->first + it->second) it = s.freed.erase(it);
    else ++it;
  }
  s.live[a] = bytes;
  s.live_bytes += bytes;
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  State& s = st();
  cudaError_t e;
  if (dead(&e)) return e;
  if (!p) return cudaSuccess;
  auto it = s.live.find(reinterpret_cast<uintptr_t>(p));
  if (it == s.live.end()) {
    const Where w = locate(p, 0);
    return refuse("cudaFree", cudaErrorInvalidValue,
                  w == Where::Freed  ? "double free"
                  : w == Where::Host ? "not a device allocation (a host pointer?)"
                                     : "not the start of an allocation");
  }
  s.live_bytes -= it->second;
  const size_t rounded = (it->second + 255) / 256 * 256;
  s.freed[it->first] = rounded;
  s.live.erase(it);
  // Held back from the host allocator for a while, so that a host buffer
  // never takes a freed block's address (it would read as device memory) and
  // a use after free is still recognised as one.
  s.quarantine.emplace_back(p, rounded);
  s.quarantined += rounded;
  while (s.quarantined > (size_t(256) << 20) && !s.quarantine.empty()) {
    auto [q, bytes] = s.quarantine.front();
    s.quarantine.pop_front();
    s.quarantined -= bytes;
    s.freed.erase(reinterpret_cast<uintptr_t>(q));
    std::free(q);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!stream_ok(stream)) return refuse("cudaMemcpyAsync", cudaErrorInvalidResourceHandle, "stream not live");
  if (bytes == 0) return cudaSuccess;
  auto device = [&](const void* p, const char* which) -> std::string {
    std::string why = device_range_problem(p, bytes);
    return why.empty() ? "" : std::string(which) + " " + why;
  };
  auto host = [&](const void* p, const char* which) -> std::string {
    if (!p) return std::string(which) + " null";
    return locate(p, 0) == Where::Host ? "" : std::string(which) + " is device memory, the kind says host";
  };
  std::string why;
  switch (kind) {
    case cudaMemcpyHostToDevice: why = device(dst, "destination") + host(src, "source"); break;
    case cudaMemcpyDeviceToHost: why = host(dst, "destination") + device(src, "source"); break;
    case cudaMemcpyDeviceToDevice: why = device(dst, "destination") + device(src, "source"); break;
    default: why = "copy kind " + std::to_string(int(kind)) + " is not one the backend uses";
  }
  if (!why.empty()) return refuse("cudaMemcpyAsync", cudaErrorInvalidValue, why);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!s) return refuse("cudaStreamCreateWithFlags", cudaErrorInvalidValue, "null stream pointer");
  if (flags & ~unsigned(cudaStreamNonBlocking))
    return refuse("cudaStreamCreateWithFlags", cudaErrorInvalidValue, "unknown flags");
  auto* x = new CUstream_st{flags};
  st().streams.insert(x);
  *s = x;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  if (!s || !st().streams.erase(s))
    return refuse("cudaStreamDestroy", cudaErrorInvalidResourceHandle, "not a live stream");
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!stream_ok(s)) return refuse("cudaStreamSynchronize", cudaErrorInvalidResourceHandle, "not a live stream");
  return cudaSuccess;  // its work ran when it was enqueued
}

cudaError_t cudaDeviceSynchronize(void) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* ev) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!ev) return refuse("cudaEventCreate", cudaErrorInvalidValue, "null event pointer");
  auto* x = new CUevent_st;
  st().events.insert(x);
  *ev = x;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t ev) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  if (!ev || !st().events.erase(ev))
    return refuse("cudaEventDestroy", cudaErrorInvalidResourceHandle, "not a live event");
  delete ev;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!ev || !st().events.count(ev))
    return refuse("cudaEventRecord", cudaErrorInvalidResourceHandle, "not a live event");
  if (!stream_ok(s)) return refuse("cudaEventRecord", cudaErrorInvalidResourceHandle, "stream not live");
  ev->recorded = true;
  ev->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!ev || !st().events.count(ev))
    return refuse("cudaEventSynchronize", cudaErrorInvalidResourceHandle, "not a live event");
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> l(st().mu);
  cudaError_t e;
  if (dead(&e)) return e;
  if (!ms) return refuse("cudaEventElapsedTime", cudaErrorInvalidValue, "null result");
  if (!start || !end || !st().events.count(start) || !st().events.count(end))
    return refuse("cudaEventElapsedTime", cudaErrorInvalidResourceHandle, "not a live event");
  if (!start->recorded || !end->recorded)
    return refuse("cudaEventElapsedTime", cudaErrorInvalidResourceHandle, "event not recorded");
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

}  // extern "C"

// The host-compiled launchers' entry (kernels/cuda/kernel_launch.h).
namespace mdps::cuda {

void standin_launch(CUstream_st* stream, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                    unsigned bz, const void* const* pointers, size_t n_pointers, void (*body)(void*), void* ctx) {
  {
    std::lock_guard<std::recursive_mutex> l(st().mu);
    cudaError_t e;
    if (dead(&e)) return;
    if (!stream_ok(stream)) {
      refuse("kernel launch", cudaErrorInvalidResourceHandle, "stream not live");
      return;
    }
    const uint64_t threads = uint64_t(bx) * by * bz;
    if (gx < 1 || gy < 1 || gz < 1 || gy > 65535 || gz > 65535 || gx > 0x7fffffffu || threads < 1 ||
        threads > 1024 || bx > 1024 || by > 1024 || bz > 64) {
      refuse("kernel launch", cudaErrorInvalidConfiguration,
             "grid " + std::to_string(gx) + "x" + std::to_string(gy) + "x" + std::to_string(gz) + ", block " +
                 std::to_string(bx) + "x" + std::to_string(by) + "x" + std::to_string(bz));
      return;
    }
    for (size_t i = 0; i < n_pointers; ++i) {
      const void* p = pointers[i];
      if (!p) continue;
      const Where w = locate(p, 0);
      if (w != Where::Live) {
        device_fault("kernel launch", "pointer argument " + std::to_string(i + 1) + " is " +
                                          (w == Where::Freed ? "freed device memory" : "not device memory"));
        return;
      }
    }
  }
  try {
    body(ctx);
  } catch (const std::exception& ex) {
    misuse("kernel launch", ex.what());
    std::lock_guard<std::recursive_mutex> l(st().mu);
    st().sticky = cudaErrorLaunchFailure;
    st().last_error = cudaErrorLaunchFailure;
  }
}

}  // namespace mdps::cuda
