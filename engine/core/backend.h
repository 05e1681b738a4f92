// The backend interface: memory plus the small op set the U-Net, the sampler
// and the anomaly map need, each with the backward ops autograd uses.
//
// Conventions (every implementation follows them):
// - Tensors are float32, contiguous, NCHW. Outputs are allocated by the caller
//   with the right shape.
// - Each public op checks its operands once, for every backend (defined,
//   float32, on this backend's device, shapes that fit; engine/core/
//   backend_ops.cpp), throwing mdps::Error that names the op and the tensor,
//   then calls the backend's implementation, the protected virtual <op>_impl,
//   which checks only the limits of that backend (after ggml's small backend
//   interface: the checks in front, the implementations behind).
// - Backward ops *overwrite* their outputs; autograd accumulates.
// - Optional outputs/inputs are pointers that may be null (then skipped).
// - Ops may run asynchronously (CUDA); reading a tensor to the host waits.
#pragma once
#include "engine/core/tensor.h"
#include "kernels/shared/mdps_step.h"
#include <array>
#include <atomic>
#include <vector>

namespace mdps::trace {
class DeviceClock;
class RangeMarker;
}

namespace mdps {

// What an allocation is for; the allocator keeps counters per category so
// tests can assert, e.g., that the guidance gradient allocates no weight
// gradients. Set with MemCategoryScope.
enum class MemCategory : uint8_t { Other = 0, Weights, Activations, InputGrad, WeightGrad, Optimizer, Count };
const char* mem_category_name(MemCategory c);

struct AllocStats {
  std::atomic<int64_t> bytes_in_use{0};
  std::atomic<int64_t> peak_bytes{0};
  std::atomic<int64_t> allocations{0};
  std::array<std::atomic<int64_t>, size_t(MemCategory::Count)> bytes_allocated_by_category{};  // cumulative
  void reset_peak() { peak_bytes.store(bytes_in_use.load()); }
  void on_alloc(size_t bytes, MemCategory c);
  void on_free(size_t bytes);
};

// Allocations made on this thread while the scope lives count under `c`.
class MemCategoryScope {
 public:
  explicit MemCategoryScope(MemCategory c);
  ~MemCategoryScope();
  static MemCategory current();

 private:
  MemCategory saved_;
};

struct ConvGeom {
  int stride = 1;
  int pad = 0;
};
inline int64_t conv_out_size(int64_t in, int64_t k, ConvGeom g) { return (in + 2 * g.pad - k) / g.stride + 1; }

// How a backend's products (convolutions, matrix products, attention) compute.
// Tensors stay float32 in every mode: TF32 lets tensor cores round the
// products' inputs to 10 mantissa bits; BF16 casts the products' inputs to
// bfloat16 (float32 accumulation and outputs, float32 master weights and
// optimiser state). The CPU backend takes FP32, and BF16 for its convolutions
// where the CPU has AVX512-BF16 (not for training: see Trainer).
enum class Precision : uint8_t { FP32 = 0, TF32, BF16 };
const char* precision_name(Precision p);
// "fp32", "tf32" or "bf16"; throws naming the flag otherwise.
Precision parse_precision(const std::string& s);

// How a map becomes an image score (engine/detect/anomaly_map.h).
enum class ImageScoreKind {
  Authors,   // sum of the k largest values of a softmax over all pixels of the map
  TopKMean,  // mean of the k largest map values (the paper's wording)
  // The two below hold at every map size; image_scores() (engine/anomaly_map.h)
  // computes both as TopKMean with k = 1 and k = ceil(fraction * H * W), so a
  // backend only ever sees the first two.
  Max,          // the largest map value (of the blurred map)
  TopFraction,  // mean of the largest `fraction` of the map's pixels
  // The largest value of the map standardised pixel by pixel by normal
  // images' maps, (map - mean) / (std + mean of std) (engine/detect/
  // anomaly_map.h PixelNormals, from `mdps calibrate`): image_scores() forms
  // it and takes Max, so a backend never sees it either.
  NormalZ,
};

struct AdamParams {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  bool decoupled = false;  // false: weight decay added to the gradient (torch Adam); true: AdamW
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;

  // ---- memory ---------------------------------------------------------------
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* p, size_t bytes) = 0;
  // Byte copies; each side is host or this backend's memory as named.
  virtual void copy_host_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_device_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_device_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill(Tensor& x, float value) = 0;
  virtual void synchronize() {}
  AllocStats& stats() { return stats_; }
  // The clock that times this backend's asynchronous work for the trace
  // (engine/core/trace.h); null where ops finish before they return (the CPU).
  virtual trace::DeviceClock* device_clock() { return nullptr; }
  // Where the trace's spans become profiler ranges (NVTX on CUDA); null: nowhere.
  virtual trace::RangeMarker* range_marker() { return nullptr; }

  // ---- precision of the products (see Precision) -----------------------------
  // The default accepts FP32 only and throws for the others, naming the backend.
  virtual void set_precision(Precision p);
  Precision precision() const { return precision_; }

  // Which implementation the backend's ops took where it has a choice (the
  // CUDA backend's attention under bf16: cuDNN's fused SDPA or the generic
  // path), one line for `mdps bench`; "" where there is no choice.
  virtual std::string paths() const { return ""; }

  // Whether every op gives each image (index of the first dimension) of a
  // batch the bits it gets alone, whatever the batch beside it: the calibrated
  // protocol then runs several images per U-Net call (engine/eval/
  // calibrated_protocol.cpp). True only where a test holds it (the CPU:
  // tests/model/test_unet_batch_invariance.cpp); cuDNN and cuBLAS choose their
  // algorithms by size, so the default is false.
  virtual bool batch_invariant() const { return false; }

  // ---- threads (CPU: worker count; others ignore) ---------------------------
  virtual void set_threads(int n) { (void)n; }
  virtual int threads() const { return 1; }

  // ---- products ------------------------------------------------------------
  // Strided-batched sgemm on raw pointers, row-major:
  // C_i[M,N] = alpha * op(A_i) op(B_i) + beta * C_i, i < batch,
  // op(A) is A[M,K] (lda) or, transposed, A stored [K,M]; likewise B.
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
            int64_t stride_c, int64_t batch);
  // y[N,out] = x[N,in] w[out,in]^T + b[out]
  void linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw, Tensor* db);
  // y[N,Co,Ho,Wo] = conv(x[N,Ci,H,W], w[Co,Ci,KH,KW]) + b[Co]
  void conv2d(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g);
  // conv2d with what the U-Net adds to a convolution's output, summed in the
  // order of the separate ops (so the bits are theirs):
  // y = ((conv(x, w) + b[Co]) + image_bias[N,Co]) added to residual[N,Co,Ho,Wo]
  // as add(residual, .) does; image_bias (the time embedding's projection)
  // and residual (a block's skip) may each be null. A backend that has no
  // fused form runs the three ops (conv2d_fused_impl's default body).
  void conv2d_fused(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                    const Tensor* residual, Tensor& y, ConvGeom g);
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g);
  void conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g);

  // ---- normalisation and activations ------------------------------------------
  // Group norm over (C/groups, H, W) per sample; mean/rstd are [N*groups] and
  // are written for the backward. With silu, y = SiLU(GN(x)) (fused).
  void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu, Tensor& y,
                  Tensor& mean, Tensor& rstd);
  void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                           const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx, Tensor* dgamma,
                           Tensor* dbeta);
  void silu(const Tensor& x, Tensor& y);
  void silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx);
  // Softmax over the last dimension (rows of length x.dim(-1)).
  void softmax(const Tensor& x, Tensor& y);
  void softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

  // The authors' QKV attention (spec section 2). qkv is [B, 3*heads*ch, L]:
  // per (sample, head) bh, rows [3ch bh, 3ch (bh+1)) hold q, k, v (ch rows
  // each); a [B, heads*ch, L] gets a_bh[c,t] = sum_s v[c,s] w[t,s] with
  // w[t,:] = softmax(scale * q[:,t] . k[:,s]) and scale = ch^-1/2 (the
  // (ch^-1/4)^2 of q and k). The backward recomputes w (nothing is stored)
  // and overwrites dqkv. The defaults materialise w [B*heads, L, L] through
  // gemm and softmax; a backend may fuse them (the CPU does, blockwise).
  void attention(const Tensor& qkv, int heads, Tensor& a);
  void attention_backward(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv);
  // The same through the generic path whatever the backend overrides: the
  // reference its fused form is tested against.
  void attention_generic(const Tensor& qkv, int heads, Tensor& a);
  void attention_backward_generic(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv);

  // ---- elementwise -------------------------------------------------------------
  void add(const Tensor& a, const Tensor& b, Tensor& y);  // y may alias a or b
  void sub(const Tensor& a, const Tensor& b, Tensor& y);
  void mul(const Tensor& a, const Tensor& b, Tensor& y);
  void scale(const Tensor& x, float alpha, Tensor& y);
  // y = alpha * x + beta * y
  void axpby(float alpha, const Tensor& x, float beta, Tensor& y);
  // y = x / sqrt(sum_sq[0]) (0 where sum_sq[0] = 0), sum_sq a 1-element tensor
  // on this backend (e.g. from sum_squares), read where it lives; y may alias x.
  void scale_by_inverse_sqrt(const Tensor& x, const Tensor& sum_sq, Tensor& y);
  // y[n,c,h,w] = x[n,c,h,w] + v[n,c]; and its reduction dv[n,c] = sum_hw dy
  void add_channel_bias(const Tensor& x, const Tensor& v, Tensor& y);
  void sum_hw(const Tensor& dy, Tensor& dv);

  // ---- layout ------------------------------------------------------------------
  // y = [a, b] along channels (a's channels first); split is its backward.
  void concat_channels(const Tensor& a, const Tensor& b, Tensor& y);
  void split_channels(const Tensor& y, Tensor* a, Tensor* b);
  void avg_pool2(const Tensor& x, Tensor& y);
  void avg_pool2_backward(const Tensor& dy, Tensor& dx);
  void upsample_nearest2(const Tensor& x, Tensor& y);
  void upsample_nearest2_backward(const Tensor& dy, Tensor& dx);

  // ---- reductions (into 1-element tensors, so nothing waits) -----------------------
  void sum(const Tensor& x, Tensor& out);
  void sum_squares(const Tensor& x, Tensor& out);

  // ---- diffusion-specific -------------------------------------------------------
  // y[N,dim] = [sin(t f_i), cos(t f_i)], f_i = exp(-ln(10000) i / (dim/2)), t float
  void timestep_embedding(const Tensor& t, Tensor& y);
  void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p, int64_t step);
  // The fused MDPS step (kernels/shared/mdps_step.h) over x [N,C,H,W]: grad, mask
  // ([N,1,H,W], broadcast over channels; null = all ones) and z may be null
  // (treated as 0, 1 and 0). x0_hat may be null.
  void mdps_step(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad, const Tensor* mask,
                 const Tensor* z, const StepCoeffs& c, Tensor& x_next, Tensor* x0_hat);
  // x[i] = philox::normal_at(seed, stream_id, offset + i): the engine's one
  // stream of standard normals (kernels/shared/philox.h), the same values on every
  // backend, drawn where the tensor lives.
  void philox_normal(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset);
  // x = mask ? x : sqrt_a y + sqrt_1ma z_fixed (in place), mask [N,1,H,W].
  void replace_normal(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask, float sqrt_a,
                      float sqrt_1ma);

  // ---- the feature extractor's and the anomaly map's image ops -------------------
  // (spec section 5; kernels/cpu/cpu_image_ops.h holds the reference forms and
  // kernels/shared/anomaly_map_arith.h the per-pixel arithmetic every backend shares.)
  // y = max(x, 0); y may alias x.
  void relu(const Tensor& x, Tensor& y);
  // nn.MaxPool2d(3, stride 2, padding 1): y [N,C,(H-1)/2+1,(W-1)/2+1].
  void max_pool3x3_s2(const Tensor& x, Tensor& y);
  // Images [N,3,H,W] in [-1,1] to ImageNet-normalised ones (x's shape).
  void imagenet_normalise(const Tensor& x, Tensor& y);
  // The pixel term: y [N,1,H,W] = mean over channels of |normalised a - normalised b|.
  void pixel_distance(const Tensor& a, const Tensor& b, Tensor& y);
  // y [N,1,H,W] = 1 - cos over channels of the 3x3 mean pools (zero padding,
  // count_include_pad) of a and b [N,C,H,W]; each norm clamped to eps.
  void pooled_cosine_distance(const Tensor& a, const Tensor& b, Tensor& y, float eps);
  // F.interpolate(x, y's H x W, mode="bilinear", align_corners=True).
  void resize_bilinear_align_corners(const Tensor& x, Tensor& y);
  // torchvision gaussian_blur(x, kernel, sigma) per plane, reflect border; kernel odd.
  void gaussian_blur(const Tensor& x, int kernel, float sigma, Tensor& y);
  // out (1 element) = the largest value of x (not empty).
  void max(const Tensor& x, Tensor& out);
  // y = f + anomaly_mix_weight(max_f, max_p, eta) p, the maxima being
  // 1-element tensors (so nothing waits); y may alias f.
  void anomaly_mix(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta, Tensor& y);
  // One score per map of maps [N,1,H,W] from its min(k, H*W) largest values
  // (kind: see ImageScoreKind), in double. Waits for the result.
  std::vector<double> image_scores(const Tensor& maps, ImageScoreKind kind, int k);

 protected:
  // ---- the implementations: one per public op above, called after its checks
  // (engine/core/backend_ops.cpp); a backend overrides these and checks nothing
  // the public op has checked. attention_impl and attention_backward_impl have
  // a generic body (engine/core/backend_attention.cpp).
  virtual void gemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                         float* C, int64_t ldc, int64_t stride_c, int64_t batch) = 0;
  virtual void linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) = 0;
  virtual void linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                    Tensor* db) = 0;
  virtual void conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) = 0;
  // Default: conv2d_impl, add_channel_bias_impl and add_impl, y in place.
  virtual void conv2d_fused_impl(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* image_bias,
                                 const Tensor* residual, Tensor& y, ConvGeom g);
  virtual void conv2d_backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) = 0;
  virtual void conv2d_backward_weight_impl(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) = 0;
  virtual void group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                               bool silu, Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  virtual void group_norm_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                        Tensor* dgamma, Tensor* dbeta) = 0;
  virtual void silu_impl(const Tensor& x, Tensor& y) = 0;
  virtual void silu_backward_impl(const Tensor& x, const Tensor& dy, Tensor& dx) = 0;
  virtual void softmax_impl(const Tensor& x, Tensor& y) = 0;
  virtual void softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;
  virtual void attention_impl(const Tensor& qkv, int heads, Tensor& a);
  virtual void attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv);
  virtual void add_impl(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void sub_impl(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void mul_impl(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void scale_impl(const Tensor& x, float alpha, Tensor& y) = 0;
  virtual void axpby_impl(float alpha, const Tensor& x, float beta, Tensor& y) = 0;
  virtual void scale_by_inverse_sqrt_impl(const Tensor& x, const Tensor& sum_sq, Tensor& y) = 0;
  virtual void add_channel_bias_impl(const Tensor& x, const Tensor& v, Tensor& y) = 0;
  virtual void sum_hw_impl(const Tensor& dy, Tensor& dv) = 0;
  virtual void concat_channels_impl(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void split_channels_impl(const Tensor& y, Tensor* a, Tensor* b) = 0;
  virtual void avg_pool2_impl(const Tensor& x, Tensor& y) = 0;
  virtual void avg_pool2_backward_impl(const Tensor& dy, Tensor& dx) = 0;
  virtual void upsample_nearest2_impl(const Tensor& x, Tensor& y) = 0;
  virtual void upsample_nearest2_backward_impl(const Tensor& dy, Tensor& dx) = 0;
  virtual void sum_impl(const Tensor& x, Tensor& out) = 0;
  virtual void sum_squares_impl(const Tensor& x, Tensor& out) = 0;
  virtual void timestep_embedding_impl(const Tensor& t, Tensor& y) = 0;
  virtual void adam_update_impl(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                                int64_t step) = 0;
  virtual void mdps_step_impl(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad,
                              const Tensor* mask, const Tensor* z, const StepCoeffs& c, Tensor& x_next,
                              Tensor* x0_hat) = 0;
  virtual void philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) = 0;
  virtual void replace_normal_impl(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask, float sqrt_a,
                                   float sqrt_1ma) = 0;
  virtual void relu_impl(const Tensor& x, Tensor& y) = 0;
  virtual void max_pool3x3_s2_impl(const Tensor& x, Tensor& y) = 0;
  virtual void imagenet_normalise_impl(const Tensor& x, Tensor& y) = 0;
  virtual void pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) = 0;
  virtual void resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) = 0;
  virtual void gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) = 0;
  virtual void max_impl(const Tensor& x, Tensor& out) = 0;
  virtual void anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                                Tensor& y) = 0;
  virtual std::vector<double> image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) = 0;

  AllocStats stats_;
  Precision precision_ = Precision::FP32;
};

// The CPU backend (always built): the reference implementation. The other
// backends, and `--device` names, are found through the registry
// (engine/core/backend_registry.h).
Backend& cpu_backend();

}  // namespace mdps
