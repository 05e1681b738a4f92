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

namespace mdps::cpu {

// Weight gradient of the same stride-1 convolution, also without im2col:
// dW[co, tap] = sum over output pixels of dy[co, pixel] * padded x[tap + pixel],
// with the pixels in the vector lanes. Register tiles of kWgCoT output channels
// by kWgRT taps; each pixel vector costs kWgCoT loads of dy and kWgRT shifted
// loads of the padded image for kWgCoT * kWgRT fused multiply-adds, and the
// lanes are summed once per tile at the end.
#if defined(__AVX512F__)
constexpr int kWgCoT = 4, kWgRT = 6;  // 24 accumulators + 4 + 1 of 32 registers
#else
constexpr int kWgCoT = 2, kWgRT = 5;  // 10 accumulators + 2 + 1 of 16 registers
#endif

struct DirectWgradLayout {
  int64_t co_blocks, tap_blocks;
  int64_t dy_channels() const { return co_blocks * kWgCoT; }
};
inline DirectWgradLayout direct_wgrad_layout(const DirectConvGeom& g) {
  return {(g.Co + kWgCoT - 1) / kWgCoT, (g.taps() + kWgRT - 1) / kWgRT};
}
// dy rows padded to whole vectors, output channels to whole tiles (zeros).
inline int64_t direct_wgrad_dy_len(const DirectConvGeom& g) {
  return direct_wgrad_layout(g).dy_channels() * g.Ho * g.row_vectors() * kConvW;
}

// dy [Co, Ho, Wo] -> [channels padded to kWgCoT][Ho][row_vectors * kConvW], zeros outside.
inline void pad_direct_dy(const DirectConvGeom& g, const float* dy, float* dyp) {
  const int64_t rw = g.row_vectors() * kConvW;
  std::memset(dyp, 0, sizeof(float) * size_t(direct_wgrad_dy_len(g)));
  for (int64_t co = 0; co < g.Co; ++co)
    for (int64_t oh = 0; oh < g.Ho; ++oh)
      std::memcpy(dyp + (co * g.Ho + oh) * rw, dy + (co * g.Ho + oh) * g.Wo, sizeof(float) * size_t(g.Wo));
}

// Tap offsets padded to whole tiles (the extra taps read offset 0, their sums are dropped).
inline void direct_wgrad_tap_offsets(const DirectConvGeom& g, int64_t* off) {
  const int64_t K = g.taps(), padded = direct_wgrad_layout(g).tap_blocks * kWgRT;
  direct_tap_offsets(g, off);
  for (int64_t r = K; r < padded; ++r) off[r] = 0;
}

// dw [Co, taps] = (accumulate ? dw : 0) + this image's sums, for the co blocks [cb0, cb1).
inline void direct_wgrad_image(const DirectConvGeom& g, const float* xp, const float* dyp, const int64_t* off,
                               int64_t cb0, int64_t cb1, bool accumulate, float* dw) {
  const DirectWgradLayout lay = direct_wgrad_layout(g);
  const int64_t K = g.taps(), rv = g.row_vectors(), rw = rv * kConvW, nvec = g.Ho * rv, plane = g.Ho * rw;
  for (int64_t cb = cb0; cb < cb1; ++cb)
    for (int64_t tb = 0; tb < lay.tap_blocks; ++tb) {
      conv_vec acc[kWgCoT][kWgRT];
      for (int t = 0; t < kWgCoT; ++t)
        for (int q = 0; q < kWgRT; ++q) acc[t][q] = conv_vec{};
      const int64_t* o = off + tb * kWgRT;
      const float* dyc = dyp + cb * kWgCoT * plane;
      for (int64_t v = 0; v < nvec; ++v) {
        const int64_t oh = v / rv, ow = (v % rv) * kConvW;
        conv_vec dv[kWgCoT];
        for (int t = 0; t < kWgCoT; ++t) dv[t] = attn_load(dyc + t * plane + oh * rw + ow);
        const float* xb = xp + oh * g.Ws() + ow;
        for (int q = 0; q < kWgRT; ++q) {
          const conv_vec xv = attn_load(xb + o[q]);
          for (int t = 0; t < kWgCoT; ++t) acc[t][q] += dv[t] * xv;
        }
      }
      for (int t = 0; t < kWgCoT; ++t) {
        const int64_t co = cb * kWgCoT + t;
        if (co >= g.Co) break;
        for (int q = 0; q < kWgRT; ++q) {
          const int64_t r = tb * kWgRT + q;
          if (r >= K) break;
          const float s = attn_hsum(acc[t][q]);
          dw[co * K + r] = accumulate ? dw[co * K + r] + s : s;
        }
      }
    }
}

}  // namespace mdps::cpu
