// `mdps bench sampler`: the whole two-round sampler (the authors' bottle
// settings) per image, in forward-equivalents; --vs-pytorch against the twin's
// sampler; --ops.
#pragma once
#include "bench/harness/bench_args.h"

namespace mdps::bench {

void bench_sampler(const UNetBenchArgs& a);

}  // namespace mdps::bench
