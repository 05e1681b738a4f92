// Host entry points of the hand-written kernels (one per kernels/cuda/*.cu).
// Each enqueues its kernel on `stream` and checks the launch; none waits.
// Pointers are device memory. Kept free of CUDA headers so plain C++ includes it.
#pragma once
#include "engine/core/backend.h"
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
void launch_group_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t n_samples, int groups, int64_t cg,
                                int64_t hw, bool silu, float* dx, double* sum_dz, double* sum_dzx, float* dgamma,
                                float* dbeta, Stream stream);
void launch_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t L, Stream stream);
// out[r] = sum of row r of x [rows, L]; out[c] = sum of column c of x [rows, cols].
void launch_row_sum(const float* x, float* out, int64_t rows, int64_t L, Stream stream);
void launch_column_sum(const float* x, float* out, int64_t rows, int64_t cols, Stream stream);
// out[0] = sum of x (or of its squares); partial: sum_partial_blocks(n) doubles of scratch.
void launch_sum(const float* x, int64_t n, bool squares, double* partial, float* out, Stream stream);
// Channels [c_off, c_off + Cs) of dst [N, Cd, hw] from src [N, Cs, hw] (to_dst) or back.
void launch_copy_channels(float* src, int64_t Cs, float* dst, int64_t Cd, int64_t c_off, int64_t N, int64_t hw,
                          bool to_dst, Stream stream);
void launch_avg_pool2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream);
void launch_avg_pool2_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W, Stream stream);
void launch_upsample_nearest2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream);
void launch_upsample_nearest2_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                       Stream stream);
void launch_timestep_embedding(const float* t, float* y, int64_t N, int64_t dim, Stream stream);
// out[0] = the largest value of x (n >= 1); partial: sum_partial_blocks(n) floats of scratch.
void launch_max(const float* x, int64_t n, float* partial, float* out, Stream stream);
// The feature extractor's and the anomaly map's pieces (kernels/shared/anomaly_map_arith.h holds the shared arithmetic).
// y [N,3,hw] = the ImageNet normalisation of x [N,3,hw] in [-1,1] (y may alias x).
void launch_imagenet_normalise(const float* x, float* y, int64_t N, int64_t hw, Stream stream);
// y [N,1,hw] = the pixel term of images a, b [N,3,hw].
void launch_pixel_distance(const float* a, const float* b, float* y, int64_t N, int64_t hw, Stream stream);
// nn.MaxPool2d(3, 2, 1) of [planes, H, W] into [planes, (H-1)/2+1, (W-1)/2+1].
void launch_max_pool3x3_s2(const float* x, float* y, int64_t planes, int64_t H, int64_t W, Stream stream);
// y = f + anomaly_mix_weight(max_f[0], max_p[0], eta) p over n floats (y may alias f).
void launch_anomaly_mix(const float* f, const float* p, const float* max_f, const float* max_p, float eta, float* y,
                        int64_t n, Stream stream);
// y [N,1,H,W] = 1 - cos over channels of the 3x3 mean pools of a, b [N,C,H,W].
void launch_pooled_cosine_distance(const float* a, const float* b, float* y, int64_t N, int64_t C, int64_t H,
                                   int64_t W, float eps, Stream stream);
// Separable Gaussian blur (reflect border) of [planes, H, W]; taps: `kernel` host
// floats (odd, <= 127); tmp: planes * H * W doubles of scratch.
void launch_gaussian_blur(const float* x, double* tmp, float* y, int64_t planes, int64_t H, int64_t W,
                          const float* taps, int kernel, Stream stream);
// Bilinear resize with align_corners=True, [planes, Hi, Wi] -> [planes, H, W].
void launch_resize_bilinear(const float* x, float* y, int64_t planes, int64_t Hi, int64_t Wi, int64_t H, int64_t W,
                            Stream stream);
// out[m] (double) = the image score of map m of maps [n_maps, n] from its min(k, n) largest values:
// softmax ? their softmax sum (the authors') : their mean. min(k, n) <= 2048.
void launch_topk_score(const float* maps, int64_t n_maps, int64_t n, int k, bool softmax, double* out,
                       Stream stream);
// --precision bf16: y[i] = bf16(x[i]) (round to nearest even) and back.
void launch_float_to_bf16(const float* x, uint16_t* y, int64_t n, Stream stream);
void launch_bf16_to_float(const uint16_t* x, float* y, int64_t n, Stream stream);
// The fused attention's layouts: y [n, C, R] = x [n, R, C] transposed, cast to
// bfloat16 (round to nearest even) or widened back to float32.
void launch_transpose_to_bf16(const float* x, uint16_t* y, int64_t n, int64_t R, int64_t C, Stream stream);
void launch_transpose_from_bf16(const uint16_t* x, float* y, int64_t n, int64_t R, int64_t C, Stream stream);
void launch_elementwise(EwOp op, const float* a, const float* b, float* y, float alpha, float beta, int64_t n,
                        int64_t b_div, int64_t b_mod, Stream stream);

}  // namespace mdps::cuda
