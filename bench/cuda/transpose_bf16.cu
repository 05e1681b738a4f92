// Playground: the fused attention's layout change, float32 [n, R, C] ->
// bfloat16 [n, C, R] (each head's q, k, v from [channels, tokens] to
// [tokens, channels], --precision bf16).
//   version 1  the production kernel (kernels/cuda/transpose_bf16_kernel.cuh):
//              32 x 32 tiles through padded shared memory, blockDim (32, block / 32),
//              reads and writes coalesced
//   version 2  one element per thread, no shared memory: coalesced reads,
//              writes R elements apart
// CPU reference: the transpose with kernels/shared/bf16.h's rounding (exact match).
// The default size is the bottle U-Net's 32 x 32 attention at batch 8:
// 8 samples x 4 heads x (q, k, v) of 64 channels over 1024 tokens.
//   ./transpose_bf16 [VERSION] [--peak-gbs GBS] [--n 96 --R 64 --C 1024]
#include "bench/cuda/common.h"
#include "kernels/shared/bf16.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/transpose_bf16_kernel.cuh"

namespace {

__global__ void transpose_to_bf16_naive(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n, int64_t R,
                                        int64_t C) {
  const int64_t total = n * R * C, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = i % C, r = (i / C) % R, b = i / (R * C);
    y[(b * C + c) * R + r] = mdps::bf16_from_float(x[i]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t n = o.size("n", 96), R = o.size("R", 64), C = o.size("C", 1024), total = n * R * C;
  bench::print_device();
  std::printf("transpose_to_bf16 [%lld, %lld, %lld] -> [%lld, %lld, %lld]\n", (long long)n, (long long)R,
              (long long)C, (long long)n, (long long)C, (long long)R);

  const std::vector<float> x = bench::random_floats(size_t(total), 1, -4.f, 4.f);
  std::vector<float> ref(static_cast<size_t>(total));  // the bf16 values, widened, at their transposed places
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c)
        ref[size_t((b * C + c) * R + r)] = mdps::float_from_bf16(mdps::bf16_from_float(x[size_t((b * R + r) * C + c)]));
  float* dx = bench::to_device(x);
  uint16_t* dy = bench::device_buffer<uint16_t>(size_t(total));
  const double bytes = 6.0 * double(total);  // read 4, write 2 bytes per element

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          const dim3 grid(mdps::cuda::transpose_tiles_along(C, mdps::cuda::kTransposeTile),
                          mdps::cuda::transpose_tiles_along(R, mdps::cuda::kTransposeTile),
                          mdps::cuda::transpose_batch_blocks(n));
          mdps::cuda::transpose_to_bf16_kernel<<<grid, dim3(mdps::cuda::kTransposeTile, unsigned(block) / 32)>>>(
              dx, dy, n, R, C);
        } else {
          transpose_to_bf16_naive<<<mdps::cuda::elementwise_blocks(total, unsigned(block)), block>>>(dx, dy, n, R, C);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(total) * sizeof(uint16_t)));
      auto valid = [&] {
        const std::vector<uint16_t> got16 = bench::to_host(dy, size_t(total));
        std::vector<float> got(got16.size());
        for (size_t i = 0; i < got.size(); ++i) got[i] = mdps::float_from_bf16(got16[i]);
        return bench::validate("y", got, ref, 0.0);
      };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
