// Which vector width and register tile the fp32 direct convolution
// (conv_direct.h) uses, chosen at run time from the CPU it runs on and the
// convolution's shape.
//
// The vector unit: the widest one that this build compiled tiles for, that
// cpuid reports (with the OS saving its registers) and that no cap lowers:
// AVX-512 (32 registers of 16 floats), AVX2+FMA (16 of 8), else SSE-class
// (16 of 4). MDPS_CPU_ISA=avx2|sse in the environment caps it (to compare the
// paths on one machine, or play an older CPU); tests cap it through
// cap_vector_isa.
//
// The tile: a number of output channels by a number of pixel vectors, so
// that the accumulators plus one vector per pixel column fill the registers:
// - AVX-512: 24 accumulators, 8 channels x 3 vectors (3 loads and 8 broadcast
//   FMAs per tap), or 6 x 4 or 4 x 6 where they pad fewer channels (Co 12, 3).
//   Measured on an Intel Xeon (Emerald Rapids), one
//   thread: 8x3 at 73-92% of the FMA peak on the 64x64 U-Net's wide levels,
//   6x4 at 65-80%; AMD's Zen 4/5 take the same table, not measured there.
// - AVX2: 12 accumulators, 4 x 3 of 8 floats; SSE: 4 x 3 of 4.
// Every tile sums each output over the taps in the same order with one
// accumulator per lane, so all tiles give the same bits: the choice changes
// the speed, never the result (tests/kernels/test_cpu_ops.cpp checks it).
#pragma once
#include <cstdint>
#include <string>

namespace mdps::cpu {

enum class VectorIsa { sse = 0, avx2 = 1, avx512 = 2 };
const char* vector_isa_name(VectorIsa isa);

// The vector unit the kernels use (see above); MDPS_CPU_ISA is read once.
VectorIsa vector_isa();
// Test hook: caps vector_isa() at `cap` until called again with VectorIsa::avx512.
void cap_vector_isa(VectorIsa cap);

// A register tile: `width` floats per vector, `co` output channels by `nv` vectors of pixels.
struct ConvTile {
  int width, co, nv;
};

// The tile for a stride-1 convolution with Co output channels and output rows
// Wo wide (the direct kernel runs on rows of 16 or more, conv2d.cpp; every such
// width takes the same tile today).
ConvTile direct_conv_tile(int64_t Co, int64_t Wo);

// One line for `mdps bench`: the unit and its tiles.
std::string direct_conv_tiles_description();

}  // namespace mdps::cpu
