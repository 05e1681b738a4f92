// The authors' QKV attention, fused blockwise: for a block of queries the
// scores against all L keys, their softmax while the block is still in
// cache, and the product with v, through the register-tiled, packed pieces
// of attention_tiles.h. The weights [B*heads, L, L] are never held whole: at
// 32x32 that buffer is 128 MB per batch of 8, and writing it out and reading
// it back three times cost more than the products themselves.
//
// The forward holds a block transposed (one row per key, the queries in the
// vector lanes: attention_tiles.h's transposed blocks), and heads of up to 16
// channels take the keys in fixed blocks through an online softmax; each
// query's output depends only on its own column, so neither the query block
// size nor the thread count changes it.
//
// The backward recomputes each block's weights and accumulates dk and dv
// over the query blocks of one head in order, so the result depends only on
// the block size (fixed per L), not on the thread count. Heads of at most one
// vector of channels (the 64x64 U-Net's 16-channel heads at L = 1024) take
// the forward's transposed blocks (attention_backward_tiles.h); wider ones
// recompute the weights query-major, their products with a deep inner
// dimension (over queries or keys) through sgemm and the one over channels
// (dp = g^T v, as shallow as q^T k) through the score tiles.
#include "engine/core/attention_dims.h"
#include "engine/core/trace.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/attention_tiles.h"
#include "kernels/cpu/attention_backward_tiles.h"
#include "kernels/cpu/cpu_util.h"

namespace mdps {
namespace {

// Queries per block of the backward, a whole number of score tiles: the
// block's scores [Tb, L] stay within about 256 KB (L2).
int64_t query_block(int64_t L) {
  const int64_t TT = cpu::kAttnTT, whole = (L + TT - 1) / TT * TT;
  return std::min(whole, std::max<int64_t>(TT, 65536 / std::max<int64_t>(1, L) / TT * TT));
}

// One thread's buffers for one head of the backward, carved out of its scratch
// (sizes in floats, each a whole number of 64-byte lines).
struct HeadBuffers {
  float *kp, *qp, *p, *rowmax, *inv, *vp, *gp, *dp;
  int64_t ldp;

  HeadBuffers(const AttentionDims& d, int64_t Tb) {
    using namespace cpu;
    ldp = attn_score_stride(d.L);
    const int64_t panels = attn_key_panels(d.L) * d.ch * kAttnSW, groups = attn_query_groups(Tb);
    int64_t sizes[] = {panels, groups * d.ch * kAttnTT, groups * kAttnTT * ldp, Tb,
                       Tb,     panels,                  groups * d.ch * kAttnTT, groups * kAttnTT * ldp};
    int64_t total = 0;
    for (int64_t& s : sizes) total += (s = attn_lines(s));
    float* base = scratch(size_t(total), 1);
    float** parts[] = {&kp, &qp, &p, &rowmax, &inv, &vp, &gp, &dp};
    for (int i = 0; i < 8; ++i) {
      *parts[i] = base;
      base += sizes[i];
    }
  }
};

// p[t - t0, s] = softmax_s(scale * q[:,t] . k[:,s]) for t in [t0, t0 + nb)
// (without normalize, exp(...) unnormalised and inv[t] = 1 / row sum).
void block_weights(const float* q, const AttentionDims& d, int64_t t0, int64_t nb, HeadBuffers& h, bool normalize) {
  cpu::attn_pack_query_groups(q, d.L, d.ch, t0, nb, h.qp);
  cpu::attention_scores_packed(h.qp, h.kp, d.L, d.ch, nb, d.scale, h.p, h.ldp, h.rowmax);
  cpu::attention_exp_rows(h.p, h.ldp, d.L, nb, h.rowmax, h.inv, normalize);
}

}  // namespace

void CpuBackend::attention_impl(const Tensor& qkv, int heads, Tensor& a) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  if (d.BH == 0 || d.L == 0 || d.ch == 0) return;
  const int64_t L = d.L, ch = d.ch, Tb = cpu::attn_forward_query_block(L), blocks = (L + Tb - 1) / Tb;
  // Tasks are heads, or parts of heads when there are too few heads to keep
  // every thread busy; each task packs its head's k and v once.
  const int64_t want = 2 * ThreadPool::global().threads();
  const int64_t parts = d.BH >= want ? 1 : std::min(blocks, (want + d.BH - 1) / d.BH);
  trace::Scope ts("attention.fused", "kernel");
  if (ts.active()) ts.num("query_block", double(Tb)).flops(int64_t(d.flops()));
  const float* QKV = qkv.data();
  float* A = a.data();
  parallel_for(d.BH * parts, [&](int64_t b, int64_t e) {
    using namespace cpu;
    AttnForwardBuffers buf(scratch(size_t(AttnForwardBuffers::floats(L, ch, Tb)), 1), L, ch, Tb);
    int64_t packed = -1;
    for (int64_t i = b; i < e; ++i) {
      const int64_t bh = i / parts, part = i % parts;
      const float* q = QKV + bh * d.qkv_stride();
      if (packed != bh) {
        attention_pack_head_t(q + ch * L, q + 2 * ch * L, L, ch, buf);
        packed = bh;
      }
      for (int64_t blk = blocks * part / parts; blk < blocks * (part + 1) / parts; ++blk) {
        const int64_t t0 = blk * Tb, nb = std::min(Tb, L - t0);
        attention_block_t(q, L, ch, d.scale, t0, nb, buf, A + bh * d.out_stride() + t0, L);
      }
    }
  });
}

namespace {

// The backward of heads of at most one vector of channels on the forward's
// transposed blocks (attention_backward_tiles.h); each head is one task.
void attention_backward_narrow(const AttentionDims& d, const float* QKV, const float* DA, float* DQKV) {
  using namespace cpu;
  const int64_t L = d.L, ch = d.ch, Tb = attn_forward_query_block(L);
  parallel_for(d.BH, [&](int64_t b, int64_t e) {
    AttnBackwardBuffers buf(scratch(size_t(AttnBackwardBuffers::floats(L, ch, Tb)), 1), L, ch, Tb, d.scale);
    for (int64_t bh = b; bh < e; ++bh) {
      const float* q = QKV + bh * d.qkv_stride();
      float* dq = DQKV + bh * d.qkv_stride();
      attention_backward_head_t(q, q + ch * L, q + 2 * ch * L, DA + bh * d.out_stride(), L, ch, d.scale, Tb, buf, dq,
                                dq + ch * L, dq + 2 * ch * L);
    }
  });
}

}  // namespace

void CpuBackend::attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  if (d.BH == 0 || d.L == 0 || d.ch == 0) {
    fill(dqkv, 0.f);
    return;
  }
  if (d.ch <= cpu::kAttnW) {
    trace::Scope ts("attention_backward.narrow", "kernel");
    if (ts.active())
      ts.num("query_block", double(cpu::attn_forward_query_block(d.L))).flops(int64_t(2.5 * d.flops()));
    attention_backward_narrow(d, qkv.data(), da.data(), dqkv.data());
    return;
  }
  const int64_t L = d.L, ch = d.ch, Tb = query_block(L);
  trace::Scope ts("attention_backward.fused", "kernel");
  if (ts.active()) ts.num("query_block", double(Tb)).flops(int64_t(2.5 * d.flops()));
  const float* QKV = qkv.data();
  const float* DA = da.data();
  float* DQKV = dqkv.data();
  parallel_for(d.BH, [&](int64_t b, int64_t e) {
    HeadBuffers h(d, Tb);
    const int64_t ldp = h.ldp;
    for (int64_t bh = b; bh < e; ++bh) {
      const float* q = QKV + bh * d.qkv_stride();
      const float* k = q + ch * L;
      const float* v = q + 2 * ch * L;
      const float* g = DA + bh * d.out_stride();
      float* dq = DQKV + bh * d.qkv_stride();
      float* dk = dq + ch * L;
      float* dv = dq + 2 * ch * L;
      cpu::attn_pack_key_panels(k, L, ch, h.kp);
      cpu::attn_pack_key_panels(v, L, ch, h.vp);
      for (int64_t t0 = 0; t0 < L; t0 += Tb) {
        const int64_t nb = std::min(Tb, L - t0);
        const float acc = t0 == 0 ? 0.f : 1.f;  // dk, dv: sums over the query blocks
        block_weights(q, d, t0, nb, h, true);
        // dv[c,s] += sum_t g[c,t] p[t,s]
        cpu::sgemm(false, false, ch, L, nb, 1.f, g + t0, L, h.p, ldp, acc, dv, L);
        // dp[t,s] = sum_c g[c,t] v[c,s] (the score tiles with g for q, v for k), then
        // the softmax backward in place
        cpu::attn_pack_query_groups(g, L, ch, t0, nb, h.gp);
        cpu::attention_scores_packed(h.gp, h.vp, L, ch, nb, 1.f, h.dp, ldp, nullptr);
        for (int64_t t = 0; t < nb; ++t) cpu::softmax_backward_row(h.p + t * ldp, h.dp + t * ldp, h.dp + t * ldp, L);
        // dq[c, t0 + t] = scale sum_s k[c,s] ds[t,s];  dk[c,s] += scale sum_t q[c,t] ds[t,s]
        cpu::sgemm(false, true, ch, nb, L, d.scale, k, L, h.dp, ldp, 0.f, dq + t0, L);
        cpu::sgemm(false, false, ch, L, nb, d.scale, q + t0, L, h.dp, ldp, acc, dk, L);
      }
    }
  });
}

}  // namespace mdps
