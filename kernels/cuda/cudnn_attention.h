// cuDNN's fused scaled-dot-product attention for --precision bf16: the graph
// API's SDPA forward and backward operations (one node each, cuDNN >= 9.17
// for the backward), reached through the backend descriptor API because the
// header-only cudnn-frontend is not a dependency. Flash attention never
// holds the [tokens x tokens] weights, where the generic path (cuBLAS
// products and the softmax kernel, engine/core/backend_attention.cpp) stores them.
//
// cuDNN decides at run time which shapes its engines take. Every step that
// can refuse (the operation, the graph, the heuristics, the plan, the
// execution) is checked; a refusal is remembered per shape with its reason and
// the caller falls back to the generic path, so an older cuDNN or an
// unsupported head size costs one failed plan, not an error. This file has
// never run on a GPU (docs/gpu.md).
//
// Layouts: bfloat16 with the head dimension contiguous, as sdpa_layout.h
// describes them (the kernels of transpose_bf16_kernel.cuh produce them from
// the authors' float layout and back).
#pragma once
#include "kernels/cuda/device_allocator.h"
#include "kernels/cuda/cudnn_handle.h"
#include "kernels/cuda/sdpa_layout.h"
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace mdps::cuda {

class CudnnAttention {
 public:
  CudnnAttention(CudnnHandle& handle, CUstream_st* stream, CachingAllocator& alloc);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Whether this shape and direction has a plan (built now on first ask):
  // false when MDPS_CUDNN_SDPA is "0", when the head size does not suit the
  // fused kernels (a multiple of 8, at most 256) or when cuDNN refused it.
  // Lets the caller skip the layout changes when the answer is no.
  bool ready(const SdpaShape& s, bool backward);

  // o16 and stats from qkv16, softmax(scale q.k) v; false, with nothing
  // enqueued, when cuDNN refuses this shape (why: last_refusal()).
  bool forward(const SdpaShape& s, float scale, const uint16_t* qkv16, uint16_t* o16, float* stats);
  // dqkv16 from the forward's inputs, output and stats and the output's
  // gradient do16; false, with nothing enqueued, when cuDNN refuses.
  bool backward(const SdpaShape& s, float scale, const uint16_t* qkv16, const uint16_t* o16, const uint16_t* do16,
                const float* stats, uint16_t* dqkv16);

  // The reason of the latest refusal ("" when none).
  std::string last_refusal() const;
  // Plans built and shapes refused (forward and backward count apart), for
  // tests, `mdps bench` and diagnostics.
  size_t plans() const;
  size_t refused() const;

 private:
  struct Plan;
  // The plan for this shape and direction, built on first use; null when
  // cuDNN refused it (then or earlier).
  Plan* plan(const SdpaShape& s, bool backward);
  bool execute(Plan& p, const int64_t* uids, void* const* ptrs, int n);
  void refuse(const std::array<int64_t, 4>& key, const std::string& why);

  CudnnHandle& handle_;
  CUstream_st* stream_;
  CachingAllocator& alloc_;
  bool disabled_ = false;   // MDPS_CUDNN_SDPA=0
  mutable std::mutex mu_;
  std::map<std::array<int64_t, 4>, std::unique_ptr<Plan>> plans_;  // null entry: refused
  std::string refusal_;
  std::string why_;  // of the latest failed execution
  size_t refused_ = 0;
};

}  // namespace mdps::cuda
