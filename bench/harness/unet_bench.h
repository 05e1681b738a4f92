// `mdps bench unet` (forward, guidance, train step, peak RSS, the sgemm
// ceiling; --vs-pytorch against bench/pytorch_twin.py; --ops) and
// `mdps bench gemm`.
#pragma once
#include "bench/harness/bench_args.h"

namespace mdps::bench {

void bench_unet(const UNetBenchArgs& a);
void bench_gemm(int threads, bool json);

}  // namespace mdps::bench
