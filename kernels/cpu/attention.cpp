// The authors' QKV attention, fused blockwise: for a block of queries the
// scores against all L keys, their softmax while the block is still in
// cache, and the product with v (register-tiled products, attention_tiles.h;
// the backward's four products of other shapes go through sgemm). The weights
// [B*heads, L, L] are never held whole: at 32x32 that buffer is 128 MB per
// batch of 8, and writing it out and reading it back three times cost more
// than the products themselves (a third of the guidance step before).
//
// The backward recomputes each block's weights the same way and accumulates
// dk and dv over the query blocks of one head in order, so the result depends
// only on the block size (fixed per L), not on the thread count.
#include "engine/attention_dims.h"
#include "engine/trace.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/attention_tiles.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {
namespace {

// Queries per block: the block's scores [Tb, L] stay within about 256 KB (L2).
int64_t query_block(int64_t L) { return std::max<int64_t>(1, std::min<int64_t>(L, 65536 / std::max<int64_t>(1, L))); }

// p[t - t0, s] = softmax_s(scale * q[:,t] . k[:,s]) for t in [t0, t0 + nb).
void block_weights(const float* q, const float* k, const AttentionDims& d, int64_t t0, int64_t nb, float* p) {
  cpu::attention_scores(q, k, d.L, d.ch, t0, nb, d.scale, p);
  for (int64_t t = 0; t < nb; ++t) cpu::softmax_row(p + t * d.L, p + t * d.L, d.L);
}

}  // namespace

void CpuBackend::attention(const Tensor& qkv, int heads, Tensor& a) {
  cpu::check_cpu(qkv, "attention input");
  cpu::check_cpu(a, "attention output");
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  check_shape(a, attention_out_shape(qkv.shape(), heads), "attention output");
  if (d.BH == 0 || d.L == 0 || d.ch == 0) return;
  const int64_t L = d.L, ch = d.ch, Tb = query_block(L), blocks = (L + Tb - 1) / Tb;
  trace::Scope ts("attention.fused", "kernel");
  if (ts.active()) ts.num("query_block", double(Tb)).flops(int64_t(d.flops()));
  const float* QKV = qkv.data();
  float* A = a.data();
  cpu::BlasSingleThread single;
  parallel_for(d.BH * blocks, [&](int64_t b, int64_t e) {
    float* p = cpu::scratch(size_t(Tb * L));
    for (int64_t i = b; i < e; ++i) {
      const int64_t bh = i / blocks, t0 = (i % blocks) * Tb, nb = std::min(Tb, L - t0);
      const float* q = QKV + bh * d.qkv_stride();
      block_weights(q, q + ch * L, d, t0, nb, p);
      // a[c, t0 + t] = sum_s v[c,s] p[t,s]
      cpu::attention_values(q + 2 * ch * L, p, L, ch, nb, A + bh * d.out_stride() + t0, L);
    }
  });
}

void CpuBackend::attention_backward(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  cpu::check_cpu(qkv, "attention_backward input");
  cpu::check_cpu(da, "attention_backward da");
  cpu::check_cpu(dqkv, "attention_backward dqkv");
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  check_shape(da, attention_out_shape(qkv.shape(), heads), "attention_backward da");
  check_shape(dqkv, qkv.shape(), "attention_backward dqkv");
  if (d.BH == 0 || d.L == 0 || d.ch == 0) {
    fill(dqkv, 0.f);
    return;
  }
  const int64_t L = d.L, ch = d.ch, Tb = query_block(L);
  trace::Scope ts("attention_backward.fused", "kernel");
  if (ts.active()) ts.num("query_block", double(Tb)).flops(int64_t(2.5 * d.flops()));
  const float* QKV = qkv.data();
  const float* DA = da.data();
  float* DQKV = dqkv.data();
  cpu::BlasSingleThread single;
  parallel_for(d.BH, [&](int64_t b, int64_t e) {
    float* p = cpu::scratch(size_t(Tb * L), 0);
    float* dp = cpu::scratch(size_t(Tb * L), 1);
    for (int64_t bh = b; bh < e; ++bh) {
      const float* q = QKV + bh * d.qkv_stride();
      const float* k = q + ch * L;
      const float* v = q + 2 * ch * L;
      const float* g = DA + bh * d.out_stride();
      float* dq = DQKV + bh * d.qkv_stride();
      float* dk = dq + ch * L;
      float* dv = dq + 2 * ch * L;
      for (int64_t t0 = 0; t0 < L; t0 += Tb) {
        const int64_t nb = std::min(Tb, L - t0);
        const float acc = t0 == 0 ? 0.f : 1.f;  // dk, dv: sums over the query blocks
        block_weights(q, k, d, t0, nb, p);
        // dv[c,s] += sum_t g[c,t] p[t,s]
        cpu::sgemm(false, false, ch, L, nb, 1.f, g + t0, L, p, L, acc, dv, L);
        // dp[t,s] = sum_c g[c,t] v[c,s], then the softmax backward in place
        cpu::sgemm(true, false, nb, L, ch, 1.f, g + t0, L, v, L, 0.f, dp, L);
        for (int64_t t = 0; t < nb; ++t) cpu::softmax_backward_row(p + t * L, dp + t * L, dp + t * L, L);
        // dq[c, t0 + t] = scale sum_s k[c,s] ds[t,s];  dk[c,s] += scale sum_t q[c,t] ds[t,s]
        cpu::sgemm(false, true, ch, nb, L, d.scale, k, L, dp, L, 0.f, dq + t0, L);
        cpu::sgemm(false, false, ch, L, nb, d.scale, q + t0, L, dp, L, acc, dk, L);
      }
    }
  });
}

}  // namespace mdps
