// Playground: the image score of anomaly maps [maps, n] from their k largest
// values, one block per map: the paper's top-k mean and the authors' sum of
// the k largest entries of a softmax over the map.
//   version 1  the production kernel (kernels/cuda/topk_score_kernel.cuh):
//              4 radix-select passes over the map (256-bin shared histogram,
//              one shared atomic per value whose key matches the prefix), a
//              gather pass (one shared atomic per value above the threshold),
//              a bitonic sort of the k in shared memory, and for the softmax
//              two more passes (the maximum, then the denominator)
//   version 2  the same algorithm with warp-aggregated shared atomics (the
//              lanes of a warp with the same digit add their count once, by
//              __match_any_sync, sm_70+; the gather takes one slot range per
//              warp by __ballot_sync), and the softmax's maximum read off the
//              sorted top key instead of a pass over the map: 6 passes, not 7.
//              The histograms are the same counts and the k keys the same
//              sorted keys, so the scores are version 1's
// Any block size that is a multiple of 32 works (the block reductions); the
// shared arrays are sized by kTopKCapacity, not by the block, so the sweep
// covers the usual sizes (production: kTopKBlock = 512).
// CPU reference: hostops::topk_mean and hostops::softmax_topk_sum
// (kernels/cpu/cpu_image_ops.h), what the CPU image_scores computes per map.
// Tolerances (the emulation test's): the top-k mean bit for bit; the softmax
// score within (n + 1) 2^-53 relative (its denominator is a reordered double sum).
// Default: the anomaly maps of a batch of 8 at 256 x 256 and the engine's
// k = 500 (evaluate.h score_k, image_scores' default). Bytes count each map
// read once (version 1 reads it 5 times, 7 with the softmax; from L2 when
// the maps fit there).
//   ./topk_score [VERSION] [--peak-gbs GBS] [--maps 8 --n 65536 --k 500 --softmax 0|1]
#include "bench/cuda/common.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/topk_score_kernel.cuh"

namespace {

using mdps::cuda::float_from_order_key;
using mdps::cuda::float_order_key;
using mdps::cuda::kTopKCapacity;

constexpr unsigned kFull = 0xffffffffu;

// maps: [gridDim.x, n]; k >= 1 with min(k, n) <= kTopKCapacity; blockDim.x a
// multiple of 32. Every loop over the map runs the same trip count in all
// lanes of a warp (base advances by blockDim.x), so the warp votes are full.
__global__ void topk_score_warp_aggregated(const float* __restrict__ maps, int64_t n, int k, bool softmax,
                                           double* __restrict__ out) {
  __shared__ unsigned hist[256];
  __shared__ uint32_t keys[kTopKCapacity];
  __shared__ double terms[kTopKCapacity];
  __shared__ int64_t chosen[2];
  __shared__ unsigned gathered;
  __shared__ double sum_scratch[32];
  const float* v = maps + int64_t(blockIdx.x) * n;
  const int64_t kk = int64_t(k) < n ? int64_t(k) : n;
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  const unsigned lane = threadIdx.x % 32u;

  // 1. Radix select, as version 1.
  uint32_t prefix = 0, mask = 0;
  int64_t rank = kk;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int64_t d = tid; d < 256; d += nt) hist[d] = 0;
    __syncthreads();
    for (int64_t base = 0; base < n; base += nt) {
      const int64_t i = base + tid;
      const uint32_t key = i < n ? float_order_key(v[i]) : 0u;
      const bool counts = i < n && (key & mask) == prefix;
      // Lanes that do not count share the digit 256, which no counting lane has.
      const unsigned digit = counts ? (key >> shift) & 255u : 256u;
      const unsigned peers = __match_any_sync(kFull, digit);
      if (counts && lane == unsigned(__ffs(int(peers)) - 1)) atomicAdd(&hist[digit], unsigned(__popc(int(peers))));
    }
    __syncthreads();
    if (tid == 0) {
      int64_t above = 0;
      int d = 255;
      while (d > 0 && above + hist[d] < rank) above += hist[d--];
      chosen[0] = d;
      chosen[1] = rank - above;
    }
    __syncthreads();
    prefix |= uint32_t(chosen[0]) << shift;
    mask |= 255u << shift;
    rank = chosen[1];
  }
  const uint32_t threshold = prefix;
  const int64_t n_above = kk - rank;

  // 2. Gather: one atomic per warp for the slots of its lanes above the threshold.
  if (tid == 0) gathered = 0;
  __syncthreads();
  for (int64_t base = 0; base < n; base += nt) {
    const int64_t i = base + tid;
    const uint32_t key = i < n ? float_order_key(v[i]) : 0u;
    const bool above = i < n && key > threshold;
    const unsigned ballot = __ballot_sync(kFull, above);
    if (ballot == 0) continue;  // warp-uniform
    unsigned slot = 0;
    if (lane == 0) slot = atomicAdd(&gathered, unsigned(__popc(int(ballot))));
    slot = __shfl_sync(kFull, slot, 0) + unsigned(__popc(int(ballot & ((1u << lane) - 1u))));
    if (above) keys[slot] = key;
  }
  int64_t padded = 1;
  while (padded < kk) padded <<= 1;
  for (int64_t i = n_above + tid; i < padded; i += nt) keys[i] = i < kk ? threshold : 0u;

  // Bitonic sort, descending, as version 1.
  for (int64_t size = 2; size <= padded; size <<= 1)
    for (int64_t half = size >> 1; half > 0; half >>= 1) {
      __syncthreads();
      for (int64_t i = tid; i < padded; i += nt) {
        const int64_t j = i ^ half;
        if (j < i) continue;
        const uint32_t a = keys[i], b = keys[j];
        if ((i & size) == 0 ? a < b : a > b) {
          keys[i] = b;
          keys[j] = a;
        }
      }
    }
  __syncthreads();

  // 3. The map's maximum is the largest key (kk >= 1); the denominator is
  // version 1's block reduction.
  double max_v = 0, denominator = 1;
  if (softmax) {
    max_v = double(float_from_order_key(keys[0]));
    double s = 0;
    for (int64_t i = tid; i < n; i += nt) s += mdps::softmax_term(v[i], max_v);
    denominator = mdps::cuda::block_reduce(s, mdps::cuda::SumOp(), 0.0, sum_scratch);
  }
  for (int64_t i = tid; i < kk; i += nt) {
    const float x = float_from_order_key(keys[i]);
    terms[i] = softmax ? mdps::softmax_term(x, max_v) : double(x);
  }
  __syncthreads();
  if (tid == 0) {
    double s = 0;
    for (int64_t i = 0; i < kk; ++i) s += terms[i];
    out[blockIdx.x] = softmax ? s / denominator : s / double(kk);
  }
}

// |got - ref| <= rel * |ref| for every score (rel 0: equal); NaN fails.
bool validate_scores(const char* what, const std::vector<double>& got, const std::vector<double>& ref, double rel) {
  if (got.size() != ref.size()) {
    std::printf("%s: FAIL (%zu values, expected %zu)\n", what, got.size(), ref.size());
    return false;
  }
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(got[i] - ref[i]) <= rel * std::fabs(ref[i]))) {
      std::printf("%s: FAIL at map %zu: %.17g vs %.17g (relative tolerance %.3g)\n", what, i, got[i], ref[i], rel);
      return false;
    }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::parse(argc, argv);
  const int64_t maps = o.size("maps", 8), n = o.size("n", 256 * 256);
  const int k = int(o.size("k", 500));
  const int64_t only_kind = o.size("softmax", -1);  // -1: both kinds
  if (n < 1 || k < 1 || std::min<int64_t>(k, n) > kTopKCapacity || n >= (int64_t(1) << 32)) {
    std::fprintf(stderr, "need n >= 1, k >= 1, min(k, n) <= %d and n < 2^32\n", kTopKCapacity);
    return 2;
  }
  bench::print_device();
  std::printf("topk_score: %lld maps of %lld pixels, k = %d\n", (long long)maps, (long long)n, k);

  // Anomaly maps are non-negative distances.
  const std::vector<float> hmaps = bench::random_floats(static_cast<size_t>(maps * n), 1, 0.f, 2.f);
  std::vector<double> ref_mean(static_cast<size_t>(maps)), ref_soft(static_cast<size_t>(maps));
  for (int64_t m = 0; m < maps; ++m) {
    ref_mean[size_t(m)] = mdps::hostops::topk_mean(hmaps.data() + m * n, n, k);
    ref_soft[size_t(m)] = mdps::hostops::softmax_topk_sum(hmaps.data() + m * n, n, k);
  }
  float* dmaps = bench::to_device(hmaps);
  double* dout = bench::device_buffer<double>(static_cast<size_t>(maps));
  const double bytes = 4.0 * double(maps * n) + 8.0 * double(maps);

  for (int kind = 0; kind <= 1; ++kind) {
    if (only_kind >= 0 && only_kind != kind) continue;
    const bool softmax = kind == 1;
    std::printf("\n%s\n", softmax ? "softmax top-k sum (the authors')" : "top-k mean (the paper's)");
    for (int version = 1; version <= 2; ++version) {
      if (o.version != 0 && o.version != version) continue;
      for (int block : bench::block_sizes()) {
        auto launch = [&] {
          if (version == 1) mdps::cuda::topk_score_kernel<<<unsigned(maps), block>>>(dmaps, n, k, softmax, dout);
          else topk_score_warp_aggregated<<<unsigned(maps), block>>>(dmaps, n, k, softmax, dout);
        };
        BENCH_CHECK(cudaMemset(dout, 0xff, sizeof(double) * size_t(maps)));
        auto valid = [&] {
          const std::vector<double> got = bench::to_host(dout, static_cast<size_t>(maps));
          return softmax ? validate_scores("softmax top-k sum", got, ref_soft, double(n + 1) * 0x1p-53)
                         : validate_scores("top-k mean", got, ref_mean, 0.0);
        };
        // A block the device refuses (registers) is skipped.
        bench::time_if_launched_and_valid(version, block, launch, valid, bytes, 0, o);
      }
    }
  }
  BENCH_CHECK(cudaFree(dmaps));
  BENCH_CHECK(cudaFree(dout));
  return 0;
}
