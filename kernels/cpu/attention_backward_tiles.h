// The CPU attention backward for narrow heads (ch <= one vector of floats: the
// 64x64 U-Net's 16-channel heads, where L = 1024 and most of the guidance's
// attention time is), on the forward's transposed blocks (attention_tiles.h:
// one row per key, a block of queries in the vector lanes).
//
// For a block of queries, with P = softmax over the keys and g = dL/da:
//   e[s][t] = exp(scale q_t.k_s - max), inv[t] = 1 / sum_s e     (attention_exp_t)
//   dp[s][t] = v_s . g_t, D[t] = sum_s P dp                       (attention_dp_t)
//   ds[s][t] = P (dp - D[t])                                      (attention_ds_values_t,
//   dq[:, t] = scale sum_s k_s ds[s][t]                            in one pass)
//   dv[:, s] += sum_t e[s][t] (inv[t] g_t), dk[:, s] += sum_t ds[s][t] (scale q_t)
//                                                                 (attention_key_grads_t)
// The last two hold a key's gradient with the channels in the lanes (one
// vector per key) and sum over the block's queries, key rows broadcast from
// the block; they accumulate over the query blocks in order, so a head's
// result depends on the block size (fixed per L), never on the thread count
// or the batch. The query-major backward in attention.cpp (three sgemm calls
// on a 16-row operand and a double-precision softmax row product) ran at
// 60 GFLOP/s per core here; this one is measured in bench/RESULTS.md.
#pragma once
#include "kernels/cpu/attention_tiles.h"

namespace mdps::cpu {

// xt[t][c] = mul[t] * x[c, t0 + t] for t < n, c < ch, zero for ch <= c < kAttnW
// (mul: one factor per query, or nullptr for `scale`); a row per query, one vector wide.
inline void attn_pack_rows_t(const float* x, int64_t L, int64_t ch, int64_t t0, int64_t n, const float* mul,
                             float scale, float* xt) {
  for (int64_t t = 0; t < n; ++t) {
    const float f = mul ? mul[t] : scale;
    float* row = xt + t * kAttnW;
    for (int64_t c = 0; c < ch; ++c) row[c] = f * x[c * L + t0 + t];
    for (int64_t c = ch; c < kAttnW; ++c) row[c] = 0.f;
  }
}

// dpt[s][t] = v_s . g_t (vg: the values packed as the keys, gb: the block's
// gradients packed as its queries), and D[j] = sum_s et[s][j] dpt[s][j] (the
// softmax backward's row product before the 1 / sum) while the tile is in
// registers: the same sums, in the same key order, as a pass over the stored
// block would take, without that pass.
template <int QV>
inline void attn_dp_t_tile(const float* vg, const float* gb, int64_t qw, int64_t ch, int64_t j0, int nk,
                           const float* et, float* dpt, int64_t ldt, attn_vec* D) {
  attn_vec acc[kAttnKT][QV];
  attn_scores_t_acc<QV>(vg, gb, qw, ch, j0, acc);
  attn_vec d[QV];
  for (int j = 0; j < QV; ++j) d[j] = D[j];
  for (int i = 0; i < nk; ++i)
    for (int j = 0; j < QV; ++j) {
      attn_store(dpt + i * ldt + (j0 + j) * kAttnW, acc[i][j]);
      d[j] += attn_load(et + i * ldt + (j0 + j) * kAttnW) * acc[i][j];
    }
  for (int j = 0; j < QV; ++j) D[j] = d[j];
}

inline void attention_dp_t(const float* vg, const float* gb, int64_t L, int64_t ch, int64_t nb, const float* et,
                           float* dpt, int64_t ldt, attn_vec* D) {
  const int64_t qw = attn_query_width(nb), nvec = qw / kAttnW;
  for (int64_t j = 0; j < nvec; ++j) D[j] = attn_vec{};
  attn_for_each_score_tile_t(L, nb, [&](auto QV, int64_t j0, int64_t g, int nk) {
    const int64_t r = g * kAttnKT * ldt;
    attn_dp_t_tile<decltype(QV)::value>(vg + g * ch * kAttnKT, gb, qw, ch, j0, nk, et + r, dpt + r, ldt, D + j0);
  });
}

// dq[c, t0 + t] (rows ldo apart) = scales[t] sum_s kt[s][c] ds[s][t] with the softmax
// backward folded into the first channel tile: there each stored dp is
// turned into ds = P (dp - D) (P = et inv, D already scaled by inv) as the
// product loads it, and written back over it for the other channel tile and
// the key gradients. A pass of its own over the blocks (a read of both and a
// write of dp, in L2) took 8% of the head at L = 1024; folded in, the head
// takes 1.30 -> 1.19 ms (AMD Zen 5, 1 thread, bench/cpu/attention).
template <int QV>
inline void attn_ds_values_t_tile(const float* kt, int64_t cw, int64_t ch, const float* et, float* dpt, int64_t ldt,
                                  int64_t L, int64_t j0, int64_t nb, const attn_vec* inv, const attn_vec* D,
                                  const attn_vec* scales, float* out, int64_t ldo) {
  attn_vec acc[kAttnCT][QV] = {};
  attn_vec ij[QV], dj[QV];
  for (int j = 0; j < QV; ++j) {
    ij[j] = inv[j0 + j];
    dj[j] = D[j0 + j];
  }
  for (int64_t s = 0; s < L; ++s) {
    attn_vec ev[QV];
    for (int j = 0; j < QV; ++j) {
      float* d = dpt + s * ldt + (j0 + j) * kAttnW;
      ev[j] = (attn_load(et + s * ldt + (j0 + j) * kAttnW) * ij[j]) * (attn_load(d) - dj[j]);
      attn_store(d, ev[j]);
    }
    for (int i = 0; i < kAttnCT; ++i) {
      const float vc = kt[s * cw + i];
      for (int j = 0; j < QV; ++j) acc[i][j] += vc * ev[j];
    }
  }
  for (int i = 0; i < kAttnCT && i < ch; ++i)
    for (int j = 0; j < QV; ++j) {
      const int64_t t = (j0 + j) * kAttnW;
      attn_store_lanes(out + i * ldo + t, acc[i][j] * scales[j0 + j], std::min<int64_t>(kAttnW, nb - t));
    }
}

// In place: dpt[s][t] = ds = P[s][t] (dpt[s][t] - D[t]) with P = et * inv
// (D from attention_dp_t, scaled here by inv), and dq (out, rows ldo apart)
// as attention_values_t computes it from ds.
inline void attention_ds_values_t(const float* kt, int64_t ch, const float* et, float* dpt, int64_t ldt, int64_t L,
                                  int64_t nb, const attn_vec* inv, attn_vec* D, const attn_vec* scales, float* out,
                                  int64_t ldo) {
  const int64_t cw = attn_value_width_t(ch), nvec = attn_query_width(nb) / kAttnW;
  for (int64_t j = 0; j < nvec; ++j) D[j] *= inv[j];
  for (int64_t j0 = 0; j0 < nvec; j0 += kAttnQV) {
    const int64_t nv = std::min<int64_t>(kAttnQV, nvec - j0);
    if (nv == 3) attn_ds_values_t_tile<3>(kt, cw, ch, et, dpt, ldt, L, j0, nb, inv, D, scales, out, ldo);
    else if (nv == 2) attn_ds_values_t_tile<2>(kt, cw, ch, et, dpt, ldt, L, j0, nb, inv, D, scales, out, ldo);
    else attn_ds_values_t_tile<1>(kt, cw, ch, et, dpt, ldt, L, j0, nb, inv, D, scales, out, ldo);
  }
  attention_values_t(kt, ch, dpt, ldt, L, nb, scales, out, ldo, kAttnCT);  // the other channel tiles, from ds
}

// Keys per group of attention_key_grads_t: 2 x 8 accumulators and the two
// query rows fill 18 of AVX-512's 32 registers.
constexpr int kAttnKG = 8;

// For the keys s0 .. s0 + nk - 1 (nk <= kAttnKG) and the block's nb queries:
// dvt[s][:] += sum_t et[s][t] gs[t][:] and dkt[s][:] += sum_t dst[s][t] qs[t][:]
// (gs, qs: attn_pack_rows_t rows; dvt, dkt: a vector per key, set rather than
// added to when `first`). LDT > 0: the rows are LDT floats apart (= ldt), so
// each broadcast is an immediate offset from two base pointers; with the
// stride known only at run time (LDT = 0) the 16 row pointers outnumber the
// registers and were reloaded from the stack every query (0.66 -> 0.45 ms per
// head at L = 1024, one thread).
template <int LDT>
inline void attn_key_grads_t_group(const float* et, const float* dst, int64_t ldt, const float* gs, const float* qs,
                                   int64_t nb, int64_t s0, int nk, bool first, float* dvt, float* dkt) {
  const int64_t ld = LDT > 0 ? LDT : ldt;
  attn_vec av[kAttnKG], ak[kAttnKG];
  for (int i = 0; i < kAttnKG; ++i) {
    av[i] = first || i >= nk ? attn_vec{} : attn_load(dvt + (s0 + i) * kAttnW);
    ak[i] = first || i >= nk ? attn_vec{} : attn_load(dkt + (s0 + i) * kAttnW);
  }
  if (nk == kAttnKG) {
    const float* e0 = et + s0 * ld;
    const float* d0 = dst + s0 * ld;
    for (int64_t t = 0; t < nb; ++t) {
      const attn_vec g = attn_load(gs + t * kAttnW), q = attn_load(qs + t * kAttnW);
      for (int i = 0; i < kAttnKG; ++i) {
        av[i] += e0[i * ld + t] * g;
        ak[i] += d0[i * ld + t] * q;
      }
    }
  } else {  // the last, partial group: rows past the last key repeat it, unstored
    for (int64_t t = 0; t < nb; ++t) {
      const attn_vec g = attn_load(gs + t * kAttnW), q = attn_load(qs + t * kAttnW);
      for (int i = 0; i < kAttnKG; ++i) {
        const int64_t s = s0 + std::min(i, nk - 1);
        av[i] += et[s * ld + t] * g;
        ak[i] += dst[s * ld + t] * q;
      }
    }
  }
  for (int i = 0; i < nk; ++i) {
    attn_store(dvt + (s0 + i) * kAttnW, av[i]);
    attn_store(dkt + (s0 + i) * kAttnW, ak[i]);
  }
}

// attn_key_grads_t_group over all L keys.
inline void attention_key_grads_t(const float* et, const float* dst, int64_t ldt, int64_t L, const float* gs,
                                  const float* qs, int64_t nb, bool first, float* dvt, float* dkt) {
  for (int64_t s0 = 0; s0 < L; s0 += kAttnKG) {
    const int nk = int(std::min<int64_t>(kAttnKG, L - s0));
    if (ldt == 3 * kAttnW) {  // the forward's query block at L = 1024 and longer
      attn_key_grads_t_group<3 * kAttnW>(et, dst, ldt, gs, qs, nb, s0, nk, first, dvt, dkt);
    } else {
      attn_key_grads_t_group<0>(et, dst, ldt, gs, qs, nb, s0, nk, first, dvt, dkt);
    }
  }
}

// ---- one head, as the backend and the playground run it ----------------------------

// One thread's buffers for the backward of heads of L keys and ch <= kAttnW
// channels, query blocks of Tb (attn_forward_query_block): the head's keys
// and values packed for the score tiles (kg, vg), its keys a row per key (kt,
// dq's operand), dv and dk a vector per key (dvt, dkt); the block's queries
// and gradients (qb, gb), its exps (et) and dp then ds in place (dpt), the
// rows of the key gradients (gs, qs) and 1 / sums (invf). The floats are
// carved out of `base` (floats(L, ch, Tb) of them).
struct AttnBackwardBuffers {
  static void sizes(int64_t L, int64_t ch, int64_t Tb, int64_t (&out)[12]) {
    const int64_t qw = attn_query_width(Tb), groups = attn_query_groups(L) * ch * kAttnKT;
    const int64_t s[12] = {groups, groups, L * attn_value_width_t(ch), L * kAttnW, L * kAttnW, ch * qw, ch * qw,
                           L * qw, L * qw, qw * kAttnW, qw * kAttnW, qw};
    for (int i = 0; i < 12; ++i) out[i] = attn_lines(s[i]);
  }
  static int64_t floats(int64_t L, int64_t ch, int64_t Tb) {
    int64_t s[12], total = 0;
    sizes(L, ch, Tb, s);
    for (int64_t x : s) total += x;
    return total;
  }
  AttnBackwardBuffers(float* base, int64_t L, int64_t ch, int64_t Tb, float scale)
      : ldt(attn_query_width(Tb)),
        nvec(ldt / kAttnW),
        stats(size_t(3 * nvec)),
        scales(size_t(nvec), attn_splat(scale)) {
    int64_t s[12];
    sizes(L, ch, Tb, s);
    float** parts[12] = {&kg, &vg, &kt, &dvt, &dkt, &qb, &gb, &et, &dpt, &gs, &qs, &invf};
    for (int i = 0; i < 12; ++i) {
      *parts[i] = base;
      base += s[i];
    }
    mx = stats.data();
    inv = mx + nvec;
    D = inv + nvec;
  }
  int64_t ldt, nvec;
  float *kg, *vg, *kt, *dvt, *dkt, *qb, *gb, *et, *dpt, *gs, *qs, *invf;
  std::vector<attn_vec> stats, scales;  // (aligned for the vector type)
  attn_vec *mx, *inv, *D;
};

// dq, dk, dv ([ch, L] each) of one head from q, k, v and g = dL/da ([ch, L]
// each), ch <= kAttnW, query blocks of Tb (the buffers').
inline void attention_backward_head_t(const float* q, const float* k, const float* v, const float* g, int64_t L,
                                      int64_t ch, float scale, int64_t Tb, AttnBackwardBuffers& b, float* dq,
                                      float* dk, float* dv) {
  attn_pack_query_groups(k, L, ch, 0, L, b.kg);
  attn_pack_query_groups(v, L, ch, 0, L, b.vg);
  attn_pack_values_t(k, L, ch, b.kt);
  const int64_t ldt = b.ldt;
  for (int64_t t0 = 0; t0 < L; t0 += Tb) {
    const int64_t nb = std::min(Tb, L - t0);
    attn_pack_query_block(q, L, ch, t0, nb, b.qb);
    attn_pack_query_block(g, L, ch, t0, nb, b.gb);
    attention_scores_t(b.kg, b.qb, L, ch, nb, scale, b.et, ldt, b.mx);
    attention_exp_t(b.et, ldt, L, nb, b.mx, b.inv);
    attention_dp_t(b.vg, b.gb, L, ch, nb, b.et, b.dpt, ldt, b.D);
    attention_ds_values_t(b.kt, ch, b.et, b.dpt, ldt, L, nb, b.inv, b.D, b.scales.data(), dq + t0, L);
    for (int64_t j = 0; j < b.nvec; ++j) attn_store(b.invf + j * kAttnW, b.inv[j]);
    attn_pack_rows_t(g, L, ch, t0, nb, b.invf, 1.f, b.gs);
    attn_pack_rows_t(q, L, ch, t0, nb, nullptr, scale, b.qs);
    attention_key_grads_t(b.et, b.dpt, ldt, L, b.gs, b.qs, nb, t0 == 0, b.dvt, b.dkt);
  }
  for (int64_t c = 0; c < ch; ++c)
    for (int64_t s = 0; s < L; ++s) {
      dv[c * L + s] = b.dvt[s * kAttnW + c];
      dk[c * L + s] = b.dkt[s * kAttnW + c];
    }
}

}  // namespace mdps::cpu
