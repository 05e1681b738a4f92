// Stride-1 2-D convolution with its products on bfloat16 inputs and float32
// accumulation, through AMX tiles (tdpbf16ps) where the CPU has them and both
// channel counts are at least 16, else AVX512-BF16 (vdpbf16ps): the CPU's
// `--precision bf16`.
//
// Why two: on the Xeon (Emerald Rapids class) this was written on,
// vdpbf16ps runs at half the FP32 FMA rate (bench peak: 231 against 466
// GFLOP/s on 2 threads), so the AVX512-BF16 kernel is slower than the fp32
// direct kernel (0.5-0.8x), while one tdpbf16ps does a 16x16x32 product:
// 4-5.6x the fp32 kernel on the U-Net's wide levels (1 thread, shared
// machine). AMD Zen 4/5 have AVX512-BF16 but no AMX.
//
// y[n, co, oh, ow] = b[co] + sum over (ci, kh, kw) of bf16(w[co, ci, kh, kw]) *
// bf16(x[n, ci, oh - p + kh, ow - p + kw]) (zero outside the image), where
// bf16() rounds to nearest, ties to even (kernels/shared/bf16.h, the rounding
// the CUDA casts use). Products of two bfloat16 are exact in float32; the sums
// are float32, in an order of their own (pairs of input channels per
// instruction), so the result equals a float32 convolution of the rounded
// inputs up to accumulation order. Denormal bf16 inputs count as zero (the
// instruction's DAZ).
//
// Layout (both paths): the direct kernel of conv_direct.h with input
// channels taken in pairs. The padded image holds, for each pixel and channel pair, one 32-bit
// word of two bf16 (even channel in the low half); the packed weights hold the
// matching (w[co, 2c], w[co, 2c+1]) words, broadcast into every lane. A tile of
// 6 output channels by 4 vectors of 16 output pixels costs 4 loads and 6
// broadcasts for 24 vdpbf16ps per channel pair and tap: twice the float32
// kernel's multiply-adds per instruction. An odd channel count gets a zero
// channel. The AMX path reads the same image 16 channel pairs at a time as
// tile rows (conv_bf16.cpp says how). Any stride-1 geometry works, including 1x1 kernels and a [K, 1,
// cols] im2col matrix (how conv2d.cpp runs the strided and narrow levels).
//
// Inputs and weights are converted on every call (O(input + weight), small
// beside the O(input * Co * KH * KW) product), so nothing is cached and a
// changed weight is always seen. Threads: over images when the batch fills
// the pool, else over each image's pixel tiles; from inside a parallel region
// it runs on the calling thread.
//
// Requires has_avx512_bf16() (kernels/cpu/cpu_features.h; throws otherwise);
// AMX is used where has_amx_bf16(). The kernels are compiled for those
// instruction sets whatever -march the build used and run nowhere else.
#pragma once
#include <cstdint>

namespace mdps::cpu {

struct Bf16ConvShape {
  int64_t N, Ci, H, W, Co, KH, KW, p;
  int64_t Ho() const { return H + 2 * p - KH + 1; }
  int64_t Wo() const { return W + 2 * p - KW + 1; }
};

// Y [N, Co, Ho, Wo] (overwritten) from X [N, Ci, H, W], Wt [Co, Ci, KH, KW]
// and B [Co] (may be null).
void conv2d_bf16(const Bf16ConvShape& s, const float* X, const float* Wt, const float* B, float* Y);

}  // namespace mdps::cpu
