// The CUDA backend's the authors' QKV attention: cuDNN's fused SDPA under bf16, else the generic
// path; the CPU's are in kernels/cpu/attention.cpp, the checks every backend shares in
// engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include "engine/core/attention_dims.h"
#include <string>

namespace mdps {

using cuda::OpRange;
using cuda::Scratch;

// --precision bf16: qkv (the authors' [channels, tokens] per head, float32) is
// transposed and cast into cuDNN's [tokens, channels] bfloat16 layout, the
// fused SDPA runs, its bf16 output is widened back. The output and, in the
// backward, the gradients are rounded to bf16 once more than on the generic
// path (whose products return float32). A shape cuDNN refuses runs the
// generic path; the refusal is remembered, so it costs one failed plan.
void CudaBackend::attention_impl(const Tensor& qkv, int heads, Tensor& a) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  const cuda::SdpaShape s{d.BH, d.L, d.ch};
  if (precision_ == Precision::BF16 && attn_->ready(s, false)) {
    OpRange range("attention.cudnn_sdpa");
    const int64_t head = d.L * d.ch;
    Scratch<uint16_t> qkv16(*alloc_, size_t(3 * d.BH * head)), o16(*alloc_, size_t(d.BH * head));
    Scratch<float> stats(*alloc_, size_t(d.BH * d.L));
    cuda::launch_transpose_to_bf16(qkv.data(), qkv16.get(), 3 * d.BH, d.ch, d.L, stream_);
    if (attn_->forward(s, d.scale, qkv16.get(), o16.get(), stats.get())) {
      cuda::launch_transpose_from_bf16(o16.get(), a.data(), d.BH, d.L, d.ch, stream_);
      return;
    }
  }
  OpRange range("attention");
  Backend::attention_impl(qkv, heads, a);
}

void CudaBackend::attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  const cuda::SdpaShape s{d.BH, d.L, d.ch};
  if (precision_ == Precision::BF16 && attn_->ready(s, false) && attn_->ready(s, true)) {
    OpRange range("attention_backward.cudnn_sdpa");
    const int64_t head = d.L * d.ch;
    Scratch<uint16_t> qkv16(*alloc_, size_t(3 * d.BH * head)), o16(*alloc_, size_t(d.BH * head)),
        do16(*alloc_, size_t(d.BH * head)), dqkv16(*alloc_, size_t(3 * d.BH * head));
    Scratch<float> stats(*alloc_, size_t(d.BH * d.L));
    cuda::launch_transpose_to_bf16(qkv.data(), qkv16.get(), 3 * d.BH, d.ch, d.L, stream_);
    cuda::launch_transpose_to_bf16(da.data(), do16.get(), d.BH, d.ch, d.L, stream_);
    // Nothing is kept from the forward (the Backend contract): recompute
    // the output and the log-sum-exp statistics the backward reads.
    if (attn_->forward(s, d.scale, qkv16.get(), o16.get(), stats.get()) &&
        attn_->backward(s, d.scale, qkv16.get(), o16.get(), do16.get(), stats.get(), dqkv16.get())) {
      cuda::launch_transpose_from_bf16(dqkv16.get(), dqkv.data(), 3 * d.BH, d.L, d.ch, stream_);
      return;
    }
  }
  OpRange range("attention_backward");
  Backend::attention_backward_impl(qkv, da, heads, dqkv);
}

std::string CudaBackend::paths() const {
  if (precision_ != Precision::BF16) return "attention: cuBLAS products + softmax kernel";
  const size_t plans = attn_->plans(), refused = attn_->refused();
  std::string line = cat("attention: cuDNN fused SDPA, ", plans, " plan", plans == 1 ? "" : "s");
  if (refused) line += cat("; ", refused, " refused (cuBLAS + softmax there), latest: ", attn_->last_refusal());
  return line;
}

}  // namespace mdps
