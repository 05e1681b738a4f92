// Playground: the authors' masked variant's replacement, in place over x_t
// [N, C, H, W] with the mask [N, 1, H, W] broadcast over channels:
// x = m != 0 ? x : sqrt_a y + sqrt_1ma z_fixed (kernels/shared/mdps_step.h's
// replace_normal_element), once per sampling step over [8, 3, 256, 256].
//   version 1  the production kernel (kernels/cuda/replace_normal_kernel.cuh):
//              one element per thread, grid-stride, 64-bit division and
//              modulo for the mask index on every element
//   version 2  float4 loads and stores of x, y, z and the mask (the four
//              elements share a plane because H*W % 4 == 0), 32-bit index
//              arithmetic (needs H*W % 4 == 0 and fewer than 2^31 elements)
// The replacement is idempotent, so the timed launches repeat it in place;
// validation starts from the original x each time.
// CPU reference: the CPU backend's replace_normal (the same MDPS_HD
// arithmetic). Tolerance 1e-6, that of tests/kernels/test_cuda_backend.cpp: the GPU
// contracts sqrt_a y + sqrt_1ma z into an fma (<= 1 ulp of the larger term).
// The mask holds exact 0s and 1s and fractions (as tests/kernels/test_cuda_kernels_emu.cpp's).
//   ./replace_normal [VERSION] [--peak-gbs GBS] [--n 8 --c 3 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/shared/mdps_step.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/replace_normal_kernel.cuh"

namespace {

// Version 2: four consecutive elements per thread.
__global__ void replace_normal_float4(float4* __restrict__ x, const float4* __restrict__ y,
                                      const float4* __restrict__ z, const float* __restrict__ mask, float sqrt_a,
                                      float sqrt_1ma, int n4, int chw, int hw) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const int e = 4 * i;
    const float4 m = *reinterpret_cast<const float4*>(mask + (e / chw) * hw + e % hw);
    const float4 xv = x[i], yv = y[i], zv = z[i];
    x[i] = make_float4(mdps::replace_normal_element(xv.x, yv.x, zv.x, m.x, sqrt_a, sqrt_1ma),
                       mdps::replace_normal_element(xv.y, yv.y, zv.y, m.y, sqrt_a, sqrt_1ma),
                       mdps::replace_normal_element(xv.z, yv.z, zv.z, m.z, sqrt_a, sqrt_1ma),
                       mdps::replace_normal_element(xv.w, yv.w, zv.w, m.w, sqrt_a, sqrt_1ma));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 3), H = o.size("h", 256), W = o.size("w", 256);
  const int64_t hw = H * W, chw = C * hw, n = N * chw;
  if (n < 1) {
    std::fprintf(stderr, "replace_normal: empty tensor\n");
    return 2;
  }
  bench::print_device();
  std::printf("replace_normal [%lld, %lld, %lld, %lld]\n", (long long)N, (long long)C, (long long)H, (long long)W);

  const float sqrt_a = 0.6f, sqrt_1ma = 0.8f;
  const mdps::Shape s{N, C, H, W}, sm{N, 1, H, W};
  const std::vector<float> x0 = bench::random_floats(size_t(n), 1), yv = bench::random_floats(size_t(n), 2),
                           zv = bench::random_floats(size_t(n), 3);
  std::vector<float> mv = bench::random_floats(size_t(N * hw), 4, 0.f, 3.f);
  for (float& m : mv) m = m < 1.f ? 0.f : (m < 2.f ? 1.f : m - 2.f);  // exact 0s, 1s and fractions
  mdps::Tensor ref = mdps::Tensor::from_vector(s, x0);
  mdps::cpu_backend().replace_normal(ref, mdps::Tensor::from_vector(s, yv), mdps::Tensor::from_vector(s, zv),
                                     mdps::Tensor::from_vector(sm, mv), sqrt_a, sqrt_1ma);
  const std::vector<float> ref_v = ref.to_vector();
  float* dx = bench::device_buffer<float>(size_t(n));
  float* dy = bench::to_device(yv);
  float* dz = bench::to_device(zv);
  float* dm = bench::to_device(mv);
  // Read x, y, z and the mask once, write x.
  const double bytes = 4.0 * double(4 * n + N * hw);
  const int limit[3] = {0, bench::max_threads(mdps::cuda::replace_normal_kernel),
                        bench::max_threads(replace_normal_float4)};

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (hw % 4 != 0 || n >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs H*W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      if (bench::over_thread_limit(version, block, limit[version])) continue;
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::replace_normal_kernel<<<mdps::cuda::elementwise_blocks(n, unsigned(block)), block>>>(
              dx, dy, dz, dm, sqrt_a, sqrt_1ma, n, chw, hw);
        } else {
          const int n4 = int(n / 4);
          replace_normal_float4<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
              reinterpret_cast<float4*>(dx), reinterpret_cast<const float4*>(dy), reinterpret_cast<const float4*>(dz),
              dm, sqrt_a, sqrt_1ma, n4, int(chw), int(hw));
        }
      };
      // In place: from the original x, so an element the kernel skips keeps
      // its input (no NaN fill here: x is an input too).
      BENCH_CHECK(cudaMemcpy(dx, x0.data(), size_t(n) * sizeof(float), cudaMemcpyHostToDevice));
      auto valid = [&] { return bench::validate("x", bench::to_host(dx, size_t(n)), ref_v, 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  for (float* p : {dx, dy, dz, dm}) BENCH_CHECK(cudaFree(p));
  return 0;
}
