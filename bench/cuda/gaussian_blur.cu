// Playground: the anomaly map's separable Gaussian blur (sigma 4, 33 taps,
// reflect border) over [planes, H, W].
//   version 1  the production kernels (kernels/cuda/gaussian_blur_kernel.cuh):
//              rows into a double plane, then columns; bit-equal to the CPU
//              under emulation (fma contraction aside)
//   version 2  the same two passes with a float intermediate and float sums:
//              a third less traffic, and float instead of double arithmetic
//              (which consumer GPUs run at 1/32..1/64 of the float rate)
// CPU reference: hostops::gaussian_blur (kernels/cpu/cpu_image_ops.h).
//   ./gaussian_blur [VERSION] [--peak-gbs GBS] [--planes 8 --h 256 --w 256 --kernel 33]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/gaussian_blur_kernel.cuh"
#include "kernels/cuda/launch.h"

namespace {

using mdps::cuda::BlurTaps;

__global__ void blur_rows_float(const float* __restrict__ x, float* __restrict__ tmp, int64_t W, int64_t n,
                                BlurTaps taps) {
  const int64_t r = taps.kernel / 2;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const float* row = x + (o / W) * W;
    const int64_t w = o % W;
    float s = 0.f;
    for (int t = 0; t < taps.kernel; ++t) s += taps.w[t] * row[mdps::reflect_index(w + t - r, W)];
    tmp[o] = s;
  }
}

__global__ void blur_columns_float(const float* __restrict__ tmp, float* __restrict__ y, int64_t H, int64_t W,
                                   int64_t n, BlurTaps taps) {
  const int64_t r = taps.kernel / 2, HW = H * W;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = o % HW, h = i / W, w = i % W;
    const float* plane = tmp + (o - i);
    float s = 0.f;
    for (int t = 0; t < taps.kernel; ++t) s += taps.w[t] * plane[mdps::reflect_index(h + t - r, H) * W + w];
    y[o] = s;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t P = o.size("planes", 8), H = o.size("h", 256), W = o.size("w", 256), n = P * H * W;
  const int kernel = int(o.size("kernel", 33));
  if (kernel < 1 || kernel % 2 == 0 || kernel > mdps::cuda::kMaxBlurTaps) {
    std::fprintf(stderr, "--kernel %d must be odd and at most %d\n", kernel, mdps::cuda::kMaxBlurTaps);
    return 2;
  }
  bench::print_device();
  std::printf("gaussian_blur [%lld, %lld, %lld], %d taps, sigma 4\n", (long long)P, (long long)H, (long long)W,
              kernel);

  mdps::Tensor x = mdps::Tensor::from_vector({P, 1, H, W}, bench::random_floats(size_t(n), 1, 0.f, 3.f));
  const std::vector<float> ref = mdps::hostops::gaussian_blur(x, kernel, 4.f).to_vector();
  const std::vector<float> k = mdps::hostops::gaussian_kernel1d(kernel, 4.f);
  BlurTaps taps{};
  std::copy(k.begin(), k.end(), taps.w);
  taps.kernel = kernel;

  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::device_buffer<float>(size_t(n));
  double* dtmp = bench::device_buffer<double>(size_t(n));
  float* dtmpf = bench::device_buffer<float>(size_t(n));

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    // Each pass reads its input once and writes its output once (the taps'
    // neighbours come from cache): 4 + 8 + 8 + 4 bytes, or 4 * 4 in float.
    const double bytes = double(n) * (version == 1 ? 24.0 : 16.0);
    for (int block : bench::block_sizes()) {
      const unsigned grid = mdps::cuda::elementwise_blocks(n, unsigned(block));
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::gaussian_blur_rows_kernel<<<grid, block>>>(dx, dtmp, W, n, taps);
          mdps::cuda::gaussian_blur_columns_kernel<<<grid, block>>>(dtmp, dy, H, W, n, taps);
        } else {
          blur_rows_float<<<grid, block>>>(dx, dtmpf, W, n, taps);
          blur_columns_float<<<grid, block>>>(dtmpf, dy, H, W, n, taps);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n) * 4));
      // Version 1 differs from the CPU by fma contraction only; version 2's
      // float sums of 33 terms by a few float ulps of the values (up to 3).
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, size_t(n)), ref, version == 1 ? 1e-6 : 1e-5); };
      bench::time_if_valid(version, block, launch, valid, bytes, 4.0 * kernel * double(n), o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  BENCH_CHECK(cudaFree(dtmp));
  BENCH_CHECK(cudaFree(dtmpf));
  return 0;
}
