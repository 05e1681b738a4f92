// MDPS_LAUNCH(kernel, grid, block, stream)(args...): the one way the launchers
// (kernels/cuda/*.cu) enqueue a kernel, so the same launcher source builds for
// the GPU and for the host.
//   - under nvcc: kernel<<<grid, block, 0, stream>>>(args...);
//   - on the host (the CUDA stand-in build, -DMDPS_CUDA_STANDIN=ON): the kernel
//     runs through the emulation (kernels/cuda/emu/cuda_emu.h, launch_direct:
//     barrier-free kernels past their first block as plain calls), handed to the
//     stand-in CUDA runtime (tests/standin/), which checks the stream, the
//     launch configuration and that every pointer argument lies in a live
//     device allocation, as a GPU would fault on any other, and records the
//     launch's error for cudaGetLastError (so check_launch sees it).
// No kernel takes dynamic shared memory, so there is no such parameter.
#pragma once
#include "kernels/cuda/emu/cuda_emu.h"
#include <cstddef>
#include <type_traits>

struct CUstream_st;

#if defined(__CUDACC__)

#define MDPS_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>

#else

namespace mdps::cuda {

// Implemented by the stand-in CUDA runtime (tests/standin/cuda_runtime_standin.cpp):
// validates the launch, then calls body(ctx) unless the launch is refused.
void standin_launch(CUstream_st* stream, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                    unsigned bz, const void* const* pointers, size_t n_pointers, void (*body)(void*), void* ctx);

template <typename T>
const void* launch_pointer(const T& v) {
  if constexpr (std::is_pointer_v<T>) return static_cast<const void*>(v);
  else return nullptr;
}

template <typename Kernel>
struct HostLaunch {
  Kernel kernel;
  dim3 grid, block;
  CUstream_st* stream;
  template <typename... Args>
  void operator()(Args... args) const {
    const void* ptrs[] = {launch_pointer(args)..., nullptr};
    auto run = [&] { ::mdps::emu::launch_direct(grid, block, kernel, args...); };
    using Run = decltype(run);
    standin_launch(stream, grid.x, grid.y, grid.z, block.x, block.y, block.z, ptrs, sizeof...(Args),
                   [](void* c) { (*static_cast<Run*>(c))(); }, &run);
  }
};

template <typename Kernel>
HostLaunch<Kernel> host_launch(Kernel kernel, dim3 grid, dim3 block, CUstream_st* stream) {
  return HostLaunch<Kernel>{kernel, grid, block, stream};
}

}  // namespace mdps::cuda

#define MDPS_LAUNCH(kernel, grid, block, stream) ::mdps::cuda::host_launch(kernel, (grid), (block), (stream))

#endif
