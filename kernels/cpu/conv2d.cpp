// 2-D convolution with its data and weight gradients. Three ways to the
// forward product, by shape:
// - 3x3, stride 1, pad 1 on levels 8 or more wide (every 3x3 convolution of
//   the U-Net): Winograd F(2x2, 3x3)
//   (conv_winograd.h), 2.25 times fewer multiply-adds; also the fp32 data
//   gradient of the same shapes (the flipped kernel is one too);
// - other stride-1 convolutions on levels 8 or more wide, and unpadded stride-1 1x1
//   convolutions: the direct register-tiled kernel (conv_direct.h), no
//   im2col (a 1x1 reads the image itself, or a copy: aliased_pointwise); also
//   the fp32 data gradient on the same shapes (bf16's on levels 16 or more
//   wide, where its direct kernel runs), as the convolution of dy with the
//   flipped kernel;
// - otherwise im2col + sgemm per image, im2col in blocks of output rows that
//   fit in L2.
// The weight gradient: the direct kernel where the forward uses it, else
// im2col + sgemm per image.
//
// Batch invariance: an image's output bits never depend on the batch it is
// in (nor on the thread count). Every product is one image's, of a shape
// fixed by the layer alone, so OpenBLAS picks the same kernel for it in
// every batch: it has a separate small-matrix kernel, taken below about 1e6
// multiply-adds (OpenBLAS 0.3.21), whose sums differ from its blocked
// kernel's in the last bits. Products of several images side by side (once
// used on the 8x8 and 4x4 levels) changed shape with the batch, and with it
// the kernel. The calibrated protocol runs several images per U-Net call on
// this (tests/model/test_unet_batch_invariance.cpp).
//
// Under --precision bf16 (AMX or AVX512-BF16, conv_bf16.h) the forward's products
// and the direct data gradient's run on bfloat16 inputs: stride-1 levels 16 or
// more wide through the bf16 direct kernel, 1x1 convolutions as one flat row
// per image, the rest as im2col (on the 8x8 and 4x4 levels several images
// side by side, see image_group) followed by the same kernel on the col matrix as a
// 1x1 convolution: a pixel's sum there runs over its own column in an order
// that does not depend on the columns beside it, so grouping keeps the bits.
// The other gradients stay fp32.
//
// Threading: with enough images, the pool runs one image (or group) per
// worker; otherwise images go one by one and cpu::sgemm spreads each product's
// fixed blocks over the pool (the direct kernel splits the image's pixels).
// OpenBLAS itself always runs on one thread (cpu_util.h).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/conv_bf16.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/core/trace.h"
#include <cstring>

namespace mdps {

namespace {

struct ConvDims {
  int64_t N, Ci, H, W, Co, KH, KW, Ho, Wo;
  int s, p;
  int64_t rows() const { return Ci * KH * KW; }  // im2col rows
  int64_t cols() const { return Ho * Wo; }       // im2col columns
  bool direct() const { return KH == 1 && KW == 1 && s == 1 && p == 0; }
};

// The public op (engine/core/backend_ops.cpp) has checked that the shapes fit.
ConvDims conv_dims(const Shape& xs, const Tensor& w, ConvGeom g) {
  ConvDims d{xs[0], xs[1], xs[2], xs[3], w.dim(0), w.dim(2), w.dim(3), 0, 0, g.stride, g.pad};
  d.Ho = conv_out_size(d.H, d.KH, g);
  d.Wo = conv_out_size(d.W, d.KW, g);
  return d;
}

// Range of output positions o with 0 <= o*s - p + k < in.
inline void valid_range(int64_t out, int64_t in, int s, int p, int64_t k, int64_t& lo, int64_t& hi) {
  int64_t off = k - p;  // input index = o*s + off
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = in - off <= 0 ? 0 : (in - off + s - 1) / s;
  hi = std::min(hi, out);
  lo = std::min(lo, hi);
}

// col[(ci*KH+kh)*KW+kw, (oh-oh0)*Wo+ow] = x[ci, oh*s-p+kh, ow*s-p+kw] (0 outside)
// for the output rows oh0 <= oh < oh1; ld is col's row stride.
void im2col_rows(const float* x, const ConvDims& d, int64_t oh0, int64_t oh1, float* col, int64_t ld) {
  trace::Scope ts("conv.im2col", "kernel");
  const int64_t cols = (oh1 - oh0) * d.Wo;
  if (ts.active()) ts.bytes((d.Ci * d.H * d.W + d.rows() * cols) * int64_t(sizeof(float)));
  cpu::parallel_rows(d.rows(), cols, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t kw = r % d.KW, kh = (r / d.KW) % d.KH, ci = r / (d.KW * d.KH);
      const float* xc = x + ci * d.H * d.W;
      float* out = col + r * ld - oh0 * d.Wo;
      int64_t ow_lo, ow_hi, oh_lo, oh_hi;
      valid_range(d.Wo, d.W, d.s, d.p, kw, ow_lo, ow_hi);
      valid_range(d.Ho, d.H, d.s, d.p, kh, oh_lo, oh_hi);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        float* o = out + oh * d.Wo;
        if (oh < oh_lo || oh >= oh_hi) {
          std::memset(o, 0, sizeof(float) * size_t(d.Wo));
          continue;
        }
        const float* xr = xc + (oh * d.s - d.p + kh) * d.W + (kw - d.p);
        for (int64_t ow = 0; ow < ow_lo; ++ow) o[ow] = 0.f;
        if (d.s == 1) {
          if (ow_hi > ow_lo) std::memcpy(o + ow_lo, xr + ow_lo, sizeof(float) * size_t(ow_hi - ow_lo));
        } else {
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) o[ow] = xr[ow * d.s];
        }
        for (int64_t ow = ow_hi; ow < d.Wo; ++ow) o[ow] = 0.f;
      }
    }
  });
}

// The whole image's col matrix.
void im2col(const float* x, const ConvDims& d, float* col) { im2col_rows(x, d, 0, d.Ho, col, d.cols()); }

// Output rows per im2col block of the forward convolution: a block's col
// matrix stays within kColBlockBytes so that the product reads it from L2
// rather than memory (the 64x64 level's whole col is 4.7 MB per image).
constexpr int64_t kColBlockBytes = 768 * 1024;
int64_t col_block_rows(const ConvDims& d) {
  const int64_t row_bytes = d.rows() * d.Wo * int64_t(sizeof(float));
  return std::clamp<int64_t>(kColBlockBytes / std::max<int64_t>(1, row_bytes), 1, d.Ho);
}

// dx[ci, ...] = sum of the col entries that im2col read from it (dx overwritten).
void col2im(const float* col, const ConvDims& d, float* dx) {
  trace::Scope ts("conv.col2im", "kernel");
  if (ts.active()) ts.bytes((d.Ci * d.H * d.W + d.rows() * d.cols()) * int64_t(sizeof(float)));
  cpu::parallel_rows(d.Ci, d.KH * d.KW * d.cols(), [&](int64_t cb, int64_t ce) {
    for (int64_t ci = cb; ci < ce; ++ci) {
      float* xc = dx + ci * d.H * d.W;
      std::memset(xc, 0, sizeof(float) * size_t(d.H * d.W));
      for (int64_t kh = 0; kh < d.KH; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(d.Ho, d.H, d.s, d.p, kh, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < d.KW; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(d.Wo, d.W, d.s, d.p, kw, ow_lo, ow_hi);
          const float* c = col + ((ci * d.KH + kh) * d.KW + kw) * d.cols();
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            float* xr = xc + (oh * d.s - d.p + kh) * d.W + (kw - d.p);
            const float* cr = c + oh * d.Wo;
            if (d.s == 1) {
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) xr[ow] += cr[ow];
            } else {
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) xr[ow * d.s] += cr[ow];
            }
          }
        }
      }
    }
  });
}

// Runs body(n) for every image: in parallel over images when the batch splits
// evenly enough over the pool, else serially.
bool images_over_pool(int64_t N) {
  const int nt = ThreadPool::global().threads();
  return nt > 1 && N >= nt && (N % nt == 0 || N >= 4 * nt);
}

template <typename F>
void for_each_image(int64_t N, F&& body) {
  if (images_over_pool(N)) {
    parallel_for(N, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) body(n);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) body(n);
  }
}

// The direct kernel (conv_direct.h) for stride-1 convolutions with a real
// kernel on levels at least kDirectMinWidth wide. Measured on the 64x64
// U-Net's shapes (AMD EPYC Zen 5, AVX-512, 1 thread): 175-218 GFLOP/s
// against 65-97 for im2col + OpenBLAS sgemm, whose kernel for this CPU stops
// at half its FMA rate. On the 8x8 level a row is half a vector and the
// direct kernel is as fast as a product of several images side by side (86
// vs 89 GFLOP/s), which would depend on the batch (see the top of the file),
// so the fp32 forward takes it from 8 wide (kDirectForwardMinWidth); 4x4
// levels (32x32 models only) take the per-image product. The fp32 data
// gradient follows the forward (the 8x8 level in the flat layout, conv_tiles.h:
// there whole-vector rows would be half padding); the weight gradient keeps
// the 16-wide bound, a per-image product below it.
constexpr int64_t kDirectMinWidth = 16, kDirectForwardMinWidth = 8;
bool direct_pays(const ConvDims& d, int64_t min_width = kDirectMinWidth) {
  return d.s == 1 && d.KH * d.KW > 1 && d.Wo >= min_width;
}

// Unpadded stride-1 1x1 convolutions (direct()) take the direct kernel's flat
// layout, reading the image itself, except where its tiles thrash L1: with planes a
// multiple of 4 KiB apart every tap of a tile falls in the same few L1 sets
// (12 ways), so each channel block after the first reads the tile's input
// from L2 again. With many blocks (more than 64 output channels: the
// attention's qkv projection, 192 at 32x32) that cost more than a copy of the
// image with its planes a vector further apart, which the tiles then read
// (aliased_pointwise; it replaced per-image sgemm there: AMD Zen 5, 2 threads,
// batch 8, 64 -> 192 at 32x32 1.04 -> 0.60-0.66 ms, its data gradient 160 ->
// 64 0.87-0.92 -> 0.49-0.57); with few (32 or 64 channels at 32x32 and 64x64)
// reading the image itself is faster than the copy (0.19-0.21 against
// 0.20-0.23 ms at 64 -> 64, 32x32).
bool aliased_pointwise(const ConvDims& d) {
  return (d.cols() * int64_t(sizeof(float))) % 4096 == 0 && d.Ci > 12 && d.Co > 64;
}

// The stride-1 convolution whose output is d's input gradient (see
// conv2d_backward_data): dy as input, padded by KH - 1 - p.
ConvDims transposed_dims(const ConvDims& d) {
  ConvDims t = d;
  t.Ci = d.Co;
  t.H = d.Ho;
  t.W = d.Wo;
  t.Co = d.Ci;
  t.Ho = d.H;
  t.Wo = d.W;
  t.p = int(d.KH - 1 - d.p);
  return t;
}

// The direct kernel over the whole batch; `pointwise`: an unpadded 1x1
// convolution (the flat layout, conv_tiles.h, reading the image itself).
void conv2d_direct(const ConvDims& d, const float* X, const float* Wt, const float* B, float* Y,
                   bool pointwise = false) {
  const cpu::ConvTile tile = cpu::direct_conv_tile(d.Co, d.Ho, d.Wo, pointwise);
  const cpu::DirectConvGeom g = cpu::direct_conv_geom(d.Ci, d.H, d.W, d.Co, d.KH, d.KW, d.p, d.Ho, d.Wo, tile);
  // The tiles see one row of every pixel in the flat layout.
  const cpu::DirectConvGeom kg = tile.flat ? cpu::flat_kernel_geom(g) : g;
  const bool flat_image = tile.flat && cpu::flat_reads_image(g);
  // A 1x1 whose planes alias in L1 (aliased_pointwise) reads a copy whose
  // planes are `spread` floats apart; other flat 1x1s read the image itself.
  const bool spread_planes = flat_image && aliased_pointwise(d);
  const bool reads_image = flat_image && !spread_planes;
  const int64_t spread = d.cols() + g.vw;
  // The caller's scratch slots 2 and 3: the image loops below use 0 and 1.
  float* wpack = cpu::scratch(size_t(g.packed_weight_len()), 2);
  int64_t* off = cpu::scratch_offsets(size_t(g.taps()));
  {
    // Every call packs its weights (they change between training steps): on
    // the pool, the channel blocks split, rather than one thread while the
    // others wait (the 8x8 level's 295k floats took about a tenth of its call).
    trace::Scope ts("conv.pack", "kernel");
    if (ts.active()) ts.bytes(2 * g.packed_weight_len() * int64_t(sizeof(float)));
    const int64_t grain = std::max<int64_t>(1, cpu::kGrain / (g.taps() * g.cot));
    parallel_for(
        g.co_blocks(), [&](int64_t cb0, int64_t cb1) { cpu::pack_direct_weights(g, Wt, wpack, cb0, cb1); }, grain);
  }
  if (spread_planes)
    for (int64_t r = 0; r < g.taps(); ++r) off[r] = r * spread;
  else if (tile.flat)
    cpu::flat_tap_offsets(g, off);
  else
    cpu::direct_tap_offsets(g, off);
  const int64_t P = d.cols();
  auto image = [&](int64_t n, bool split_pixels) {
    const float* xn = X + n * d.Ci * d.H * d.W;
    const float* xp = xn;
    if (!reads_image) {
      const int64_t len = spread_planes ? d.Ci * spread : tile.flat ? cpu::flat_input_len(g) : g.padded_len();
      float* buf = cpu::scratch(size_t(len), 0);
      trace::Scope ts("conv.pad", "kernel");
      if (ts.active()) ts.bytes((d.Ci * d.H * d.W + len) * int64_t(sizeof(float)));
      if (spread_planes)
        for (int64_t ci = 0; ci < d.Ci; ++ci) std::memcpy(buf + ci * spread, xn + ci * P, sizeof(float) * size_t(P));
      else if (tile.flat)
        cpu::flat_direct_input(g, xn, buf);
      else
        cpu::pad_direct_input(g, xn, buf);
      xp = buf;
    }
    trace::Scope ts("conv.direct", "kernel");
    if (ts.active()) ts.flops(2 * d.Co * P * g.taps());
    float* yn = Y + n * d.Co * P;
    if (!split_pixels) {
      cpu::direct_conv_pixels(tile, kg, xp, wpack, off, B, 0, kg.pixel_vectors(), yn);
      return;
    }
    // One image at a time (a batch smaller than the pool): split its pixels.
    const int64_t tiles = (kg.pixel_vectors() + tile.nv - 1) / tile.nv;
    parallel_for(tiles, [&](int64_t tb, int64_t te) {
      cpu::direct_conv_pixels(tile, kg, xp, wpack, off, B, tb * tile.nv, std::min(kg.pixel_vectors(), te * tile.nv),
                              yn);
    });
  };
  if (images_over_pool(d.N)) {
    parallel_for(d.N, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) image(n, false);
    });
  } else {
    for (int64_t n = 0; n < d.N; ++n) image(n, true);
  }
}

// Winograd F(2x2, 3x3) (conv_winograd.h) for the fp32 3x3 stride-1 pad-1
// convolutions on levels at least kWinogradMinWidth wide: 2.25 times fewer
// multiply-adds than the direct kernel. Measured (AMD Zen 5, 2 threads, batch
// 8, hot caches, ms per call, direct -> Winograd): 32->32 at 64x64 1.70 ->
// 1.42, 64->64 at 64x64 6.4 -> 4.2, 96->96 at 32x32 3.4 -> 2.1, 96->96 at
// 16x16 0.81 -> 0.49-0.56, 128->128 at 8x8 0.47 -> 0.36 and 256->128 1.13 ->
// 0.53-0.61 (the 8x8 level's images side by side, 3 a band: alone, one image's
// 16 tiles made the products' register tile a single vector, and the level
// was slower than the direct kernel, 0.55 -> 0.69).
constexpr int64_t kWinogradMinWidth = 8;
bool winograd_pays(const ConvDims& d) {
  return cpu::winograd_enabled() && d.KH == 3 && d.KW == 3 && d.s == 1 && d.p == 1 && d.Wo >= kWinogradMinWidth &&
         d.Ho >= 2;
}

// The Winograd convolution over the whole batch: images over the pool, or
// one image at a time with its bands of tile rows over the pool. EB ([N, Co])
// and R (laid out as Y), either may be null: the epilogue of
// Backend::conv2d_fused (winograd_output_transform).
//
// The weights are transformed on every call, into scratch that the products
// then read hot. Kept across calls instead (tried: a cache keyed by a version
// of the weights' storage), the forward was no faster (AMD Zen 5, 2 threads,
// 64x64 U-Net, batch 8, one process alternating call by call: 1.003 and
// 1.014 of this): a kept U is 16/9 the size of the weights and came from
// memory for every layer, and it held 60 MB more.
void conv2d_winograd(const ConvDims& d, const float* X, const float* Wt, const float* B, float* Y,
                     const float* EB = nullptr, const float* R = nullptr) {
  const cpu::WinogradGeom g{d.Ci, d.H, d.W, d.Co, d.Ho, d.Wo};
  // The caller's scratch slot 2 (conv2d_backward_data holds 3); the bands use 0 and 1.
  float* U = cpu::scratch(size_t(g.packed_weight_len()), 2);
  {
    trace::Scope ts("conv.winograd_pack", "kernel");
    if (ts.active()) ts.bytes((d.Co * d.Ci * 9 + g.packed_weight_len()) * int64_t(sizeof(float)));
    const int64_t grain = std::max<int64_t>(1, cpu::kGrain / (16 * d.Ci * cpu::kWinoCT));
    parallel_for(
        g.co_blocks(), [&](int64_t b0, int64_t b1) { cpu::winograd_pack_weights(g, Wt, U, b0, b1); }, grain);
  }
  const bool over_images = images_over_pool(d.N);
  const int64_t Th = g.tile_rows(), Tw = g.tile_cols();
  // A band: the tile rows [ty0, ty1) of the images [n0, n1), side by side.
  auto band = [&](int64_t n0, int64_t n1, int64_t ty0, int64_t ty1, int64_t ldv) {
    const int64_t nt = (ty1 - ty0) * Tw, vlen = 16 * cpu::winograd_v_stride(g, ldv);
    float* V = cpu::scratch(size_t(vlen + 4 * cpu::kAttnW), 0);
    float* M = cpu::scratch(size_t(16 * cpu::winograd_m_stride(g, ldv)), 1);
    trace::Scope ts("conv.winograd", "kernel");
    if (ts.active())  // the direct count of the band's output rows
      ts.flops((n1 - n0) * 2 * d.Co * d.Ci * 9 * (std::min(d.Ho, 2 * ty1) - 2 * ty0) * d.Wo);
    cpu::winograd_zero_tail(g, ldv, (n1 - n0) * nt, V);
    for (int64_t n = n0; n < n1; ++n)
      cpu::winograd_input_transform(g, X + n * d.Ci * d.H * d.W, ty0, ty1, ldv, V + (n - n0) * nt);
    cpu::winograd_products(g, U, V, ldv, M);
    const int64_t plane = d.Co * d.Ho * d.Wo;
    for (int64_t n = n0; n < n1; ++n)
      cpu::winograd_output_transform(g, M + (n - n0) * nt, ldv, ty0, ty1, B, Y + n * plane, V + vlen,
                                     EB ? EB + n * d.Co : nullptr, R ? R + n * plane : nullptr);
  };
  const int64_t group = cpu::winograd_group(g);
  if (over_images && group > 1) {  // narrow levels: whole images, several a band
    parallel_for(d.N, [&](int64_t b, int64_t e) {
      const int64_t bands = (e - b + group - 1) / group;  // as even as can be: 4 images make 2 + 2, not 3 + 1
      for (int64_t i = 0; i < bands; ++i) {
        const int64_t n0 = b + (e - b) * i / bands, n1 = b + (e - b) * (i + 1) / bands;
        band(n0, n1, 0, Th, cpu::winograd_ldv(g, Th, n1 - n0));
      }
    });
    return;
  }
  int64_t rows = group > 1 ? Th : cpu::winograd_band_rows(g);
  if (!over_images && group == 1) {  // enough bands to keep every thread busy
    const int64_t nt = ThreadPool::global().threads();
    rows = std::clamp<int64_t>((Th + 2 * nt - 1) / (2 * nt), 1, rows);
  }
  const int64_t ldv = cpu::winograd_ldv(g, rows), bands = (Th + rows - 1) / rows;
  if (over_images) {
    parallel_for(d.N, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n)
        for (int64_t bi = 0; bi < bands; ++bi) band(n, n + 1, bi * rows, std::min(Th, (bi + 1) * rows), ldv);
    });
  } else {
    for (int64_t n = 0; n < d.N; ++n)
      parallel_for(bands, [&](int64_t b, int64_t e) {
        for (int64_t bi = b; bi < e; ++bi) band(n, n + 1, bi * rows, std::min(Th, (bi + 1) * rows), ldv);
      });
  }
}

// Images per product of the forward convolution. The 8x8 and 4x4 levels give
// a per-image product only 64 or 16 columns, too narrow for sgemm to reach its
// speed; `group` images side by side in one col matrix widen it, as long as
// every pool worker still gets a group.
constexpr int64_t kGroupCols = 256;
int64_t image_group(const ConvDims& d) {
  const int64_t nt = ThreadPool::global().threads();
  int64_t best = 1;
  for (int64_t g = 2; g <= d.N && g * d.cols() <= kGroupCols; ++g)
    if (d.N % g == 0 && d.N / g >= std::min<int64_t>(nt, d.N)) best = g;
  return best;
}

// The forward convolution with bf16 products (see the top of the file).
void conv2d_bf16_any(const ConvDims& d, const float* X, const float* Wt, const float* B, float* Y) {
  if (d.s == 1 && d.Wo >= kDirectMinWidth) {
    cpu::conv2d_bf16({d.N, d.Ci, d.H, d.W, d.Co, d.KH, d.KW, d.p}, X, Wt, B, Y);
    return;
  }
  if (d.direct()) {  // 1x1, unpadded: each image's pixels are one row
    cpu::conv2d_bf16({d.N, d.Ci, 1, d.H * d.W, d.Co, 1, 1, 0}, X, Wt, B, Y);
    return;
  }
  const int64_t group = image_group(d), K = d.rows(), P = d.cols(), cols = group * P;
  for_each_image(d.N / group, [&](int64_t gi) {
    float* col = cpu::scratch(size_t(K * cols), 0);
    float* out = group > 1 ? cpu::scratch(size_t(d.Co * cols), 1) : Y + gi * d.Co * P;
    for (int64_t g = 0; g < group; ++g)
      im2col_rows(X + (gi * group + g) * d.Ci * d.H * d.W, d, 0, d.Ho, col + g * P, cols);
    // col [K, cols] is a one-row image of K channels; the weight [Co, K] its 1x1 kernel.
    cpu::conv2d_bf16({1, K, 1, cols, d.Co, 1, 1, 0}, col, Wt, group > 1 ? nullptr : B, out);
    if (group == 1) return;
    for (int64_t g = 0; g < group; ++g) {
      float* yn = Y + (gi * group + g) * d.Co * P;
      for (int64_t co = 0; co < d.Co; ++co) {
        const float* o = out + co * cols + g * P;
        const float bias = B ? B[co] : 0.f;
        for (int64_t p = 0; p < P; ++p) yn[co * P + p] = o[p] + bias;
      }
    }
  });
}

}  // namespace

void CpuBackend::conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  ConvDims d = conv_dims(x.shape(), w, g);
  const float* X = x.data();
  const float* Wt = w.data();
  const float* B = b ? b->data() : nullptr;
  float* Y = y.data();
  if (precision_ == Precision::BF16) {
    conv2d_bf16_any(d, X, Wt, B, Y);
    return;
  }
  const int64_t K = d.rows(), P = d.cols();
  if (winograd_pays(d)) {
    conv2d_winograd(d, X, Wt, B, Y);
    return;
  }
  if (direct_pays(d, kDirectForwardMinWidth)) {
    conv2d_direct(d, X, Wt, B, Y);
    return;
  }
  if (d.direct()) {  // 1x1: the direct kernel's flat layout on the image (or a copy)
    conv2d_direct(d, X, Wt, B, Y, true);
    return;
  }
  // Everything else (strided, narrow levels): im2col + sgemm per image.
  const int64_t block = col_block_rows(d);
  for_each_image(d.N, [&](int64_t n) {
    const float* xn = X + n * d.Ci * d.H * d.W;
    float* yn = Y + n * d.Co * P;
    if (B)
      for (int64_t co = 0; co < d.Co; ++co) std::fill(yn + co * P, yn + (co + 1) * P, B[co]);
    float* buf = cpu::scratch(size_t(K * std::min(block, d.Ho) * d.Wo));
    for (int64_t oh0 = 0; oh0 < d.Ho; oh0 += block) {
      const int64_t oh1 = std::min(d.Ho, oh0 + block), cols = (oh1 - oh0) * d.Wo;
      im2col_rows(xn, d, oh0, oh1, buf, cols);
      trace::Scope ts("conv.sgemm", "kernel");
      if (ts.active()) ts.num("M", double(d.Co)).num("N", double(cols)).num("K", double(K)).flops(2 * d.Co * cols * K);
      cpu::sgemm(false, false, d.Co, cols, K, 1.f, Wt, K, buf, cols, B ? 1.f : 0.f,
                 yn + oh0 * d.Wo, P);
    }
  });
}

// Winograd's output transform adds the image bias and the residual as it
// stores (conv_winograd.h); every other path runs the separate ops after the
// convolution (Backend's default), which sum in the same order: the same bits.
void CpuBackend::conv2d_fused_impl(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                                   const Tensor* residual, Tensor& y, ConvGeom g) {
  const ConvDims d = conv_dims(x.shape(), w, g);
  if (precision_ == Precision::BF16 || !winograd_pays(d)) {
    Backend::conv2d_fused_impl(x, w, b, image_bias, residual, y, g);
    return;
  }
  conv2d_winograd(d, x.data(), w.data(), b ? b->data() : nullptr, y.data(), image_bias ? image_bias->data() : nullptr,
                  residual ? residual->data() : nullptr);
}

void CpuBackend::conv2d_backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  ConvDims d = conv_dims(dx.shape(), w, g);
  const float* DY = dy.data();
  const float* Wt = w.data();
  float* DX = dx.data();
  const int64_t K = d.rows(), P = d.cols();
  // The fp32 direct kernel where the fp32 forward takes it (levels 8 wide, 1x1
  // kernels); under bf16 its direct kernel on levels 16 wide, elsewhere the
  // fp32 path bit for bit.
  const ConvDims t = transposed_dims(d);
  const bool flippable = d.s == 1 && d.KH == d.KW && d.p <= d.KH - 1;
  const bool bf16 = precision_ == Precision::BF16 && flippable && direct_pays(t);
  const bool fp32 = !bf16 && flippable && (direct_pays(t, kDirectForwardMinWidth) || t.direct());
  if (bf16 || fp32) {
    // dx is the stride-1 convolution of dy, padded by KH - 1 - p, with the
    // kernel flipped in both directions and its channel axes swapped.
    float* wt = cpu::scratch(size_t(d.Co * K), 3);
    for (int64_t co = 0; co < d.Co; ++co)
      for (int64_t ci = 0; ci < d.Ci; ++ci)
        for (int64_t kh = 0; kh < d.KH; ++kh)
          for (int64_t kw = 0; kw < d.KW; ++kw)
            wt[size_t(((ci * d.Co + co) * d.KH + (d.KH - 1 - kh)) * d.KW + (d.KW - 1 - kw))] =
                Wt[((co * d.Ci + ci) * d.KH + kh) * d.KW + kw];
    if (bf16)
      cpu::conv2d_bf16({t.N, t.Ci, t.H, t.W, t.Co, t.KH, t.KW, t.p}, DY, wt, nullptr, DX);
    else if (winograd_pays(t))
      conv2d_winograd(t, DY, wt, nullptr, DX);
    else
      conv2d_direct(t, DY, wt, nullptr, DX, t.direct());
    return;
  }
  // Strided convolutions, non-square kernels, padding past KH - 1 (1x1 ones always
  // take the direct kernel above):
  // sgemm into a col matrix, then col2im.
  for_each_image(d.N, [&](int64_t n) {
    const float* dyn = DY + n * d.Co * P;
    float* dxn = DX + n * d.Ci * d.H * d.W;
    float* col = cpu::scratch(size_t(K * P));
    {
      trace::Scope ts("conv.sgemm_data", "kernel");
      if (ts.active()) ts.num("M", double(K)).num("N", double(P)).num("K", double(d.Co)).flops(2 * d.Co * P * K);
      cpu::sgemm(true, false, K, P, d.Co, 1.f, Wt, K, dyn, P, 0.f, col, P);
    }
    col2im(col, d, dxn);
  });
}

void CpuBackend::conv2d_backward_weight_impl(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  ConvDims d = conv_dims(x.shape(), dw, g);
  const float* X = x.data();
  const float* DY = dy.data();
  const int64_t K = d.rows(), P = d.cols();
  const int64_t wsize = d.Co * K;

  // dW = sum_n dY_n col_n^T. Each task owns a contiguous range of images and
  // its own partial sum; partials are added in task order, so the result
  // depends only on the thread count.
  const int nt = ThreadPool::global().threads();
  const int64_t tasks = (nt > 1 && d.N >= nt) ? nt : 1;
  std::vector<float> partial(size_t(tasks > 1 ? (tasks - 1) * wsize : 0));
  // Stride-1 levels 16 or more wide: the direct kernel (conv_direct.h).
  const bool direct_kernel = direct_pays(d);
  const cpu::DirectConvGeom dg{d.Ci, d.H, d.W, d.Co, d.KH, d.KW, d.p, d.Ho, d.Wo};
  int64_t* off = nullptr;
  if (direct_kernel) {
    off = cpu::scratch_offsets(size_t(cpu::direct_wgrad_layout(dg).tap_blocks * cpu::kWgRT));
    cpu::direct_wgrad_tap_offsets(dg, off);
  }
  // acc (+)= dY_n col_n^T through im2col + sgemm.
  auto weight_grad_sgemm = [&](int64_t n, bool first, float* acc) {
    const float* xn = X + n * d.Ci * d.H * d.W;
    const float* col = xn;
    if (!d.direct()) {
      float* buf = cpu::scratch(size_t(K * P));
      im2col(xn, d, buf);
      col = buf;
    }
    trace::Scope ts("conv.sgemm_weight", "kernel");
    if (ts.active()) ts.num("M", double(d.Co)).num("N", double(K)).num("K", double(P)).flops(2 * d.Co * P * K);
    cpu::sgemm(false, true, d.Co, K, P, 1.f, DY + n * d.Co * P, P, col, P, first ? 0.f : 1.f, acc, K);
  };
  auto run_task = [&](int64_t t) {
    float* acc = t == 0 ? dw.data() : partial.data() + (t - 1) * wsize;
    int64_t nb = d.N * t / tasks, ne = d.N * (t + 1) / tasks;
    if (nb == ne) std::fill(acc, acc + wsize, 0.f);
    for (int64_t n = nb; n < ne; ++n) {
      if (!direct_kernel) {
        weight_grad_sgemm(n, n == nb, acc);
        continue;
      }
      float* xp = cpu::scratch(size_t(dg.padded_len()), 0);
      float* dyp = cpu::scratch(size_t(cpu::direct_wgrad_dy_len(dg)), 1);
      {
        trace::Scope ts("conv.pad", "kernel");
        if (ts.active()) ts.bytes((d.Ci * d.H * d.W + dg.padded_len()) * int64_t(sizeof(float)));
        cpu::pad_direct_input(dg, X + n * d.Ci * d.H * d.W, xp);
        cpu::pad_direct_dy(dg, DY + n * d.Co * P, dyp);
      }
      trace::Scope ts("conv.direct_weight", "kernel");
      if (ts.active()) ts.flops(2 * d.Co * P * K);
      // Inside a pool task this runs inline; with one task the pool splits the channel blocks.
      parallel_for(cpu::direct_wgrad_layout(dg).co_blocks, [&](int64_t cb0, int64_t cb1) {
        cpu::direct_wgrad_image(dg, xp, dyp, off, cb0, cb1, n != nb, acc);
      });
    }
  };
  if (tasks > 1) {
    parallel_for(tasks, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) run_task(t);
    });
    float* DW = dw.data();
    cpu::parallel_elems(wsize, [&](int64_t b, int64_t e) {
      for (int64_t t = 1; t < tasks; ++t) {
        const float* p = partial.data() + (t - 1) * wsize;
        for (int64_t i = b; i < e; ++i) DW[i] += p[i];
      }
    });
  } else {
    run_task(0);
  }

  if (db) {
    float* DB = db->data();
    cpu::parallel_rows(d.Co, d.N * P, [&](int64_t cb, int64_t ce) {
      for (int64_t co = cb; co < ce; ++co) {
        double s = 0;
        for (int64_t n = 0; n < d.N; ++n) s += cpu::sum_d(DY + (n * d.Co + co) * P, P);
        DB[co] = float(s);
      }
    });
  }
}

}  // namespace mdps
