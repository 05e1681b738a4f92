// Playground: F.interpolate(mode="bilinear", align_corners=True),
// [N, C, Hi, Wi] -> [N, C, H, W]; default: the anomaly map's upsample of a
// feature distance map, [8, 1, 64, 64] -> [8, 1, 256, 256].
//   version 1  the production kernel (kernels/cuda/resize_bilinear_kernel.cuh):
//              one output element per thread, grid-stride, the row and column
//              taps recomputed per element after 64-bit divisions
//   version 2  four consecutive outputs of a row per thread: the row tap once,
//              four column taps, one float4 store, 32-bit index arithmetic
//              (needs W % 4 == 0 and fewer than 2^31 outputs); the same
//              bilinear_tap_align_corners / bilinear_mix arithmetic
// CPU reference: hostops::resize_bilinear_align_corners (kernels/cpu/cpu_image_ops.h),
// the same MDPS_HD arithmetic (kernels/shared/anomaly_map_arith.h), bit-equal under
// the emulation. On a GPU the blend's products and sums become fmas (the
// sm_90 PTX shows them), and the tap weight src - k (src = scale * o) is a
// mul.f32 and a sub.f32 that ptxas may still fuse to fma(scale, o, -k),
// which moves each weight by up to half an ulp of src, at most
// (Hi - 1) * 2^-24 (rows) and (Wi - 1) * 2^-24 (columns); with inputs in
// [-1, 1] (a neighbour difference at most 2) the tolerance is
// 1e-6 + 4 * max(Hi, Wi) * 2^-24, relative (about 1.6e-5 at 64 x 64).
//   ./resize_bilinear [VERSION] [--peak-gbs GBS] [--n 8 --c 1 --hi 64 --wi 64 --h 256 --w 256]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/resize_bilinear_kernel.cuh"

namespace {

// Outputs 4q..4q+3 of y [planes, H, W] (W % 4 == 0: one row); W4 = W / 4.
__global__ void resize_bilinear_float4(const float* __restrict__ x, float4* __restrict__ y, int Hi, int Wi, int H,
                                       int W4, int n4) {
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < n4; q += gridDim.x * blockDim.x) {
    const int ow = 4 * (q % W4), r = q / W4, oh = r % H, p = r / H;
    const mdps::BilinearTap th = mdps::bilinear_tap_align_corners(Hi, H, oh);
    const float* r0 = x + (p * Hi + int(th.i0)) * Wi;
    const float* r1 = x + (p * Hi + int(th.i1)) * Wi;
    float v[4];
    for (int k = 0; k < 4; ++k) {
      const mdps::BilinearTap tw = mdps::bilinear_tap_align_corners(Wi, 4 * W4, ow + k);
      const int c0 = int(tw.i0), c1 = int(tw.i1);
      v[k] = mdps::bilinear_mix(th.l1, tw.l1, r0[c0], r0[c1], r1[c0], r1[c1]);
    }
    y[q] = make_float4(v[0], v[1], v[2], v[3]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 1), Hi = o.size("hi", 64), Wi = o.size("wi", 64),
                H = o.size("h", 256), W = o.size("w", 256);
  const int64_t planes = N * C, n_in = planes * Hi * Wi, n_out = planes * H * W;
  if (Hi < 1 || Wi < 1 || H < 1 || W < 1) {
    std::fprintf(stderr, "sizes must be positive\n");
    return 2;
  }
  bench::print_device();
  std::printf("resize_bilinear (align_corners) [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld, %lld]\n", (long long)N,
              (long long)C, (long long)Hi, (long long)Wi, (long long)N, (long long)C, (long long)H, (long long)W);

  mdps::Tensor x = mdps::Tensor::from_vector({N, C, Hi, Wi}, bench::random_floats(static_cast<size_t>(n_in), 1));
  const std::vector<float> ref = mdps::hostops::resize_bilinear_align_corners(x, H, W).to_vector();
  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::device_buffer<float>(static_cast<size_t>(n_out));
  const double bytes = 4.0 * (double(n_in) + double(n_out));  // each input once (neighbours from cache)
  const double tol = 1e-6 + 4.0 * double(std::max(Hi, Wi)) * std::ldexp(1.0, -24);

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (W % 4 != 0 || n_out >= (int64_t(1) << 31) || n_in >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs W %% 4 == 0 and < 2^31 elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::resize_bilinear_kernel<<<mdps::cuda::elementwise_blocks(n_out, unsigned(block)), block>>>(
              dx, dy, Hi, Wi, H, W, n_out);
        } else {
          const int n4 = int(n_out / 4);
          resize_bilinear_float4<<<mdps::cuda::elementwise_blocks(n4, unsigned(block)), block>>>(
              dx, reinterpret_cast<float4*>(dy), int(Hi), int(Wi), int(H), int(W / 4), n4);
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, static_cast<size_t>(n_out) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, static_cast<size_t>(n_out)), ref, tol); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
