// Playground: standard normals from the Philox stream, dst[i] =
// philox::normal_at(seed, stream, offset + i) (the sampler's and the
// trainer's noise, a fresh [8, 3, 256, 256] draw per sampling step).
//   version 1  the production kernel (kernels/cuda/philox_normal_kernel.cuh):
//              one Philox block (four normals) per thread, grid-stride, four
//              scalar stores each checked against the range (a warp's store
//              instruction covers 512 bytes at a 16-byte stride)
//   version 2  the same block per thread, written with one float4 store when
//              the block lies wholly inside the range and its first element
//              is 16-byte aligned (offset and dst agree mod 4 elements, as for
//              cudaMalloc'd dst and offset % 4 == 0); scalar stores otherwise
//              (the first and last block of an unaligned range, or every
//              block of a misaligned one), so any offset stays correct
// CPU reference: the host stream, engine/diffusion/noise.h's philox_fill_normal (what
// PhiloxNoise fills a CPU tensor with). The Philox bits and uniforms are
// bit-identical; logf/cosf/sinf differ from glibc's by an ulp or two
// (kernels/shared/philox.h), hence the tolerance of tests/kernels/test_cuda_backend.cpp (1e-5;
// validate measures it against max(1, |ref|), never looser than that absolute
// bound for normals of magnitude <= 6).
// The grid is the launcher's: elementwise_blocks(Philox blocks, block).
//   ./philox_normal [VERSION] [--peak-gbs GBS] [--n 1572864 --offset 0]
// (--offset 1..3 exercises the range edges and version 2's scalar fallback.)
#include "bench/cuda/common.h"
#include "engine/diffusion/noise.h"
#include "kernels/shared/philox.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/philox_normal_kernel.cuh"

namespace {

// Version 2. n >= 1.
__global__ void philox_normal_float4(float* __restrict__ dst, int64_t n, uint64_t seed, uint64_t stream,
                                     uint64_t offset) {
  const uint64_t first = offset >> 2;
  const uint64_t end = offset + uint64_t(n);
  const uint64_t nblocks = ((end - 1) >> 2) - first + 1;
  // Block first + b starts at element base - offset, base = 4 (first + b), i.e. at
  // byte address dst + 4 (base - offset): 16-byte aligned for every block iff
  // dst is 4-byte aligned and (dst / 4 - offset) % 4 == 0.
  const bool aligned = (((reinterpret_cast<uintptr_t>(dst) >> 2) - offset) & 3u) == 0 &&
                       (reinterpret_cast<uintptr_t>(dst) & 3u) == 0;
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t b = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks; b += stride) {
    float z[4];
    mdps::philox::normals_of_block(seed, stream, first + b, z);
    const uint64_t base = (first + b) << 2;
    if (aligned && base >= offset && base + 4 <= end) {
      *reinterpret_cast<float4*>(dst + (base - offset)) = make_float4(z[0], z[1], z[2], z[3]);
    } else {
      for (int k = 0; k < 4; ++k) {
        const uint64_t idx = base + uint64_t(k);
        if (idx >= offset && idx < end) dst[idx - offset] = z[k];
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t n = o.size("n", int64_t(8) * 3 * 256 * 256);
  const uint64_t offset = uint64_t(o.size("offset", 0));
  const uint64_t seed = 42, stream = 7;
  if (n < 1) {
    std::fprintf(stderr, "philox_normal: --n must be at least 1\n");
    return 2;
  }
  bench::print_device();
  std::printf("philox_normal: %lld normals from offset %llu\n", (long long)n, (unsigned long long)offset);

  std::vector<float> ref(static_cast<size_t>(n));
  mdps::philox_fill_normal(ref.data(), n, seed, stream, offset);
  float* dy = bench::device_buffer<float>(size_t(n));
  const int64_t blocks4 = int64_t(((offset + uint64_t(n) - 1) >> 2) - (offset >> 2)) + 1;
  const double bytes = 4.0 * double(n);  // writes only; the Philox rounds and Box-Muller are the work
  const int limit[3] = {0, bench::max_threads(mdps::cuda::philox_normal_kernel),
                        bench::max_threads(philox_normal_float4)};

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      if (bench::over_thread_limit(version, block, limit[version])) continue;
      auto launch = [&] {
        const unsigned grid = mdps::cuda::elementwise_blocks(blocks4, unsigned(block));
        if (version == 1) mdps::cuda::philox_normal_kernel<<<grid, block>>>(dy, n, seed, stream, offset);
        else philox_normal_float4<<<grid, block>>>(dy, n, seed, stream, offset);
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n) * sizeof(float)));
      auto valid = [&] { return bench::validate("normals", bench::to_host(dy, size_t(n)), ref, 1e-5); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
