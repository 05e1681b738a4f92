// The Philox normal stream into a CPU tensor, chunks over the pool: element
// i is philox::normal_at(seed, stream, offset + i) whichever thread draws it
// (engine/core/philox_draws.cpp's philox_fill_normal handles a chunk that starts inside
// a block of four), so the values do not depend on the thread count.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/core/philox_draws.h"

namespace mdps {

void CpuBackend::philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  float* p = x.data();
  cpu::parallel_elems(x.numel(), [&](int64_t b, int64_t e) {
    philox_fill_normal(p + b, e - b, seed, stream_id, offset + uint64_t(b));
  });
}

}  // namespace mdps
