// The CPU backend: the reference implementation of every op, multithreaded
// through the engine's ThreadPool, matrix products through OpenBLAS sgemm.
// Under --precision bf16 the convolutions run on bfloat16 inputs through AMX
// or AVX512-BF16 (kernels/cpu/conv_bf16.h); everything else stays fp32.
// Op bodies live one idea per file in kernels/cpu/*.cpp.
#pragma once
#include "engine/core/backend.h"
#include <map>
#include <mutex>
#include <vector>

namespace mdps {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  // Products per image, of shapes fixed by the layer (conv2d.cpp, linear.cpp).
  bool batch_invariant() const override { return true; }

  void* raw_alloc(size_t bytes) override;
  void raw_free(void* p, size_t bytes) override;
  void copy_host_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_device_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_device_to_device(void* dst, const void* src, size_t bytes) override;
  void fill(Tensor& x, float value) override;

  // Returns every cached free block to the system.
  void trim_cache();
  size_t cached_bytes() const { return cached_bytes_; }

  // fp32, or bf16 where the CPU has AVX512-BF16 (kernels/cpu/conv_bf16.h: the
  // convolutions' products); tf32, and bf16 without the instructions, throw
  // naming --precision.
  void set_precision(Precision p) override;

  void set_threads(int n) override;
  int threads() const override;

  // The fp32 convolutions' paths: Winograd's shapes (kernels/cpu/conv_winograd.h,
  // unless MDPS_CONV_WINOGRAD=0) and the direct kernel's vector unit and tiles,
  // chosen at run time (kernels/cpu/conv_tiles.h), e.g. "winograd: F(2x2, 3x3)
  // on ...; direct conv: AVX-512, tiles 8x3, ..." (fp32; "" under bf16, whose
  // convolutions take the bf16 kernels).
  std::string paths() const override;

 protected:
  // The ops, one family per file (kernels/cpu/<family>.cpp); the public
  // Backend ops have checked their operands (engine/core/backend_ops.cpp).
  void gemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                 int64_t stride_c, int64_t batch) override;
  void linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) override;
  void linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                            Tensor* db) override;
  void conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) override;
  void conv2d_fused_impl(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                         const Tensor* residual, Tensor& y, ConvGeom g) override;
  void conv2d_backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) override;
  void conv2d_backward_weight_impl(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) override;

  void group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu,
                       Tensor& y, Tensor& mean, Tensor& rstd) override;
  void group_norm_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                Tensor* dgamma, Tensor* dbeta) override;
  void silu_impl(const Tensor& x, Tensor& y) override;
  void silu_backward_impl(const Tensor& x, const Tensor& dy, Tensor& dx) override;
  void softmax_impl(const Tensor& x, Tensor& y) override;
  void attention_impl(const Tensor& qkv, int heads, Tensor& a) override;
  void attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) override;
  void softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) override;

  void add_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  void sub_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  void mul_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  void scale_impl(const Tensor& x, float alpha, Tensor& y) override;
  void axpby_impl(float alpha, const Tensor& x, float beta, Tensor& y) override;
  void scale_by_inverse_sqrt_impl(const Tensor& x, const Tensor& sum_sq, Tensor& y) override;
  void add_channel_bias_impl(const Tensor& x, const Tensor& v, Tensor& y) override;
  void sum_hw_impl(const Tensor& dy, Tensor& dv) override;

  void concat_channels_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  void split_channels_impl(const Tensor& y, Tensor* a, Tensor* b) override;
  void avg_pool2_impl(const Tensor& x, Tensor& y) override;
  void avg_pool2_backward_impl(const Tensor& dy, Tensor& dx) override;
  void upsample_nearest2_impl(const Tensor& x, Tensor& y) override;
  void upsample_nearest2_backward_impl(const Tensor& dy, Tensor& dx) override;

  void sum_impl(const Tensor& x, Tensor& out) override;
  void sum_squares_impl(const Tensor& x, Tensor& out) override;

  void timestep_embedding_impl(const Tensor& t, Tensor& y) override;
  void adam_update_impl(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                        int64_t step) override;
  void mdps_step_impl(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad, const Tensor* mask,
                      const Tensor* z, const StepCoeffs& c, Tensor& x_next, Tensor* x0_hat) override;
  void replace_normal_impl(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask, float sqrt_a,
                           float sqrt_1ma) override;
  void philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) override;

  // The image ops (kernels/cpu/image_ops.cpp): kernels/cpu/cpu_image_ops.h's forms.
  void relu_impl(const Tensor& x, Tensor& y) override;
  void max_pool3x3_s2_impl(const Tensor& x, Tensor& y) override;
  void imagenet_normalise_impl(const Tensor& x, Tensor& y) override;
  void pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  void pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) override;
  void resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) override;
  void gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) override;
  void max_impl(const Tensor& x, Tensor& out) override;
  void anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                        Tensor& y) override;
  std::vector<double> image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) override;

 private:
  std::mutex cache_mu_;
  std::map<size_t, std::vector<void*>> cache_;
  size_t cached_bytes_ = 0;
};

// The registry's getter (engine/core/backend_registry.h): cpu_backend().
Backend* cpu_backend_instance();

}  // namespace mdps
