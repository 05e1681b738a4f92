// The AVX512-BF16 convolution of conv_bf16.h. Every function that executes
// AVX-512 instructions carries the target attribute, so the file builds with
// any -march and its code runs only after has_avx512_bf16() said yes.
#include "kernels/cpu/conv_bf16.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/shared/bf16.h"
#include "engine/core/common.h"
#include "engine/core/thread_pool.h"
#include "engine/core/trace.h"
#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mdps::cpu {

namespace {

constexpr int kLanes = 16;      // float32 lanes of a zmm; also bf16 pairs
constexpr int kCoT = 6, kNV = 4;  // 24 accumulators + 4 loads + 1 broadcast of 32 registers

struct Geom {
  Bf16ConvShape s;
  int64_t Ho, Wo, Cp, rv, Ws, plane;
  explicit Geom(const Bf16ConvShape& sh) : s(sh) {
    Ho = s.Ho();
    Wo = s.Wo();
    Cp = (s.Ci + 1) / 2;
    rv = (Wo + kLanes - 1) / kLanes;
    Ws = rv * kLanes + s.KW - 1;
    plane = (s.H + 2 * s.p) * Ws;
  }
  int64_t taps() const { return Cp * s.KH * s.KW; }  // channel pairs x kernel taps
  int64_t padded_len() const { return Cp * plane + kLanes; }  // one vector of slack
  int64_t co_blocks() const { return (s.Co + kCoT - 1) / kCoT; }
  int64_t pixel_vectors() const { return Ho * rv; }
};

inline uint32_t bf16_pair(float lo, float hi) {
  return uint32_t(bf16_from_float(lo)) | (uint32_t(bf16_from_float(hi)) << 16);
}

template <typename T>
T* buffer(size_t n, int slot) {
  thread_local std::vector<T> bufs[2];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// w [Co, Ci, KH, KW] -> [co block][channel pair, kh, kw][kCoT] words.
void pack_weights(const Geom& g, const float* w, uint32_t* packed) {
  const int64_t KK = g.s.KH * g.s.KW, K = g.s.Ci * KK, T = g.taps();
  for (int64_t cb = 0; cb < g.co_blocks(); ++cb)
    for (int64_t r = 0; r < T; ++r) {
      const int64_t cp = r / KK, k = r % KK;
      for (int t = 0; t < kCoT; ++t) {
        const int64_t co = cb * kCoT + t;
        const float lo = co < g.s.Co ? w[co * K + 2 * cp * KK + k] : 0.f;
        const float hi = co < g.s.Co && 2 * cp + 1 < g.s.Ci ? w[co * K + (2 * cp + 1) * KK + k] : 0.f;
        packed[(cb * T + r) * kCoT + t] = bf16_pair(lo, hi);
      }
    }
}

// x [Ci, H, W] -> [channel pair][Hp][Ws] words, zeros around the image.
void pad_input(const Geom& g, const float* x, uint32_t* xp) {
  const int64_t HW = g.s.H * g.s.W;
  std::memset(xp, 0, sizeof(uint32_t) * size_t(g.padded_len()));
  for (int64_t cp = 0; cp < g.Cp; ++cp) {
    const bool odd = 2 * cp + 1 < g.s.Ci;
    for (int64_t h = 0; h < g.s.H; ++h) {
      const float* a = x + 2 * cp * HW + h * g.s.W;
      const float* b = a + HW;
      uint32_t* dst = xp + cp * g.plane + (h + g.s.p) * g.Ws + g.s.p;
      if (odd) {
        for (int64_t w = 0; w < g.s.W; ++w) dst[w] = bf16_pair(a[w], b[w]);
      } else {
        for (int64_t w = 0; w < g.s.W; ++w) dst[w] = bf16_pair(a[w], 0.f);
      }
    }
  }
}

void tap_offsets(const Geom& g, int64_t* off) {
  const int64_t KK = g.s.KH * g.s.KW;
  for (int64_t r = 0; r < g.taps(); ++r) {
    const int64_t cp = r / KK, kh = (r % KK) / g.s.KW, kw = r % g.s.KW;
    off[r] = cp * g.plane + kh * g.Ws + kw;
  }
}

#if defined(__x86_64__)
#define MDPS_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

// Output pixel vectors [v0, v0 + NV) of output channel block cb.
template <int NV>
MDPS_BF16_TARGET void tile(const Geom& g, const uint32_t* xp, const uint32_t* wpack, const int64_t* off,
                           const float* b, int64_t cb, int64_t v0, float* y) {
  const int64_t T = g.taps();
  const uint32_t* base[NV];
  int64_t oh[NV], ow[NV];
  for (int j = 0; j < NV; ++j) {
    oh[j] = (v0 + j) / g.rv;
    ow[j] = ((v0 + j) % g.rv) * kLanes;
    base[j] = xp + oh[j] * g.Ws + ow[j];
  }
  __m512 acc[kCoT][NV];
  for (int t = 0; t < kCoT; ++t)
    for (int j = 0; j < NV; ++j) acc[t][j] = _mm512_setzero_ps();
  const uint32_t* w = wpack + cb * T * kCoT;
  for (int64_t r = 0; r < T; ++r, w += kCoT) {
    __m512bh xv[NV];
    for (int j = 0; j < NV; ++j) xv[j] = (__m512bh)_mm512_loadu_si512(base[j] + off[r]);
    for (int t = 0; t < kCoT; ++t) {
      const __m512bh wt = (__m512bh)_mm512_set1_epi32(int(w[t]));
      for (int j = 0; j < NV; ++j) acc[t][j] = _mm512_dpbf16_ps(acc[t][j], wt, xv[j]);
    }
  }
  const int64_t P = g.Ho * g.Wo;
  for (int t = 0; t < kCoT; ++t) {
    const int64_t co = cb * kCoT + t;
    if (co >= g.s.Co) break;
    const __m512 bias = _mm512_set1_ps(b ? b[co] : 0.f);
    for (int j = 0; j < NV; ++j) {
      float* dst = y + co * P + oh[j] * g.Wo + ow[j];
      const __m512 v = _mm512_add_ps(acc[t][j], bias);
      const int64_t lanes = std::min<int64_t>(kLanes, g.Wo - ow[j]);
      if (lanes == kLanes) _mm512_storeu_ps(dst, v);
      else _mm512_mask_storeu_ps(dst, __mmask16((1u << lanes) - 1u), v);
    }
  }
}

MDPS_BF16_TARGET void pixels(const Geom& g, const uint32_t* xp, const uint32_t* wpack, const int64_t* off,
                             const float* b, int64_t vb, int64_t ve, float* y) {
  for (int64_t v0 = vb; v0 < ve; v0 += kNV) {
    const int64_t nv = std::min<int64_t>(kNV, ve - v0);
    for (int64_t cb = 0; cb < g.co_blocks(); ++cb) {
      if (nv == kNV) tile<kNV>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 1) tile<1>(g, xp, wpack, off, b, cb, v0, y);
      else if (nv == 2) tile<2>(g, xp, wpack, off, b, cb, v0, y);
      else tile<3>(g, xp, wpack, off, b, cb, v0, y);
    }
  }
}
#else
void pixels(const Geom&, const uint32_t*, const uint32_t*, const int64_t*, const float*, int64_t, int64_t, float*) {}
#endif

// ---- AMX (tdpbf16ps on tiles) ------------------------------------------------
//
// The same padded image of channel-pair words is, seen 16 pairs at a time, an
// AMX "B" tile: row j = channel pair j of a block of 16, columns = 16
// consecutive output pixels of one row vector (row stride = one pair plane).
// The weights are packed as "A" tiles: row = output channel (16 per block),
// columns = the 16 channel pairs' (w[2c], w[2c+1]) words for one kernel tap.
// One tdpbf16ps then adds a 16 x 16 x 32 product into a float32 tile of 16
// output channels by 16 pixels. Four accumulator tiles (2 channel blocks x 2
// pixel vectors), two A and two B tiles: the 8 tile registers.
//
// Used where both channel counts are at least kAmxMinChannels (the tiles'
// padding to 32 input and 16 output channels would waste the rest), else the
// AVX512-BF16 path above.
constexpr int64_t kAmxMinChannels = 16;

struct AmxGeom {
  int64_t cpb;   // blocks of 16 channel pairs
  int64_t cb16;  // blocks of 16 output channels, rounded up to even
  int64_t kk;    // kernel taps KH * KW
  explicit AmxGeom(const Geom& g)
      : cpb((g.Cp + 15) / 16), cb16(((g.s.Co + 15) / 16 + 1) / 2 * 2), kk(g.s.KH * g.s.KW) {}
  int64_t padded_len(const Geom& g) const { return cpb * 16 * g.plane + kLanes; }
  // Words of one A tile, and where the tile of (co block, tap, pair block) starts.
  static constexpr int64_t kTile = 16 * 16;
  int64_t weight_len() const { return cb16 * kk * cpb * kTile; }
  int64_t a_tile(int64_t cb, int64_t k, int64_t pb) const { return ((cb * kk + k) * cpb + pb) * kTile; }
};

void pack_weights_amx(const Geom& g, const AmxGeom& a, const float* w, uint32_t* packed) {
  const int64_t KK = a.kk, K = g.s.Ci * KK;
  for (int64_t cb = 0; cb < a.cb16; ++cb)
    for (int64_t k = 0; k < KK; ++k)
      for (int64_t pb = 0; pb < a.cpb; ++pb) {
        uint32_t* t = packed + a.a_tile(cb, k, pb);
        for (int r = 0; r < 16; ++r) {
          const int64_t co = cb * 16 + r;
          for (int j = 0; j < 16; ++j) {
            const int64_t c0 = 2 * (pb * 16 + j), c1 = c0 + 1;
            const float lo = co < g.s.Co && c0 < g.s.Ci ? w[co * K + c0 * KK + k] : 0.f;
            const float hi = co < g.s.Co && c1 < g.s.Ci ? w[co * K + c1 * KK + k] : 0.f;
            t[r * 16 + j] = bf16_pair(lo, hi);
          }
        }
      }
}

#if defined(__x86_64__)
// Pixel vectors [vb, ve) of one image, every output channel block, on this
// thread's tiles (configured here, released at the end).
void pixels_amx(const Geom& g, const AmxGeom& a, const uint32_t* xp, const uint32_t* wamx, const float* b,
                int64_t vb, int64_t ve, float* y) {
  static const AmxTileConfig cfg;
  amx_configure(cfg);
  alignas(64) float acc[4][16][16];
  const int64_t P = g.Ho * g.Wo, pair_stride = g.plane * int64_t(sizeof(uint32_t));
  for (int64_t v0 = vb; v0 < ve; v0 += 2) {
    const int64_t nv = std::min<int64_t>(2, ve - v0);
    int64_t oh[2], ow[2];
    const uint32_t* base[2];
    for (int j = 0; j < 2; ++j) {
      const int64_t v = v0 + std::min<int64_t>(j, nv - 1);  // a lone last vector is computed twice, stored once
      oh[j] = v / g.rv;
      ow[j] = (v % g.rv) * kLanes;
      base[j] = xp + oh[j] * g.Ws + ow[j];
    }
    for (int64_t cb = 0; cb < a.cb16; cb += 2) {
      MDPS_AMX_ZERO(0);
      MDPS_AMX_ZERO(1);
      MDPS_AMX_ZERO(2);
      MDPS_AMX_ZERO(3);
      for (int64_t k = 0; k < a.kk; ++k) {
        const int64_t off = (k / g.s.KW) * g.Ws + k % g.s.KW;
        for (int64_t pb = 0; pb < a.cpb; ++pb) {
          const int64_t boff = off + pb * 16 * g.plane;
          MDPS_AMX_LOAD(6, base[0] + boff, pair_stride);
          MDPS_AMX_LOAD(7, base[1] + boff, pair_stride);
          MDPS_AMX_LOAD(4, wamx + a.a_tile(cb, k, pb), 64);
          MDPS_AMX_LOAD(5, wamx + a.a_tile(cb + 1, k, pb), 64);
          MDPS_AMX_DP(0, 4, 6);
          MDPS_AMX_DP(1, 4, 7);
          MDPS_AMX_DP(2, 5, 6);
          MDPS_AMX_DP(3, 5, 7);
        }
      }
      MDPS_AMX_STORE(0, &acc[0][0][0], 64);
      MDPS_AMX_STORE(1, &acc[1][0][0], 64);
      MDPS_AMX_STORE(2, &acc[2][0][0], 64);
      MDPS_AMX_STORE(3, &acc[3][0][0], 64);
      for (int t = 0; t < 4; ++t) {
        const int j = t & 1;
        if (j >= nv) continue;
        const int64_t lanes = std::min<int64_t>(kLanes, g.Wo - ow[j]);
        for (int r = 0; r < 16; ++r) {
          const int64_t co = (cb + (t >> 1)) * 16 + r;
          if (co >= g.s.Co) break;
          const float bias = b ? b[co] : 0.f;
          float* dst = y + co * P + oh[j] * g.Wo + ow[j];
          for (int64_t l = 0; l < lanes; ++l) dst[l] = acc[t][r][l] + bias;
        }
      }
    }
  }
  amx_release();
}
#else
void pixels_amx(const Geom&, const AmxGeom&, const uint32_t*, const uint32_t*, const float*, int64_t, int64_t,
                float*) {}
#endif

}  // namespace

void conv2d_bf16(const Bf16ConvShape& s, const float* X, const float* Wt, const float* B, float* Y) {
  MDPS_CHECK(has_avx512_bf16(), "--precision bf16 on the CPU needs AVX512-BF16; this CPU has none");
  const Geom g(s);
  MDPS_CHECK(g.Ho > 0 && g.Wo > 0 && s.Ci > 0, "conv2d (bf16): empty output for input [", s.N, ", ", s.Ci, ", ",
             s.H, ", ", s.W, "] and kernel ", s.KH, "x", s.KW, " padding ", s.p);
  const bool amx = has_amx_bf16() && s.Ci >= kAmxMinChannels && s.Co >= kAmxMinChannels;
  const AmxGeom ag(g);
  // Packed weights and offsets are the calling thread's; the workers only read them.
  std::vector<uint32_t> wpack(size_t(amx ? ag.weight_len() : g.co_blocks() * g.taps() * kCoT));
  std::vector<int64_t> off(size_t(amx ? 0 : g.taps()));
  if (amx) {
    pack_weights_amx(g, ag, Wt, wpack.data());
  } else {
    pack_weights(g, Wt, wpack.data());
    tap_offsets(g, off.data());
  }
  const int64_t P = g.Ho * g.Wo, in_len = s.Ci * s.H * s.W;
  // AMX reads whole blocks of 16 channel pairs: the planes past Cp stay zero.
  const int64_t padded = amx ? ag.padded_len(g) : g.padded_len();
  const int64_t step = amx ? 2 : kNV;  // pixel vectors per tile step
  auto run = [&](const uint32_t* xp, int64_t vb, int64_t ve, float* yn) {
    if (amx) pixels_amx(g, ag, xp, wpack.data(), B, vb, ve, yn);
    else pixels(g, xp, wpack.data(), off.data(), B, vb, ve, yn);
  };
  auto image = [&](int64_t n, bool split_pixels) {
    uint32_t* xp = buffer<uint32_t>(size_t(padded), 0);
    {
      trace::Scope ts(amx ? "conv.pad_bf16_amx" : "conv.pad_bf16", "kernel");
      if (ts.active()) ts.bytes(in_len * 4 + padded * 4);
      if (padded > g.padded_len()) std::memset(xp + g.padded_len(), 0, sizeof(uint32_t) * size_t(padded - g.padded_len()));
      pad_input(g, X + n * in_len, xp);
    }
    trace::Scope ts(amx ? "conv.amx_bf16" : "conv.direct_bf16", "kernel");
    if (ts.active()) ts.flops(2 * s.Co * P * s.Ci * s.KH * s.KW);
    float* yn = Y + n * s.Co * P;
    if (!split_pixels) {
      run(xp, 0, g.pixel_vectors(), yn);
      return;
    }
    const int64_t tiles = (g.pixel_vectors() + step - 1) / step;
    parallel_for(tiles, [&](int64_t tb, int64_t te) {
      run(xp, tb * step, std::min(g.pixel_vectors(), te * step), yn);
    });
  };
  const int nt = ThreadPool::global().threads();
  if (nt > 1 && s.N >= nt && (s.N % nt == 0 || s.N >= 4 * nt)) {
    parallel_for(s.N, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) image(n, false);
    });
  } else {
    for (int64_t n = 0; n < s.N; ++n) image(n, true);
  }
}

}  // namespace mdps::cpu
