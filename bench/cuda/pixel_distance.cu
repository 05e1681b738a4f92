// Playground: the anomaly map's pixel term, [N, 3, H, W] x2 -> [N, 1, H, W]:
// per pixel the mean over the three channels of |normalised a - normalised b|
// (the normalised images are never stored).
//   version 1  the production kernel (kernels/cuda/pixel_distance_kernel.cuh):
//              one output pixel per thread, grid-stride, 64-bit division and
//              modulo per pixel
//   version 2  four consecutive pixels per thread: three float4 loads from
//              each image (one per channel plane), one float4 store, 32-bit
//              index arithmetic (needs H*W % 4 == 0 and fewer than 2^31
//              input elements); the same pixel_distance_at arithmetic
// CPU reference: hostops::pixel_distance (kernels/cpu/cpu_image_ops.h), the same
// MDPS_HD arithmetic (kernels/shared/anomaly_map_arith.h), bit-equal under the
// emulation; on a GPU nvcc may contract (v + 1) * 0.5 - mean to an fma (an
// exact product, so no change expected), hence the tolerance 1e-6 (relative)
// as a margin only.
//   ./pixel_distance [VERSION] [--peak-gbs GBS] [--n 8 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pixel_distance_kernel.cuh"

namespace {

// Output float4 i covers pixels 4i..4i+3 of the [N, hw] map; hw4 = hw / 4.
__global__ void pixel_distance_float4(const float4* __restrict__ a, const float4* __restrict__ b,
                                      float4* __restrict__ y, int hw4, int n4) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const int at = (i / hw4) * 3 * hw4 + i % hw4;  // channel 0 of image n, in float4s
    const float4 a0 = a[at], a1 = a[at + hw4], a2 = a[at + 2 * hw4];
    const float4 b0 = b[at], b1 = b[at + hw4], b2 = b[at + 2 * hw4];
    const float ax[3] = {a0.x, a1.x, a2.x}, bx[3] = {b0.x, b1.x, b2.x};
    const float ay[3] = {a0.y, a1.y, a2.y}, by[3] = {b0.y, b1.y, b2.y};
    const float az[3] = {a0.z, a1.z, a2.z}, bz[3] = {b0.z, b1.z, b2.z};
    const float aw[3] = {a0.w, a1.w, a2.w}, bw[3] = {b0.w, b1.w, b2.w};
    float4 r;
    r.x = mdps::pixel_distance_at(ax, bx, 1);
    r.y = mdps::pixel_distance_at(ay, by, 1);
    r.z = mdps::pixel_distance_at(az, bz, 1);
    r.w = mdps::pixel_distance_at(aw, bw, 1);
    y[i] = r;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), H = o.size("h", 256), W = o.size("w", 256);
  const int64_t hw = H * W, n_in = N * 3 * hw, n_out = N * hw;
  bench::print_device();
  std::printf("pixel_distance [%lld, 3, %lld, %lld] x2 -> [%lld, 1, %lld, %lld]\n", (long long)N, (long long)H,
              (long long)W, (long long)N, (long long)H, (long long)W);

  mdps::Tensor a = mdps::Tensor::from_vector({N, 3, H, W}, bench::random_floats(static_cast<size_t>(n_in), 1));
  mdps::Tensor b = mdps::Tensor::from_vector({N, 3, H, W}, bench::random_floats(static_cast<size_t>(n_in), 2));
  const std::vector<float> ref = mdps::hostops::pixel_distance(a, b).to_vector();
  float* da = bench::to_device(a.to_vector());
  float* db = bench::to_device(b.to_vector());
  float* dy = bench::device_buffer<float>(static_cast<size_t>(n_out));
  const double bytes = 4.0 * (2.0 * double(n_in) + double(n_out));  // read a and b, write y

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (hw % 4 != 0 || n_in >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs H*W %% 4 == 0 and < 2^31 input elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::pixel_distance_kernel<<<mdps::cuda::elementwise_blocks(n_out, unsigned(block)), block>>>(
              da, db, dy, hw, n_out);
        } else {
          const int n4 = int(n_out / 4);
          pixel_distance_float4<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
              reinterpret_cast<const float4*>(da), reinterpret_cast<const float4*>(db), reinterpret_cast<float4*>(dy),
              int(hw / 4), n4);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, static_cast<size_t>(n_out) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, static_cast<size_t>(n_out)), ref, 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* d : {da, db, dy}) BENCH_CHECK(cudaFree(d));
  return 0;
}
