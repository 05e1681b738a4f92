// Playground: softmax backward over rows of length L (the attention weights),
// dx = y * (dy - sum(dy * y)), the dot product summed in double.
//   version 1  the production kernel (kernels/cuda/softmax_backward_kernel.cuh):
//              one block per row, a block reduction, then the output pass
//              (y and dy read twice, the second time from cache)
//   version 2  one warp per row (blockDim / 32 rows per block): warp shuffles
//              only, no shared memory or block barriers
//   version 3  one block per row with float4 loads and stores (L % 4 == 0)
//   version 4  one warp per row with float4 loads and stores (L % 4 == 0)
// Every block size is a multiple of 32, as the block reductions and the
// full-warp shuffles require, so all versions sweep the usual sizes.
// CPU reference: the CPU backend's softmax_backward (y from its softmax).
// Tolerance (the emulation test's): 1e-7 absolute (the same formula, the dot
// product summed in double in another order).
// Default: the bottle U-Net's 32 x 32 attention at batch 8, 4 heads: rows of
// 1024 keys for 8 * 4 * 1024 queries.
//   ./softmax_backward [VERSION] [--peak-gbs GBS] [--rows 32768 --L 1024]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/softmax_backward_kernel.cuh"

namespace {

using mdps::cuda::SumOp;

__device__ __forceinline__ double dot4(float4 a, float4 b) {
  return (double(b.x) * a.x + double(b.y) * a.y) + (double(b.z) * a.z + double(b.w) * a.w);
}
__device__ __forceinline__ float4 backward4(float4 a, float4 b, float fs) {
  return make_float4(a.x * (b.x - fs), a.y * (b.y - fs), a.z * (b.z - fs), a.w * (b.w - fs));
}

// One warp per row; kVec4: float4 accesses (L % 4 == 0, so rows start aligned).
template <bool kVec4>
__global__ void softmax_backward_warp_per_row(const float* __restrict__ y, const float* __restrict__ dy,
                                              float* __restrict__ dx, int64_t rows, int64_t L) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps leave together: the shuffles stay full
  const int lane = int(threadIdx.x % 32);
  const int64_t off = row * L;
  double s = 0;
  if (kVec4) {
    const float4* y4 = reinterpret_cast<const float4*>(y + off);
    const float4* dy4 = reinterpret_cast<const float4*>(dy + off);
    for (int64_t i = lane; i < L / 4; i += 32) s += dot4(y4[i], dy4[i]);
  } else {
    for (int64_t i = lane; i < L; i += 32) s += double(dy[off + i]) * y[off + i];
  }
  const float fs = float(__shfl_sync(0xffffffffu, mdps::cuda::warp_reduce(s, SumOp()), 0));
  if (kVec4) {
    const float4* y4 = reinterpret_cast<const float4*>(y + off);
    const float4* dy4 = reinterpret_cast<const float4*>(dy + off);
    float4* dx4 = reinterpret_cast<float4*>(dx + off);
    for (int64_t i = lane; i < L / 4; i += 32) dx4[i] = backward4(y4[i], dy4[i], fs);
  } else {
    for (int64_t i = lane; i < L; i += 32) dx[off + i] = y[off + i] * (dy[off + i] - fs);
  }
}

// One block per row, float4 accesses; L % 4 == 0.
__global__ void softmax_backward_block_float4(const float4* __restrict__ y, const float4* __restrict__ dy,
                                              float4* __restrict__ dx, int64_t L4) {
  __shared__ double scratch[32];
  const int64_t off = int64_t(blockIdx.x) * L4;
  double s = 0;
  for (int64_t i = threadIdx.x; i < L4; i += blockDim.x) s += dot4(y[off + i], dy[off + i]);
  const float fs = float(mdps::cuda::block_reduce(s, SumOp(), 0.0, scratch));
  for (int64_t i = threadIdx.x; i < L4; i += blockDim.x) dx[off + i] = backward4(y[off + i], dy[off + i], fs);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t rows = o.size("rows", 8 * 4 * 1024), L = o.size("L", 1024), n = rows * L;
  if (rows < 1 || L < 1 || rows >= (int64_t(1) << 31)) {
    std::fprintf(stderr, "need 1 <= rows < 2^31 and L >= 1\n");
    return 2;
  }
  bench::print_device();
  std::printf("softmax_backward [%lld, %lld]\n", (long long)rows, (long long)L);

  mdps::Tensor x = mdps::Tensor::from_vector({rows, L}, bench::random_floats(static_cast<size_t>(n), 1, -4.f, 4.f));
  mdps::Tensor dy = mdps::Tensor::from_vector({rows, L}, bench::random_floats(static_cast<size_t>(n), 2, -1.f, 1.f));
  mdps::Tensor y = mdps::Tensor::zeros({rows, L}), ref = mdps::Tensor::zeros({rows, L});
  mdps::cpu_backend().softmax(x, y);
  mdps::cpu_backend().softmax_backward(y, dy, ref);
  float* d_y = bench::to_device(y.to_vector());
  float* d_dy = bench::to_device(dy.to_vector());
  float* d_dx = bench::device_buffer<float>(static_cast<size_t>(n));
  const double bytes = 12.0 * double(n);  // read y and dy, write dx (versions 1 to 4 read y and dy twice)

  for (int version = 1; version <= 4; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version >= 3 && L % 4 != 0) {
      std::printf("version %d: skipped (needs L %% 4 == 0)\n", version);
      continue;
    }
    for (int block : bench::block_sizes()) {
      const int64_t per_block = block / 32;
      const unsigned warp_grid = unsigned((rows + per_block - 1) / per_block);
      auto launch = [&] {
        if (version == 1)
          mdps::cuda::softmax_backward_kernel<<<unsigned(rows), block>>>(d_y, d_dy, d_dx, L);
        else if (version == 2)
          softmax_backward_warp_per_row<false><<<warp_grid, block>>>(d_y, d_dy, d_dx, rows, L);
        else if (version == 3)
          softmax_backward_block_float4<<<unsigned(rows), block>>>(reinterpret_cast<const float4*>(d_y),
                                                                   reinterpret_cast<const float4*>(d_dy),
                                                                   reinterpret_cast<float4*>(d_dx), L / 4);
        else
          softmax_backward_warp_per_row<true><<<warp_grid, block>>>(d_y, d_dy, d_dx, rows, L);
      };
      BENCH_CHECK(cudaMemset(d_dx, 0xff, sizeof(float) * size_t(n)));
      auto valid = [&] {
        return bench::validate_abs("dx", bench::to_host(d_dx, static_cast<size_t>(n)), ref.to_vector(), 1e-7);
      };
      // A block the device refuses (registers) is skipped.
      bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* p : {d_y, d_dy, d_dx}) BENCH_CHECK(cudaFree(p));
  return 0;
}
