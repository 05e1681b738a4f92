// Playground: the U-Net's 2x nearest-neighbour upsample [planes, H, W] ->
// [planes, 2H, 2W], and its backward (dx = the sum of each 2x2 block of dy,
// added pairwise by rows); default shape: the bottle U-Net's 32 x 32 level at
// batch 8, 128 channels (to 64 x 64).
//   forward
//     version 1  the production kernel (kernels/cuda/upsample_kernel.cuh):
//                one output per thread, grid-stride, 64-bit index arithmetic
//     version 2  one float2 of x per thread, written as a float4 to both
//                output rows it covers, 32-bit index arithmetic (needs
//                W % 2 == 0 and fewer than 2^31 output elements)
//   backward
//     version 1  the production kernel: one dx element per thread, four
//                scalar loads
//     version 2  two dx elements per thread: a float4 from each of the two
//                dy rows, one float2 store, the same order of additions
//                (the same conditions)
// CPU reference: the CPU backend's upsample_nearest2 /
// upsample_nearest2_backward. Copies and additions only (nothing to contract
// to an fma), so every version must match exactly (tolerance 0).
//   ./upsample [VERSION] [--peak-gbs GBS] [--n 8 --c 128 --h 32 --w 32]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/upsample_kernel.cuh"

namespace {

// Forward: x float2 q = columns 2j, 2j + 1 of row i of plane p; W2 = W / 2
// float2s per input row = float4s per output row (2W floats).
__global__ void upsample_nearest2_vec(const float2* __restrict__ x, float4* __restrict__ y, int W2, int n2) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n2; q += gridDim.x * blockDim.x) {
    const int j = q % W2, r = q / W2;  // r = p * H + i
    const float2 g = x[q];
    const float4 v = make_float4(g.x, g.x, g.y, g.y);
    const int at = 2 * r * W2 + j;  // row 2i of plane p: (p * 2H + 2i) * W2 + j
    y[at] = v;
    y[at + W2] = v;
  }
}

// Backward: dx float2 q = columns 2j, 2j + 1 of row i of plane p.
__global__ void upsample_nearest2_backward_vec(const float4* __restrict__ dy, float2* __restrict__ dx, int W2, int n2) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n2; q += gridDim.x * blockDim.x) {
    const int j = q % W2, r = q / W2;
    const int at = 2 * r * W2 + j;
    const float4 a = dy[at], b = dy[at + W2];
    dx[q] = make_float2((a.x + a.y) + (b.x + b.y), (a.z + a.w) + (b.z + b.w));
  }
}

// Validates and times one version over the block sizes: launch(block) runs it.
template <typename Launch>
void sweep(const char* what, int version, float* d_out, size_t n_out, const std::vector<float>& ref, double bytes,
           const bench::Options& o, Launch launch) {
  for (int block : bench::block_sizes()) {
    auto run = [&] { launch(block); };
    auto valid = [&] { return bench::validate(what, bench::to_host(d_out, n_out), ref, 0.0); };
    BENCH_CHECK(cudaMemset(d_out, 0xff, n_out * 4));
    bench::time_if_valid(version, block, run, valid, bytes, 0, o);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 128), H = o.size("h", 32), W = o.size("w", 32);
  const int64_t planes = N * C, n_in = planes * H * W, n_out = 4 * n_in;
  bench::print_device();
  std::printf("upsample_nearest2 [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld, %lld], and backward\n", (long long)N,
              (long long)C, (long long)H, (long long)W, (long long)N, (long long)C, (long long)(2 * H),
              (long long)(2 * W));

  mdps::Tensor x = mdps::Tensor::from_vector({N, C, H, W}, bench::random_floats(static_cast<size_t>(n_in), 1));
  mdps::Tensor dy =
      mdps::Tensor::from_vector({N, C, 2 * H, 2 * W}, bench::random_floats(static_cast<size_t>(n_out), 2));
  mdps::Tensor ref_y = mdps::Tensor::zeros({N, C, 2 * H, 2 * W}), ref_dx = mdps::Tensor::zeros({N, C, H, W});
  mdps::cpu_backend().upsample_nearest2(x, ref_y);
  mdps::cpu_backend().upsample_nearest2_backward(dy, ref_dx);
  const std::vector<float> ref_y_v = ref_y.to_vector(), ref_dx_v = ref_dx.to_vector();
  float* d_x = bench::to_device(x.to_vector());
  float* d_dy = bench::to_device(dy.to_vector());
  float* d_y = bench::device_buffer<float>(static_cast<size_t>(n_out));
  float* d_dx = bench::device_buffer<float>(static_cast<size_t>(n_in));
  const double bytes = 4.0 * (double(n_in) + double(n_out));  // either way: read one side once, write the other
  const bool vec_ok = W % 2 == 0 && n_out < (int64_t(1) << 31);

  std::printf("forward\n");
  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && !vec_ok) {
      std::printf("version 2: skipped (needs W %% 2 == 0 and < 2^31 elements)\n");
      continue;
    }
    sweep("y", version, d_y, static_cast<size_t>(n_out), ref_y_v, bytes, o, [&](int block) {
      if (version == 1) {
        mdps::cuda::upsample_nearest2_kernel<<<mdps::cuda::elementwise_blocks(n_out, unsigned(block)), block>>>(
            d_x, d_y, H, W, n_out);
      } else {
        const int n2 = int(n_in / 2);
        upsample_nearest2_vec<<<mdps::cuda::elementwise_blocks(n2, unsigned(block)), block>>>(
            reinterpret_cast<const float2*>(d_x), reinterpret_cast<float4*>(d_y), int(W / 2), n2);
      }
    });
  }
  std::printf("backward\n");
  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && !vec_ok) {
      std::printf("version 2: skipped (needs W %% 2 == 0 and < 2^31 elements)\n");
      continue;
    }
    sweep("dx", version, d_dx, static_cast<size_t>(n_in), ref_dx_v, bytes, o, [&](int block) {
      if (version == 1) {
        mdps::cuda::upsample_nearest2_backward_kernel<<<mdps::cuda::elementwise_blocks(n_in, unsigned(block)),
                                                        block>>>(d_dy, d_dx, H, W, n_in);
      } else {
        const int n2 = int(n_in / 2);
        upsample_nearest2_backward_vec<<<mdps::cuda::elementwise_blocks(n2, unsigned(block)), block>>>(
            reinterpret_cast<const float4*>(d_dy), reinterpret_cast<float2*>(d_dx), int(W / 2), n2);
      }
    });
  }
  for (float* d : {d_x, d_dy, d_y, d_dx}) BENCH_CHECK(cudaFree(d));
  return 0;
}
