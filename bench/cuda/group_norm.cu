// Playground: group norm (+SiLU) forward over [N, C, H*W] with 32 groups,
// one block per (sample, group).
//   version 1  the production kernel (kernels/cuda/group_norm_kernel.cuh):
//              three passes over the group (mean, squared deviations, output)
//   version 2  two passes: sum and sum of squares together in double (the
//              double keeps the variance's cancellation harmless), then output
// CPU reference: the CPU backend's group_norm.
//   ./group_norm [VERSION] [--peak-gbs GBS] [--n 8 --c 256 --hw 4096 --groups 32 --silu 1]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/group_norm_kernel.cuh"

namespace {

__global__ void group_norm_one_pass_stats(const float* __restrict__ x, const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* __restrict__ y,
                                          float* __restrict__ mean, float* __restrict__ rstd, int groups, int64_t cg,
                                          int64_t hw, float eps, bool silu) {
  __shared__ double scratch[32];
  const int64_t ng = blockIdx.x, len = cg * hw;
  const float* xg = x + ng * len;
  float* yg = y + ng * len;
  double s = 0, q = 0;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const double v = xg[i];
    s += v;
    q += v * v;
  }
  s = mdps::cuda::block_reduce(s, mdps::cuda::SumOp(), 0.0, scratch);
  q = mdps::cuda::block_reduce(q, mdps::cuda::SumOp(), 0.0, scratch);
  const double mu_d = s / double(len), var = q / double(len) - mu_d * mu_d;
  const float mu = float(mu_d), r = float(1.0 / sqrt((var > 0 ? var : 0) + double(eps)));
  if (threadIdx.x == 0) {
    mean[ng] = mu;
    rstd[ng] = r;
  }
  const int64_t c0 = (ng % groups) * cg;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t c = c0 + i / hw;
    const float v = (xg[i] - mu) * (r * gamma[c]) + beta[c];
    yg[i] = silu ? v / (1.f + expf(-v)) : v;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 256), HW = o.size("hw", 4096);
  const int groups = int(o.size("groups", 32));
  const bool silu = o.size("silu", 1) != 0;
  if (C % groups != 0) {
    std::fprintf(stderr, "--c %lld is not a multiple of --groups %d\n", (long long)C, groups);
    return 2;
  }
  const int64_t cg = C / groups, n = N * C * HW;
  bench::print_device();
  std::printf("group_norm [%lld, %lld, %lld], %d groups, silu %d\n", (long long)N, (long long)C, (long long)HW,
              groups, int(silu));

  mdps::Tensor x = mdps::Tensor::from_vector({N, C, HW}, bench::random_floats(size_t(n), 1, -2.f, 3.f));
  mdps::Tensor gamma = mdps::Tensor::from_vector({C}, bench::random_floats(size_t(C), 2, 0.5f, 1.5f));
  mdps::Tensor beta = mdps::Tensor::from_vector({C}, bench::random_floats(size_t(C), 3, -0.5f, 0.5f));
  mdps::Tensor ref = mdps::Tensor::zeros({N, C, HW}), rmean = mdps::Tensor::zeros({N, groups}),
               rrstd = mdps::Tensor::zeros({N, groups});
  mdps::cpu_backend().group_norm(x, gamma, beta, groups, 1e-5f, silu, ref, rmean, rrstd);

  float* dx = bench::to_device(x.to_vector());
  float* dgamma = bench::to_device(gamma.to_vector());
  float* dbeta = bench::to_device(beta.to_vector());
  float* dy = bench::device_buffer<float>(size_t(n));
  float* dmean = bench::device_buffer<float>(size_t(N * groups));
  float* drstd = bench::device_buffer<float>(size_t(N * groups));
  // The least traffic of any version: read x once, write y once.
  const double bytes = 8.0 * double(n);
  const unsigned grid = unsigned(N * groups);

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1)
          mdps::cuda::group_norm_kernel<<<grid, block>>>(dx, dgamma, dbeta, dy, dmean, drstd, groups, cg, HW, 1e-5f,
                                                         silu);
        else
          group_norm_one_pass_stats<<<grid, block>>>(dx, dgamma, dbeta, dy, dmean, drstd, groups, cg, HW, 1e-5f,
                                                     silu);
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(n) * 4));
      // The GPU's expf and fma and another order of summation: the tests' 1e-5.
      auto valid = [&] {
        return bench::validate("y", bench::to_host(dy, size_t(n)), ref.to_vector(), 1e-5) &&
               bench::validate("mean", bench::to_host(dmean, size_t(N * groups)), rmean.to_vector(), 1e-5) &&
               bench::validate("rstd", bench::to_host(drstd, size_t(N * groups)), rrstd.to_vector(), 1e-5);
      };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* p : {dx, dgamma, dbeta, dy, dmean, drstd}) BENCH_CHECK(cudaFree(p));
  return 0;
}
