// Playground: the combined anomaly map before the blur, y = F + w P with
// w = eta max(F) / max(P) (0 when max(P) = 0), the two maxima read from
// device memory where the max reduction leaves them; eta 7, the authors'.
//   version 1  the production kernel (kernels/cuda/anomaly_mix_kernel.cuh):
//              one element per thread, grid-stride
//   version 2  float4 loads and stores of F, P and y, the same arithmetic
//              (anomaly_mix_weight once per thread, f + w * p per element);
//              the last n % 4 elements by the first threads of block 0 in
//              the same launch. y may alias F here too (no __restrict__ on
//              either), as in the engine.
// CPU reference: the CPU backend's anomaly_mix, its maxima from the CPU
// backend's max (the same MDPS_HD weight, kernels/shared/anomaly_map_arith.h;
// bit-equal under the emulation; on a GPU nvcc contracts f + w * p to an
// fma, hence the tolerance 1e-6 relative).
//   ./anomaly_mix [VERSION] [--peak-gbs GBS] [--n 8 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/anomaly_mix_kernel.cuh"
#include "kernels/cuda/launch.h"

namespace {

__global__ void anomaly_mix_float4(const float* f, const float* __restrict__ p, const float* __restrict__ max_f,
                                   const float* __restrict__ max_p, float eta, float* y, int64_t n) {
  const float w = mdps::anomaly_mix_weight(max_f[0], max_p[0], eta);
  const int64_t n4 = n / 4, stride = int64_t(gridDim.x) * blockDim.x;
  const float4* f4 = reinterpret_cast<const float4*>(f);
  const float4* p4 = reinterpret_cast<const float4*>(p);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 a = f4[i], b = p4[i];
    float4 r;
    r.x = a.x + w * b.x;
    r.y = a.y + w * b.y;
    r.z = a.z + w * b.z;
    r.w = a.w + w * b.w;
    y4[i] = r;
  }
  if (blockIdx.x == 0 && threadIdx.x < n % 4) {
    const int64_t i = 4 * n4 + threadIdx.x;
    y[i] = f[i] + w * p[i];
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), H = o.size("h", 256), W = o.size("w", 256), n = N * H * W;
  const float eta = 7.f;
  bench::print_device();
  std::printf("anomaly_mix [%lld, 1, %lld, %lld], eta %g\n", (long long)N, (long long)H, (long long)W, double(eta));

  const mdps::Shape s{N, 1, H, W};
  mdps::Tensor f = mdps::Tensor::from_vector(s, bench::random_floats(static_cast<size_t>(n), 1, 0.f, 2.f));
  mdps::Tensor p = mdps::Tensor::from_vector(s, bench::random_floats(static_cast<size_t>(n), 2, 0.f, 0.5f));
  mdps::Tensor max_f = mdps::Tensor::full({1}, NAN), max_p = mdps::Tensor::full({1}, NAN), ref = mdps::Tensor::empty(s);
  mdps::cpu_backend().max(f, max_f);
  mdps::cpu_backend().max(p, max_p);
  mdps::cpu_backend().anomaly_mix(f, p, max_f, max_p, eta, ref);
  const std::vector<float> ref_v = ref.to_vector();
  float* df = bench::to_device(f.to_vector());
  float* dp = bench::to_device(p.to_vector());
  float* dmf = bench::to_device(max_f.to_vector());
  float* dmp = bench::to_device(max_p.to_vector());
  float* dy = bench::device_buffer<float>(static_cast<size_t>(n));
  const double bytes = 4.0 * (3.0 * double(n) + 2.0);  // read F, P and the maxima, write y

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::anomaly_mix_kernel<<<mdps::cuda::elementwise_blocks(n, unsigned(block)), block>>>(
              df, dp, dmf, dmp, eta, dy, n);
        } else {
          anomaly_mix_float4<<<mdps::cuda::elementwise_blocks(std::max<int64_t>(1, n / 4), unsigned(block)), block>>>(
              df, dp, dmf, dmp, eta, dy, n);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, static_cast<size_t>(n) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, static_cast<size_t>(n)), ref_v, 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* d : {df, dp, dmf, dmp, dy}) BENCH_CHECK(cudaFree(d));
  return 0;
}
