// Direct stride-1 convolution for the forward pass on wide levels, without
// im2col: register tiles of CoT output channels by NV vectors of output
// pixels, accumulated over every (ci, kh, kw) tap straight from a zero-padded
// copy of the image.
//
// Why: at the 64x64 level of the 64x64 U-Net the convolutions have only 32
// output channels, so im2col + sgemm is a product with M = 32 over a col
// matrix of 4.7 MB per image: OpenBLAS packs that matrix again, and both
// copies stream through memory. Here each tap costs NV vector loads of the
// padded image (a tile's rows stay in L1) and CoT broadcast weights for
// CoT * NV fused multiply-adds, so the loop is bound by arithmetic, not
// memory.
//
// The vector width W and the tile (CoT, NV) are chosen at run time
// (conv_tiles.h: from cpuid and the shape) among the instantiations of
// direct_conv_pixels below; DirectConvGeom carries the chosen W (vw) and CoT
// (cot), which fix the layouts. Every tile sums each output over the taps in
// the same order, one accumulator per lane: the same bits whichever runs.
//
// Two layouts of the input (conv_tiles.h picks): rows of whole vectors, below,
// or flat (flat_direct_input): the output's pixels in one run of vectors
// across rows, for rows narrower than a vector (the 8x8 level) and 1x1
// kernels.
//
// Layouts. Padded image: [Ci][Hp][Ws], Hp = H + 2p, Ws = a row of Wo rounded
// up to whole vectors plus KW - 1, zeros outside the image, plus one vector of
// slack at the end (a partial last vector reads past the row's end into the
// padding; those lanes are never stored). Packed weights: for every block of
// cot output channels, [K][cot] with K = Ci*KH*KW in the weight's own
// (ci, kh, kw) order, zeros for channels past Co.
//
// GCC/Clang vector extensions (as attention_tiles.h): a vector of W floats is
// one register where the unit is that wide (zmm for 16 on AVX-512, ymm for 8),
// and a pair or quartet of narrower ones otherwise, same source.
#pragma once
#include "kernels/cpu/attention_tiles.h"
#include "kernels/cpu/conv_tiles.h"
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace mdps::cpu {

constexpr int kConvW = kAttnW;  // floats per vector of the weight gradient (the build's widest)
typedef attn_vec conv_vec;

// W floats, one register of a W-wide unit.
template <int W>
struct ConvVec {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
  static type load(const float* p) {
    type v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, type v) { std::memcpy(p, &v, sizeof v); }
};

// vw and cot: the tile's vector width and output channels (the forward's
// from direct_conv_tile; the weight gradient keeps the defaults).
struct DirectConvGeom {
  int64_t Ci, H, W, Co, KH, KW, p, Ho, Wo;
  int vw = kConvW, cot = 4;
  int64_t taps() const { return Ci * KH * KW; }
  int64_t row_vectors() const { return (Wo + vw - 1) / vw; }
  int64_t Hp() const { return H + 2 * p; }
  int64_t Ws() const { return row_vectors() * vw + KW - 1; }
  int64_t plane() const { return Hp() * Ws(); }
  int64_t padded_len() const { return Ci * plane() + vw; }
  int64_t co_blocks() const { return (Co + cot - 1) / cot; }
  int64_t packed_weight_len() const { return co_blocks() * taps() * cot; }
  int64_t pixel_vectors() const { return Ho * row_vectors(); }
};

// w [Co, Ci, KH, KW] -> packed [co block][tap][cot], the blocks [cb0, cb1) (default: all).
inline void pack_direct_weights(const DirectConvGeom& g, const float* w, float* packed, int64_t cb0 = 0,
                                int64_t cb1 = -1) {
  const int64_t K = g.taps();
  if (cb1 < 0) cb1 = g.co_blocks();
  for (int64_t cb = cb0; cb < cb1; ++cb)
    for (int64_t r = 0; r < K; ++r)
      for (int t = 0; t < g.cot; ++t) {
        const int64_t co = cb * g.cot + t;
        packed[(cb * K + r) * g.cot + t] = co < g.Co ? w[co * K + r] : 0.f;
      }
}

// x [Ci, H, W] -> padded [Ci][Hp][Ws] (zeros around the image and past Wo).
// Each float is written once: the border zeros, not the whole buffer first.
inline void pad_direct_input(const DirectConvGeom& g, const float* x, float* xp) {
  const int64_t Ws = g.Ws(), plane = g.plane(), Hp = g.Hp(), right = Ws - g.p - g.W;
  for (int64_t ci = 0; ci < g.Ci; ++ci) {
    float* c = xp + ci * plane;
    std::memset(c, 0, sizeof(float) * size_t(g.p * Ws));
    for (int64_t h = 0; h < g.H; ++h) {
      float* row = c + (h + g.p) * Ws;
      std::memset(row, 0, sizeof(float) * size_t(g.p));
      std::memcpy(row + g.p, x + (ci * g.H + h) * g.W, sizeof(float) * size_t(g.W));
      std::memset(row + g.p + g.W, 0, sizeof(float) * size_t(right));
    }
    std::memset(c + (g.p + g.H) * Ws, 0, sizeof(float) * size_t((Hp - g.p - g.H) * Ws));
  }
  std::memset(xp + g.Ci * plane, 0, sizeof(float) * size_t(g.vw));
}

// The flat layout (ConvTile::flat): the output's Ho * Wo pixels in one run of
// vectors that cross rows. For every (ci, kw) a copy of the zero-padded image
// shifted left by kw with rows exactly Wo wide, [Ci][KW][Hp][Wo], plus one
// vector of slack (a partial last vector reads past the end; those lanes are
// never stored): output pixel q = oh * Wo + ow reads tap (ci, kh, kw) at
// (ci * KW + kw) * Hp * Wo + kh * Wo + q. The sums and their order are the
// rows layout's, so both give the same bits.
inline int64_t flat_plane(const DirectConvGeom& g) { return g.Hp() * g.Wo; }
inline int64_t flat_input_len(const DirectConvGeom& g) { return g.Ci * g.KW * flat_plane(g) + g.vw; }

// An unpadded 1x1 kernel whose pixels fill whole vectors reads the image itself.
inline bool flat_reads_image(const DirectConvGeom& g) {
  return g.KH == 1 && g.KW == 1 && g.p == 0 && (g.Ho * g.Wo) % g.vw == 0;
}

// x [Ci, H, W] -> the flat layout above.
inline void flat_direct_input(const DirectConvGeom& g, const float* x, float* xs) {
  const int64_t Hp = g.Hp(), Wo = g.Wo;
  float* o = xs;
  for (int64_t ci = 0; ci < g.Ci; ++ci)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      for (int64_t hp = 0; hp < Hp; ++hp, o += Wo) {
        const int64_t h = hp - g.p;
        if (h < 0 || h >= g.H) {
          std::memset(o, 0, sizeof(float) * size_t(Wo));
          continue;
        }
        // Output column ow reads input column ow + kw - p: inside the image for ow in [lo, hi).
        const int64_t shift = kw - g.p;
        const int64_t lo = std::clamp<int64_t>(-shift, 0, Wo), hi = std::clamp<int64_t>(g.W - shift, lo, Wo);
        std::memset(o, 0, sizeof(float) * size_t(lo));
        std::memcpy(o + lo, x + (ci * g.H + h) * g.W + lo + shift, sizeof(float) * size_t(hi - lo));
        std::memset(o + hi, 0, sizeof(float) * size_t(Wo - hi));
      }
  std::memset(o, 0, sizeof(float) * size_t(g.vw));
}

// Tap r = (ci, kh, kw) -> its offset in the flat layout.
inline void flat_tap_offsets(const DirectConvGeom& g, int64_t* off) {
  for (int64_t r = 0; r < g.taps(); ++r) {
    const int64_t kw = r % g.KW, kh = (r / g.KW) % g.KH, ci = r / (g.KW * g.KH);
    off[r] = (ci * g.KW + kw) * flat_plane(g) + kh * g.Wo;
  }
}

// The geometry the tiles see for the flat layout: one output row of Ho * Wo
// pixels (the taps and channels unchanged; the tile reads offsets from
// flat_tap_offsets and only the row's start from the geometry).
inline DirectConvGeom flat_kernel_geom(const DirectConvGeom& g) {
  DirectConvGeom f = g;
  f.H = 1;
  f.Ho = 1;
  f.W = f.Wo = g.Ho * g.Wo;
  f.p = 0;
  return f;
}

// Tap r = (ci, kh, kw) -> its offset in the padded image.
inline void direct_tap_offsets(const DirectConvGeom& g, int64_t* off) {
  for (int64_t r = 0; r < g.taps(); ++r) {
    const int64_t kw = r % g.KW, kh = (r / g.KW) % g.KH, ci = r / (g.KW * g.KH);
    off[r] = ci * g.plane() + kh * g.Ws() + kw;
  }
}

// Output pixel vectors [v0, v0 + NV) (row-major over (oh, vector of ow)) for
// the output channels of block cb (g.vw == W, g.cot == CoT): y [Co, Ho, Wo]
// gets the sums plus the bias (b may be null).
template <int W, int CoT, int NV, bool Pointwise = false>
inline void direct_conv_tile(const DirectConvGeom& g, const float* xp, const float* wpack, const int64_t* off,
                             const float* b, int64_t cb, int64_t v0, float* y) {
  using V = ConvVec<W>;
  using vec = typename V::type;
  const int64_t K = g.taps(), rv = g.row_vectors();
  const float* base[NV];
  int64_t oh[NV], ow[NV];
  for (int j = 0; j < NV; ++j) {
    oh[j] = (v0 + j) / rv;
    ow[j] = ((v0 + j) % rv) * W;
    base[j] = xp + oh[j] * g.Ws() + ow[j];
  }
  vec acc[CoT][NV];
  for (int t = 0; t < CoT; ++t)
    for (int j = 0; j < NV; ++j) acc[t][j] = vec{};
  const float* w = wpack + cb * K * CoT;
  // A 1x1 kernel's taps are whole input channels, each in its own pages: more
  // streams than the hardware prefetcher follows (64 to 96 at the 64x64 level).
  // The first channel block asks for the next tile's vectors of every tap
  // (one thread, shared machine, best of 3: the U-Net's 1x1 shapes 9-23% more
  // GFLOP/s, 106 -> 130 at 64x64; the 3x3 kernels' few rows gained nothing).
  const bool prefetch = Pointwise && cb == 0;
  for (int64_t r = 0; r < K; ++r, w += CoT) {
    vec xv[NV];
    for (int j = 0; j < NV; ++j) xv[j] = V::load(base[j] + off[r]);
    if constexpr (Pointwise)
      if (prefetch)
        for (int j = 0; j < NV; ++j) __builtin_prefetch(base[j] + off[r] + NV * W);
    // A scalar times a vector: the weight is broadcast straight from memory
    // (AVX-512's embedded broadcast). Splatting it as vec{} + w[t] cost a
    // scalar add (0 + x is no identity for -0) and a register broadcast on the
    // FMA port for each weight: 6x4 tiles ran at 55% of the FMA peak, 75% without.
    for (int t = 0; t < CoT; ++t) {
      const float wt = w[t];
      for (int j = 0; j < NV; ++j) acc[t][j] += wt * xv[j];
    }
  }
  const int64_t P = g.Ho * g.Wo;
  for (int t = 0; t < CoT; ++t) {
    const int64_t co = cb * CoT + t;
    if (co >= g.Co) break;
    const float bias = b ? b[co] : 0.f;
    for (int j = 0; j < NV; ++j) {
      float* dst = y + co * P + oh[j] * g.Wo + ow[j];
      const vec v = acc[t][j] + bias;
      const int64_t lanes = std::min<int64_t>(W, g.Wo - ow[j]);
      if (lanes == W) {
        V::store(dst, v);
      } else {
        for (int64_t l = 0; l < lanes; ++l) dst[l] = v[l];
      }
    }
  }
}

// Pixel vectors [vb, ve) of one image, every output channel block; tiles of
// NV vectors, the last one narrower.
template <int W, int CoT, int NV, bool Pointwise>
inline void direct_conv_pixels_tiled(const DirectConvGeom& g, const float* xp, const float* wpack, const int64_t* off,
                                     const float* b, int64_t vb, int64_t ve, float* y) {
  static_assert(NV >= 1 && NV <= 6, "the last tile of a range dispatches 1 to 5 vectors");
  for (int64_t v0 = vb; v0 < ve; v0 += NV) {
    const int64_t nv = std::min<int64_t>(NV, ve - v0);
    for (int64_t cb = 0; cb < g.co_blocks(); ++cb) {
      if (nv == NV) direct_conv_tile<W, CoT, NV, Pointwise>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 1) direct_conv_tile<W, CoT, 1, Pointwise>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 2) direct_conv_tile<W, CoT, (NV > 2 ? 2 : 1), Pointwise>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 3) direct_conv_tile<W, CoT, (NV > 3 ? 3 : 1), Pointwise>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 4) direct_conv_tile<W, CoT, (NV > 4 ? 4 : 1), Pointwise>(g, xp, wpack, off, b, cb, v0, y);
      else direct_conv_tile<W, CoT, (NV > 5 ? 5 : 1), Pointwise>(g, xp, wpack, off, b, cb, v0, y);
    }
  }
}

// The same with the 1x1 kernel's prefetches (direct_conv_tile) where g is one.
template <int W, int CoT, int NV>
inline void direct_conv_pixels_any(const DirectConvGeom& g, const float* xp, const float* wpack, const int64_t* off,
                                   const float* b, int64_t vb, int64_t ve, float* y) {
  if (g.KH * g.KW == 1)
    direct_conv_pixels_tiled<W, CoT, NV, true>(g, xp, wpack, off, b, vb, ve, y);
  else
    direct_conv_pixels_tiled<W, CoT, NV, false>(g, xp, wpack, off, b, vb, ve, y);
}

// The geometry of a forward convolution with the tile t (its width and channels).
inline DirectConvGeom direct_conv_geom(int64_t Ci, int64_t H, int64_t W, int64_t Co, int64_t KH, int64_t KW,
                                       int64_t p, int64_t Ho, int64_t Wo, const ConvTile& t) {
  DirectConvGeom g{Ci, H, W, Co, KH, KW, p, Ho, Wo};
  g.vw = t.width;
  g.cot = t.co;
  return g;
}

// Pixel vectors [vb, ve) of one image through the tile t (g from direct_conv_geom(..., t)).
inline void direct_conv_pixels(const ConvTile& t, const DirectConvGeom& g, const float* xp, const float* wpack,
                               const int64_t* off, const float* b, int64_t vb, int64_t ve, float* y) {
#define MDPS_CONV_TILE(W_, C_, N_)                                                 \
  if (t.width == W_ && t.co == C_ && t.nv == N_) {                                 \
    direct_conv_pixels_any<W_, C_, N_>(g, xp, wpack, off, b, vb, ve, y);           \
    return;                                                                        \
  }
#if defined(__AVX512F__)
  MDPS_CONV_TILE(16, 8, 3)
  MDPS_CONV_TILE(16, 6, 4)
  MDPS_CONV_TILE(16, 4, 6)
  MDPS_CONV_TILE(16, 8, 2)
  MDPS_CONV_TILE(8, 6, 4)
#endif
#if defined(__AVX2__) && defined(__FMA__)  // (an 8-float vector without AVX would change the ABI)
  MDPS_CONV_TILE(8, 4, 3)
#endif
  MDPS_CONV_TILE(4, 4, 3)
#undef MDPS_CONV_TILE
  MDPS_CHECK(false, "direct convolution: no kernel for a tile of ", t.co, "x", t.nv, " vectors of ", t.width);
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
