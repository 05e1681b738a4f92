// Playground: the anomaly map's per-stage feature distance, 3x3 mean pool of
// both feature maps and 1 - cosine over channels, fused ([N, C, H, W] x2 ->
// [N, 1, H, W]); default shape: WRN50 layer2 of a 256x256 batch of 8.
//   version 1  the production kernel (kernels/cuda/pooled_cosine_kernel.cuh):
//              one output pixel per thread, double accumulators
//   version 2  float accumulators (GPUs with few FP64 units run the double
//              version at a fraction of their float rate)
// CPU reference: mean_pool3x3 + cosine_distance of engine/cpu_image_ops.
//   ./pooled_cosine [VERSION] [--peak-gbs GBS] [--n 8 --c 512 --h 32 --w 32]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pooled_cosine_kernel.cuh"

namespace {

__global__ void pooled_cosine_float(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                                    int64_t C, int64_t H, int64_t W, int64_t n_out, float eps) {
  const int64_t HW = H * W;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = o / HW, i = o % HW, h = i / W, w = i % W;
    float dot = 0.f, na = 0.f, nb = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t plane = (n * C + c) * HW;
      const float u = mdps::mean_pool3x3_at(a + plane, H, W, h, w), v = mdps::mean_pool3x3_at(b + plane, H, W, h, w);
      dot += u * v;
      na += u * u;
      nb += v * v;
    }
    y[o] = 1.f - dot / (fmaxf(sqrtf(na), eps) * fmaxf(sqrtf(nb), eps));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 512), H = o.size("h", 32), W = o.size("w", 32);
  const int64_t n_in = N * C * H * W, n_out = N * H * W;
  bench::print_device();
  std::printf("pooled cosine distance [%lld, %lld, %lld, %lld]\n", (long long)N, (long long)C, (long long)H,
              (long long)W);

  mdps::Tensor a = mdps::Tensor::from_vector({N, C, H, W}, bench::random_floats(size_t(n_in), 1, 0.f, 2.f));
  mdps::Tensor b = mdps::Tensor::from_vector({N, C, H, W}, bench::random_floats(size_t(n_in), 2, 0.f, 2.f));
  const mdps::Tensor ref = mdps::hostops::cosine_distance(mdps::hostops::mean_pool3x3(a), mdps::hostops::mean_pool3x3(b));
  float* da = bench::to_device(a.to_vector());
  float* db = bench::to_device(b.to_vector());
  float* dy = bench::device_buffer<float>(size_t(n_out));
  const double bytes = 4.0 * (2.0 * double(n_in) + double(n_out));  // each input once, neighbours from cache
  const double flops = double(n_out) * double(C) * (2.0 * 9.0 + 6.0);  // two 9-tap pools, three products

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      const unsigned grid = mdps::cuda::elementwise_blocks(n_out, unsigned(block));
      auto launch = [&] {
        if (version == 1) mdps::cuda::pooled_cosine_distance_kernel<<<grid, block>>>(da, db, dy, C, H, W, n_out, 1e-8f);
        else pooled_cosine_float<<<grid, block>>>(da, db, dy, C, H, W, n_out, 1e-8f);
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n_out) * 4));
      // Version 1 differs from the CPU by fma contraction only; version 2 sums in float.
      auto valid = [&] {
        return bench::validate("y", bench::to_host(dy, size_t(n_out)), ref.to_vector(), version == 1 ? 1e-6 : 1e-4);
      };
      bench::time_if_valid(version, block, launch, valid, bytes, flops, o);
    }
  }
  for (float* d : {da, db, dy}) BENCH_CHECK(cudaFree(d));
  return 0;
}
