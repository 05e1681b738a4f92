// The CUDA backend: a caching allocator over device memory, one stream,
// cuBLAS for products, cuDNN for convolutions and the hand-written kernels of
// kernels/cuda/*.cu. Its ops are defined one family per file,
// kernels/cuda/backend_<family>.cpp, as the CPU's are in kernels/cpu/<family>.cpp.
// docs/gpu.md says what has (never) run on a GPU.
#pragma once
#include "engine/core/backend.h"
#include "kernels/cuda/launchers.h"
#include "kernels/cuda/device_allocator.h"
#include "kernels/cuda/cudnn_conv.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/cuda_event_clock.h"
#include <memory>
#include <vector>

namespace mdps {

class CudaBackend final : public Backend {
 public:
  // Throws when no device can be used; cuda_backend_instance() turns that into null.
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  const char* name() const override { return "cuda"; }
  Device device() const override { return Device::CUDA; }

  void* raw_alloc(size_t bytes) override;
  void raw_free(void* p, size_t bytes) override;
  void copy_host_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_device_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_device_to_device(void* dst, const void* src, size_t bytes) override;
  void fill(Tensor& x, float value) override;
  void synchronize() override;
  // CUDA events on the stream: the trace's per-op device times.
  trace::DeviceClock* device_clock() override;
  // NVTX ranges for the trace's spans (null without the NVTX header).
  trace::RangeMarker* range_marker() override;
  // fp32 (no tensor cores), tf32 (cuBLAS and cuDNN may use TF32 tensor
  // cores) or bf16 (the products' inputs cast to bfloat16, float32 outputs).
  void set_precision(Precision p) override;
  std::string paths() const override;

  // Device memory held in the allocator's free lists, and its return to the driver.
  size_t cached_bytes() const { return alloc_->cached_bytes(); }
  void release_cached_memory() { alloc_->release(); }
  // Convolution plans (shape -> descriptors and algorithms) built so far.
  size_t conv_plans() const { return conv_->plans(); }
  // Fused attention plans built and shapes refused so far.
  size_t attention_plans() const { return attn_->plans(); }
  size_t attention_refused() const { return attn_->refused(); }

 protected:
  // The ops; the public Backend ops have checked their operands' shapes and
  // that they live on this device (engine/core/backend_ops.cpp).
  void gemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                 int64_t stride_c, int64_t batch) override;
  void linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) override;
  void linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                            Tensor* db) override;
  void conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) override;
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
  void softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  // fp32/tf32: the generic path (cuBLAS products and the softmax kernel);
  // bf16: cuDNN's fused SDPA over bf16 copies in its layout, the generic path
  // for shapes cuDNN refuses (cudnn_attention.h).
  void attention_impl(const Tensor& qkv, int heads, Tensor& a) override;
  void attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) override;

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

  // Standard normals philox::normal_at(seed, stream_id, offset + i) into x.
  void philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) override;

  // The image ops: the CUDA forms of kernels/cpu/cpu_image_ops.h, over the
  // arithmetic of kernels/shared/anomaly_map_arith.h.
  void relu_impl(const Tensor& x, Tensor& y) override;
  void max_pool3x3_s2_impl(const Tensor& x, Tensor& y) override;
  void imagenet_normalise_impl(const Tensor& x, Tensor& y) override;
  void pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) override;
  // Fused: the pooled maps are never stored.
  void pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) override;
  void resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) override;
  // kernel odd, at most 127 taps.
  void gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) override;
  void max_impl(const Tensor& x, Tensor& out) override;
  void anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                        Tensor& y) override;
  // min(k, H*W) at most 2048. Waits for the result.
  std::vector<double> image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) override;

 private:
  void elementwise(cuda::EwOp op, const Tensor* a, const Tensor* b, Tensor& y, float alpha, float beta, int64_t b_div,
                   int64_t b_mod);

  // Releases everything; never throws (the destructor, a failed constructor).
  void destroy() noexcept;

  void conv_shape(const Tensor& x, const Tensor& w, ConvGeom g, const char* op, cuda::ConvShape& s) const;

  int device_ = 0;
  cuda::Stream stream_ = nullptr;
  void* cublas_ = nullptr;  // cublasHandle_t
  std::unique_ptr<cuda::CudaDeviceMemory> memory_;
  std::unique_ptr<cuda::CachingAllocator> alloc_;
  std::unique_ptr<cuda::CudnnHandle> cudnn_;  // shared by conv_ and attn_
  std::unique_ptr<cuda::CudnnConv> conv_;
  std::unique_ptr<cuda::CudnnAttention> attn_;
  std::unique_ptr<cuda::CudaEventClock> clock_;
};

// The registry's getter (engine/core/backend_registry.h): the process-wide
// CUDA backend on device 0, or null when no device is present or usable.
Backend* cuda_backend_instance();

}  // namespace mdps
