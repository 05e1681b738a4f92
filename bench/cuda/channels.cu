// Playground: channel concatenation y = [a, b] (the U-Net decoder's skip
// connections) and its backward, the split of y back into a and b. Default:
// a, b [8, 128, 64, 64] -> y [8, 256, 64, 64].
// Both directions, each with:
//   version 1  the production kernel (kernels/cuda/channels_kernel.cuh's
//              copy_channels_kernel), launched twice as the CUDA backend does
//              (a's channels, then b's): one element per thread, grid-stride,
//              a 64-bit division for the sample on every element
//   version 2  the same two launches, float4 loads and stores, the division
//              once per four elements (needs H*W % 4 == 0, so every channel
//              block starts 16-byte aligned)
//   version 3  one launch for both tensors: each blockIdx.y (grid-stride)
//              one (sample, a or b) run of Cs*H*W contiguous floats, copied
//              with float4s and no division (needs H*W % 4 == 0)
// CPU reference: the CPU backend's concat_channels; the split must give back
// a and b. Exact (a copy), as in the tests. The launch geometry is the
// launcher's, elementwise_blocks(elements, block) x block, swept.
//   ./channels [VERSION] [--peak-gbs GBS] [--n 8 --ca 128 --cb 128 --h 64 --w 64]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/channels_kernel.cuh"

namespace {

// Version 2: copy_channels_kernel over float4s (hw4 = H*W / 4, n4 = N * Cs * hw4).
__global__ void copy_channels_float4(float4* __restrict__ src, int64_t Cs, float4* __restrict__ dst, int64_t Cd,
                                     int64_t c_off, int64_t hw4, int64_t n4, bool to_dst) {
  const int64_t block = Cs * hw4;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const int64_t n = i / block, rest = i - n * block;
    const int64_t j = (n * Cd + c_off) * hw4 + rest;
    if (to_dst) dst[j] = src[i];
    else src[i] = dst[j];
  }
}

// Version 3: row r = 2 n + (0: a, 1: b) per blockIdx.y; y [N, Ca + Cb, hw4].
__global__ void copy_channels_pair(float4* __restrict__ a, int64_t Ca, float4* __restrict__ b, int64_t Cb,
                                   float4* __restrict__ y, int64_t N, int64_t hw4, bool to_y) {
  const int64_t Cy = Ca + Cb, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < 2 * N; r += gridDim.y) {
    const int64_t n = r >> 1;
    const bool second = (r & 1) != 0;
    const int64_t len = (second ? Cb : Ca) * hw4;
    float4* s = second ? b + n * Cb * hw4 : a + n * Ca * hw4;
    float4* d = y + (n * Cy + (second ? Ca : 0)) * hw4;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < len; i += stride) {
      if (to_y) d[i] = s[i];
      else s[i] = d[i];
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), Ca = o.size("ca", 128), Cb = o.size("cb", 128), H = o.size("h", 64),
                W = o.size("w", 64);
  const int64_t hw = H * W, Cy = Ca + Cb, na = N * Ca * hw, nb = N * Cb * hw, ny = na + nb;
  if (na < 1 || nb < 1) {
    std::fprintf(stderr, "channels: a and b must not be empty\n");
    return 2;
  }
  bench::print_device();
  std::printf("concat / split channels [%lld, %lld, %lld, %lld] + [%lld, %lld, %lld, %lld] <-> "
              "[%lld, %lld, %lld, %lld]\n",
              (long long)N, (long long)Ca, (long long)H, (long long)W, (long long)N, (long long)Cb, (long long)H,
              (long long)W, (long long)N, (long long)Cy, (long long)H, (long long)W);

  const std::vector<float> av = bench::random_floats(size_t(na), 1), bv = bench::random_floats(size_t(nb), 2);
  mdps::Tensor ref = mdps::Tensor::zeros({N, Cy, H, W});
  mdps::cpu_backend().concat_channels(mdps::Tensor::from_vector({N, Ca, H, W}, av),
                                      mdps::Tensor::from_vector({N, Cb, H, W}, bv), ref);
  const std::vector<float> ref_v = ref.to_vector();
  float* da = bench::to_device(av);
  float* db = bench::to_device(bv);
  float* dy = bench::device_buffer<float>(size_t(ny));
  float* ga = bench::device_buffer<float>(size_t(na));  // the split's outputs
  float* gb = bench::device_buffer<float>(size_t(nb));
  const double bytes = 8.0 * double(ny);  // every element read once and written once
  const int limit[4] = {0, bench::max_threads(mdps::cuda::copy_channels_kernel),
                        bench::max_threads(copy_channels_float4), bench::max_threads(copy_channels_pair)};

  for (int dir = 0; dir < 2; ++dir) {
    const bool concat = dir == 0;
    std::printf("%s\n", concat ? "concat_channels" : "split_channels");
    if (!concat) BENCH_CHECK(cudaMemcpy(dy, ref_v.data(), size_t(ny) * sizeof(float), cudaMemcpyHostToDevice));
    float* pa = concat ? da : ga;  // the [N, Cs, H, W] side: read by concat, written by split
    float* pb = concat ? db : gb;
    for (int version = 1; version <= 3; ++version) {
      if (o.version != 0 && o.version != version) continue;
      if (version >= 2 && hw % 4 != 0) {
        std::printf("version %d: skipped (needs H*W %% 4 == 0)\n", version);
        continue;
      }
      for (int block : bench::block_sizes()) {
        if (bench::over_thread_limit(version, block, limit[version])) continue;
        auto launch = [&] {
          if (version == 1) {
            mdps::cuda::copy_channels_kernel<<<mdps::cuda::elementwise_blocks(na, unsigned(block)), block>>>(
                pa, Ca, dy, Cy, 0, hw, na, concat);
            mdps::cuda::copy_channels_kernel<<<mdps::cuda::elementwise_blocks(nb, unsigned(block)), block>>>(
                pb, Cb, dy, Cy, Ca, hw, nb, concat);
          } else if (version == 2) {
            const int64_t hw4 = hw / 4;
            copy_channels_float4<<<mdps::cuda::elementwise_blocks(na / 4, unsigned(block)), block>>>(
                reinterpret_cast<float4*>(pa), Ca, reinterpret_cast<float4*>(dy), Cy, 0, hw4, na / 4, concat);
            copy_channels_float4<<<mdps::cuda::elementwise_blocks(nb / 4, unsigned(block)), block>>>(
                reinterpret_cast<float4*>(pb), Cb, reinterpret_cast<float4*>(dy), Cy, Ca, hw4, nb / 4, concat);
          } else {
            const int64_t hw4 = hw / 4;
            const unsigned gy = unsigned(std::min<int64_t>(2 * N, 65535));
            const unsigned gx = mdps::cuda::elementwise_blocks(
                std::max(Ca, Cb) * hw4, unsigned(block),
                std::max<int64_t>(1, mdps::cuda::kMaxElementwiseBlocks / int64_t(gy)));
            copy_channels_pair<<<dim3(gx, gy), block>>>(reinterpret_cast<float4*>(pa), Ca,
                                                        reinterpret_cast<float4*>(pb), Cb,
                                                        reinterpret_cast<float4*>(dy), N, hw4, concat);
          }
        };
        if (concat) {
          BENCH_CHECK(cudaMemset(dy, 0xff, size_t(ny) * sizeof(float)));
        } else {
          BENCH_CHECK(cudaMemset(ga, 0xff, size_t(na) * sizeof(float)));
          BENCH_CHECK(cudaMemset(gb, 0xff, size_t(nb) * sizeof(float)));
        }
        auto valid = [&] {
          return concat ? bench::validate("y", bench::to_host(dy, size_t(ny)), ref_v, 0.0)
                        : bench::validate("a", bench::to_host(ga, size_t(na)), av, 0.0) &&
                              bench::validate("b", bench::to_host(gb, size_t(nb)), bv, 0.0);
        };
        bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
      }
    }
  }
  for (float* p : {da, db, dy, ga, gb}) BENCH_CHECK(cudaFree(p));
  return 0;
}
