// Playground: one Adam step (coupled weight decay 0.05, the authors' setting)
// over a flat parameter vector of the U-Net's size.
//   version 1  the production kernel (kernels/cuda/adam_kernel.cuh): one
//              element per thread, grid-stride
//   version 2  float4 loads and stores of all four streams (param, grad, m,
//              v), the same adam_element arithmetic four times; a scalar tail
// CPU reference: the CPU backend's adam_update (the same operation order; the
// GPU may contract to fma, hence the tolerance).
//   ./adam [VERSION] [--peak-gbs GBS] [--n 35000000]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/adam_kernel.cuh"

namespace {

using mdps::cuda::AdamScalars;

__global__ void adam_float4(float4* __restrict__ param, const float4* __restrict__ grad, float4* __restrict__ m,
                            float4* __restrict__ v, AdamScalars s, int64_t n4) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 p = param[i], mi = m[i], vi = v[i];
    const float4 g = grad[i];
    mdps::cuda::adam_element(p.x, g.x, mi.x, vi.x, s);
    mdps::cuda::adam_element(p.y, g.y, mi.y, vi.y, s);
    mdps::cuda::adam_element(p.z, g.z, mi.z, vi.z, s);
    mdps::cuda::adam_element(p.w, g.w, mi.w, vi.w, s);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

// The last n % 4 elements of version 2.
__global__ void adam_tail(float* param, const float* grad, float* m, float* v, AdamScalars s, int64_t from,
                          int64_t n) {
  const int64_t i = from + threadIdx.x;
  if (i < n) mdps::cuda::adam_element(param[i], grad[i], m[i], v[i], s);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t n = o.size("n", 35000000);  // about the authors' U-Net at base 128
  bench::print_device();
  std::printf("adam over %lld parameters\n", (long long)n);

  mdps::AdamParams p;
  p.weight_decay = 0.05f;
  const int64_t step = 7;
  const std::vector<float> w0 = bench::random_floats(size_t(n), 1), g0 = bench::random_floats(size_t(n), 2),
                           m0 = bench::random_floats(size_t(n), 3, -0.1f, 0.1f),
                           v0 = bench::random_floats(size_t(n), 4, 0.f, 0.01f);
  mdps::Tensor w = mdps::Tensor::from_vector({n}, w0), g = mdps::Tensor::from_vector({n}, g0),
               m = mdps::Tensor::from_vector({n}, m0), v = mdps::Tensor::from_vector({n}, v0);
  mdps::cpu_backend().adam_update(w, g, m, v, p, step);
  const AdamScalars s = mdps::cuda::adam_scalars(p, step);
  float* dp = bench::to_device(w0);
  float* dg = bench::to_device(g0);
  float* dm = bench::to_device(m0);
  float* dv = bench::to_device(v0);
  const double bytes = 7.0 * 4.0 * double(n);  // read param, grad, m, v; write param, m, v

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::adam_kernel<<<mdps::cuda::elementwise_blocks(n, unsigned(block)), block>>>(dp, dg, dm, dv, s,
                                                                                                 n);
        } else {
          const int64_t n4 = n / 4;
          adam_float4<<<mdps::cuda::elementwise_blocks(std::max<int64_t>(1, n4), unsigned(block)), block>>>(
              reinterpret_cast<float4*>(dp), reinterpret_cast<const float4*>(dg), reinterpret_cast<float4*>(dm),
              reinterpret_cast<float4*>(dv), s, n4);
          if (n % 4) adam_tail<<<1, 4>>>(dp, dg, dm, dv, s, 4 * n4, n);
        }
      };
      // Validation from the initial state (each launch steps in place).
      BENCH_CHECK(cudaMemcpy(dp, w0.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(dm, m0.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
      BENCH_CHECK(cudaMemcpy(dv, v0.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
      auto valid = [&] {
        return bench::validate("param", bench::to_host(dp, size_t(n)), w.to_vector(), 1e-6) &&
               bench::validate("m", bench::to_host(dm, size_t(n)), m.to_vector(), 1e-6) &&
               bench::validate("v", bench::to_host(dv, size_t(n)), v.to_vector(), 1e-6);
      };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* d : {dp, dg, dm, dv}) BENCH_CHECK(cudaFree(d));
  return 0;
}
