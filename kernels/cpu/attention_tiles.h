// Register-tiled pieces of the fused CPU attention (kernels/cpu/attention.cpp).
//
// The authors' heads are narrow (16 channels at the 32x32 level of the 64x64
// U-Net, where L = 1024 and nearly all of the attention's arithmetic is), so
// both products are far from sgemm's shape: q^T k has an inner dimension of
// 16, and w v an output of only 16 rows. OpenBLAS ran them at a third of its
// speed on larger shapes. Three things made them fast (measured on the
// 32x32 level, 1 thread, AMD EPYC with AVX-512: scores 19.7 -> 6.3 ms,
// softmax 22 -> 8 ms, values 25 -> 8 ms per batch of 8):
// - Operands are packed once per head into small contiguous panels. Rows of
//   q, k and v are L floats apart, and at L = 1024 that is exactly 4 KB:
//   every row of a tile fell into the same L1 set and evicted the others.
// - The softmax is two passes instead of four: each score tile updates its
//   rows' running maxima as it is stored, one pass takes exp and the row sum,
//   and the forward folds 1/sum into the value product's output.
// - The forward holds a block transposed, the queries in the vector lanes
//   (the last section): its value product loads 3 vectors of weights per key
//   for 8 channels' broadcast FMAs, and the softmax's maxima and sums run
//   down the rows. The earlier channel-major value product (a broadcast
//   weight per query and per FMA) made the forward 1.2-1.3x slower on an
//   Intel Xeon (Emerald Rapids), 1 thread. The backward of heads of up to
//   one vector of channels uses the transposed blocks too
//   (attention_backward_tiles.h); wider heads' keeps the query-major score
//   tiles below.
// - The forward of heads of up to 16 channels runs an online softmax over
//   key blocks that stay in L1 (its section below): 0.65 -> 0.58 ms per head
//   at L = 1024 (Emerald Rapids, 1 thread, bench/cpu/attention); with each
//   block's exps in a pass of their own and 8 x 3 value tiles, 0.55-0.61 ->
//   0.43-0.44 ms on an AMD EPYC (Zen 5, AVX-512, 1 thread).
//
// GCC/Clang vector extensions, not intrinsics (but for one vscalefps in
// attn_exp_nonpos, under __AVX512F__): the same source builds for
// any target; with -march=native on AVX-512 a vector is one zmm register.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#include "kernels/cpu/cpu_util.h"
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace mdps::cpu {

// Floats per vector: one register of the widest unit the build targets.
#if defined(__AVX512F__)
constexpr int kAttnW = 16;
#elif defined(__AVX__)
constexpr int kAttnW = 8;
#else
constexpr int kAttnW = 4;
#endif
typedef float attn_vec __attribute__((vector_size(kAttnW * sizeof(float))));
typedef int32_t attn_ivec __attribute__((vector_size(kAttnW * sizeof(int32_t))));

// Score tiles: kAttnTT queries by kAttnSV vectors of keys (16 accumulators).
constexpr int kAttnTT = 8, kAttnSV = 2;
constexpr int64_t kAttnSW = int64_t(kAttnSV) * kAttnW;  // keys per panel

inline attn_vec attn_load(const float* p) {
  attn_vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void attn_store(float* p, attn_vec v) { std::memcpy(p, &v, sizeof v); }
// The first `lanes` floats of v (a whole vector where lanes = kAttnW): a row's last, partial vector.
// A masked store where the unit has one (the floats past `lanes` are not touched).
inline void attn_store_lanes(float* p, attn_vec v, int64_t lanes) {
  if (lanes >= kAttnW) {
    attn_store(p, v);
    return;
  }
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, __mmask16((1u << lanes) - 1u), __m512(v));
#elif defined(__AVX2__)
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(lanes)), idx), __m256(v));
#else
  for (int64_t l = 0; l < lanes; ++l) p[l] = v[l];
#endif
}
// The first `lanes` floats from p, zeros past them (nothing past them is read).
inline attn_vec attn_load_lanes(const float* p, int64_t lanes) {
  if (lanes >= kAttnW) return attn_load(p);
  if (lanes <= 0) return attn_vec{};
#if defined(__AVX512F__)
  return attn_vec(_mm512_maskz_loadu_ps(__mmask16((1u << lanes) - 1u), p));
#elif defined(__AVX2__)
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return attn_vec(_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(lanes)), idx)));
#else
  attn_vec v{};
  for (int64_t l = 0; l < lanes; ++l) v[l] = p[l];
  return v;
#endif
}
inline attn_vec attn_splat(float x) { return attn_vec{} + x; }
inline float attn_hsum(attn_vec v) {
  float s = 0.f;
  for (int l = 0; l < kAttnW; ++l) s += v[l];
  return s;
}
inline float attn_hmax(attn_vec v) {
  float m = v[0];
  for (int l = 1; l < kAttnW; ++l) m = std::max(m, v[l]);
  return m;
}
inline attn_vec attn_lane_index() {
  attn_vec v;
  for (int l = 0; l < kAttnW; ++l) v[l] = float(l);
  return v;
}

// fast_exp (cpu_util.h) on a vector: the same operations lane by lane.
inline attn_vec attn_exp(attn_vec x) {
  const attn_vec hi = attn_splat(88.3762626647949f), lo = attn_splat(-87.3365447504f);
  attn_vec xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const attn_vec fx = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  attn_vec r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  attn_vec y = fast_exp_poly(r);
  const attn_ivec e = (__builtin_convertvector(fx, attn_ivec) + 127) << 23;
  attn_vec scale;
  std::memcpy(&scale, &e, sizeof scale);
  y *= scale;
  y = x < lo ? attn_vec{} : y;
  return x > hi ? attn_splat(INFINITY) : y;
}

// attn_exp for x <= 0 (or -inf, or NaN), the softmax's exp(score - row maximum),
// in fewer operations and with the same bits: no upper clamp (x never exceeds
// 0), no lower clamp (the select below zeroes what it would have guarded), and
// on AVX-512 the power of two applied by one vscalefps (y 2^fx, rounded once
// like y * scale) instead of building scale's exponent bits and multiplying.
// The exp was 40% of the forward's time at L = 1024 (Emerald Rapids, 1 thread:
// 5.1 -> 3.6 ns per vector); tests/kernels/test_attention_exp.cpp compares
// the two over every non-positive float.
inline attn_vec attn_exp_nonpos(attn_vec x) {
#if defined(__AVX512F__)
  const attn_vec lo = attn_splat(-87.3365447504f);
  const attn_vec fx = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  attn_vec r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const attn_vec y = fast_exp_poly(r);
  __m512 yv, fv;
  std::memcpy(&yv, &y, sizeof yv);
  std::memcpy(&fv, &fx, sizeof fv);
  const __m512 sv = _mm512_maskz_scalef_ps(__mmask16(0xFFFF), yv, fv);  // (maskz: GCC 12 warns on the unmasked form)
  attn_vec scaled;
  std::memcpy(&scaled, &sv, sizeof scaled);
  return x < lo ? attn_vec{} : scaled;
#else
  return attn_exp(x);
#endif
}

// n floats rounded up to whole 64-byte lines: the sizes of the buffers a thread
// carves out of its scratch for one head.
inline int64_t attn_lines(int64_t n) { return (n + 15) / 16 * 16; }

// ---- packing -------------------------------------------------------------------

inline int64_t attn_key_panels(int64_t L) { return (L + kAttnSW - 1) / kAttnSW; }
inline int64_t attn_query_groups(int64_t nb) { return (nb + kAttnTT - 1) / kAttnTT; }
// Row stride of a block of scores: whole panels plus one vector, so that rows
// of a power-of-two L do not alias in the cache.
inline int64_t attn_score_stride(int64_t L) { return attn_key_panels(L) * kAttnSW + kAttnW; }

// kp[panel][c][j] = k[c, panel * SW + j] for the ceil(L / SW) panels, zero past L.
inline void attn_pack_key_panels(const float* k, int64_t L, int64_t ch, float* kp) {
  for (int64_t s0 = 0; s0 < L; s0 += kAttnSW) {
    const int64_t n = std::min(kAttnSW, L - s0);
    float* panel = kp + (s0 / kAttnSW) * ch * kAttnSW;
    for (int64_t c = 0; c < ch; ++c) {
      std::memcpy(panel + c * kAttnSW, k + c * L + s0, sizeof(float) * size_t(n));
      std::fill(panel + c * kAttnSW + n, panel + (c + 1) * kAttnSW, 0.f);
    }
  }
}

// qp[group][c][i] = q[c, t0 + group * TT + i] for i < TT, zero past nb.
inline void attn_pack_query_groups(const float* q, int64_t L, int64_t ch, int64_t t0, int64_t nb, float* qp) {
  for (int64_t g = 0; g < attn_query_groups(nb); ++g)
    for (int64_t c = 0; c < ch; ++c)
      for (int i = 0; i < kAttnTT; ++i) {
        const int64_t t = g * kAttnTT + i;
        qp[(g * ch + c) * kAttnTT + i] = t < nb ? q[c * L + t0 + t] : 0.f;
      }
}

// ---- scores ----------------------------------------------------------------------

// One tile: out[i, j] = scale * sum_c qp[c][i] kp[c][j] for TT queries and one
// panel; keys at or past `valid` get -inf. With mx, mx[i] = max(mx[i], row i).
inline void attn_scores_tile(const float* qp, const float* kp, int64_t ch, float scale, int64_t valid, float* out,
                             int64_t ldp, attn_vec* mx) {
  attn_vec acc[kAttnTT][kAttnSV] = {};
  for (int64_t c = 0; c < ch; ++c) {
    attn_vec kv[kAttnSV];
    for (int j = 0; j < kAttnSV; ++j) kv[j] = attn_load(kp + c * kAttnSW + j * kAttnW);
    for (int i = 0; i < kAttnTT; ++i) {
      const float qi = qp[c * kAttnTT + i];
      for (int j = 0; j < kAttnSV; ++j) acc[i][j] += qi * kv[j];
    }
  }
  for (int j = 0; j < kAttnSV; ++j) {
    const bool partial = valid < (j + 1) * kAttnW;
    const attn_vec keep = attn_lane_index() + float(j * kAttnW);
    for (int i = 0; i < kAttnTT; ++i) {
      attn_vec v = acc[i][j] * scale;
      if (partial) v = keep < float(valid) ? v : attn_splat(-INFINITY);
      attn_store(out + i * ldp + j * kAttnW, v);
      if (mx) mx[i] = mx[i] > v ? mx[i] : v;
    }
  }
}

// p[t, s] (rows ldp apart) = scale * sum_c q[c, t0 + t] k[c, s] for the
// queries of qp (nb of them, rows up to a whole group written) and s < L
// (-inf up to the whole last panel). With rowmax: rowmax[t] = max_s p[t, s].
inline void attention_scores_packed(const float* qp, const float* kp, int64_t L, int64_t ch, int64_t nb, float scale,
                                    float* p, int64_t ldp, float* rowmax) {
  for (int64_t g = 0; g < attn_query_groups(nb); ++g) {
    attn_vec mx[kAttnTT];
    for (auto& m : mx) m = attn_splat(-INFINITY);
    for (int64_t s0 = 0; s0 < L; s0 += kAttnSW)
      attn_scores_tile(qp + g * ch * kAttnTT, kp + (s0 / kAttnSW) * ch * kAttnSW, ch, scale, L - s0,
                       p + g * kAttnTT * ldp + s0, ldp, rowmax ? mx : nullptr);
    if (rowmax)
      for (int i = 0; i < kAttnTT && g * kAttnTT + i < nb; ++i) rowmax[g * kAttnTT + i] = attn_hmax(mx[i]);
  }
}

// ---- softmax -----------------------------------------------------------------------

// p[t, s] = exp(p[t, s] - rowmax[t]) for s < L (the rest of the row set to 0),
// inv[t] = 1 / sum_s; with normalize the row is also scaled by inv[t].
inline void attention_exp_rows(float* p, int64_t ldp, int64_t L, int64_t nb, const float* rowmax, float* inv,
                               bool normalize) {
  const int64_t full = L / kAttnW * kAttnW;
  const attn_vec lanes = attn_lane_index();
  for (int64_t t = 0; t < nb; ++t) {
    float* row = p + t * ldp;
    const attn_vec m = attn_splat(rowmax[t]);
    attn_vec sum{};
    for (int64_t s = 0; s < full; s += kAttnW) {
      const attn_vec e = attn_exp_nonpos(attn_load(row + s) - m);
      attn_store(row + s, e);
      sum += e;
    }
    if (full < L) {  // ldp leaves room for the whole vector
      attn_vec e = attn_exp_nonpos(attn_load(row + full) - m);
      e = lanes < float(L - full) ? e : attn_vec{};
      attn_store(row + full, e);
      sum += e;
    }
    const float r = 1.f / attn_hsum(sum);
    inv[t] = r;
    if (normalize)
      for (int64_t s = 0; s < L; ++s) row[s] *= r;
  }
}

// ---- the forward's transposed blocks (queries in the lanes) -------------------------
//
// The forward computes a block of queries with the queries in the vector lanes
// and one row per key: pt[s][t] = scale * sum_c k[c, s] q[c, t]. Then the
// softmax's maxima and sums over the keys are lane-wise maxima and adds down
// the rows (no horizontal reductions), and the value product is shaped like
// the direct convolution's: out[c, t] += v[c, s] (broadcast) * pt[s][t vector],
// kAttnCT channels by kAttnQV query vectors per tile, 3 loads and 8 broadcast
// FMAs per key (the query-major product above broadcast a weight per query and
// per FMA). Each output is the same sums in the same order as before, except
// the softmax's denominator (now summed key by key in each lane).

constexpr int kAttnKT = kAttnTT;  // keys per score tile (packed as attn_pack_query_groups packs queries)
constexpr int kAttnQV = 3;        // query vectors per tile
constexpr int kAttnCT = 8;        // channels per value tile
constexpr int64_t kAttnQB = int64_t(kAttnQV) * kAttnW;  // queries per tile

// Queries of a block padded to whole vectors (the row length of its pt and query pack).
inline int64_t attn_query_width(int64_t nb) { return (nb + kAttnW - 1) / kAttnW * kAttnW; }

// qb[c][i] = q[c, t0 + i] for i < nb, zero up to attn_query_width(nb).
inline void attn_pack_query_block(const float* q, int64_t L, int64_t ch, int64_t t0, int64_t nb, float* qb) {
  const int64_t qw = attn_query_width(nb);
  for (int64_t c = 0; c < ch; ++c) {
    std::memcpy(qb + c * qw, q + c * L + t0, sizeof(float) * size_t(nb));
    std::fill(qb + c * qw + nb, qb + (c + 1) * qw, 0.f);
  }
}

// pt[s0 + i][j0 * W ...] for the nk <= KT keys of one key group (kg: [c][KT]) and
// QV query vectors from j0; mx[j] = max(mx[j], the rows' values).
// acc[i][j] = sum_c kg[c][i] qb[c][(j0 + j) W ...]: the products of one score tile.
template <int QV>
inline void attn_scores_t_acc(const float* kg, const float* qb, int64_t qw, int64_t ch, int64_t j0,
                              attn_vec (&acc)[kAttnKT][QV]) {
  for (int i = 0; i < kAttnKT; ++i)
    for (int j = 0; j < QV; ++j) acc[i][j] = attn_vec{};
  for (int64_t c = 0; c < ch; ++c) {
    attn_vec qv[QV];
    for (int j = 0; j < QV; ++j) qv[j] = attn_load(qb + c * qw + (j0 + j) * kAttnW);
    for (int i = 0; i < kAttnKT; ++i) {
      const float ki = kg[c * kAttnKT + i];
      for (int j = 0; j < QV; ++j) acc[i][j] += ki * qv[j];
    }
  }
}

template <int QV>
inline void attn_scores_t_tile(const float* kg, const float* qb, int64_t qw, int64_t ch, float scale, int64_t j0,
                               int nk, float* pt, int64_t ldt, attn_vec* mx) {
  attn_vec acc[kAttnKT][QV];
  attn_scores_t_acc<QV>(kg, qb, qw, ch, j0, acc);
  // The maxima in registers: updated through the pointer, each max waited for
  // the previous one's store (pt's stores may alias mx for the compiler).
  attn_vec m[QV];
  for (int j = 0; j < QV; ++j) m[j] = mx[j];
  // Constant bounds with the key count tested inside: indexed by a run-time
  // bound, acc was kept in memory, every accumulator stored and reloaded.
#pragma GCC unroll 8
  for (int i = 0; i < kAttnKT; ++i) {
    if (i >= nk) break;
#pragma GCC unroll 4
    for (int j = 0; j < QV; ++j) {
      const attn_vec v = acc[i][j] * scale;
      attn_store(pt + i * ldt + (j0 + j) * kAttnW, v);
      m[j] = m[j] > v ? m[j] : v;
    }
  }
  for (int j = 0; j < QV; ++j) mx[j] = m[j];
}

// Calls tile(QV, j0, g, nk) for every score tile of a block of nb queries
// against L keys: query vectors j0 .. j0 + QV - 1 (QV = kAttnQV, fewer for the
// last; as std::integral_constant, so the tile's registers are sized at compile
// time) by key group g of nk keys. The order is the products' order: each
// query vector's keys in ascending order.
template <class Tile>
inline void attn_for_each_score_tile_t(int64_t L, int64_t nb, Tile&& tile) {
  const int64_t nvec = attn_query_width(nb) / kAttnW;
  for (int64_t j0 = 0; j0 < nvec; j0 += kAttnQV) {
    const int64_t nv = std::min<int64_t>(kAttnQV, nvec - j0);
    for (int64_t g = 0; g < attn_query_groups(L); ++g) {
      const int nk = int(std::min<int64_t>(kAttnKT, L - g * kAttnKT));
      if (nv == 3) tile(std::integral_constant<int, 3>{}, j0, g, nk);
      else if (nv == 2) tile(std::integral_constant<int, 2>{}, j0, g, nk);
      else tile(std::integral_constant<int, 1>{}, j0, g, nk);
    }
  }
}

// pt[s][t] = scale * sum_c k[c, s] q[c, t0 + t] for all L keys (kg: the keys packed by
// attn_pack_query_groups) and the block's queries (qb, nb of them; rows of pt ldt apart,
// lanes past nb meaningless); mx[j] = the maximum over s of query vector j.
inline void attention_scores_t(const float* kg, const float* qb, int64_t L, int64_t ch, int64_t nb, float scale,
                               float* pt, int64_t ldt, attn_vec* mx) {
  const int64_t qw = attn_query_width(nb), nvec = qw / kAttnW;
  for (int64_t j = 0; j < nvec; ++j) mx[j] = attn_splat(-INFINITY);
  attn_for_each_score_tile_t(L, nb, [&](auto QV, int64_t j0, int64_t g, int nk) {
    attn_scores_t_tile<decltype(QV)::value>(kg + g * ch * kAttnKT, qb, qw, ch, scale, j0, nk,
                                            pt + g * kAttnKT * ldt, ldt, mx + j0);
  });
}

// pt[s][t] = exp(pt[s][t] - mx[t]) for s < L; inv[j] = 1 / (the sum over s), lane-wise.
inline void attention_exp_t(float* pt, int64_t ldt, int64_t L, int64_t nb, const attn_vec* mx, attn_vec* inv) {
  // A query vector at a time, its maximum and sum in registers: with the keys
  // outer, inv[j] went through memory every key (pt's stores may alias it for
  // the compiler), a store-to-load chain. The same sums in the same key order.
  const int64_t nvec = attn_query_width(nb) / kAttnW;
  for (int64_t j = 0; j < nvec; ++j) {
    const attn_vec m = mx[j];
    attn_vec sum{};
    float* pj = pt + j * kAttnW;
    for (int64_t s = 0; s < L; ++s) {
      const attn_vec e = attn_exp_nonpos(attn_load(pj + s * ldt) - m);
      attn_store(pj + s * ldt, e);
      sum += e;
    }
    inv[j] = 1.f / sum;
  }
}

// out[c0 + i, t0 + (j0 + j) W + l] (rows ldo apart) = inv * sum_s vt[s][c0 + i] pt[s][...] for
// CT channels from c0 (only c < ch stored) and QV query vectors from j0 (only t < nb stored).
template <int CT, int QV>
inline void attn_values_t_tile(const float* vt, int64_t cw, int64_t c0, int64_t ch, const float* pt, int64_t ldt,
                               int64_t L, int64_t j0, int64_t nb, const attn_vec* inv, float* out, int64_t ldo) {
  attn_vec acc[CT][QV] = {};
  for (int64_t s = 0; s < L; ++s) {
    attn_vec ev[QV];
    for (int j = 0; j < QV; ++j) ev[j] = attn_load(pt + s * ldt + (j0 + j) * kAttnW);
    for (int i = 0; i < CT; ++i) {
      const float vc = vt[s * cw + c0 + i];
      for (int j = 0; j < QV; ++j) acc[i][j] += vc * ev[j];
    }
  }
  for (int i = 0; i < CT && c0 + i < ch; ++i)
    for (int j = 0; j < QV; ++j) {
      const int64_t t = (j0 + j) * kAttnW;
      attn_store_lanes(out + (c0 + i) * ldo + t, acc[i][j] * inv[j0 + j], std::min<int64_t>(kAttnW, nb - t));
    }
}

// ---- the online softmax (heads of up to 16 channels) -----------------------------
//
// Keys in blocks of kAttnKB: for one tile of query vectors the block's scores
// (kAttnKB rows of kAttnQB queries, 12 KB) are computed, then each query
// vector's running maximum m is raised to the block's, its accumulators and
// sum rescaled by exp(m_old - m_new), and the block's exp and value products
// added, every channel in registers. The scores, the block's keys and values
// and the accumulators all stay in L1; the whole-row pass before kept the
// block's scores [L][Tb] (196 KB at L = 1024) in L2 and read a row of them and
// of the value pack per key. The sums differ from the two-pass softmax's (the
// denominator and the products are rescaled as the maximum rises), within
// float rounding; each query's result still depends only on its own column and
// the fixed key block, not on the query block or the thread count.
constexpr int64_t kAttnKB = 64;  // keys per block: a whole number of score tiles
constexpr int64_t kAttnOnlineChannels = 16;  // the widest heads it takes (their accumulators in registers)

// Channels per value tile of the online softmax: 8 x 3 vectors (24
// accumulators) on AVX-512's 32 registers, 4 x 3 on AVX2's and SSE's 16.
constexpr int kAttnOnlineCT = kAttnW >= 16 ? 8 : 4;

// One query vector's running state across key blocks.
template <int CT>
struct AttnOnlineState {
  attn_vec acc[CT];
  attn_vec sum, m;
};

// Raises query vector j's running maximum to the block's (bmx), rescales its
// sum and accumulators, and turns the block's scores (rows 0 .. nk - 1 of st,
// vector j, rows ldt apart) into exp(score - maximum), in place, adding them
// to the sum. The exps are taken here, a pass of their own before the value
// products (attn_online_values_tile): each exp is a chain of about 12
// dependent operations, and with a key's 16 FMAs waiting on it in one
// iteration the scheduler filled before the next keys' exps could start (AMD
// Zen 5, 1 thread: 38 cycles a key where its arithmetic takes about 22).
template <int CT>
inline void attn_online_exp(float* st, int64_t ldt, int64_t nk, int64_t j, attn_vec bmx, AttnOnlineState<CT>& o) {
  const attn_vec m = o.m > bmx ? o.m : bmx;
  const attn_vec alpha = attn_exp_nonpos(o.m - m);
  attn_vec sum = o.sum * alpha;
  for (int i = 0; i < CT; ++i) o.acc[i] *= alpha;
  float* sj = st + j * kAttnW;
  for (int64_t s = 0; s < nk; ++s) {
    const attn_vec e = attn_exp_nonpos(attn_load(sj + s * ldt) - m);
    attn_store(sj + s * ldt, e);
    sum += e;
  }
  o.sum = sum;
  o.m = m;
}

// Adds the block's value products to channels c0 .. c0 + kAttnOnlineCT - 1 of the
// accumulators of QV query vectors: acc[c][j] += v[s, c] e[s][j] over the keys
// s of the block in ascending order (vt: the block's rows of the value pack;
// st: the weights attn_online_exp left). kAttnOnlineCT channels by QV vectors
// load QV weight vectors and kAttnOnlineCT broadcasts per key for
// kAttnOnlineCT x QV FMAs, where one vector's 16 channels took a broadcast per
// FMA (AVX2, 1 thread on Zen 5: 4 x 3 rather than 8 x 3, which spilled its 24
// accumulators, 1.31 -> 1.22 ms per head).
template <int CT, int QV>
inline void attn_online_values_tile(const float* vt, int64_t cw, int64_t c0, const float* st, int64_t ldt, int64_t nk,
                                    AttnOnlineState<CT>* o) {
  attn_vec acc[kAttnOnlineCT][QV];
  for (int i = 0; i < kAttnOnlineCT; ++i)
    for (int j = 0; j < QV; ++j) acc[i][j] = o[j].acc[c0 + i];
  for (int64_t s = 0; s < nk; ++s) {
    attn_vec ev[QV];
    for (int j = 0; j < QV; ++j) ev[j] = attn_load(st + s * ldt + j * kAttnW);
    for (int i = 0; i < kAttnOnlineCT; ++i) {
      const float vc = vt[s * cw + c0 + i];
      for (int j = 0; j < QV; ++j) acc[i][j] += vc * ev[j];
    }
  }
  for (int i = 0; i < kAttnOnlineCT; ++i)
    for (int j = 0; j < QV; ++j) o[j].acc[c0 + i] = acc[i][j];
}

// The forward of a block of nb queries over all L keys through the online
// softmax, for heads of at most CT channels: out[c, t] (rows ldo apart) for
// c < ch, t < nb, from the packed keys kg, values vt (cw channels a row) and
// queries qb. st: the scores of one key block ([kAttnKB][kAttnQB]).
template <int CT>
inline void attention_online_t(const float* kg, const float* vt, int64_t cw, const float* qb, int64_t L, int64_t ch,
                               int64_t nb, float scale, float* st, float* out, int64_t ldo) {
  const int64_t qw = attn_query_width(nb), nvec = qw / kAttnW;
  for (int64_t j0 = 0; j0 < nvec; j0 += kAttnQV) {
    const int nv = int(std::min<int64_t>(kAttnQV, nvec - j0));
    AttnOnlineState<CT> o[kAttnQV];
    for (int j = 0; j < nv; ++j) {
      for (auto& a : o[j].acc) a = attn_vec{};
      o[j].sum = attn_vec{};
      o[j].m = attn_splat(-INFINITY);
    }
    const float* qt = qb + j0 * kAttnW;  // the tile's query vectors, from column 0 of st
    for (int64_t s0 = 0; s0 < L; s0 += kAttnKB) {
      const int64_t nk = std::min(kAttnKB, L - s0);
      attn_vec bmx[kAttnQV];
      for (auto& b : bmx) b = attn_splat(-INFINITY);
      for (int64_t s = 0; s < nk; s += kAttnKT) {
        const int64_t g = (s0 + s) / kAttnKT;
        const int n = int(std::min<int64_t>(kAttnKT, nk - s));
        const float* kt = kg + g * ch * kAttnKT;
        float* dst = st + s * kAttnQB;
        if (nv == 3) attn_scores_t_tile<3>(kt, qt, qw, ch, scale, 0, n, dst, kAttnQB, bmx);
        else if (nv == 2) attn_scores_t_tile<2>(kt, qt, qw, ch, scale, 0, n, dst, kAttnQB, bmx);
        else attn_scores_t_tile<1>(kt, qt, qw, ch, scale, 0, n, dst, kAttnQB, bmx);
      }
      for (int j = 0; j < nv; ++j) attn_online_exp<CT>(st, kAttnQB, nk, j, bmx[j], o[j]);
      for (int64_t c0 = 0; c0 < CT; c0 += kAttnOnlineCT) {
        if (nv == 3) attn_online_values_tile<CT, 3>(vt + s0 * cw, cw, c0, st, kAttnQB, nk, o);
        else if (nv == 2) attn_online_values_tile<CT, 2>(vt + s0 * cw, cw, c0, st, kAttnQB, nk, o);
        else attn_online_values_tile<CT, 1>(vt + s0 * cw, cw, c0, st, kAttnQB, nk, o);
      }
    }
    for (int j = 0; j < nv; ++j) {
      const attn_vec inv = 1.f / o[j].sum;
      const int64_t t = (j0 + j) * kAttnW, lanes = std::min<int64_t>(kAttnW, nb - t);
      for (int64_t i = 0; i < CT && i < ch; ++i) attn_store_lanes(out + i * ldo + t, o[j].acc[i] * inv, lanes);
    }
  }
}

// Channels of the value pack of the transposed product: whole channel tiles.
inline int64_t attn_value_width_t(int64_t ch) { return (ch + kAttnCT - 1) / kAttnCT * kAttnCT; }

// vt[s][c] = v[c, s] for s < L, c < attn_value_width_t(ch), zero past ch.
inline void attn_pack_values_t(const float* v, int64_t L, int64_t ch, float* vt) {
  const int64_t cw = attn_value_width_t(ch);
  for (int64_t s = 0; s < L; ++s) {
    float* row = vt + s * cw;
    for (int64_t c = 0; c < ch; ++c) row[c] = v[c * L + s];
    for (int64_t c = ch; c < cw; ++c) row[c] = 0.f;
  }
}

// out[c, t] (rows ldo apart, from the block's first query) = inv[t] sum_s v[c, s] pt[s][t]
// for c < ch, t < nb, from the value pack vt (attn_pack_values_t).
// c_begin (a multiple of kAttnCT): the channel tiles before it are left alone
// (the backward's first tile is computed with its softmax backward folded in).
inline void attention_values_t(const float* vt, int64_t ch, const float* pt, int64_t ldt, int64_t L, int64_t nb,
                               const attn_vec* inv, float* out, int64_t ldo, int64_t c_begin = 0) {
  const int64_t cw = attn_value_width_t(ch), nvec = attn_query_width(nb) / kAttnW;
  for (int64_t c0 = c_begin; c0 < ch; c0 += kAttnCT)
    for (int64_t j0 = 0; j0 < nvec; j0 += kAttnQV) {
      const int64_t nv = std::min<int64_t>(kAttnQV, nvec - j0);
      if (nv == 3) attn_values_t_tile<kAttnCT, 3>(vt, cw, c0, ch, pt, ldt, L, j0, nb, inv, out, ldo);
      else if (nv == 2) attn_values_t_tile<kAttnCT, 2>(vt, cw, c0, ch, pt, ldt, L, j0, nb, inv, out, ldo);
      else attn_values_t_tile<kAttnCT, 1>(vt, cw, c0, ch, pt, ldt, L, j0, nb, inv, out, ldo);
    }
}

// ---- one head of the forward, as the backend and the playground run it ---------------

// Queries per block of the forward: whole tiles of kAttnQB, the block's
// transposed scores [L][Tb] within about 256 KB (L2).
inline int64_t attn_forward_query_block(int64_t L) {
  const int64_t QB = kAttnQB, whole = (L + QB - 1) / QB * QB;
  return std::min(whole, std::max<int64_t>(QB, 65536 / std::max<int64_t>(1, L) / QB * QB));
}

// One thread's buffers for the forward of heads of L keys, ch channels and
// query blocks of Tb: the head's packed keys (kg) and values (vt), the block's
// queries (qb), one key block's scores for the online softmax (st), and for
// the two-pass softmax (heads of more than kAttnOnlineChannels, or asked for:
// the playground times both) the block's transposed scores (pt, rows ldt
// apart; null without it), maxima and 1 / sums. The floats are carved out of
// `base` (floats(...) of them, with the same arguments).
struct AttnForwardBuffers {
  static bool default_two_pass(int64_t ch) { return ch > kAttnOnlineChannels; }
  static int64_t floats(int64_t L, int64_t ch, int64_t Tb, bool two_pass) {
    const int64_t qw = attn_query_width(Tb);
    return attn_lines(attn_query_groups(L) * ch * kAttnKT) + attn_lines(L * attn_value_width_t(ch)) + attn_lines(ch * qw) +
           attn_lines(kAttnKB * kAttnQB) + (two_pass ? attn_lines(L * qw) : 0);
  }
  static int64_t floats(int64_t L, int64_t ch, int64_t Tb) { return floats(L, ch, Tb, default_two_pass(ch)); }
  AttnForwardBuffers(float* base, int64_t L, int64_t ch, int64_t Tb, bool two_pass)
      : ldt(attn_query_width(Tb)), stats(size_t(2 * (ldt / kAttnW))) {
    kg = base;
    vt = kg + attn_lines(attn_query_groups(L) * ch * kAttnKT);
    qb = vt + attn_lines(L * attn_value_width_t(ch));
    st = qb + attn_lines(ch * ldt);
    pt = two_pass ? st + attn_lines(kAttnKB * kAttnQB) : nullptr;
    mx = stats.data();
    inv = mx + ldt / kAttnW;
  }
  AttnForwardBuffers(float* base, int64_t L, int64_t ch, int64_t Tb)
      : AttnForwardBuffers(base, L, ch, Tb, default_two_pass(ch)) {}
  int64_t ldt;
  float *kg, *vt, *qb, *pt, *st;
  std::vector<attn_vec> stats;  // (aligned for the vector type)
  attn_vec *mx, *inv;
};

// Packs a head's keys and values ([ch, L] each) for attention_block_t.
inline void attention_pack_head_t(const float* k, const float* v, int64_t L, int64_t ch, AttnForwardBuffers& b) {
  attn_pack_query_groups(k, L, ch, 0, L, b.kg);  // keys in groups of kAttnKT
  attn_pack_values_t(v, L, ch, b.vt);
}

// out[c, t] (rows ldo apart, from the block's first query) = the attention of
// the queries t0 .. t0 + nb - 1 of q ([ch, L]) over the packed head. Heads of
// up to 16 channels take the online softmax, every channel in registers;
// wider ones the two-pass softmax, the weights stored between the exp and the
// value product.
inline void attention_block_t(const float* q, int64_t L, int64_t ch, float scale, int64_t t0, int64_t nb,
                              AttnForwardBuffers& b, float* out, int64_t ldo) {
  attn_pack_query_block(q, L, ch, t0, nb, b.qb);
  const int64_t cw = attn_value_width_t(ch);
  if (ch <= 8) {
    attention_online_t<8>(b.kg, b.vt, cw, b.qb, L, ch, nb, scale, b.st, out, ldo);
  } else if (ch <= kAttnOnlineChannels) {
    attention_online_t<16>(b.kg, b.vt, cw, b.qb, L, ch, nb, scale, b.st, out, ldo);
  } else {
    attention_scores_t(b.kg, b.qb, L, ch, nb, scale, b.pt, b.ldt, b.mx);
    attention_exp_t(b.pt, b.ldt, L, nb, b.mx, b.inv);
    attention_values_t(b.vt, ch, b.pt, b.ldt, L, nb, b.inv, out, ldo);
  }
}

}  // namespace mdps::cpu
