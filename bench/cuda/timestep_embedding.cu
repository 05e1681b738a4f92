// Playground: the sinusoidal timestep embedding, t [N] -> y [N, dim],
// y[n, i] = sin(t_n f_i), y[n, half + i] = cos(t_n f_i), f_i = exp(-ln(10000) i / half),
// an odd dim's last column zeroed (kernels/shared/timestep_embedding.h's arithmetic).
//   version 1  the production kernel (kernels/cuda/timestep_embedding_kernel.cuh):
//              one thread per (sample, frequency) pair, grid-stride; the
//              frequency (a double exp) recomputed for every sample, sin and
//              cos in double
//   version 2  the production geometry and frequency, sin and cos by one
//              float sincosf of the same float argument t * f_i (no FP64 for
//              the trig; for GPUs with few FP64 units); not bit-identical
//   version 3  one thread per frequency column (the double exp once), the N
//              samples looped; double sin and cos as production, so
//              bit-identical to version 1
// CPU reference: the CPU backend's timestep_embedding. Tolerance 1e-6, that of
// tests/kernels/test_cuda_backend.cpp (device double exp/sin/cos may differ from
// glibc's in the last double ulp: a float ulp at a rounding tie); version 2's
// sincosf is within 2 float ulps of the exact value (|y| <= 1: <= 1.2e-7), inside it.
// The timesteps are whole numbers in [0, 1000) (the sampler's and the trainer's).
// Default N = 8, dim = 256 (the U-Net itself embeds into dim = base channels,
// e.g. 64: pass --dim 64). A launch-latency-bound kernel at these sizes.
//   ./timestep_embedding [VERSION] [--peak-gbs GBS] [--n 8 --dim 256]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/shared/timestep_embedding.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/timestep_embedding_kernel.cuh"

namespace {

// Version 2: as the production kernel, the trig in float.
__global__ void timestep_embedding_sincosf(const float* __restrict__ t, float* __restrict__ y, int64_t N,
                                           int64_t dim) {
  const int64_t half = dim / 2, per_row = half + dim % 2, n_items = N * per_row;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n_items; k += stride) {
    const int64_t n = k / per_row, i = k % per_row;
    float* row = y + n * dim;
    if (i == half) {
      row[dim - 1] = 0.f;
      continue;
    }
    const float arg = t[n] * mdps::timestep_frequency(i, half);
    float s, c;
    sincosf(arg, &s, &c);
    row[i] = s;
    row[half + i] = c;
  }
}

// Version 3: thread i owns column pair i of every sample.
__global__ void timestep_embedding_columns(const float* __restrict__ t, float* __restrict__ y, int64_t N,
                                           int64_t dim) {
  const int64_t half = dim / 2, per_row = half + dim % 2;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < per_row; i += stride) {
    if (i == half) {
      for (int64_t n = 0; n < N; ++n) y[n * dim + dim - 1] = 0.f;
      continue;
    }
    const float freq = mdps::timestep_frequency(i, half);
    for (int64_t n = 0; n < N; ++n) mdps::timestep_embedding_pair(t[n], freq, &y[n * dim + i], &y[n * dim + half + i]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t N = o.size("n", 8), dim = o.size("dim", 256);
  const int64_t per_row = dim / 2 + dim % 2, items = N * per_row, total = N * dim;
  if (items < 1) {
    std::fprintf(stderr, "timestep_embedding: --n and --dim must be at least 1\n");
    return 2;
  }
  bench::print_device();
  std::printf("timestep_embedding [%lld] -> [%lld, %lld]\n", (long long)N, (long long)N, (long long)dim);

  std::vector<float> tv = bench::random_floats(static_cast<size_t>(N), 1, 0.f, 1000.f);
  for (float& v : tv) v = std::floor(v);
  const mdps::Tensor t = mdps::Tensor::from_vector({N}, tv);
  mdps::Tensor ref = mdps::Tensor::zeros({N, dim});
  mdps::cpu_backend().timestep_embedding(t, ref);
  const std::vector<float> ref_v = ref.to_vector();
  float* dt = bench::to_device(tv);
  float* dy = bench::device_buffer<float>(size_t(total));
  const double bytes = 4.0 * double(N + total);  // read t, write y
  const int limit[4] = {0, bench::max_threads(mdps::cuda::timestep_embedding_kernel),
                        bench::max_threads(timestep_embedding_sincosf), bench::max_threads(timestep_embedding_columns)};

  for (int version = 1; version <= 3; ++version) {
    if (o.version != 0 && o.version != version) continue;
    for (int block : bench::block_sizes()) {
      if (bench::over_thread_limit(version, block, limit[version])) continue;
      auto launch = [&] {
        if (version == 1)
          mdps::cuda::timestep_embedding_kernel<<<mdps::cuda::elementwise_blocks(items, unsigned(block)), block>>>(
              dt, dy, N, dim);
        else if (version == 2)
          timestep_embedding_sincosf<<<mdps::cuda::elementwise_blocks(items, unsigned(block)), block>>>(dt, dy, N,
                                                                                                        dim);
        else
          timestep_embedding_columns<<<mdps::cuda::elementwise_blocks(per_row, unsigned(block)), block>>>(dt, dy, N,
                                                                                                         dim);
      };
      BENCH_CHECK(cudaMemset(dy, 0xff, size_t(total) * sizeof(float)));
      auto valid = [&] { return bench::validate("y", bench::to_host(dy, size_t(total)), ref_v, 1e-6); };
      bench::time_if_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dt));
  BENCH_CHECK(cudaFree(dy));
  return 0;
}
