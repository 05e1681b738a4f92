// Playground: the ImageNet normalisation of images in [-1, 1] before the
// feature extractor, [N, 3, H, W] -> [N, 3, H, W]: ((v + 1) / 2 - mean_c) / std_c.
//   version 1  the production kernel (kernels/cuda/imagenet_normalise_kernel.cuh):
//              one element per thread, grid-stride, the channel from a 64-bit
//              division and modulo per element
//   version 2  float4 loads and stores, the channel once per four elements
//              from 32-bit index arithmetic (needs H*W % 4 == 0, so the four
//              share a plane, and fewer than 2^31 elements); the same
//              imagenet_normalised arithmetic
// CPU reference: hostops::imagenet_normalise (kernels/cpu/cpu_image_ops.h), the
// same MDPS_HD arithmetic (kernels/shared/anomaly_map_arith.h), bit-equal under the
// emulation; on a GPU nvcc may contract (v + 1) * 0.5 - mean to an fma (the
// product is exact, so the result should not change) and the divisions are
// IEEE, hence the small tolerance 1e-6 (relative) only as a margin.
// The programs here write a separate output (the engine may run it in place:
// y aliasing x is allowed, so neither version uses __restrict__).
//   ./imagenet_normalise [VERSION] [--peak-gbs GBS] [--n 8 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/imagenet_normalise_kernel.cuh"
#include "kernels/cuda/launch.h"

namespace {

// Four consecutive elements per thread; hw % 4 == 0, so they share a plane
// and hence a channel: hw4 = hw / 4 float4s per plane.
__global__ void imagenet_normalise_float4(const float4* x, float4* y, int hw4, int n4) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const int64_t c = (i / hw4) % 3;
    const float4 v = x[i];
    float4 r;
    r.x = mdps::imagenet_normalised(v.x, c);
    r.y = mdps::imagenet_normalised(v.y, c);
    r.z = mdps::imagenet_normalised(v.z, c);
    r.w = mdps::imagenet_normalised(v.w, c);
    y[i] = r;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), H = o.size("h", 256), W = o.size("w", 256);
  const int64_t hw = H * W, n = N * 3 * hw;
  bench::print_device();
  std::printf("imagenet_normalise [%lld, 3, %lld, %lld]\n", (long long)N, (long long)H, (long long)W);

  mdps::Tensor x = mdps::Tensor::from_vector({N, 3, H, W}, bench::random_floats(static_cast<size_t>(n), 1));
  const std::vector<float> ref = mdps::hostops::imagenet_normalise(x).to_vector();
  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::device_buffer<float>(static_cast<size_t>(n));
  const double bytes = 8.0 * double(n);  // read x, write y

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (hw % 4 != 0 || n >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs H*W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::imagenet_normalise_kernel<<<mdps::cuda::elementwise_blocks(n, unsigned(block)), block>>>(
              dx, dy, hw, n);
        } else {
          const int n4 = int(n / 4);
          imagenet_normalise_float4<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
              reinterpret_cast<const float4*>(dx), reinterpret_cast<float4*>(dy), int(hw / 4), n4);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, static_cast<size_t>(n) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, static_cast<size_t>(n)), ref, 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
