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
// - The value product keeps channels in the vector lanes and broadcasts one
//   weight per query (v is packed transposed), so each load of v feeds a
//   whole tile of queries.
//
// GCC/Clang vector extensions, not intrinsics: the same source builds for
// any target; with -march=native on AVX-512 a vector is one zmm register.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include "kernels/cpu/cpu_util.h"

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

// ---- packing -------------------------------------------------------------------

inline int64_t attn_key_panels(int64_t L) { return (L + kAttnSW - 1) / kAttnSW; }
inline int64_t attn_query_groups(int64_t nb) { return (nb + kAttnTT - 1) / kAttnTT; }
// Row stride of a block of scores: whole panels plus one vector, so that rows
// of a power-of-two L do not alias in the cache.
inline int64_t attn_score_stride(int64_t L) { return attn_key_panels(L) * kAttnSW + kAttnW; }
// Channels of the transposed value pack, rounded up to whole vectors.
inline int64_t attn_value_width(int64_t ch) { return (ch + kAttnW - 1) / kAttnW * kAttnW; }

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

// vt[s][c] = v[c, s] for s < L, c < attn_value_width(ch), zero past ch.
inline void attn_pack_values_transposed(const float* v, int64_t L, int64_t ch, float* vt) {
  const int64_t cw = attn_value_width(ch);
  for (int64_t s = 0; s < L; ++s) {
    float* row = vt + s * cw;
    for (int64_t c = 0; c < ch; ++c) row[c] = v[c * L + s];
    for (int64_t c = ch; c < cw; ++c) row[c] = 0.f;
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
      const attn_vec e = attn_exp(attn_load(row + s) - m);
      attn_store(row + s, e);
      sum += e;
    }
    if (full < L) {  // ldp leaves room for the whole vector
      attn_vec e = attn_exp(attn_load(row + full) - m);
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

// ---- values ---------------------------------------------------------------------------

// out[c0 + l, t + i] (rows ldo apart) = f_i sum_s vt[s][c0 + l] w[t + i, s] for
// QT queries and CV vectors of channels from c0 (only channels < ch stored);
// f_i = inv[t + i], or 1 without inv.
template <int QT, int CV>
inline void attn_values_tile(const float* vt, int64_t cw, int64_t c0, int64_t ch, const float* w, int64_t ldw,
                             int64_t L, int64_t t, const float* inv, float* out, int64_t ldo) {
  attn_vec acc[QT][CV] = {};
  for (int64_t s = 0; s < L; ++s) {
    attn_vec vv[CV];
    for (int j = 0; j < CV; ++j) vv[j] = attn_load(vt + s * cw + c0 + j * kAttnW);
    for (int i = 0; i < QT; ++i) {
      const float e = w[(t + i) * ldw + s];
      for (int j = 0; j < CV; ++j) acc[i][j] += e * vv[j];
    }
  }
  for (int i = 0; i < QT; ++i)
    for (int j = 0; j < CV; ++j) {
      const attn_vec r = inv ? acc[i][j] * inv[t + i] : acc[i][j];
      for (int l = 0; l < kAttnW; ++l) {
        const int64_t c = c0 + j * kAttnW + l;
        if (c < ch) out[c * ldo + t + i] = r[l];
      }
    }
}

// All queries for CV vectors of channels: tiles of 8 queries, then single ones.
template <int CV>
inline void attn_values_channels(const float* vt, int64_t cw, int64_t c0, int64_t ch, const float* w, int64_t ldw,
                                 int64_t L, int64_t nb, const float* inv, float* out, int64_t ldo) {
  // QT * CV accumulators: at most 16 of AVX-512's 32 registers, 8 of AVX's 16.
  constexpr int QT = CV == 1 ? 8 : (CV == 2 && kAttnW == 16) ? 8 : 4;
  int64_t t = 0;
  for (; t + QT <= nb; t += QT) attn_values_tile<QT, CV>(vt, cw, c0, ch, w, ldw, L, t, inv, out, ldo);
  for (; t < nb; ++t) attn_values_tile<1, CV>(vt, cw, c0, ch, w, ldw, L, t, inv, out, ldo);
}

// out[c, t] (rows ldo apart) = inv[t] sum_s v[c, s] w[t, s] for c < ch, t < nb,
// from the transposed pack vt (attn_pack_values_transposed); w rows ldw apart.
inline void attention_values_packed(const float* vt, int64_t ch, const float* w, int64_t ldw, int64_t L, int64_t nb,
                                    const float* inv, float* out, int64_t ldo) {
  const int64_t cw = attn_value_width(ch);
  int64_t c0 = 0;
  for (; c0 + 4 * kAttnW <= cw; c0 += 4 * kAttnW) attn_values_channels<4>(vt, cw, c0, ch, w, ldw, L, nb, inv, out, ldo);
  switch ((cw - c0) / kAttnW) {
    case 3: attn_values_channels<3>(vt, cw, c0, ch, w, ldw, L, nb, inv, out, ldo); break;
    case 2: attn_values_channels<2>(vt, cw, c0, ch, w, ldw, L, nb, inv, out, ldo); break;
    case 1: attn_values_channels<1>(vt, cw, c0, ch, w, ldw, L, nb, inv, out, ldo); break;
    default: break;
  }
}

}  // namespace mdps::cpu
