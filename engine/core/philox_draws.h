// Host-side draws from the Philox stream (kernels/shared/philox.h): a buffer
// of standard normals and an integer in a range. The CPU backend's
// philox_normal op, the sampler's noise (engine/diffusion/noise.h) and the
// trainer's timesteps and order all draw through these, so every backend and
// every run reads the same stream.
#pragma once
#include <cstdint>

namespace mdps {

// dst[i] = philox::normal_at(seed, stream, offset + i) for i < n (host memory).
void philox_fill_normal(float* dst, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

// An integer in [0, n), 0 < n <= 2^32, from element `index` of the stream
// (e.g. the training timestep of sample `index`).
uint64_t philox_uniform_int(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);

}  // namespace mdps
