// Where cuDNN's fused attention finds each tensor (kernels/cuda/cudnn_attention.cpp):
// the dimensions [b, h, s, d], strides and offset from the buffer's start of
// each descriptor, in elements. Plain C++, so that a CPU test can read the
// buffers through exactly these numbers (tests/kernels/test_cuda_kernels_emu.cpp) and
// check them against the authors' attention without a GPU.
//
// The buffers (transpose_bf16_kernel.cuh fills and empties them):
//   qkv16, dqkv16 [BH, 3, L, ch]   q, k, v (dq, dk, dv) of one head one after another
//   o16, do16     [BH, L, ch]
//   stats         [BH, L]          float32 log-sum-exp per query
// The BH heads are cuDNN's batch (h = 1): they are independent.
#pragma once
#include <array>
#include <cstdint>

namespace mdps::cuda {

struct SdpaShape {
  int64_t BH = 0, L = 0, ch = 0;
};

struct SdpaTensor {
  std::array<int64_t, 4> dims{}, strides{};
  int64_t offset = 0;  // from the start of its buffer
  int64_t at(int64_t b, int64_t h, int64_t s, int64_t d) const {
    return offset + b * strides[0] + h * strides[1] + s * strides[2] + d * strides[3];
  }
};

struct SdpaLayout {
  SdpaTensor q, k, v;  // in qkv16 (and dq, dk, dv in dqkv16)
  SdpaTensor o;        // in o16 (and do in do16)
  SdpaTensor stats;
};

inline SdpaLayout sdpa_layout(const SdpaShape& s) {
  const int64_t L = s.L, ch = s.ch, head = L * ch;
  SdpaLayout l;
  l.q.dims = {s.BH, 1, L, ch};
  l.q.strides = {3 * head, head, ch, 1};  // h (size 1) as if it stepped q -> k -> v
  l.k = l.q;
  l.k.offset = head;
  l.v = l.q;
  l.v.offset = 2 * head;
  l.o.dims = {s.BH, 1, L, ch};
  l.o.strides = {head, head, ch, 1};
  l.stats.dims = {s.BH, 1, L, 1};
  l.stats.strides = {L, L, 1, 1};
  return l;
}

}  // namespace mdps::cuda
