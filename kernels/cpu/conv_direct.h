// Direct stride-1 convolution for the forward pass on wide levels, without
// im2col: register tiles of kConvCoT output channels by kConvNV vectors of
// output pixels, accumulated over every (ci, kh, kw) tap straight from a
// zero-padded copy of the image.
//
// Why: at the 64x64 level of the 64x64 U-Net the convolutions have only 32
// output channels, so im2col + sgemm is a product with M = 32 over a col
// matrix of 4.7 MB per image: OpenBLAS packs that matrix again, and both
// copies stream through memory. Here each tap costs kConvNV vector loads of
// the padded image (a tile's rows stay in L1) and kConvCoT broadcast weights
// for kConvCoT * kConvNV fused multiply-adds, so the loop is bound by
// arithmetic, not memory.
//
// Layouts. Padded image: [Ci][Hp][Ws], Hp = H + 2p, Ws = a row of Wo rounded
// up to whole vectors plus KW - 1, zeros outside the image, plus one vector of
// slack at the end (a partial last vector reads past the row's end into the
// padding; those lanes are never stored). Packed weights: for every block of
// kConvCoT output channels, [K][kConvCoT] with K = Ci*KH*KW in the weight's
// own (ci, kh, kw) order, zeros for channels past Co.
//
// GCC/Clang vector extensions (as attention_tiles.h): one zmm per vector on
// AVX-512, two ymm or four xmm on narrower targets, same source.
#pragma once
#include "kernels/cpu/attention_tiles.h"
#include <cstdint>
#include <cstring>

namespace mdps::cpu {

constexpr int kConvW = kAttnW;  // floats per vector
#if defined(__AVX512F__)
constexpr int kConvCoT = 6, kConvNV = 4;  // 24 accumulators + 4 loads of 32 registers
#else
constexpr int kConvCoT = 4, kConvNV = 3;  // 12 accumulators + 3 loads of 16 registers
#endif
static_assert(kConvNV >= 3 && kConvNV <= 4, "direct_conv_pixels dispatches tiles of 1 to 4 vectors");
typedef attn_vec conv_vec;

struct DirectConvGeom {
  int64_t Ci, H, W, Co, KH, KW, p, Ho, Wo;
  int64_t taps() const { return Ci * KH * KW; }
  int64_t row_vectors() const { return (Wo + kConvW - 1) / kConvW; }
  int64_t Hp() const { return H + 2 * p; }
  int64_t Ws() const { return row_vectors() * kConvW + KW - 1; }
  int64_t plane() const { return Hp() * Ws(); }
  int64_t padded_len() const { return Ci * plane() + kConvW; }
  int64_t co_blocks() const { return (Co + kConvCoT - 1) / kConvCoT; }
  int64_t packed_weight_len() const { return co_blocks() * taps() * kConvCoT; }
  int64_t pixel_vectors() const { return Ho * row_vectors(); }
};

// w [Co, Ci, KH, KW] -> packed [co block][tap][kConvCoT].
inline void pack_direct_weights(const DirectConvGeom& g, const float* w, float* packed) {
  const int64_t K = g.taps();
  for (int64_t cb = 0; cb < g.co_blocks(); ++cb)
    for (int64_t r = 0; r < K; ++r)
      for (int t = 0; t < kConvCoT; ++t) {
        const int64_t co = cb * kConvCoT + t;
        packed[(cb * K + r) * kConvCoT + t] = co < g.Co ? w[co * K + r] : 0.f;
      }
}

// x [Ci, H, W] -> padded [Ci][Hp][Ws] (zeros around the image and past Wo).
inline void pad_direct_input(const DirectConvGeom& g, const float* x, float* xp) {
  const int64_t Ws = g.Ws(), plane = g.plane();
  std::memset(xp, 0, sizeof(float) * size_t(g.padded_len()));
  for (int64_t ci = 0; ci < g.Ci; ++ci)
    for (int64_t h = 0; h < g.H; ++h)
      std::memcpy(xp + ci * plane + (h + g.p) * Ws + g.p, x + (ci * g.H + h) * g.W, sizeof(float) * size_t(g.W));
}

// Tap r = (ci, kh, kw) -> its offset in the padded image.
inline void direct_tap_offsets(const DirectConvGeom& g, int64_t* off) {
  for (int64_t r = 0; r < g.taps(); ++r) {
    const int64_t kw = r % g.KW, kh = (r / g.KW) % g.KH, ci = r / (g.KW * g.KH);
    off[r] = ci * g.plane() + kh * g.Ws() + kw;
  }
}

// Output pixel vectors [v0, v0 + nv) (row-major over (oh, vector of ow); nv
// <= kConvNV) for the output channels of block cb: y [Co, Ho, Wo] gets the
// sums plus the bias (b may be null).
template <int NV>
inline void direct_conv_tile(const DirectConvGeom& g, const float* xp, const float* wpack, const int64_t* off,
                             const float* b, int64_t cb, int64_t v0, float* y) {
  const int64_t K = g.taps(), rv = g.row_vectors();
  const float* base[NV];
  int64_t oh[NV], ow[NV];
  for (int j = 0; j < NV; ++j) {
    oh[j] = (v0 + j) / rv;
    ow[j] = ((v0 + j) % rv) * kConvW;
    base[j] = xp + oh[j] * g.Ws() + ow[j];
  }
  conv_vec acc[kConvCoT][NV];
  for (int t = 0; t < kConvCoT; ++t)
    for (int j = 0; j < NV; ++j) acc[t][j] = conv_vec{};
  const float* w = wpack + cb * K * kConvCoT;
  for (int64_t r = 0; r < K; ++r, w += kConvCoT) {
    conv_vec xv[NV];
    for (int j = 0; j < NV; ++j) xv[j] = attn_load(base[j] + off[r]);
    for (int t = 0; t < kConvCoT; ++t) {
      const conv_vec wt = attn_splat(w[t]);
      for (int j = 0; j < NV; ++j) acc[t][j] += wt * xv[j];
    }
  }
  const int64_t P = g.Ho * g.Wo;
  for (int t = 0; t < kConvCoT; ++t) {
    const int64_t co = cb * kConvCoT + t;
    if (co >= g.Co) break;
    const float bias = b ? b[co] : 0.f;
    for (int j = 0; j < NV; ++j) {
      float* dst = y + co * P + oh[j] * g.Wo + ow[j];
      const conv_vec v = acc[t][j] + bias;
      const int64_t lanes = std::min<int64_t>(kConvW, g.Wo - ow[j]);
      if (lanes == kConvW) {
        attn_store(dst, v);
      } else {
        for (int64_t l = 0; l < lanes; ++l) dst[l] = v[l];
      }
    }
  }
}

// Pixel vectors [vb, ve) of one image, every output channel block; tiles of
// kConvNV vectors, the last one narrower.
inline void direct_conv_pixels(const DirectConvGeom& g, const float* xp, const float* wpack, const int64_t* off,
                               const float* b, int64_t vb, int64_t ve, float* y) {
  for (int64_t v0 = vb; v0 < ve; v0 += kConvNV) {
    const int64_t nv = std::min<int64_t>(kConvNV, ve - v0);
    for (int64_t cb = 0; cb < g.co_blocks(); ++cb) {
      if (nv == kConvNV) direct_conv_tile<kConvNV>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 1) direct_conv_tile<1>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 2) direct_conv_tile<2>(g, xp, wpack, off, b, cb, v0, y);
      else direct_conv_tile<3>(g, xp, wpack, off, b, cb, v0, y);
    }
  }
}

}  // namespace mdps::cpu
