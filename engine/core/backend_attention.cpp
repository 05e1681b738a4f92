// The generic QKV attention of the Backend interface: the weights w
// [B*heads, L, L] materialised through the backend's own gemm and softmax.
// Any backend gets it for free; the CPU overrides it with a blockwise fused
// version (kernels/cpu/attention.cpp) that never holds w whole.
#include "engine/core/attention_dims.h"
#include "engine/core/backend.h"

namespace mdps {
namespace {

// w[bh, t, s] = softmax_s(scale * sum_c q[c,t] k[c,s])
Tensor attention_weights(Backend& be, const Tensor& qkv, const AttentionDims& d) {
  const float* q = qkv.data();
  Tensor w = Tensor::empty({d.BH, d.L, d.L}, be);
  be.gemm(true, false, d.L, d.L, d.ch, d.scale, q, d.L, d.qkv_stride(), q + d.ch * d.L, d.L, d.qkv_stride(), 0.f,
          w.data(), d.L, d.L * d.L, d.BH);
  be.softmax(w, w);
  return w;
}

}  // namespace

void Backend::attention_impl(const Tensor& qkv, int heads, Tensor& a) {
  AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  Tensor w = attention_weights(*this, qkv, d);
  // a[bh, c, t] = sum_s v[c,s] w[t,s]
  gemm(false, true, d.ch, d.L, d.L, 1.f, qkv.data() + 2 * d.ch * d.L, d.L, d.qkv_stride(), w.data(), d.L, d.L * d.L,
       0.f, a.data(), d.L, d.out_stride(), d.BH);
}

void Backend::attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  Tensor w = attention_weights(*this, qkv, d);
  const int64_t L = d.L, ch = d.ch, sqkv = d.qkv_stride(), LL = L * L;
  const float* q = qkv.data();
  const float* k = q + ch * L;
  const float* v = q + 2 * ch * L;
  float* dq = dqkv.data();
  float* dk = dq + ch * L;
  float* dv = dq + 2 * ch * L;
  const float* g = da.data();
  // dv[c,s] = sum_t g[c,t] w[t,s]
  gemm(false, false, ch, L, L, 1.f, g, L, ch * L, w.data(), L, LL, 0.f, dv, L, sqkv, d.BH);
  // dw[t,s] = sum_c g[c,t] v[c,s]; then ds = softmax_backward, in place
  Tensor dw = Tensor::empty({d.BH, L, L}, *this);
  gemm(true, false, L, L, ch, 1.f, g, L, ch * L, v, L, sqkv, 0.f, dw.data(), L, LL, d.BH);
  softmax_backward(w, dw, dw);
  w = Tensor();
  // dq[c,t] = scale sum_s k[c,s] ds[t,s];  dk[c,s] = scale sum_t q[c,t] ds[t,s]
  gemm(false, true, ch, L, L, d.scale, k, L, sqkv, dw.data(), L, LL, 0.f, dq, L, sqkv, d.BH);
  gemm(false, false, ch, L, L, d.scale, q, L, sqkv, dw.data(), L, LL, 0.f, dk, L, sqkv, d.BH);
}

}  // namespace mdps
