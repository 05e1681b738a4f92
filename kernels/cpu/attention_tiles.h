// Register-tiled products of the fused CPU attention (kernels/cpu/attention.cpp).
//
// The authors' heads are narrow (16 channels at the 32x32 level of the 64x64
// U-Net), so the score product q^T k is a matrix product with an inner
// dimension of 16. OpenBLAS packs both operands and writes the block of
// scores through its general kernel, which at that depth ran at about half
// the speed of the convolutions. Here each tile keeps its accumulators in
// vector registers over the whole (short) channel loop, and the value
// product reads the block of weights in place instead of packing it.
//
// GCC/Clang vector extensions, not intrinsics: the same source builds for
// any target; with -march=native on AVX-512 a vector is one zmm register.
#pragma once
#include <cstdint>
#include <cstring>

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

inline attn_vec attn_load(const float* p) {
  attn_vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void attn_store(float* p, attn_vec v) { std::memcpy(p, &v, sizeof v); }
inline float attn_hsum(attn_vec v) {
  float s = 0.f;
  for (int l = 0; l < kAttnW; ++l) s += v[l];
  return s;
}

// s_out[t, s] = scale * sum_c q[c, t0 + t] k[c, s] for t < TT queries from t,
// keys [s0, s0 + SV * kAttnW); q and k rows are L apart.
template <int TT, int SV>
inline void attn_scores_tile(const float* q, const float* k, int64_t L, int64_t ch, int64_t t, int64_t s0,
                             float scale, float* out) {
  attn_vec acc[TT][SV] = {};
  for (int64_t c = 0; c < ch; ++c) {
    const float* kr = k + c * L + s0;
    const float* qr = q + c * L + t;
    attn_vec kv[SV];
    for (int j = 0; j < SV; ++j) kv[j] = attn_load(kr + j * kAttnW);
    for (int i = 0; i < TT; ++i) {
      const float qi = qr[i];
      for (int j = 0; j < SV; ++j) acc[i][j] += qi * kv[j];
    }
  }
  for (int i = 0; i < TT; ++i)
    for (int j = 0; j < SV; ++j) attn_store(out + i * L + s0 + j * kAttnW, acc[i][j] * scale);
}

// scores[t, s] = scale * sum_c q[c, t0 + t] k[c, s], t < nb, s < L (row-major, rows L apart).
inline void attention_scores(const float* q, const float* k, int64_t L, int64_t ch, int64_t t0, int64_t nb,
                             float scale, float* scores) {
  constexpr int TT = 4, SV = 2;
  constexpr int64_t SW = SV * kAttnW;
  const int64_t s_full = L / SW * SW;
  int64_t t = 0;
  for (; t + TT <= nb; t += TT)
    for (int64_t s0 = 0; s0 < s_full; s0 += SW)
      attn_scores_tile<TT, SV>(q, k, L, ch, t0 + t, s0, scale, scores + t * L);
  for (; t < nb; ++t)
    for (int64_t s0 = 0; s0 < s_full; s0 += SW) attn_scores_tile<1, SV>(q, k, L, ch, t0 + t, s0, scale, scores + t * L);
  // Keys past the last whole tile, one at a time.
  for (int64_t tt = 0; tt < nb; ++tt)
    for (int64_t s = s_full; s < L; ++s) {
      float acc = 0.f;
      for (int64_t c = 0; c < ch; ++c) acc += q[c * L + t0 + tt] * k[c * L + s];
      scores[tt * L + s] = acc * scale;
    }
}

// out[c, t] (rows ldo apart) = sum_s v[c, s] w[t, s] for CT channels from c and QT queries from t.
template <int CT, int QT>
inline void attn_values_tile(const float* v, const float* w, int64_t L, int64_t c, int64_t t, float* out,
                             int64_t ldo) {
  attn_vec acc[CT][QT] = {};
  const int64_t s_full = L / kAttnW * kAttnW;
  for (int64_t s = 0; s < s_full; s += kAttnW) {
    attn_vec vv[CT], wv[QT];
    for (int i = 0; i < CT; ++i) vv[i] = attn_load(v + (c + i) * L + s);
    for (int j = 0; j < QT; ++j) wv[j] = attn_load(w + (t + j) * L + s);
    for (int i = 0; i < CT; ++i)
      for (int j = 0; j < QT; ++j) acc[i][j] += vv[i] * wv[j];
  }
  for (int i = 0; i < CT; ++i)
    for (int j = 0; j < QT; ++j) {
      float sum = attn_hsum(acc[i][j]);
      for (int64_t s = s_full; s < L; ++s) sum += v[(c + i) * L + s] * w[(t + j) * L + s];
      out[(c + i) * ldo + t + j] = sum;
    }
}

// out[c, t] (rows ldo apart) = sum_s v[c, s] w[t, s], c < ch, t < nb; w is [nb, L].
inline void attention_values(const float* v, const float* w, int64_t L, int64_t ch, int64_t nb, float* out,
                             int64_t ldo) {
#if defined(__AVX512F__)
  constexpr int CT = 4, QT = 4;  // 16 accumulators of the 32 zmm registers
#else
  constexpr int CT = 2, QT = 4;  // 8 accumulators of the 16 ymm / xmm registers
#endif
  int64_t c = 0;
  for (; c + CT <= ch; c += CT) {
    int64_t t = 0;
    for (; t + QT <= nb; t += QT) attn_values_tile<CT, QT>(v, w, L, c, t, out, ldo);
    for (; t < nb; ++t) attn_values_tile<CT, 1>(v, w, L, c, t, out, ldo);
  }
  for (; c < ch; ++c) {
    int64_t t = 0;
    for (; t + QT <= nb; t += QT) attn_values_tile<1, QT>(v, w, L, c, t, out, ldo);
    for (; t < nb; ++t) attn_values_tile<1, 1>(v, w, L, c, t, out, ldo);
  }
}

}  // namespace mdps::cpu
