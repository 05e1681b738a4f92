// The CUDA built-ins the hand-written kernels use, so that the same kernel
// source (kernels/cuda/*.cuh) compiles with nvcc for the GPU and with the host
// C++ compiler for tests that run on any machine.
//
// Under nvcc this header only defines the portability macros:
//   MDPS_KERNEL            static __global__
//   MDPS_DEVICE            __device__ __forceinline__ (helpers called by kernels)
//   MDPS_SHARED(T, n, k)   __shared__ T n[k]
//
// On the host it emulates the execution model: emu::launch(grid, block, f,
// args...) runs every thread of every block. Blocks run one after another;
// the threads of a block are ucontext fibers on the calling OS thread, each
// running until it reaches a barrier (__syncthreads, or the warp-level
// exchange inside a shuffle) or returns. A barrier opens when every live
// thread of its scope waits at it, exactly as a CUDA barrier does, so kernels
// whose threads race through shared memory without a barrier compute garbage
// here too, and a barrier some threads never reach is reported as a deadlock
// (an mdps::Error) instead of hanging. Fibers switch only at barriers, so
// atomics are plain read-modify-writes. threadIdx/blockIdx/blockDim/gridDim
// are globals the scheduler sets before resuming each fiber.
#pragma once

#if defined(__CUDACC__)

// Internal linkage (static __global__, whole-program compilation): every .cu
// that includes a kernel header (its launcher, a bench/cuda playground
// program) owns its copy, so a program linking several of them holds no
// duplicate launch stubs.
#define MDPS_KERNEL static __global__
#define MDPS_DEVICE __device__ __forceinline__
#define MDPS_SHARED(type, name, count) __shared__ type name[count]
#define MDPS_FULL_MASK 0xffffffffu

#else  // host emulation

#if defined(__VECTOR_TYPES_H__)
#error "cuda_emu.h: host code including both the CUDA runtime headers and the kernel emulation"
#endif

#include "engine/core/common.h"
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <vector>

// Fiber switches: glibc's swapcontext saves and restores the signal mask with
// a system call on every switch, which dominated whole-model runs through the
// emulation (the CUDA stand-in build). On x86-64 the switch is a few
// instructions instead (callee-saved registers, MXCSR and the x87 control
// word, then the stack pointer: what the SysV ABI requires a call to keep);
// under AddressSanitizer, which follows swapcontext, and elsewhere ucontext.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(MDPS_EMU_UCONTEXT)
#define MDPS_EMU_FAST_SWITCH 1
extern "C" void mdps_emu_switch(void** save_sp, void* load_sp);
// Weak: every translation unit that includes this header defines it.
__asm__(
    ".text\n"
    ".weak mdps_emu_switch\n"
    ".type mdps_emu_switch,@function\n"
    "mdps_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size mdps_emu_switch,.-mdps_emu_switch\n");
#endif

// Internal linkage: nvcc emits a host-side launch stub with the kernel's
// mangled name, and a program linking both must not merge the two.
#define MDPS_KERNEL static inline
#define MDPS_DEVICE inline
#define MDPS_FULL_MASK 0xffffffffu
// One array per block, found by the address of a static tag that is unique to
// the declaration; every thread of the block gets the same storage.
#define MDPS_SHARED(type, name, count)                     \
  static const char name##_emu_tag = 0;                    \
  type* name = static_cast<type*>(::mdps::emu::shared_array(&name##_emu_tag, sizeof(type) * size_t(count)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace mdps::emu {

// Misuse detected inside a kernel: exceptions cannot cross a fiber's stack.
[[noreturn]] inline void device_fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

enum class Wait : uint8_t { None, Block, Warp, Done };

struct Fiber {
  ucontext_t ctx;
  void* sp = nullptr;  // MDPS_EMU_FAST_SWITCH: the suspended stack
  std::unique_ptr<char[]> stack;
  uint3 tid;
  Wait wait = Wait::None;
};

struct BlockState {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  void* scheduler_sp = nullptr;
  Fiber* current = nullptr;
  std::map<const void*, std::vector<unsigned char>> shared;
  std::vector<uint64_t> exchange;  // one slot per thread, for warp shuffles
  std::function<void()> body;
  int64_t barriers_passed = 0;
  int64_t warp_waits = 0;
  bool direct = false;  // launch_direct's plain calls: no fiber to suspend
};

inline BlockState*& state() {
  static BlockState* s = nullptr;
  return s;
}

// Enough for the kernels' locals plus gcov/sanitizer instrumentation.
constexpr size_t kStackBytes = 256 * 1024;

inline void* shared_array(const void* tag, size_t bytes) {
  BlockState* s = state();
  if (!s) device_fail("__shared__ memory used outside emu::launch");
  auto& buf = s->shared[tag];
  if (buf.empty()) {
    // Uninitialised in CUDA; filled with a pattern so reads before writes show.
    buf.assign(bytes, 0xA5);
  }
  if (buf.size() != bytes) device_fail("one __shared__ declaration with two sizes");
  return buf.data();
}

inline unsigned linear_tid(const uint3& t) { return t.x + blockDim.x * (t.y + blockDim.y * t.z); }

// Back to the scheduler until the barrier of this kind opens.
inline void wait_at(Wait kind) {
  BlockState* s = state();
  if (s->direct) device_fail("a barrier or shuffle in a kernel whose first block reached none (launch_direct)");
  if (kind == Wait::Warp) ++s->warp_waits;
  Fiber* f = s->current;
  f->wait = kind;
#ifdef MDPS_EMU_FAST_SWITCH
  mdps_emu_switch(&f->sp, s->scheduler_sp);
#else
  swapcontext(&f->ctx, &s->scheduler);
#endif
  // Resumed: the scheduler restored the built-ins for this fiber.
}

inline void fiber_entry() {
  BlockState* s = state();
  s->body();
  s->current->wait = Wait::Done;
#ifdef MDPS_EMU_FAST_SWITCH
  void* dead = nullptr;
  mdps_emu_switch(&dead, s->scheduler_sp);  // never resumed
  std::abort();
#endif
  // uc_link returns to the scheduler.
}

#ifdef MDPS_EMU_FAST_SWITCH
// A fresh stack whose first switch "returns" into fiber_entry, as if
// mdps_emu_switch had been called from it: the saved registers (zero), the
// current MXCSR and x87 control word, fiber_entry's address, and a dummy
// return address so the entry sees the ABI's stack alignment.
inline void* fresh_stack(char* stack, size_t bytes) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  void** p = reinterpret_cast<void**>(top);
  *--p = nullptr;                                       // fiber_entry's return address (never used)
  *--p = reinterpret_cast<void*>(&fiber_entry);          // popped by ret
  for (int i = 0; i < 6; ++i) *--p = nullptr;            // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpcw));
  --p;
  std::memcpy(reinterpret_cast<char*>(p), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(p) + 4, &fpcw, 2);
  return p;
}
#endif

// Runs one block to completion.
inline void run_block(BlockState& s, const uint3& block) {
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  s.shared.clear();
  s.exchange.assign(nthreads, 0);
  if (s.fibers.size() != nthreads) s.fibers = std::vector<Fiber>(nthreads);
  for (unsigned i = 0; i < nthreads; ++i) {
    Fiber& f = s.fibers[i];
    if (!f.stack) f.stack.reset(new char[kStackBytes]);
    f.tid = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    f.wait = Wait::None;
#ifdef MDPS_EMU_FAST_SWITCH
    f.sp = fresh_stack(f.stack.get(), kStackBytes);
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &s.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
#endif
  }
  const unsigned nwarps = (nthreads + warpSize - 1) / warpSize;
  for (;;) {
    // Run every runnable fiber until it blocks or ends.
    for (auto& f : s.fibers) {
      if (f.wait != Wait::None) continue;
      s.current = &f;
      blockIdx = block;
      threadIdx = f.tid;
#ifdef MDPS_EMU_FAST_SWITCH
      mdps_emu_switch(&s.scheduler_sp, f.sp);
#else
      swapcontext(&s.scheduler, &f.ctx);
#endif
    }
    bool progressed = false, live = false;
    // A warp exchange opens when every live lane of the warp waits at it.
    for (unsigned w = 0; w < nwarps; ++w) {
      unsigned lo = w * warpSize, hi = std::min(nthreads, lo + warpSize);
      bool all = true, any = false;
      for (unsigned i = lo; i < hi; ++i) {
        Wait k = s.fibers[i].wait;
        if (k == Wait::Done) continue;
        any = true;
        if (k != Wait::Warp) all = false;
      }
      if (any && all) {
        for (unsigned i = lo; i < hi; ++i)
          if (s.fibers[i].wait == Wait::Warp) s.fibers[i].wait = Wait::None;
        progressed = true;
      }
    }
    if (progressed) continue;
    bool all_block = true;
    for (auto& f : s.fibers) {
      if (f.wait == Wait::Done) continue;
      live = true;
      if (f.wait != Wait::Block) all_block = false;
    }
    if (!live) break;
    MDPS_CHECK(all_block, "cuda_emu: deadlock in block (", block.x, ",", block.y, ",", block.z,
               "): threads wait at different barriers (divergent __syncthreads or shuffle)");
    for (auto& f : s.fibers)
      if (f.wait == Wait::Block) f.wait = Wait::None;
    ++s.barriers_passed;
  }
  s.current = nullptr;
}

// What the last launch did, for tests of the emulation itself.
struct LaunchStats {
  int64_t blocks = 0, threads = 0, barriers = 0;
};
inline LaunchStats& last_launch() {
  static LaunchStats st;
  return st;
}

// direct: the host build of the launchers (kernels/cuda/kernel_launch.h) runs
// the first block on fibers and, when none of its threads reached a barrier
// or shuffle, every other thread as a plain call (no context switches: the
// stand-in build runs whole models through the emulation). A later thread
// that reaches a barrier then aborts loudly, never computes quietly.
template <typename Kernel, typename... Args>
void launch_impl(bool direct, dim3 grid, dim3 block, Kernel kernel, Args... args) {
  MDPS_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1, "cuda_emu: empty grid");
  const uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
  MDPS_CHECK(nthreads >= 1 && nthreads <= 1024, "cuda_emu: block of ", nthreads, " threads (CUDA allows 1..1024)");
  MDPS_CHECK(state() == nullptr, "cuda_emu: nested launch");
  BlockState s;
  s.body = [&] { kernel(args...); };
  state() = &s;
  gridDim = grid;
  blockDim = block;
  LaunchStats st;
  try {
    bool first = true;
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          if (s.direct) {
            s.shared.clear();
            blockIdx = uint3{x, y, z};
            for (unsigned i = 0; i < unsigned(nthreads); ++i) {
              threadIdx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
              s.body();
            }
          } else {
            run_block(s, uint3{x, y, z});
          }
          ++st.blocks;
          if (first && direct && s.barriers_passed == 0 && s.warp_waits == 0) s.direct = true;
          first = false;
        }
  } catch (...) {
    state() = nullptr;
    throw;
  }
  st.threads = st.blocks * int64_t(nthreads);
  st.barriers = s.barriers_passed;
  last_launch() = st;
  state() = nullptr;
}

template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, Kernel kernel, Args... args) {
  launch_impl(false, grid, block, kernel, args...);
}
template <typename Kernel, typename... Args>
void launch_direct(dim3 grid, dim3 block, Kernel kernel, Args... args) {
  launch_impl(true, grid, block, kernel, args...);
}

// Lane `src` of this warp's exchange, after every lane stored its own value.
template <typename T>
T warp_exchange(T v, int src_lane_in_warp, bool valid) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "cuda_emu: shuffle of a type wider than 64 bits");
  BlockState* s = state();
  const unsigned me = linear_tid(threadIdx);
  const unsigned base = me - me % warpSize;
  std::memcpy(&s->exchange[me], &v, sizeof(T));
  wait_at(Wait::Warp);
  T out = v;
  const unsigned src = base + unsigned(src_lane_in_warp);
  // A lane outside the block's threads is inactive in CUDA: the result is the
  // caller's own value (shfl_down/up/xor past the warp also return it).
  if (valid && src < s->fibers.size()) std::memcpy(&out, &s->exchange[src], sizeof(T));
  // Second phase so no lane overwrites its slot before every lane has read.
  wait_at(Wait::Warp);
  return out;
}

}  // namespace mdps::emu

inline void __syncthreads() { ::mdps::emu::wait_at(::mdps::emu::Wait::Block); }

template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  if (mask != MDPS_FULL_MASK) ::mdps::emu::device_fail("only full-warp shuffles are emulated");
  int lane = int(::mdps::emu::linear_tid(threadIdx) % warpSize);
  int seg = lane % width;
  return ::mdps::emu::warp_exchange(v, lane + int(delta), seg + int(delta) < width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  if (mask != MDPS_FULL_MASK) ::mdps::emu::device_fail("only full-warp shuffles are emulated");
  int lane = int(::mdps::emu::linear_tid(threadIdx) % warpSize);
  int src = lane ^ lane_mask;
  return ::mdps::emu::warp_exchange(v, src, src / width == lane / width);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
  if (mask != MDPS_FULL_MASK) ::mdps::emu::device_fail("only full-warp shuffles are emulated");
  int lane = int(::mdps::emu::linear_tid(threadIdx) % warpSize);
  int src = (lane / width) * width + src_lane % width;
  return ::mdps::emu::warp_exchange(v, src, true);
}

// Fibers switch only at barriers, so a read-modify-write is atomic here.
template <typename T>
T atomicAdd(T* address, T v) {
  T old = *address;
  *address = old + v;
  return old;
}

inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }

#endif  // __CUDACC__
