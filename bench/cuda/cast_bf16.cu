// Playground: the casts of --precision bf16, float32 -> bfloat16 (round to
// nearest even, NaN kept quiet; the products' inputs) and bfloat16 -> float32
// (cuDNN's outputs back), over a U-Net feature map [8, 128, 64, 64].
// Both directions, each with:
//   version 1  the production kernels (kernels/cuda/cast_bf16_kernel.cuh): one
//              element per thread, grid-stride (2-byte stores or loads)
//   version 2  four elements per thread: a float4 and two packed bf16x2 words
//              (one 8-byte uint2 store or load); the n % 4 tail by version 1
//   version 3  eight elements per thread: two float4s and one 16-byte uint4 of
//              four bf16x2 words; the n % 8 tail by version 1
// Versions 2 and 3 use kernels/shared/bf16.h's bf16_from_float / float_from_bf16 per
// element, so they round exactly as the production kernels.
// CPU reference: kernels/shared/bf16.h's host cast (the same MDPS_HD functions); the
// match must be bit for bit, as in tests/kernels/test_cuda_kernels_emu.cpp, so the
// outputs are compared as bits (a NaN included), not by bench::validate. The
// inputs are random floats in [-1e4, 1e4] (the test's range) after a few
// special values: ties to even (both ways), 0x3f808001 / 0x3f807fff, -0, the
// smallest denormal, FLT_MAX (rounds to inf), +-inf and NaNs (quietened).
// Launch geometry: elementwise_blocks(work items, block) x block, swept.
//   ./cast_bf16 [VERSION] [--peak-gbs GBS] [--n 4194304]
#include "bench/cuda/common.h"
#include "kernels/shared/bf16.h"
#include "kernels/shared/float_bits.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/cast_bf16_kernel.cuh"

namespace {

using mdps::bf16_from_float;
using mdps::float_from_bf16;

// Two bfloat16s in one 32-bit word, the first at the lower address (little-endian).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(bf16_from_float(lo)) | (uint32_t(bf16_from_float(hi)) << 16);
}
__device__ __forceinline__ float2 unpack_bf16x2(uint32_t w) {
  return make_float2(float_from_bf16(uint16_t(w & 0xffffu)), float_from_bf16(uint16_t(w >> 16)));
}

// Version 2: n4 groups of four.
__global__ void float_to_bf16_x4(const float4* __restrict__ x, uint2* __restrict__ y, int64_t n4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 v = x[i];
    y[i] = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
  }
}
__global__ void bf16_to_float_x4(const uint2* __restrict__ x, float4* __restrict__ y, int64_t n4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const uint2 w = x[i];
    const float2 a = unpack_bf16x2(w.x), b = unpack_bf16x2(w.y);
    y[i] = make_float4(a.x, a.y, b.x, b.y);
  }
}

// Version 3: n8 groups of eight.
__global__ void float_to_bf16_x8(const float4* __restrict__ x, uint4* __restrict__ y, int64_t n8) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n8; i += stride) {
    const float4 v = x[2 * i], w = x[2 * i + 1];
    y[i] = make_uint4(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w), pack_bf16x2(w.x, w.y), pack_bf16x2(w.z, w.w));
  }
}
__global__ void bf16_to_float_x8(const uint4* __restrict__ x, float4* __restrict__ y, int64_t n8) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n8; i += stride) {
    const uint4 w = x[i];
    const float2 a = unpack_bf16x2(w.x), b = unpack_bf16x2(w.y), c = unpack_bf16x2(w.z), d = unpack_bf16x2(w.w);
    y[2 * i] = make_float4(a.x, a.y, b.x, b.y);
    y[2 * i + 1] = make_float4(c.x, c.y, d.x, d.y);
  }
}

// Bit-for-bit equality of two arrays of 16- or 32-bit words; prints the
// first difference and FAIL otherwise.
template <typename T>
bool validate_bits(const char* what, const std::vector<T>& got, const std::vector<T>& ref) {
  if (got.size() != ref.size()) {
    std::printf("%s: FAIL (%zu values, expected %zu)\n", what, got.size(), ref.size());
    return false;
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    if (got[i] != ref[i]) {
      std::printf("%s: FAIL at %zu: 0x%0*llx vs 0x%0*llx\n", what, i, int(2 * sizeof(T)), (unsigned long long)got[i],
                  int(2 * sizeof(T)), (unsigned long long)ref[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t n = o.size("n", int64_t(8) * 128 * 64 * 64);
  if (n < 1) {
    std::fprintf(stderr, "cast_bf16: --n must be at least 1\n");
    return 2;
  }
  bench::print_device();
  std::printf("cast_bf16 over %lld elements\n", (long long)n);

  std::vector<float> x = bench::random_floats(size_t(n), 1, -1e4f, 1e4f);
  const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x80000000u, 0x00000001u,
                               0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7f800001u, 0xff800001u,
                               0xc0490fdbu};
  for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]) && i < x.size(); ++i)
    x[i] = mdps::float_from_bits(specials[i]);
  std::vector<uint16_t> ref16(x.size());  // float -> bf16 reference, and the input of the other direction
  std::vector<uint32_t> ref32(x.size());  // bf16 -> float reference, as bits
  for (size_t i = 0; i < x.size(); ++i) {
    ref16[i] = bf16_from_float(x[i]);
    ref32[i] = mdps::float_bits(float_from_bf16(ref16[i]));
  }
  float* dx = bench::to_device(x);
  uint16_t* dh = bench::to_device(ref16);
  uint16_t* dy16 = bench::device_buffer<uint16_t>(size_t(n));
  float* dy32 = bench::device_buffer<float>(size_t(n));
  const double bytes = 6.0 * double(n);  // 4 bytes one side, 2 the other, per element
  const int per_thread[4] = {0, 1, 4, 8};

  for (int dir = 0; dir < 2; ++dir) {
    const bool to_bf16 = dir == 0;
    std::printf("%s\n", to_bf16 ? "float32 -> bfloat16" : "bfloat16 -> float32");
    const int limit[4] = {0,
                          to_bf16 ? bench::max_threads(mdps::cuda::float_to_bf16_kernel)
                                  : bench::max_threads(mdps::cuda::bf16_to_float_kernel),
                          to_bf16 ? bench::max_threads(float_to_bf16_x4) : bench::max_threads(bf16_to_float_x4),
                          to_bf16 ? bench::max_threads(float_to_bf16_x8) : bench::max_threads(bf16_to_float_x8)};
    for (int version = 1; version <= 3; ++version) {
      if (o.version != 0 && o.version != version) continue;
      for (int block : bench::block_sizes()) {
        if (bench::over_thread_limit(version, block, limit[version])) continue;
        auto launch = [&] {
          const int64_t k = per_thread[version], groups = n / k, done = groups * k;
          const unsigned grid = mdps::cuda::elementwise_blocks(std::max<int64_t>(1, groups), unsigned(block));
          if (version == 1) {
            if (to_bf16) mdps::cuda::float_to_bf16_kernel<<<grid, block>>>(dx, dy16, n);
            else mdps::cuda::bf16_to_float_kernel<<<grid, block>>>(dh, dy32, n);
            return;
          }
          if (groups > 0) {
            if (version == 2 && to_bf16)
              float_to_bf16_x4<<<grid, block>>>(reinterpret_cast<const float4*>(dx), reinterpret_cast<uint2*>(dy16),
                                                groups);
            else if (version == 2)
              bf16_to_float_x4<<<grid, block>>>(reinterpret_cast<const uint2*>(dh), reinterpret_cast<float4*>(dy32),
                                                groups);
            else if (to_bf16)
              float_to_bf16_x8<<<grid, block>>>(reinterpret_cast<const float4*>(dx), reinterpret_cast<uint4*>(dy16),
                                                groups);
            else
              bf16_to_float_x8<<<grid, block>>>(reinterpret_cast<const uint4*>(dh), reinterpret_cast<float4*>(dy32),
                                                groups);
          }
          if (done < n) {  // the tail, by the production kernel
            if (to_bf16) mdps::cuda::float_to_bf16_kernel<<<1, 32>>>(dx + done, dy16 + done, n - done);
            else mdps::cuda::bf16_to_float_kernel<<<1, 32>>>(dh + done, dy32 + done, n - done);
          }
        };
        BENCH_CHECK(cudaMemset(dy16, 0xff, size_t(n) * sizeof(uint16_t)));
        BENCH_CHECK(cudaMemset(dy32, 0xff, size_t(n) * sizeof(float)));
        auto valid = [&] {
          if (to_bf16) return validate_bits("bf16", bench::to_host(dy16, size_t(n)), ref16);
          const std::vector<float> got = bench::to_host(dy32, size_t(n));
          std::vector<uint32_t> bits(got.size());
          for (size_t i = 0; i < got.size(); ++i) bits[i] = mdps::float_bits(got[i]);
          return validate_bits("float", bits, ref32);
        };
        bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
      }
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dh));
  BENCH_CHECK(cudaFree(dy16));
  BENCH_CHECK(cudaFree(dy32));
  return 0;
}
