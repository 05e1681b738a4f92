// Playground: the U-Net's 2x2 average pool (floor of odd sizes, like torch's
// avg_pool2d(x, 2)) [planes, H, W] -> [planes, H/2, W/2], and its backward
// (dx = dy / 4 on each 2x2 block; rows and columns the floor dropped get 0);
// default shape: the bottle U-Net's 64 x 64 level at batch 8, 128 channels.
//   forward
//     version 1  the production kernel (kernels/cuda/pool_kernel.cuh): one
//                output per thread, grid-stride, 64-bit index arithmetic,
//                four scalar loads
//     version 2  two outputs per thread: a float4 from each of the two input
//                rows, one float2 store, 32-bit index arithmetic (needs
//                W % 4 == 0 and fewer than 2^31 elements); the same order
//                of additions
//   backward
//     version 1  the production kernel: one dx element per thread
//     version 2  four dx elements of a row per thread: one float2 of dy, one
//                float4 store (zeros on the dropped last row of an odd H),
//                32-bit index arithmetic (the same conditions)
// CPU reference: the CPU backend's avg_pool2 / avg_pool2_backward. Only
// additions and exact multiplications by 0.25 (nothing to contract to an
// fma), so every version must match exactly (tolerance 0).
//   ./pool [VERSION] [--peak-gbs GBS] [--n 8 --c 128 --h 64 --w 64]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pool_kernel.cuh"

namespace {

// Forward: output float2 q covers outputs 2q, 2q + 1 of y [planes, Ho, Wo];
// W4 = W / 4 float4s per input row (= Wo / 2 float2s per output row).
__global__ void avg_pool2_vec(const float4* __restrict__ x, float2* __restrict__ y, int H, int Ho, int W4, int n2) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n2; q += gridDim.x * blockDim.x) {
    const int j = q % W4, r = q / W4, i = r % Ho, p = r / Ho;
    const int at = (p * H + 2 * i) * W4 + j;
    const float4 a = x[at], b = x[at + W4];
    y[q] = make_float2((a.x + a.y + b.x + b.y) * 0.25f, (a.z + a.w + b.z + b.w) * 0.25f);
  }
}

// Backward: dx float4 q covers columns 4j..4j+3 of row h of dx [planes, H, W].
__global__ void avg_pool2_backward_vec(const float2* __restrict__ dy, float4* __restrict__ dx, int H, int Ho, int W4,
                                       int n4) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n4; q += gridDim.x * blockDim.x) {
    const int j = q % W4, r = q / W4, h = r % H, p = r / H, i = h / 2;
    float4 out = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i < Ho) {
      const float2 g = dy[(p * Ho + i) * W4 + j];
      out = make_float4(g.x * 0.25f, g.x * 0.25f, g.y * 0.25f, g.y * 0.25f);
    }
    dx[q] = out;
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
  const int64_t N = o.size("n", 8), C = o.size("c", 128), H = o.size("h", 64), W = o.size("w", 64);
  const int64_t planes = N * C, Ho = H / 2, Wo = W / 2, n_in = planes * H * W, n_out = planes * Ho * Wo;
  bench::print_device();
  std::printf("avg_pool2 [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld, %lld], and backward\n", (long long)N,
              (long long)C, (long long)H, (long long)W, (long long)N, (long long)C, (long long)Ho, (long long)Wo);

  mdps::Tensor x = mdps::Tensor::from_vector({N, C, H, W}, bench::random_floats(static_cast<size_t>(n_in), 1));
  mdps::Tensor dy = mdps::Tensor::from_vector({N, C, Ho, Wo}, bench::random_floats(static_cast<size_t>(n_out), 2));
  mdps::Tensor ref_y = mdps::Tensor::zeros({N, C, Ho, Wo}), ref_dx = mdps::Tensor::zeros({N, C, H, W});
  mdps::cpu_backend().avg_pool2(x, ref_y);
  mdps::cpu_backend().avg_pool2_backward(dy, ref_dx);
  const std::vector<float> ref_y_v = ref_y.to_vector(), ref_dx_v = ref_dx.to_vector();
  float* d_x = bench::to_device(x.to_vector());
  float* d_dy = bench::to_device(dy.to_vector());
  float* d_y = bench::device_buffer<float>(static_cast<size_t>(n_out));
  float* d_dx = bench::device_buffer<float>(static_cast<size_t>(n_in));
  // Forward: the 4 * n_out inputs the pool reads (not a dropped odd row or
  // column), the outputs; backward: dy once, every dx element.
  const double bytes_fwd = 4.0 * 5.0 * double(n_out), bytes_bwd = 4.0 * (double(n_out) + double(n_in));
  const bool vec_ok = W % 4 == 0 && n_in < (int64_t(1) << 31);

  std::printf("forward\n");
  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && !vec_ok) {
      std::printf("version 2: skipped (needs W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    sweep("y", version, d_y, static_cast<size_t>(n_out), ref_y_v, bytes_fwd, o, [&](int block) {
      if (version == 1) {
        mdps::cuda::avg_pool2_kernel<<<mdps::cuda::elementwise_blocks(n_out, unsigned(block)), block>>>(d_x, d_y, H,
                                                                                                        W, n_out);
      } else {
        const int n2 = int(n_out / 2);
        avg_pool2_vec<<<mdps::cuda::elementwise_blocks(n2, unsigned(block)), block>>>(
            reinterpret_cast<const float4*>(d_x), reinterpret_cast<float2*>(d_y), int(H), int(Ho), int(W / 4), n2);
      }
    });
  }
  std::printf("backward\n");
  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && !vec_ok) {
      std::printf("version 2: skipped (needs W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    sweep("dx", version, d_dx, static_cast<size_t>(n_in), ref_dx_v, bytes_bwd, o, [&](int block) {
      if (version == 1) {
        mdps::cuda::avg_pool2_backward_kernel<<<mdps::cuda::elementwise_blocks(n_in, unsigned(block)), block>>>(
            d_dy, d_dx, H, W, n_in);
      } else {
        const int n4 = int(n_in / 4);
        avg_pool2_backward_vec<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
            reinterpret_cast<const float2*>(d_dy), reinterpret_cast<float4*>(d_dx), int(H), int(Ho), int(W / 4), n4);
      }
    });
  }
  for (float* d : {d_x, d_dy, d_y, d_dx}) BENCH_CHECK(cudaFree(d));
  return 0;
}
