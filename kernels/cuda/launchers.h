// Host entry points of the hand-written kernels (one per kernels/cuda/*.cu).
// Each enqueues its kernel on `stream` and checks the launch; none waits.
// Pointers are device memory. Kept free of CUDA headers so plain C++ includes it.
#pragma once
#include "engine/backend.h"
#include "kernels/cuda/ew_op.h"
#include <cstdint>

struct CUstream_st;

namespace mdps::cuda {

using Stream = CUstream_st*;

// Throws mdps::Error naming `what` when the last launch failed.
void check_launch(const char* what);

void launch_mdps_step(const float* x, const float* y, const float* eps, const float* grad, const float* mask,
                      const float* z, const StepCoeffs& c, float* x_next, float* x0_hat, int64_t n, int64_t chw,
                      int64_t hw, Stream stream);
void launch_replace_normal(float* x, const float* y, const float* z_fixed, const float* mask, float sqrt_a,
                           float sqrt_1ma, int64_t n, int64_t chw, int64_t hw, Stream stream);
void launch_group_norm(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t n_samples, int groups, int64_t cg, int64_t hw, float eps, bool silu, Stream stream);
void launch_softmax(const float* x, float* y, int64_t rows, int64_t L, Stream stream);
void launch_philox_normal(float* dst, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t offset, Stream stream);
void launch_adam(float* param, const float* grad, float* m, float* v, const AdamParams& p, int64_t step, int64_t n,
                 Stream stream);
void launch_elementwise(EwOp op, const float* a, const float* b, float* y, float alpha, float beta, int64_t n,
                        int64_t b_div, int64_t b_mod, Stream stream);

}  // namespace mdps::cuda
