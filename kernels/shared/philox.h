// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11; the Random123 library's constants).
//
// Every draw is a pure function of (seed, stream, index), so a CUDA thread can
// compute its own element without any shared generator state, and a run can be
// resumed from a saved index. All arithmetic lives in MDPS_HD functions that the
// CPU code and the CUDA kernels both compile.
//
// Addressing:
//   key     = {seed_lo, seed_hi}                       (the 64-bit seed)
//   counter = {block_lo, block_hi, stream_lo, stream_hi}
//   one Philox call (a "block") gives 4 uint32 lanes.
//   bits_at(seed, stream, i)     = lane i % 4 of block i / 4
//   uniform_at(seed, stream, i)  = u01(bits_at(seed, stream, i))
//   normal_at(seed, stream, i)   : block i / 4 gives 4 uniforms u0..u3; the pair
//       (u0, u1) gives normals 0 and 1, the pair (u2, u3) normals 2 and 3, by
//       Box-Muller: r = sqrt(-2 ln ua), z_even = r cos(2 pi ub), z_odd = r sin(2 pi ub).
//   Element indices are 64-bit, so a stream holds 2^64 elements (blocks < 2^62).
//   Uniforms, integers and normals of the same (seed, stream) read the same
//   blocks, so callers needing several kinds use different streams.
//
// Host/device agreement: the Philox bits and the uniforms are bit-identical on
// CPU and CUDA (integer ops and exact float conversions only). The normals use
// logf/sqrtf/cosf/sinf; glibc and CUDA's non-fast-math versions agree to within
// an ulp or two, not bit for bit (and nvcc contracts a*b+c into fma unless
// --fmad=false), so CPU-vs-CUDA comparisons of normals need a small tolerance.
#pragma once
#include "engine/core/common.h"
#include <cmath>
#include <cstdint>

namespace mdps::philox {

constexpr uint32_t kM0 = 0xD2511F53u;
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kW1 = 0xBB67AE85u;  // sqrt(3) - 1

struct U32x4 {
  uint32_t v[4];
};

MDPS_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

MDPS_HD U32x4 philox4x32_10(const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kM0, c0, hi0, lo0);
    mulhilo32(kM1, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  U32x4 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

// The block `block` of stream `stream` under `seed` (see the addressing above).
MDPS_HD U32x4 block_at(uint64_t seed, uint64_t stream, uint64_t block) {
  uint32_t ctr[4] = {uint32_t(block), uint32_t(block >> 32), uint32_t(stream), uint32_t(stream >> 32)};
  uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
  return philox4x32_10(ctr, key);
}

// u -> (2k + 1) * 2^-24 with k = u >> 9, i.e. the midpoints of 2^23 equal
// cells of [0, 1]. Every value is exact in float (2k + 1 < 2^24), symmetric
// about 1/2, and lies in [2^-24, 1 - 2^-24]: never 0 (so ln is finite) nor 1.
MDPS_HD float u01(uint32_t u) {
  return float(int32_t(((u >> 9) << 1) | 1u)) * 5.9604644775390625e-8f;  // 2^-24
}

// Box-Muller on one pair of uniforms; z0 = r cos(theta), z1 = r sin(theta).
MDPS_HD void box_muller(float ua, float ub, float& z0, float& z1) {
  const float two_pi = 6.2831853071795864769f;
  float r = sqrtf(-2.0f * logf(ua));
  float theta = two_pi * ub;
  z0 = r * cosf(theta);
  z1 = r * sinf(theta);
}

// The four normals of block `block` (normals 4*block .. 4*block + 3).
MDPS_HD void normals_of_block(uint64_t seed, uint64_t stream, uint64_t block, float z[4]) {
  U32x4 b = block_at(seed, stream, block);
  box_muller(u01(b.v[0]), u01(b.v[1]), z[0], z[1]);
  box_muller(u01(b.v[2]), u01(b.v[3]), z[2], z[3]);
}

MDPS_HD uint32_t bits_at(uint64_t seed, uint64_t stream, uint64_t index) {
  return block_at(seed, stream, index >> 2).v[index & 3];
}

MDPS_HD float uniform_at(uint64_t seed, uint64_t stream, uint64_t index) {
  return u01(bits_at(seed, stream, index));
}

MDPS_HD float normal_at(uint64_t seed, uint64_t stream, uint64_t index) {
  U32x4 b = block_at(seed, stream, index >> 2);
  unsigned pair = unsigned(index & 3) >> 1;
  float z0, z1;
  box_muller(u01(b.v[2 * pair]), u01(b.v[2 * pair + 1]), z0, z1);
  return (index & 1) ? z1 : z0;
}

// An integer in [0, n) for 0 < n <= 2^32: the high word of bits * n. The bias
// is at most n / 2^32 per value (2e-7 for n = 1000 timesteps).
MDPS_HD uint64_t uniform_int_at(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
  return (uint64_t(bits_at(seed, stream, index)) * n) >> 32;
}

}  // namespace mdps::philox
