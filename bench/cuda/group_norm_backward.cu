// Playground: group norm backward over [N, C, H*W] with 32 groups, with and
// without the fused SiLU, as launch_group_norm_backward runs it: kernel 1 one
// block per (sample, group) (per-channel sums of dz and dz * xhat into
// doubles, then dx), kernel 2 one thread per channel (dgamma, dbeta: the
// per-sample sums added in order). Both are timed together as the op.
//   version 1  the production kernels (kernels/cuda/group_norm_backward_kernel.cuh):
//              per channel two block reductions; the dx pass over the whole
//              group with a 64-bit division per element for its channel
//   version 2  kernel 1 with one paired block reduction per channel (half the
//              barriers) and a dx pass channel by channel (the channel's
//              gamma, beta and gamma * rstd hoisted, no division); with
//              H*W < block size the per-channel passes leave threads idle, as
//              version 1's statistics already do
//   version 3  version 2 with float4 loads and stores (H*W % 4 == 0)
// Kernel 2 is the production kernel in every version (C threads, too small
// for a candidate), launched with elementwise_blocks(C, block) blocks of the
// swept size; the production geometry is block 256 for both (kReduceBlock,
// kElementwiseBlock). Any multiple of 32 works for kernel 1 (the block
// reductions), any size for kernel 2.
// CPU reference: the CPU backend's group_norm (for mean and rstd) and
// group_norm_backward. Tolerances (the emulation test's, absolute): dx within
// 16 * 6e-8 * max(2 |dy gamma rstd| + 1) (each dx is a difference of terms of
// that size); dgamma and dbeta within 1e-6 (N * H*W + 1) (sums of N * H*W
// terms, SiLU's expf against the CPU's exp).
// Default: a 64 x 64 level of the bottle U-Net at batch 8, 128 channels.
//   ./group_norm_backward [VERSION] [--peak-gbs GBS] [--n 8 --c 128 --hw 4096 --groups 32 --silu 0|1]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/group_norm_backward_kernel.cuh"
#include "kernels/cuda/launch.h"

namespace {

using mdps::cuda::gn_dz;
using mdps::cuda::SumOp;

// a and b summed over the block, returned to every thread: block_reduce for
// two values at once (one set of barriers). blockDim.x a multiple of 32.
__device__ __forceinline__ void block_reduce_pair(double& a, double& b, double (*scratch)[32]) {
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32), nwarps = int(blockDim.x / 32);
  a = mdps::cuda::warp_reduce(a, SumOp());
  b = mdps::cuda::warp_reduce(b, SumOp());
  __syncthreads();  // the previous call's readers are done with scratch
  if (lane == 0) {
    scratch[0][warp] = a;
    scratch[1][warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = mdps::cuda::warp_reduce(lane < nwarps ? scratch[0][lane] : 0.0, SumOp());
    b = mdps::cuda::warp_reduce(lane < nwarps ? scratch[1][lane] : 0.0, SumOp());
    if (lane == 0) {
      scratch[0][0] = a;
      scratch[1][0] = b;
    }
  }
  __syncthreads();
  a = scratch[0][0];
  b = scratch[1][0];
}

// Kernel 1, channel by channel; the production kernel's arguments and outputs.
template <bool kVec4>
__global__ void group_norm_backward_per_channel(const float* __restrict__ dy, const float* __restrict__ x,
                                                const float* __restrict__ gamma, const float* __restrict__ beta,
                                                const float* __restrict__ mean, const float* __restrict__ rstd,
                                                int groups, int64_t cg, int64_t hw, bool silu, float* __restrict__ dx,
                                                double* __restrict__ sum_dz, double* __restrict__ sum_dzx) {
  __shared__ double scratch[2][32];
  const int64_t ng = blockIdx.x;
  const int64_t n = ng / groups, c0 = (ng % groups) * cg, C = int64_t(groups) * cg;
  const int64_t len = cg * hw;
  const float mu = mean[ng], r = rstd[ng];
  const float* xg = x + ng * len;
  const float* dyg = dy + ng * len;
  double g1 = 0, g2 = 0;  // over the group: sum gamma*dz, sum gamma*dz*xhat
  for (int64_t cl = 0; cl < cg; ++cl) {
    const int64_t c = c0 + cl;
    const float ga = gamma[c], be = beta[c], gr = r * ga;
    const float* xc = xg + cl * hw;
    const float* dyc = dyg + cl * hw;
    double s1 = 0, sx = 0;
    auto add = [&](float d, float xv) {
      const float dz = gn_dz(d, xv, mu, gr, be, silu);
      s1 += dz;
      sx += double(dz) * xv;
    };
    if (kVec4) {
      const float4* x4 = reinterpret_cast<const float4*>(xc);
      const float4* dy4 = reinterpret_cast<const float4*>(dyc);
      for (int64_t i = threadIdx.x; i < hw / 4; i += blockDim.x) {
        const float4 xv = x4[i], dv = dy4[i];
        add(dv.x, xv.x);
        add(dv.y, xv.y);
        add(dv.z, xv.z);
        add(dv.w, xv.w);
      }
    } else {
      for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) add(dyc[i], xc[i]);
    }
    block_reduce_pair(s1, sx, scratch);
    const double s2 = double(r) * (sx - double(mu) * s1);
    if (threadIdx.x == 0) {
      sum_dz[n * C + c] = s1;
      sum_dzx[n * C + c] = s2;
    }
    g1 += s1 * ga;
    g2 += s2 * ga;
  }
  if (!dx) return;
  const double m1 = len ? g1 / double(len) : 0.0, m2 = len ? g2 / double(len) : 0.0;
  const float fm1 = float(m1 * r), fm2 = float(m2 * r);
  float* dxg = dx + ng * len;
  for (int64_t cl = 0; cl < cg; ++cl) {
    const int64_t c = c0 + cl;
    const float ga = gamma[c], be = beta[c], gr = r * ga;
    const float* xc = xg + cl * hw;
    const float* dyc = dyg + cl * hw;
    float* dxc = dxg + cl * hw;
    auto grad = [&](float d, float xv) {
      const float dz = gn_dz(d, xv, mu, gr, be, silu);
      const float xh = (xv - mu) * r;
      return dz * gr - fm1 - xh * fm2;
    };
    if (kVec4) {
      const float4* x4 = reinterpret_cast<const float4*>(xc);
      const float4* dy4 = reinterpret_cast<const float4*>(dyc);
      float4* dx4 = reinterpret_cast<float4*>(dxc);
      for (int64_t i = threadIdx.x; i < hw / 4; i += blockDim.x) {
        const float4 xv = x4[i], dv = dy4[i];
        dx4[i] = make_float4(grad(dv.x, xv.x), grad(dv.y, xv.y), grad(dv.z, xv.z), grad(dv.w, xv.w));
      }
    } else {
      for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) dxc[i] = grad(dyc[i], xc[i]);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 128), HW = o.size("hw", 64 * 64);
  const int groups = int(o.size("groups", 32));
  const int64_t only_silu = o.size("silu", -1);  // -1: both
  if (N < 1 || C < 1 || HW < 1 || groups < 1 || C % groups != 0 || N * groups >= (int64_t(1) << 31)) {
    std::fprintf(stderr, "need N, C, HW >= 1, --c a multiple of --groups and N * groups < 2^31\n");
    return 2;
  }
  const int64_t cg = C / groups, n = N * C * HW, G = groups;
  bench::print_device();
  std::printf("group_norm_backward [%lld, %lld, %lld], %d groups\n", (long long)N, (long long)C, (long long)HW,
              groups);

  // The test's ranges: x away from 0, gamma around 1.
  mdps::Tensor x = mdps::Tensor::from_vector({N, C, HW}, bench::random_floats(static_cast<size_t>(n), 1, 2.f, 5.f));
  mdps::Tensor dy = mdps::Tensor::from_vector({N, C, HW}, bench::random_floats(static_cast<size_t>(n), 2, -1.f, 1.f));
  mdps::Tensor gamma = mdps::Tensor::from_vector({C}, bench::random_floats(static_cast<size_t>(C), 3, 0.5f, 1.5f));
  mdps::Tensor beta = mdps::Tensor::from_vector({C}, bench::random_floats(static_cast<size_t>(C), 4, -1.f, 1.f));
  const std::vector<float> hgamma = gamma.to_vector(), hdy = dy.to_vector();

  float* d_x = bench::to_device(x.to_vector());
  float* d_dy = bench::to_device(hdy);
  float* d_gamma = bench::to_device(hgamma);
  float* d_beta = bench::to_device(beta.to_vector());
  float* d_mean = bench::device_buffer<float>(static_cast<size_t>(N * G));
  float* d_rstd = bench::device_buffer<float>(static_cast<size_t>(N * G));
  float* d_dx = bench::device_buffer<float>(static_cast<size_t>(n));
  double* d_sums = bench::device_buffer<double>(static_cast<size_t>(2 * N * C));  // sum_dz, then sum_dzx
  float* d_dgamma = bench::device_buffer<float>(static_cast<size_t>(C));
  float* d_dbeta = bench::device_buffer<float>(static_cast<size_t>(C));
  // dy and x read once, dx written; gamma, beta, mean, rstd; the double sums
  // written and read back; dgamma, dbeta written (versions 1 to 3 read dy and x twice).
  const double bytes = 12.0 * double(n) + 16.0 * double(C) + 8.0 * double(N * G) + 32.0 * double(N * C) +
                       8.0 * double(C);
  const double param_bytes = 16.0 * double(N * C) + 8.0 * double(C);

  for (int s = 0; s <= 1; ++s) {
    if (only_silu >= 0 && only_silu != s) continue;
    const bool silu = s == 1;
    std::printf("\nsilu %d\n", s);
    mdps::Tensor y = mdps::Tensor::zeros({N, C, HW}), mean = mdps::Tensor::zeros({N * G}),
                 rstd = mdps::Tensor::zeros({N * G});
    mdps::cpu_backend().group_norm(x, gamma, beta, groups, 1e-5f, silu, y, mean, rstd);
    mdps::Tensor rdx = mdps::Tensor::zeros({N, C, HW}), rdg = mdps::Tensor::zeros({C}), rdb = mdps::Tensor::zeros({C});
    mdps::cpu_backend().group_norm_backward(dy, x, gamma, beta, mean, rstd, groups, silu, &rdx, &rdg, &rdb);
    const std::vector<float> hrstd = rstd.to_vector();
    BENCH_CHECK(cudaMemcpy(d_mean, mean.data(), sizeof(float) * size_t(N * G), cudaMemcpyHostToDevice));
    BENCH_CHECK(cudaMemcpy(d_rstd, hrstd.data(), sizeof(float) * size_t(N * G), cudaMemcpyHostToDevice));
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t ng = i / (HW * cg), c = (i / HW) % C;
      scale = std::max(scale, 2.0 * std::fabs(double(hdy[size_t(i)]) * hgamma[size_t(c)] * hrstd[size_t(ng)]) + 1.0);
    }
    const double dx_tol = 16 * scale * 6e-8, param_tol = 1e-6 * double(N * HW + 1);

    for (int version = 1; version <= 3; ++version) {
      if (o.version != 0 && o.version != version) continue;
      if (version == 3 && HW % 4 != 0) {
        std::printf("version 3: skipped (needs H*W %% 4 == 0)\n");
        continue;
      }
      for (int block : bench::block_sizes()) {
        const unsigned grid = unsigned(N * G), param_grid = mdps::cuda::elementwise_blocks(C, unsigned(block));
        auto launch = [&] {
          if (version == 1)
            mdps::cuda::group_norm_backward_kernel<<<grid, block>>>(d_dy, d_x, d_gamma, d_beta, d_mean, d_rstd,
                                                                    groups, cg, HW, silu, d_dx, d_sums,
                                                                    d_sums + N * C);
          else if (version == 2)
            group_norm_backward_per_channel<false><<<grid, block>>>(d_dy, d_x, d_gamma, d_beta, d_mean, d_rstd,
                                                                    groups, cg, HW, silu, d_dx, d_sums,
                                                                    d_sums + N * C);
          else
            group_norm_backward_per_channel<true><<<grid, block>>>(d_dy, d_x, d_gamma, d_beta, d_mean, d_rstd,
                                                                   groups, cg, HW, silu, d_dx, d_sums,
                                                                   d_sums + N * C);
          mdps::cuda::group_norm_param_grad_kernel<<<param_grid, block>>>(d_sums, d_sums + N * C, N, C, d_dgamma,
                                                                          d_dbeta);
        };
        BENCH_CHECK(cudaMemset(d_dx, 0xff, sizeof(float) * size_t(n)));
        BENCH_CHECK(cudaMemset(d_sums, 0xff, sizeof(double) * size_t(2 * N * C)));
        BENCH_CHECK(cudaMemset(d_dgamma, 0xff, sizeof(float) * size_t(C)));
        BENCH_CHECK(cudaMemset(d_dbeta, 0xff, sizeof(float) * size_t(C)));
        auto valid = [&] {
          return bench::validate_abs("dx", bench::to_host(d_dx, static_cast<size_t>(n)), rdx.to_vector(), dx_tol) &&
                 bench::validate_abs("dgamma", bench::to_host(d_dgamma, static_cast<size_t>(C)), rdg.to_vector(),
                                     param_tol) &&
                 bench::validate_abs("dbeta", bench::to_host(d_dbeta, static_cast<size_t>(C)), rdb.to_vector(),
                                     param_tol);
        };
        // A block the device refuses (registers) is skipped.
        bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
      }
    }
    // Kernel 2 alone at the launcher's geometry, on the sums of kernel 1 at its.
    if (o.version == 0 || o.version == 1) {
      mdps::cuda::group_norm_backward_kernel<<<unsigned(N * G), mdps::cuda::kReduceBlock>>>(
          d_dy, d_x, d_gamma, d_beta, d_mean, d_rstd, groups, cg, HW, silu, d_dx, d_sums, d_sums + N * C);
      BENCH_CHECK(cudaGetLastError());
      const unsigned param_grid = mdps::cuda::elementwise_blocks(C);
      auto param_launch = [&] {
        mdps::cuda::group_norm_param_grad_kernel<<<param_grid, mdps::cuda::kElementwiseBlock>>>(
            d_sums, d_sums + N * C, N, C, d_dgamma, d_dbeta);
      };
      auto param_valid = [&] {
        return bench::validate_abs("dgamma", bench::to_host(d_dgamma, static_cast<size_t>(C)), rdg.to_vector(),
                                   param_tol) &&
               bench::validate_abs("dbeta", bench::to_host(d_dbeta, static_cast<size_t>(C)), rdb.to_vector(),
                                   param_tol);
      };
      BENCH_CHECK(cudaMemset(d_dgamma, 0xff, sizeof(float) * size_t(C)));
      BENCH_CHECK(cudaMemset(d_dbeta, 0xff, sizeof(float) * size_t(C)));
      std::printf("group_norm_param_grad_kernel alone:\n");
      bench::time_if_valid(1, int(mdps::cuda::kElementwiseBlock), param_launch, param_valid, param_bytes, 0, o);
    }
  }
  for (float* p : {d_x, d_dy, d_gamma, d_beta, d_mean, d_rstd, d_dx, d_dgamma, d_dbeta}) BENCH_CHECK(cudaFree(p));
  BENCH_CHECK(cudaFree(d_sums));
  return 0;
}
