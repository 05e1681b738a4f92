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
//   FMAs per tap), or 6 x 4 or 4 x 6 where they pad fewer channels (Co 12, 3),
//   or 8 x 2 where the image's pixel vectors split evenly in twos (the 8x8
//   level's 4).
//   Measured on an Intel Xeon (Emerald Rapids), one
//   thread: 8x3 at 73-92% of the FMA peak on the 64x64 U-Net's wide levels,
//   6x4 at 65-80%; AMD's Zen 4/5 take the same table, not measured there
//   tile by tile (on a Zen 5, 2 threads, the 64x64 U-Net's forward
//   convolutions run at 76% of the FMA peak with it: bench/RESULTS.md).
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

// A register tile: `width` floats per vector, `co` output channels by `nv`
// vectors of pixels, over one of two input layouts (conv_direct.h):
// - rows (flat = false): the zero-padded image, each output row in whole
//   vectors (a row of Wo pixels takes ceil(Wo / width) vectors);
// - flat (flat = true): the output's pixels in one run, the vectors crossing
//   rows, from KW copies of the padded image shifted by kw with rows exactly Wo
//   wide (an unpadded 1x1 convolution reads the image itself).
struct ConvTile {
  int width, co, nv;
  bool flat = false;
};

// The tile and layout for a stride-1 convolution with Co output channels and an
// output of Ho x Wo pixels; `pointwise`: a 1x1 kernel without padding (always
// flat: no copy of the image). Otherwise the flat layout where whole-vector
// rows would compute more than a quarter of padding lanes (Wo 8 on AVX-512:
// half of every vector), rows elsewhere (the flat copy is KW times the image).
// The register tile: the one with the fewest estimated cycles over the image's
// pixel vectors and padded channel blocks (a tile of c channels by n vectors
// costs the most of c * n FMAs and c + n loads, two of each a cycle, and n
// input vectors from L2 at 2.5 cycles each, per tap), the earlier of 8x3,
// 6x4, 4x6, 8x2 unless a later one saves more than 2%.
ConvTile direct_conv_tile(int64_t Co, int64_t Ho, int64_t Wo, bool pointwise = false);
// One line for `mdps bench`: the unit and its tiles.
std::string direct_conv_tiles_description();

}  // namespace mdps::cpu
