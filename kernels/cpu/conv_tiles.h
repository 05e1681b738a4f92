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
// - AVX-512: 24 accumulators, 6 channels x 4 vectors, or 4 x 6 where the
//   channel count is a multiple of 4 but not of 6 (32 channels: 6 x 4 computes
//   36, a ninth of the work thrown away); rows of 8 to 15 pixels use vectors
//   of 8 (a 16-float vector would be half empty), 6 x 4 of them.
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

// The tile for a stride-1 convolution with Co output channels and output rows Wo wide.
ConvTile direct_conv_tile(int64_t Co, int64_t Wo);

// One line for `mdps bench`: the unit and its tiles.
std::string direct_conv_tiles_description();

}  // namespace mdps::cpu
