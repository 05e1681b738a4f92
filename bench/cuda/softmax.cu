// Playground: softmax over rows of length L (the attention weights).
//   version 1  the production kernel (kernels/cuda/softmax_kernel.cuh): one
//              block per row, block reductions, exp recomputed in the last pass
//   version 2  one warp per row (blockDim / 32 rows per block): warp shuffles
//              only, no shared memory or block barriers; for short rows
// CPU reference: the CPU backend's softmax.
//   ./softmax [VERSION] [--peak-gbs GBS] [--rows 32768 --L 1024]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/softmax_kernel.cuh"

namespace {

__global__ void softmax_warp_per_row(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t L) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps leave together: the shuffles stay full
  const int lane = int(threadIdx.x % 32);
  const float* xr = x + row * L;
  float* yr = y + row * L;
  float mx = -INFINITY;
  for (int64_t i = lane; i < L; i += 32) mx = fmaxf(mx, xr[i]);
  mx = mdps::cuda::warp_reduce(mx, mdps::cuda::MaxOp());
  mx = __shfl_sync(0xffffffffu, mx, 0);
  float s = 0.f;
  for (int64_t i = lane; i < L; i += 32) s += expf(xr[i] - mx);
  s = __shfl_sync(0xffffffffu, mdps::cuda::warp_reduce(s, mdps::cuda::SumOp()), 0);
  const float inv = 1.f / s;
  for (int64_t i = lane; i < L; i += 32) yr[i] = expf(xr[i] - mx) * inv;
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t rows = o.size("rows", 32768), L = o.size("L", 1024), n = rows * L;
  bench::print_device();
  std::printf("softmax [%lld, %lld]\n", (long long)rows, (long long)L);

  mdps::Tensor x = mdps::Tensor::from_vector({rows, L}, bench::random_floats(size_t(n), 1, -8.f, 8.f));
  mdps::Tensor ref = mdps::Tensor::zeros({rows, L});
  mdps::cpu_backend().softmax(x, ref);
  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::device_buffer<float>(size_t(n));
  const double bytes = 8.0 * double(n);  // read x, write y (version 1 reads x three times)

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::softmax_kernel<<<unsigned(rows), block>>>(dx, dy, L);
        } else {
          const int64_t per_block = block / 32;
          softmax_warp_per_row<<<unsigned((rows + per_block - 1) / per_block), block>>>(dx, dy, rows, L);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, size_t(n)), ref.to_vector(), 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
