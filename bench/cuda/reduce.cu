// Playground: the reductions of kernels/cuda/reduce_kernel.cuh, all summing in
// double (the max excepted), one op at a time (--op) or all of them.
//   op sum, sum_squares  launch_sum: sum_partials_kernel (one double partial
//              per block, at most kMaxSumPartials blocks), then
//              sum_finish_kernel (one block adds the partials); timed together
//     version 1  the production kernels, the launcher's geometry
//     version 2  float4 loads in the first stage (x 16-byte aligned; the
//                n % 4 tail by the first threads), the same finishing kernel
//     version 3  version 2's first stage in which the last block to finish
//                (an atomic ticket after a __threadfence) adds the partials in
//                index order: one launch instead of two, still deterministic
//   op max     launch_max: max_partials_kernel + max_finish_kernel, the same
//              two stages with float partials
//     version 1  the production kernels
//     version 2  float4 loads in the first stage
//     version 3  float4 first stage, the last block finishes (one launch)
//   op row_sum launch_row_sum (sum_hw, the channel-bias gradient): one block
//              per row
//     version 1  the production kernel
//     version 2  float4 loads (L % 4 == 0, so every row starts 16-byte aligned)
//   op column_sum  launch_column_sum (the linear bias gradient): one thread per
//              column adding the rows in order
//     version 1  the production kernel only: any split of the rows over more
//                threads reorders the double sum, and the tests require it
//                bit-equal to the CPU's in-order sum
// CPU reference: cpu_backend().sum / sum_squares / max / sum_hw and
// linear_backward's bias gradient (the column sum). Tolerances are the
// emulation tests': the sums within 1 float ulp of the reference (2^-23
// relative, floor 1e-6: double sums in another order, rounded once to
// float), the max and the column sum exact.
// Defaults, the authors' bottle U-Net at 256 x 256, batch 8, 64 base channels:
// sum_squares over the sampler's image gradient [8, 3, 256, 256] (--n), the
// max over the anomaly maps [8, 1, 256, 256] (--n-max), sum_hw over the
// widest activation [8, 64, 256, 256] (--rows 512 --L 65536), the linear bias
// gradient of the time embedding [8, 256] (--col-rows 8 --cols 256: one
// block, launch-bound; try --col-rows 65536 to see bandwidth).
//   ./reduce [VERSION] [--peak-gbs GBS] [--op all|sum|sum_squares|max|row_sum|column_sum]
//            [--n 1572864 --n-max 524288 --rows 512 --L 65536 --col-rows 8 --cols 256]
#include "bench/cuda/common.h"
#include "engine/core/backend.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/reduce_kernel.cuh"

namespace {

using mdps::cuda::block_reduce;
using mdps::cuda::MaxOfOp;
using mdps::cuda::SumOp;

// ---- candidates --------------------------------------------------------------

// Stage 1 with float4 loads; kLastFinishes: the last block to store its
// partial adds all of them (sum_finish_kernel's loop) into out[0] and resets
// the ticket for the next launch.
template <bool kLastFinishes>
__global__ void sum_float4_kernel(const float* __restrict__ x, int64_t n, bool squares, double* partial,
                                  unsigned* ticket, float* out) {
  __shared__ double scratch[32];
  __shared__ bool last;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int64_t n4 = n / 4, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  double s = 0;
  for (int64_t i = first; i < n4; i += stride) {
    const float4 v = x4[i];
    const double a = v.x, b = v.y, c = v.z, d = v.w;
    s += squares ? (a * a + b * b) + (c * c + d * d) : (a + b) + (c + d);
  }
  if (first < n - 4 * n4) {
    const double v = x[4 * n4 + first];
    s += squares ? v * v : v;
  }
  s = block_reduce(s, SumOp(), 0.0, scratch);
  if (!kLastFinishes) {
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
    return;
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = s;
    __threadfence();  // the partial is visible device-wide before the ticket counts it
    last = atomicAdd(ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  double t = 0;
  for (int64_t i = threadIdx.x; i < int64_t(gridDim.x); i += blockDim.x) t += __ldcg(partial + i);  // L2, not L1
  t = block_reduce(t, SumOp(), 0.0, scratch);
  if (threadIdx.x == 0) {
    out[0] = float(t);
    *ticket = 0;
  }
}

template <bool kLastFinishes>
__global__ void max_float4_kernel(const float* __restrict__ x, int64_t n, float* partial, unsigned* ticket,
                                  float* out) {
  __shared__ float scratch[32];
  __shared__ bool last;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int64_t n4 = n / 4, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float m = -INFINITY;
  for (int64_t i = first; i < n4; i += stride) {
    const float4 v = x4[i];
    m = mdps::max_of(mdps::max_of(m, v.x), mdps::max_of(v.y, mdps::max_of(v.z, v.w)));
  }
  if (first < n - 4 * n4) m = mdps::max_of(m, x[4 * n4 + first]);
  m = block_reduce(m, MaxOfOp(), -INFINITY, scratch);
  if (!kLastFinishes) {
    if (threadIdx.x == 0) partial[blockIdx.x] = m;
    return;
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = m;
    __threadfence();
    last = atomicAdd(ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  float t = -INFINITY;
  for (int64_t i = threadIdx.x; i < int64_t(gridDim.x); i += blockDim.x) t = mdps::max_of(t, __ldcg(partial + i));
  t = block_reduce(t, MaxOfOp(), -INFINITY, scratch);
  if (threadIdx.x == 0) {
    out[0] = t;
    *ticket = 0;
  }
}

// One block per row, float4 loads; L % 4 == 0.
__global__ void row_sum_float4(const float* __restrict__ x, float* __restrict__ out, int64_t L) {
  __shared__ double scratch[32];
  const float4* xr = reinterpret_cast<const float4*>(x + int64_t(blockIdx.x) * L);
  double s = 0;
  for (int64_t i = threadIdx.x; i < L / 4; i += blockDim.x) {
    const float4 v = xr[i];
    s += (double(v.x) + double(v.y)) + (double(v.z) + double(v.w));
  }
  s = block_reduce(s, SumOp(), 0.0, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = float(s);
}

// ---- helpers -------------------------------------------------------------------

// The tests' close_ulps: |got - ref| <= ulps * 2^-23 * max(|ref|, floor); NaN fails.
bool validate_ulps(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double ulps,
                   double floor) {
  if (got.size() != ref.size()) {
    std::printf("%s: FAIL (%zu values, expected %zu)\n", what, got.size(), ref.size());
    return false;
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], bound = ulps * 0x1p-23 * std::max(std::fabs(r), floor);
    if (!(std::fabs(double(got[i]) - r) <= bound)) {
      std::printf("%s: FAIL at %zu: %.9g vs %.9g (more than %g ulps)\n", what, i, double(got[i]), r, ulps);
      return false;
    }
  }
  return true;
}

bool wanted(const bench::Options& o, int version) { return o.version == 0 || o.version == version; }

// The value of --op (bench::parse keeps only numbers, so it is read here).
std::string op_arg(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--op") == 0) return argv[i + 1];
  return "all";
}

// ---- the ops ---------------------------------------------------------------------

void run_sum(const bench::Options& o, bool squares) {
  const int64_t n = o.size("n", 8 * 3 * 256 * 256);
  std::printf("\n%s over %lld floats\n", squares ? "sum_squares" : "sum", (long long)n);
  mdps::Tensor x = mdps::Tensor::from_vector({n}, bench::random_floats(static_cast<size_t>(n), 1, -2.f, 3.f));
  mdps::Tensor ref = mdps::Tensor::zeros({1});
  if (squares) mdps::cpu_backend().sum_squares(x, ref);
  else mdps::cpu_backend().sum(x, ref);
  float* dx = bench::to_device(x.to_vector());
  double* dpartial = bench::device_buffer<double>(static_cast<size_t>(mdps::cuda::kMaxSumPartials));
  float* dout = bench::device_buffer<float>(1);
  unsigned* dticket = bench::device_buffer<unsigned>(1);
  BENCH_CHECK(cudaMemset(dticket, 0, sizeof(unsigned)));

  for (int version = 1; version <= 3; ++version) {
    if (!wanted(o, version)) continue;
    for (int block : bench::block_sizes()) {
      // Version 1 at block 256 is sum_partial_blocks(n), the launcher's grid.
      const unsigned parts = version == 1
                                 ? mdps::cuda::elementwise_blocks(n, unsigned(block), mdps::cuda::kMaxSumPartials)
                                 : mdps::cuda::elementwise_blocks(n / 4, unsigned(block), mdps::cuda::kMaxSumPartials);
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::sum_partials_kernel<<<parts, block>>>(dx, n, squares, dpartial);
          mdps::cuda::sum_finish_kernel<<<1, block>>>(dpartial, int64_t(parts), dout);
        } else if (version == 2) {
          sum_float4_kernel<false><<<parts, block>>>(dx, n, squares, dpartial, dticket, dout);
          mdps::cuda::sum_finish_kernel<<<1, block>>>(dpartial, int64_t(parts), dout);
        } else {
          sum_float4_kernel<true><<<parts, block>>>(dx, n, squares, dpartial, dticket, dout);
        }
      };
      BENCH_CHECK(cudaMemset(dout, 0xff, sizeof(float)));
      BENCH_CHECK(cudaMemset(dpartial, 0xff, sizeof(double) * size_t(mdps::cuda::kMaxSumPartials)));
      auto valid = [&] {
        return validate_ulps(squares ? "sum_squares" : "sum", bench::to_host(dout, 1), ref.to_vector(), 1.0, 1e-6);
      };
      // x once; the partials written and read back; the result.
      const double bytes = 4.0 * double(n) + 16.0 * double(parts) + 4.0;
      bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dpartial));
  BENCH_CHECK(cudaFree(dout));
  BENCH_CHECK(cudaFree(dticket));
}

void run_max(const bench::Options& o) {
  const int64_t n = o.size("n-max", 8 * 256 * 256);
  std::printf("\nmax over %lld floats\n", (long long)n);
  // All negative, as in the tests: the -inf identity must not win.
  mdps::Tensor x = mdps::Tensor::from_vector({n}, bench::random_floats(static_cast<size_t>(n), 2, -5.f, -1.f));
  mdps::Tensor ref = mdps::Tensor::full({1}, NAN);
  mdps::cpu_backend().max(x, ref);
  float* dx = bench::to_device(x.to_vector());
  float* dpartial = bench::device_buffer<float>(static_cast<size_t>(mdps::cuda::kMaxSumPartials));
  float* dout = bench::device_buffer<float>(1);
  unsigned* dticket = bench::device_buffer<unsigned>(1);
  BENCH_CHECK(cudaMemset(dticket, 0, sizeof(unsigned)));

  for (int version = 1; version <= 3; ++version) {
    if (!wanted(o, version)) continue;
    for (int block : bench::block_sizes()) {
      const unsigned parts = version == 1
                                 ? mdps::cuda::elementwise_blocks(n, unsigned(block), mdps::cuda::kMaxSumPartials)
                                 : mdps::cuda::elementwise_blocks(n / 4, unsigned(block), mdps::cuda::kMaxSumPartials);
      auto launch = [&] {
        if (version == 1) {
          mdps::cuda::max_partials_kernel<<<parts, block>>>(dx, n, dpartial);
          mdps::cuda::max_finish_kernel<<<1, block>>>(dpartial, int64_t(parts), dout);
        } else if (version == 2) {
          max_float4_kernel<false><<<parts, block>>>(dx, n, dpartial, dticket, dout);
          mdps::cuda::max_finish_kernel<<<1, block>>>(dpartial, int64_t(parts), dout);
        } else {
          max_float4_kernel<true><<<parts, block>>>(dx, n, dpartial, dticket, dout);
        }
      };
      BENCH_CHECK(cudaMemset(dout, 0xff, sizeof(float)));
      BENCH_CHECK(cudaMemset(dpartial, 0xff, sizeof(float) * size_t(mdps::cuda::kMaxSumPartials)));
      auto valid = [&] { return bench::validate("max", bench::to_host(dout, 1), ref.to_vector(), 0.0); };  // exact
      const double bytes = 4.0 * double(n) + 8.0 * double(parts) + 4.0;
      bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dpartial));
  BENCH_CHECK(cudaFree(dout));
  BENCH_CHECK(cudaFree(dticket));
}

void run_row_sum(const bench::Options& o) {
  const int64_t rows = o.size("rows", 8 * 64), L = o.size("L", 256 * 256);
  std::printf("\nrow_sum [%lld, %lld] (sum_hw)\n", (long long)rows, (long long)L);
  // sum_hw reduces [N, C, HW] to [N, C]: here N = 1, C = rows.
  mdps::Tensor x =
      mdps::Tensor::from_vector({1, rows, L}, bench::random_floats(static_cast<size_t>(rows * L), 3, -1.f, 1.f));
  mdps::Tensor ref = mdps::Tensor::zeros({1, rows});
  mdps::cpu_backend().sum_hw(x, ref);
  float* dx = bench::to_device(x.to_vector());
  float* dout = bench::device_buffer<float>(static_cast<size_t>(rows));
  const double bytes = 4.0 * double(rows * L) + 4.0 * double(rows);

  for (int version = 1; version <= 2; ++version) {
    if (!wanted(o, version)) continue;
    if (version == 2 && L % 4 != 0) {
      std::printf("version 2: skipped (needs L %% 4 == 0)\n");
      continue;
    }
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        if (version == 1) mdps::cuda::row_sum_kernel<<<unsigned(rows), block>>>(dx, dout, L);
        else row_sum_float4<<<unsigned(rows), block>>>(dx, dout, L);
      };
      BENCH_CHECK(cudaMemset(dout, 0xff, sizeof(float) * size_t(rows)));
      auto valid = [&] {
        return validate_ulps("row_sum", bench::to_host(dout, static_cast<size_t>(rows)), ref.to_vector(), 1.0, 1e-6);
      };
      bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(dx));
  BENCH_CHECK(cudaFree(dout));
}

void run_column_sum(const bench::Options& o) {
  const int64_t rows = o.size("col-rows", 8), cols = o.size("cols", 256);
  std::printf("\ncolumn_sum [%lld, %lld] (linear bias gradient)\n", (long long)rows, (long long)cols);
  // linear_backward's db of dy [rows, cols]; x [rows, 1] and w [cols, 1] only give the shapes.
  mdps::Tensor dy =
      mdps::Tensor::from_vector({rows, cols}, bench::random_floats(static_cast<size_t>(rows * cols), 4, -1.f, 1.f));
  mdps::Tensor x = mdps::Tensor::zeros({rows, 1}), w = mdps::Tensor::zeros({cols, 1});
  mdps::Tensor ref = mdps::Tensor::zeros({cols});
  mdps::cpu_backend().linear_backward(dy, x, w, nullptr, nullptr, &ref);
  float* ddy = bench::to_device(dy.to_vector());
  float* dout = bench::device_buffer<float>(static_cast<size_t>(cols));
  const double bytes = 4.0 * double(rows * cols) + 4.0 * double(cols);

  for (int version = 1; version <= 1; ++version) {
    if (!wanted(o, version)) continue;
    for (int block : bench::block_sizes()) {
      auto launch = [&] {
        mdps::cuda::column_sum_kernel<<<mdps::cuda::elementwise_blocks(cols, unsigned(block)), block>>>(ddy, dout,
                                                                                                       rows, cols);
      };
      BENCH_CHECK(cudaMemset(dout, 0xff, sizeof(float) * size_t(cols)));
      // Both add the rows in order in double: bit-equal.
      auto valid = [&] {
        return bench::validate("column_sum", bench::to_host(dout, static_cast<size_t>(cols)), ref.to_vector(), 0.0);
      };
      bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
    }
  }
  BENCH_CHECK(cudaFree(ddy));
  BENCH_CHECK(cudaFree(dout));
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const std::string op = op_arg(argc, argv);
  const bool all = op == "all";
  if (!all && op != "sum" && op != "sum_squares" && op != "max" && op != "row_sum" && op != "column_sum") {
    std::fprintf(stderr, "--op %s: expected all, sum, sum_squares, max, row_sum or column_sum\n", op.c_str());
    return 2;
  }
  bench::print_device();
  if (all || op == "sum") run_sum(o, false);
  if (all || op == "sum_squares") run_sum(o, true);
  if (all || op == "max") run_max(o);
  if (all || op == "row_sum") run_row_sum(o);
  if (all || op == "column_sum") run_column_sum(o);
  return 0;
}
