// Playground: the fused MDPS sampling step over [N, C, H, W] with its mask
// [N, 1, H, W] (all optional inputs present, as in the sampler).
//   version 1  the production kernel (kernels/cuda/mdps_step_kernel.cuh)
//   version 2  float4 loads and stores, 32-bit index arithmetic for the mask
//              (needs H*W % 4 == 0 and fewer than 2^31 elements)
// CPU reference: the CPU backend's mdps_step (same MDPS_HD arithmetic; the GPU
// may contract to fma, hence the tolerance).
//   ./mdps_step [VERSION] [--peak-gbs GBS] [--n 8 --c 3 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/mdps_step_kernel.cuh"

namespace {

using mdps::StepCoeffs;

// Candidate: four consecutive elements per thread; they share a plane
// because hw % 4 == 0, so their mask values are consecutive too.
__global__ void mdps_step_float4(const float4* __restrict__ x, const float4* __restrict__ y,
                                 const float4* __restrict__ eps, const float4* __restrict__ grad,
                                 const float* __restrict__ mask, const float4* __restrict__ z, StepCoeffs c,
                                 float4* __restrict__ x_next, float4* __restrict__ x0_hat, int n4, int chw, int hw) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const int e = 4 * i;
    const float4 m4 = *reinterpret_cast<const float4*>(mask + (e / chw) * hw + e % hw);
    const float4 xv = x[i], yv = y[i], ev = eps[i], gv = grad[i], zv = z[i];
    float4 xn, x0;
    mdps::mdps_step_element(xv.x, yv.x, ev.x, gv.x, m4.x, zv.x, c, &xn.x, &x0.x);
    mdps::mdps_step_element(xv.y, yv.y, ev.y, gv.y, m4.y, zv.y, c, &xn.y, &x0.y);
    mdps::mdps_step_element(xv.z, yv.z, ev.z, gv.z, m4.z, zv.z, c, &xn.z, &x0.z);
    mdps::mdps_step_element(xv.w, yv.w, ev.w, gv.w, m4.w, zv.w, c, &xn.w, &x0.w);
    x_next[i] = xn;
    x0_hat[i] = x0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 3), H = o.size("h", 256), W = o.size("w", 256);
  const int64_t hw = H * W, chw = C * hw, n = N * chw;
  bench::print_device();
  std::printf("mdps_step [%lld, %lld, %lld, %lld]\n", (long long)N, (long long)C, (long long)H, (long long)W);

  StepCoeffs c;
  c.sqrt_a = 0.6f;
  c.sqrt_1ma = 0.8f;
  c.sqrt_a_next = 0.7f;
  c.dir = 0.5f;
  c.sigma = 0.3f;
  c.guidance = 0.25f;
  const mdps::Shape s{N, C, H, W}, sm{N, 1, H, W};
  auto tensor = [](const mdps::Shape& sh, uint64_t seed, float lo, float hi) {
    return mdps::Tensor::from_vector(sh, bench::random_floats(size_t(mdps::shape_numel(sh)), seed, lo, hi));
  };
  mdps::Tensor x = tensor(s, 1, -1, 1), y = tensor(s, 2, -1, 1), e = tensor(s, 3, -1, 1), g = tensor(s, 4, -1, 1),
               z = tensor(s, 5, -1, 1), m = tensor(sm, 6, 0, 1);
  mdps::Tensor ref_next = mdps::Tensor::zeros(s), ref_x0 = mdps::Tensor::zeros(s);
  mdps::cpu_backend().mdps_step(x, y, e, &g, &m, &z, c, ref_next, &ref_x0);

  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::to_device(y.to_vector());
  float* de = bench::to_device(e.to_vector());
  float* dg = bench::to_device(g.to_vector());
  float* dz = bench::to_device(z.to_vector());
  float* dm = bench::to_device(m.to_vector());
  float* dn = bench::device_buffer<float>(size_t(n));
  float* d0 = bench::device_buffer<float>(size_t(n));
  // Read x, y, eps, grad, z and the mask once, write x_next and x0_hat.
  const double bytes = 4.0 * double(7 * n + N * hw);

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (hw % 4 != 0 || n >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs H*W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          const unsigned grid = mdps::cuda::elementwise_blocks(n, unsigned(block));
          mdps::cuda::mdps_step_kernel<<<grid, block>>>(dx, dy, de, dg, dm, dz, c, dn, d0, n, chw, hw);
        } else {
          const int n4 = int(n / 4);
          const unsigned grid = mdps::cuda::elementwise_blocks(n4, unsigned(block));
          mdps_step_float4<<<grid, block>>>(reinterpret_cast<const float4*>(dx), reinterpret_cast<const float4*>(dy),
                                            reinterpret_cast<const float4*>(de), reinterpret_cast<const float4*>(dg),
                                            dm, reinterpret_cast<const float4*>(dz), c,
                                            reinterpret_cast<float4*>(dn), reinterpret_cast<float4*>(d0), n4,
                                            int(chw), int(hw));
        }
      };
      BENCH_CHECK(cudaMemset(dn, 0xff, size_t(n) * 4));
      auto valid = [&] {
        return bench::validate("x_next", bench::to_host(dn, size_t(n)), ref_next.to_vector(), 1e-5) &&
               bench::validate("x0_hat", bench::to_host(d0, size_t(n)), ref_x0.to_vector(), 1e-5);
      };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* p : {dx, dy, de, dg, dz, dm, dn, d0}) BENCH_CHECK(cudaFree(p));
  return 0;
}
