// Winograd F(2x2, 3x3) for the fp32 3x3 stride-1 pad-1 convolutions of
// levels 8 or more wide (conv2d.cpp: the forward and the data gradient):
// each 2x2 block of outputs ("tile") from its 4x4 block of inputs with 16
// multiply-adds per input channel and output channel, where the direct
// kernel (conv_direct.h) takes 36: 2.25 times fewer.
//
//   Y = A^T [ (G g G^T) . (B^T d B) ] A      (. elementwise, per tile)
//
// with g the 3x3 kernel, d the tile's 4x4 inputs (zeros outside the image)
// and the matrices of Lavin and Gray (2016), points 0, 1, -1:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// Their entries are 0, +-1 and +-0.5, so the transforms add and halve
// exactly; the outputs differ from the direct sums by float rounding only
// (each output is a sum of 16 products over a channel rather than 9, of
// transformed values; the tests hold both to the same reference and
// tolerance). F(4x4, 3x3) would save another 1.8x of products, but its
// points (+-2, +-1/2) cost accuracy the golden tests' tolerances do not have.
//
// Layout: a band of whole tile rows at a time, so that its transformed inputs
// V [16][Ci][ldv] and products M [16][Co][ldv] (ldv: the band's tiles rounded
// up to whole vectors, tile rows back to back) stay in L2; the 16 products
// per band are [Co x Ci] x [Ci x tiles] through a register tile of kWinoCT
// output channels by kWinoQV vectors of tiles, accumulated over the input
// channels in order. Where the time goes, in the 64x64 U-Net's forward (AMD
// Zen 5, 2 threads): the products 72% (at about 88% of the FMA peak), the
// input transform 15%, the output transform 13%.
//
// Bits: every output is fixed by its tile's transforms and its 16 sums over
// the input channels in order, one accumulator per lane: neither the band,
// the batch nor the thread count changes them (batch invariance, see
// conv2d.cpp). The vector width is the build's widest (kAttnW), so they do not
// depend on the run-time vector cap of the direct kernel either.
#pragma once
#include "kernels/cpu/attention_tiles.h"
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace mdps::cpu {

// MDPS_CONV_WINOGRAD=0 turns Winograd off (the direct kernel instead), for A/B
// timings and the tests that hold the direct kernel on these shapes.
inline bool winograd_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MDPS_CONV_WINOGRAD");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// Output channels per register tile: 8 x 3 vectors (24 accumulators) on
// AVX-512's 32 registers, 4 x 3 on AVX2's and SSE's 16.
constexpr int kWinoCT = kAttnW >= 16 ? 8 : 4;
constexpr int kWinoQV = 3;  // vectors of tiles per register tile

// The shape of one image's transform.
struct WinogradGeom {
  int64_t Ci, H, W, Co, Ho, Wo;
  int64_t tile_rows() const { return (Ho + 1) / 2; }
  int64_t tile_cols() const { return (Wo + 1) / 2; }
  int64_t co_blocks() const { return (Co + kWinoCT - 1) / kWinoCT; }
  int64_t co_padded() const { return co_blocks() * kWinoCT; }
  int64_t packed_weight_len() const { return 16 * co_padded() * Ci; }
};

// Tile rows per band: V and M of a band within about 384 KB (L2) where that
// leaves at least a vector of tiles, and among those the band height that pads
// the fewest tiles up to whole vectors over the image (V's rows are whole
// vectors), the taller on a tie.
inline int64_t winograd_band_rows(const WinogradGeom& g) {
  const int64_t Tw = g.tile_cols(), Th = g.tile_rows();
  const int64_t per_tile = 16 * (g.Ci + g.co_padded()) * int64_t(sizeof(float));
  const int64_t budget_tiles = std::max<int64_t>(1, (384 * 1024) / per_tile);
  const int64_t most = std::clamp<int64_t>(std::max(budget_tiles / Tw, (kAttnW + Tw - 1) / Tw), 1, Th);
  auto padded = [&](int64_t rows) {  // tiles through the products, the image over
    auto whole = [](int64_t n) { return (n + kAttnW - 1) / kAttnW * kAttnW; };
    return (Th / rows) * whole(rows * Tw) + (Th % rows ? whole((Th % rows) * Tw) : 0);
  };
  int64_t best = most;
  for (int64_t rows = most - 1; rows >= 1; --rows)
    if (padded(rows) < padded(best)) best = rows;
  return best;
}

// The band's tiles rounded up to whole vectors: V's and M's row length (a
// band of `images` images side by side, each its tile rows).
inline int64_t winograd_ldv(const WinogradGeom& g, int64_t rows, int64_t images = 1) {
  const int64_t nt = images * rows * g.tile_cols();
  return (nt + kAttnW - 1) / kAttnW * kAttnW;
}

// Images per band on levels whose whole image is fewer than kWinoQV vectors
// of tiles (8x8: 16 tiles): their tiles side by side, so that the products
// get whole register tiles (each tile's outputs depend on it alone, so the
// grouping changes no bit).
inline int64_t winograd_group(const WinogradGeom& g) {
  const int64_t per_image = g.tile_rows() * g.tile_cols();
  return std::max<int64_t>(1, (kWinoQV * kAttnW) / per_image);
}

// Floats between two xi of V ([16][Ci][ldv]) and of M ([16][co_padded][ldv]):
// a vector more than the rows, so that the 16 rows a transform reads or
// writes at once do not all fall in the same L1 sets (at 64 channels of 32
// tiles the plain strides are multiples of 4 KiB, and the 16 streams thrashed
// L1's 12 ways: the input transform took 5 times its arithmetic).
inline int64_t winograd_v_stride(const WinogradGeom& g, int64_t ldv) { return g.Ci * ldv + kAttnW; }
inline int64_t winograd_m_stride(const WinogradGeom& g, int64_t ldv) { return g.co_padded() * ldv + kAttnW; }

// w [Co, Ci, 3, 3] -> U = G g G^T packed [16][co block][Ci][kWinoCT], zeros for
// channels past Co; the output channel blocks [cb0, cb1). Each (block, ci)
// transforms its kWinoCT kernels together and writes 16 runs of kWinoCT floats.
inline void winograd_pack_weights(const WinogradGeom& g, const float* w, float* u, int64_t cb0, int64_t cb1) {
  const int64_t cb = g.co_blocks();
  for (int64_t blk = cb0; blk < cb1; ++blk)
    for (int64_t ci = 0; ci < g.Ci; ++ci) {
      float t[16][kWinoCT];
      for (int lane = 0; lane < kWinoCT; ++lane) {
        const int64_t co = blk * kWinoCT + lane;
        if (co >= g.Co) {
          for (int xi = 0; xi < 16; ++xi) t[xi][lane] = 0.f;
          continue;
        }
        const float* k = w + (co * g.Ci + ci) * 9;
        float gk[4][3];  // G g
        for (int j = 0; j < 3; ++j) {
          const float a = k[j], b = k[3 + j], c = k[6 + j];
          gk[0][j] = a;
          gk[1][j] = 0.5f * (a + b + c);
          gk[2][j] = 0.5f * (a - b + c);
          gk[3][j] = c;
        }
        for (int i = 0; i < 4; ++i) {  // (G g) G^T
          const float a = gk[i][0], b = gk[i][1], c = gk[i][2];
          t[i * 4 + 0][lane] = a;
          t[i * 4 + 1][lane] = 0.5f * (a + b + c);
          t[i * 4 + 2][lane] = 0.5f * (a - b + c);
          t[i * 4 + 3][lane] = c;
        }
      }
      for (int xi = 0; xi < 16; ++xi)
        std::memcpy(u + ((xi * cb + blk) * g.Ci + ci) * kWinoCT, t[xi], sizeof t[xi]);
    }
}

// Lane shuffles of two vectors a, b (lanes 0 .. W-1 of a, then W .. 2W-1 of b),
// through __builtin_shufflevector (GCC 12 and Clang alike; the fuzzers build
// the engine with Clang), its constant indices spelled by a pack over I.
template <int... I>
inline attn_vec winograd_even_lanes(attn_vec a, attn_vec b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, (2 * I)...);
}
template <int... I>
inline attn_vec winograd_odd_lanes(attn_vec a, attn_vec b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, (2 * I + 1)...);
}
template <int... I>
inline attn_vec winograd_shift_in_lanes(attn_vec b, attn_vec a, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(b, a, (I == 0 ? kAttnW - 1 : kAttnW + I - 1)...);
}
template <int... I>
inline attn_vec winograd_next_lanes(attn_vec a, attn_vec b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, (I + 1)...);
}
template <int Half, int... I>
inline attn_vec winograd_interleave_lanes(attn_vec a, attn_vec b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, ((I % 2 ? kAttnW : 0) + Half * kAttnW / 2 + I / 2)...);
}
using winograd_lanes = std::make_integer_sequence<int, kAttnW>;

// (a0, a2, ..., b0, b2, ...) and (a1, a3, ..., b1, b3, ...): the even and odd
// floats of the 2W floats a, b.
inline void winograd_deinterleave(attn_vec a, attn_vec b, attn_vec& even, attn_vec& odd) {
  even = winograd_even_lanes(a, b, winograd_lanes{});
  odd = winograd_odd_lanes(a, b, winograd_lanes{});
}
// (b[W-1], a0, a1, ..., a[W-2]): a shifted up one lane, b's last lane first.
inline attn_vec winograd_shift_in(attn_vec b, attn_vec a) { return winograd_shift_in_lanes(b, a, winograd_lanes{}); }
// (a1, ..., a[W-1], b0): a shifted down one lane, b's first lane last.
inline attn_vec winograd_next(attn_vec a, attn_vec b) { return winograd_next_lanes(a, b, winograd_lanes{}); }
// (a0, b0, a1, b1, ...): the first (lo) and second (hi) W floats of the interleave of a and b.
inline void winograd_interleave(attn_vec a, attn_vec b, attn_vec& lo, attn_vec& hi) {
  lo = winograd_interleave_lanes<0>(a, b, winograd_lanes{});
  hi = winograd_interleave_lanes<1>(a, b, winograd_lanes{});
}

// V[xi][ci][t] = (B^T d B)[xi] for the tiles t of tile rows [ty0, ty1) (t =
// (ty - ty0) * tile_cols + tx, tile rows back to back; the columns past them
// are left alone: winograd_zero_tail, or the next image of a group). Per tile row, input channel and vector of tiles, in registers:
// - the column half first, on the 4 input rows the tile row reads as they
//   lie: u_a = (B^T d)[a] = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)[a] (rows),
//   for the columns [2k - W, 2k + 3W) of the tiles [k, k + W);
// - then the row half of each u_a: tile tx reads columns 2tx - 1 .. 2tx + 2,
//   c0 .. c3, gathered by one shuffle each (c1, c2: the even and odd columns
//   of [2k, 2k + 2W); c0, c3: c2 and c1 moved a lane), and
//   V[a][j] = (c0 - c2, c1 + c2, c2 - c1, c1 - c3)[j].
// No copy of the input (a copy read back at another offset stalls on store
// forwarding) and no spill of u: an earlier version with both took 5 times
// its arithmetic.
inline void winograd_input_transform(const WinogradGeom& g, const float* x, int64_t ty0, int64_t ty1, int64_t ldv,
                                     float* V) {
  const int64_t Tw = g.tile_cols();
  const int64_t vs = winograd_v_stride(g, ldv);
  for (int64_t ci = 0; ci < g.Ci; ++ci) {
    const float* xc = x + ci * g.H * g.W;
    float* vc = V + ci * ldv;
    if (ci + 1 < g.Ci) {  // the next channel's rows: the planes are far apart, past the prefetcher's streams
      const int64_t r0 = std::max<int64_t>(0, 2 * ty0 - 1), r1 = std::min(g.H, 2 * ty1 + 1);
      const char* p = reinterpret_cast<const char*>(xc + g.H * g.W + r0 * g.W);
      const char* end = reinterpret_cast<const char*>(xc + g.H * g.W + r1 * g.W);
      for (; p < end; p += 64) __builtin_prefetch(p);
    }
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* d[4];
      for (int i = 0; i < 4; ++i) {
        const int64_t r = 2 * ty - 1 + i;
        d[i] = r >= 0 && r < g.H ? xc + r * g.W : nullptr;
      }
      // u[a] of the columns [c, c + W).
      auto column_half = [&](int64_t c, attn_vec (&u)[4]) {
        attn_vec r[4];
        const int64_t n = std::min<int64_t>(g.W - c, kAttnW);
        for (int i = 0; i < 4; ++i) r[i] = d[i] && c >= 0 ? attn_load_lanes(d[i] + c, n) : attn_vec{};
        u[0] = r[0] - r[2];
        u[1] = r[1] + r[2];
        u[2] = r[2] - r[1];
        u[3] = r[1] - r[3];
      };
      float* vt = vc + (ty - ty0) * Tw;
      for (int64_t k = 0; k < Tw; k += kAttnW) {
        attn_vec u0[4], u1[4], u2[4], u3[4];  // columns [2k - W, 2k), [2k, 2k + W), ..., [2k + 2W, 2k + 3W)
        column_half(2 * k - kAttnW, u0);
        column_half(2 * k, u1);
        column_half(2 * k + kAttnW, u2);
        column_half(2 * k + 2 * kAttnW, u3);
        const int64_t lanes = std::min<int64_t>(kAttnW, Tw - k);
        for (int a = 0; a < 4; ++a) {
          attn_vec c1, c2;  // columns 2tx and 2tx + 1
          winograd_deinterleave(u1[a], u2[a], c1, c2);
          const attn_vec c0 = winograd_shift_in(u0[a], c2);  // column 2tx - 1
          const attn_vec c3 = winograd_next(c1, u3[a]);      // column 2tx + 2
          float* va = vt + a * 4 * vs + k;
          attn_store_lanes(va + 0 * vs, c0 - c2, lanes);
          attn_store_lanes(va + 1 * vs, c1 + c2, lanes);
          attn_store_lanes(va + 2 * vs, c2 - c1, lanes);
          attn_store_lanes(va + 3 * vs, c1 - c3, lanes);
        }
      }
    }
  }
}

// Zeros in V's columns [t0, ldv) of every row: the products read whole vectors
// of tiles, and what lies past a band's tiles must be a finite number (garbage
// could be a NaN or a denormal, which costs some CPUs a microcode assist).
inline void winograd_zero_tail(const WinogradGeom& g, int64_t ldv, int64_t t0, float* V) {
  const int64_t vs = winograd_v_stride(g, ldv);
  if (t0 >= ldv) return;
  for (int xi = 0; xi < 16; ++xi)
    for (int64_t ci = 0; ci < g.Ci; ++ci) std::memset(V + xi * vs + ci * ldv + t0, 0, sizeof(float) * size_t(ldv - t0));
}

// M[xi][cb * CT + i][t] = sum over ci in order of U[xi][cb][ci][i] V[xi][ci][t]
// for the QV vectors of tiles from vector j0.
template <int QV>
inline void winograd_product_tile(const float* u, const float* v, int64_t Ci, int64_t ldv, int64_t j0, float* m) {
  attn_vec acc[kWinoCT][QV];
  for (auto& r : acc)
    for (auto& a : r) a = attn_vec{};
  const float* vp = v + j0 * kAttnW;
  for (int64_t ci = 0; ci < Ci; ++ci, vp += ldv, u += kWinoCT) {
    attn_vec vv[QV];
    for (int j = 0; j < QV; ++j) vv[j] = attn_load(vp + j * kAttnW);
    for (int i = 0; i < kWinoCT; ++i) {
      const float ui = u[i];
      for (int j = 0; j < QV; ++j) acc[i][j] += ui * vv[j];
    }
  }
  for (int i = 0; i < kWinoCT; ++i)
    for (int j = 0; j < QV; ++j) attn_store(m + i * ldv + (j0 + j) * kAttnW, acc[i][j]);
}

// The band's 16 products: M [16][co_padded][ldv] from U (packed) and V.
inline void winograd_products(const WinogradGeom& g, const float* U, const float* V, int64_t ldv, float* M) {
  const int64_t cb = g.co_blocks(), nvec = ldv / kAttnW;
  for (int xi = 0; xi < 16; ++xi) {
    const float* vx = V + xi * winograd_v_stride(g, ldv);
    for (int64_t b = 0; b < cb; ++b) {
      const float* u = U + (xi * cb + b) * g.Ci * kWinoCT;
      float* m = M + xi * winograd_m_stride(g, ldv) + b * kWinoCT * ldv;
      int64_t j0 = 0;
      for (; j0 + kWinoQV <= nvec; j0 += kWinoQV) winograd_product_tile<kWinoQV>(u, vx, g.Ci, ldv, j0, m);
      if (nvec - j0 == 2) winograd_product_tile<2>(u, vx, g.Ci, ldv, j0, m);
      else if (nvec - j0 == 1) winograd_product_tile<1>(u, vx, g.Ci, ldv, j0, m);
    }
  }
}

// y[co] (+ bias) for the tile rows [ty0, ty1) from M: Y = A^T M A per tile
// over the band's tiles as one run, the outputs past Ho or Wo dropped. Where
// a vector of tiles is one tile row's (tile rows a whole number of vectors)
// its outputs go straight to the image; otherwise through tmp (4 vectors).
// The epilogue of Backend::conv2d_fused, in the separate ops' order: then
// + image_bias[co] (this image's Co floats, or null), then residual + that
// (residual laid out as y, or null).
inline void winograd_output_transform(const WinogradGeom& g, const float* M, int64_t ldv, int64_t ty0, int64_t ty1,
                                      const float* bias, float* y, float* tmp, const float* image_bias = nullptr,
                                      const float* residual = nullptr) {
  const int64_t Tw = g.tile_cols(), nt = (ty1 - ty0) * Tw, ms = winograd_m_stride(g, ldv);
  const bool whole = Tw % kAttnW == 0;
  for (int64_t co = 0; co < g.Co; ++co) {
    const attn_vec b = attn_splat(bias ? bias[co] : 0.f);
    const attn_vec e = attn_splat(image_bias ? image_bias[co] : 0.f);
    float* yc = y + co * g.Ho * g.Wo;
    const float* rc = residual ? residual + co * g.Ho * g.Wo : nullptr;
    const float* m = M + co * ldv;
    for (int64_t t = 0; t < nt; t += kAttnW) {
      // s[r][j] = (A^T M)[r][j]: row 0 = m0 + m1 + m2, row 1 = m1 - m2 - m3 (rows of M);
      // then Y[r] = (s0 + s1 + s2, s1 - s2 - s3).
      attn_vec s[2][4];
      for (int j = 0; j < 4; ++j) {
        const attn_vec m0 = attn_load(m + (0 * 4 + j) * ms + t), m1 = attn_load(m + (1 * 4 + j) * ms + t);
        const attn_vec m2 = attn_load(m + (2 * 4 + j) * ms + t), m3 = attn_load(m + (3 * 4 + j) * ms + t);
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
      }
      attn_vec out[2][2];  // [output row r][first or second W floats of the 2W]
      for (int r = 0; r < 2; ++r)
        winograd_interleave(s[r][0] + s[r][1] + s[r][2] + b, s[r][1] - s[r][2] - s[r][3] + b, out[r][0], out[r][1]);
      if (image_bias)
        for (auto& row : out)
          for (auto& v : row) v = v + e;
      if (whole) {
        const int64_t ty = ty0 + t / Tw, tx = t % Tw;
        const int64_t c = 2 * tx, n = std::min<int64_t>(2 * kAttnW, g.Wo - c);
        for (int r = 0; r < 2 && 2 * ty + r < g.Ho; ++r) {
          const int64_t at = (2 * ty + r) * g.Wo + c, n0 = std::min<int64_t>(kAttnW, n);
          if (rc) {
            out[r][0] = attn_load_lanes(rc + at, n0) + out[r][0];
            if (n > kAttnW) out[r][1] = attn_load_lanes(rc + at + kAttnW, n - kAttnW) + out[r][1];
          }
          attn_store_lanes(yc + at, out[r][0], n0);
          if (n > kAttnW) attn_store_lanes(yc + at + kAttnW, out[r][1], n - kAttnW);
        }
        continue;
      }
      for (int r = 0; r < 2; ++r)
        for (int h = 0; h < 2; ++h) attn_store(tmp + (2 * r + h) * kAttnW, out[r][h]);
      // The vector's tiles, tile row by tile row.
      for (int64_t u = t; u < std::min(t + kAttnW, nt);) {
        const int64_t ty = ty0 + u / Tw, tx = u % Tw, len = std::min({Tw - tx, t + kAttnW - u, nt - u});
        const int64_t c = 2 * tx, n = std::min<int64_t>(2 * len, g.Wo - c);
        for (int r = 0; r < 2 && 2 * ty + r < g.Ho; ++r) {
          const int64_t at = (2 * ty + r) * g.Wo + c;
          const float* src = tmp + 2 * r * kAttnW + 2 * (u - t);
          if (rc)
            for (int64_t i = 0; i < n; ++i) yc[at + i] = rc[at + i] + src[i];
          else
            std::memcpy(yc + at, src, sizeof(float) * size_t(n));
        }
        u += len;
      }
    }
  }
}

}  // namespace mdps::cpu
