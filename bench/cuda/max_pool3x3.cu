// Playground: the ResNet stem's nn.MaxPool2d(3, stride 2, padding 1),
// [planes, H, W] -> [planes, (H-1)/2+1, (W-1)/2+1]; default shape: the WRN50
// stem of a 256x256 batch of 8 ([8, 64, 128, 128] after the 7x7 conv).
//   version 1  the production kernel (kernels/cuda/max_pool3x3_kernel.cuh):
//              one output element per thread, grid-stride, 64-bit division
//              and modulo per output, the 9 taps from global memory (L1)
//   version 2  a shared-memory tile: blockDim (32, block / 32), each block an
//              output tile 32 wide and block / 32 tall, its input window
//              (2 * 32 + 1) x (2 * block / 32 + 1) loaded once, coalesced,
//              with -inf outside the image; each tile row holds the even
//              columns, then the odd ones, so the stride-2 taps are read as
//              consecutive words (no bank conflicts); one int64 multiply per
//              load, no 64-bit division;
//              gridDim (Wo tiles, Ho tiles, planes, looping past 65535);
//              the halo (one row and one column shared with the next tile)
//              is loaded twice, from L2, and not counted in the bytes
// Both scan the window in the CPU's order with max_of (m < v ? v : m) from
// -inf: a -inf pad never replaces the running max, so padding instead of
// clipping gives the same bits (signed zeros and NaN included).
// CPU reference: hostops::max_pool3x3_s2 (kernels/cpu/cpu_image_ops.h): comparisons
// only, so both versions must match exactly (tolerance 0).
//   ./max_pool3x3 [VERSION] [--peak-gbs GBS] [--n 8 --c 64 --h 128 --w 128]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/max_pool3x3_kernel.cuh"

namespace {

constexpr int kTileW = 32;                         // output columns per block (= blockDim.x)
constexpr int kMaxTileH = 32;                      // output rows per block at 1024 threads
constexpr int kInRows = 2 * kMaxTileH + 1;         // input rows a tile needs, at most
constexpr int kInCols = 2 * kTileW + 1;            // input columns a tile needs (65)
constexpr int kEven = (kInCols + 1) / 2;           // 33 even columns first, then the 32 odd ones

__global__ void max_pool3x3_s2_tiled(const float* __restrict__ x, float* __restrict__ y, int H, int W, int Ho,
                                     int Wo, int planes) {
  __shared__ float tile[kInRows][kInCols];  // each row: even input columns, then odd ones
  const int tx = threadIdx.x, ty = threadIdx.y, th = blockDim.y;
  const int ow = blockIdx.x * kTileW + tx, oh = blockIdx.y * th + ty;
  const int ih0 = 2 * int(blockIdx.y) * th - 1, iw0 = 2 * int(blockIdx.x) * kTileW - 1;  // the window's origin
  const int rows = 2 * th + 1, t = ty * kTileW + tx, nt = th * kTileW;
  for (int p = blockIdx.z; p < planes; p += gridDim.z) {
    const float* xp = x + int64_t(p) * H * W;
    for (int k = t; k < rows * kInCols; k += nt) {
      const int r = k / kInCols, c = k % kInCols, ih = ih0 + r, iw = iw0 + c;
      tile[r][(c & 1) ? kEven + (c >> 1) : (c >> 1)] =
          (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xp[int64_t(ih) * W + iw] : -INFINITY;
    }
    __syncthreads();
    if (oh < Ho && ow < Wo) {
      // Local input columns 2tx, 2tx + 1, 2tx + 2 (input iw0 + those): even
      // column tx, odd column tx, even column tx + 1; a warp reads 32
      // consecutive floats of a row each time.
      float m = -INFINITY;
      for (int dr = 0; dr < 3; ++dr) {
        const float* row = tile[2 * ty + dr];
        m = mdps::max_of(m, row[tx]);
        m = mdps::max_of(m, row[kEven + tx]);
        m = mdps::max_of(m, row[tx + 1]);
      }
      y[(int64_t(p) * Ho + oh) * Wo + ow] = m;
    }
    __syncthreads();  // the tile is reloaded for the next plane
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), C = o.size("c", 64), H = o.size("h", 128), W = o.size("w", 128);
  const int64_t planes = N * C, Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1;
  const int64_t n_in = planes * H * W, n_out = planes * Ho * Wo;
  bench::print_device();
  std::printf("max_pool3x3_s2 [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld, %lld]\n", (long long)N, (long long)C,
              (long long)H, (long long)W, (long long)N, (long long)C, (long long)Ho, (long long)Wo);

  // In the engine the pool's input is post-ReLU (>= 0); signed values
  // exercise the comparisons more.
  mdps::Tensor x =
      mdps::Tensor::from_vector({N, C, H, W}, bench::random_floats(static_cast<size_t>(n_in), 1, -3.f, 3.f));
  const std::vector<float> ref = mdps::hostops::max_pool3x3_s2(x).to_vector();
  float* dx = bench::to_device(x.to_vector());
  float* dy = bench::device_buffer<float>(static_cast<size_t>(n_out));
  const double bytes = 4.0 * (double(n_in) + double(n_out));  // each input once (neighbours from cache)

  for (int version = 1; version <= 2; ++version) {
    if (o.version != 0 && o.version != version) continue;
    if (version == 2 && (n_in >= (int64_t(1) << 31))) {
      std::printf("version 2: skipped (needs < 2^31 input elements)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::max_pool3x3_s2_kernel<<<mdps::cuda::elementwise_blocks(n_out, unsigned(block)), block>>>(
              dx, dy, H, W, Ho, Wo, n_out);
        } else {
          const unsigned th = unsigned(block) / kTileW;
          const dim3 grid(unsigned((Wo + kTileW - 1) / kTileW), unsigned((Ho + th - 1) / th),
                          mdps::cuda::transpose_batch_blocks(planes));
          max_pool3x3_s2_tiled<<<grid, dim3(kTileW, th)>>>(dx, dy, int(H), int(W), int(Ho), int(Wo), int(planes));
        }
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, static_cast<size_t>(n_out) * 4));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, static_cast<size_t>(n_out)), ref, 0.0); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
