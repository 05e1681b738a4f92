// CudaBackend: memory, copies, cuBLAS products, cuDNN convolutions and the
// launches of the hand-written kernels. The public ops have checked the
// operands (engine/core/backend_ops.cpp); what is checked here is CUDA's own
// limits (int sizes, empty cuDNN descriptors). Every op is an NVTX range
// (when the header-only NVTX 3 is present) so Nsight Systems shows the op
// names on the timeline.
#include "kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <memory>
#include <mutex>

#include "engine/core/attention_dims.h"
#include "kernels/cpu/cpu_image_ops.h"
#include "kernels/cuda/launch.h"

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define MDPS_HAVE_NVTX 1
#endif

namespace mdps {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  MDPS_CHECK(e == cudaSuccess, "CUDA ", what, ": ", cudaGetErrorString(e));
}
void check_cublas(cublasStatus_t s, const char* what) {
  MDPS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS ", what, ": status ", int(s));
}

// An NVTX range for the lifetime of one op (nothing without NVTX).
class OpRange {
 public:
  explicit OpRange(const char* name) {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~OpRange() {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePop();
#endif
  }
  OpRange(const OpRange&) = delete;
  OpRange& operator=(const OpRange&) = delete;
};

// Scratch device memory for one op, back to the cache when the op returns;
// stream order keeps it owned by the queued kernels that use it.
template <typename T>
class Scratch {
 public:
  Scratch(cuda::CachingAllocator& a, size_t count)
      : a_(a), p_(static_cast<T*>(count ? a.allocate(count * sizeof(T)) : nullptr)) {}
  ~Scratch() { a_.free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p_; }

 private:
  cuda::CachingAllocator& a_;
  T* p_;
};

int to_int(int64_t v, const char* what) {
  MDPS_CHECK(v >= 0 && v <= INT_MAX, what, ": ", v, " exceeds the int range of cuDNN/cuBLAS");
  return int(v);
}
cublasHandle_t handle(void* h) { return static_cast<cublasHandle_t>(h); }

}  // namespace

CudaBackend::CudaBackend(int device) : device_(device) {
  // A failure part way releases what was created (the destructor does not
  // run for a constructor that throws).
  try {
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = s;
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    cublas_ = h;
    check_cublas(cublasSetStream(h, s), "cublasSetStream");
    memory_ = std::make_unique<cuda::CudaDeviceMemory>(device_);
    alloc_ = std::make_unique<cuda::CachingAllocator>(*memory_);
    cudnn_ = std::make_unique<cuda::CudnnHandle>(s);
    conv_ = std::make_unique<cuda::CudnnConv>(*cudnn_, s, *alloc_);
    attn_ = std::make_unique<cuda::CudnnAttention>(*cudnn_, s, *alloc_);
    clock_ = std::make_unique<cuda::CudaEventClock>(s);
  } catch (...) {
    destroy();
    throw;
  }
}

trace::DeviceClock* CudaBackend::device_clock() { return clock_.get(); }

namespace {
// The trace's spans as NVTX ranges (sampler rounds and steps, U-Net forward
// and backward, train steps), around the per-op ranges of OpRange.
class NvtxMarker final : public trace::RangeMarker {
 public:
  void push(const char* name) override {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  void pop() override {
#ifdef MDPS_HAVE_NVTX
    nvtxRangePop();
#endif
  }
};
}  // namespace

trace::RangeMarker* CudaBackend::range_marker() {
#ifdef MDPS_HAVE_NVTX
  static NvtxMarker* marker = new NvtxMarker;  // never destroyed: spans may close during exit
  return marker;
#else
  return nullptr;
#endif
}

// fp32: cuBLAS's default math and cuDNN's FMA math; tf32: TF32 tensor cores
// on float32 data; bf16: the products' inputs cast to bfloat16 (gemm below,
// the convolutions in cudnn_conv.cpp), float accumulation and outputs. Tensors,
// weights and optimiser state stay float32 in every mode.
void CudaBackend::set_precision(Precision p) {
  const bool tf32 = p == Precision::TF32;
  check_cublas(cublasSetMathMode(handle(cublas_), tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
               "cublasSetMathMode");
  conv_->set_math(p == Precision::BF16 ? cuda::CudnnConv::Math::BF16
                  : tf32               ? cuda::CudnnConv::Math::TF32
                                       : cuda::CudnnConv::Math::FP32);
  precision_ = p;
}

// Never throws (a throwing destructor terminates the process): it may run
// after a device fault (a sticky error every call returns) or at exit, when
// the runtime may be unloading, so errors are ignored. The queued work is
// waited for first, so no cuDNN plan or cached block is freed under it.
CudaBackend::~CudaBackend() {
  destroy();
}

void CudaBackend::destroy() noexcept {
  if (stream_) cudaStreamSynchronize(stream_);
  if (clock_ && trace::device_clock() == clock_.get()) trace::set_device_clock(nullptr);
  clock_.reset();
  attn_.reset();
  conv_.reset();
  cudnn_.reset();
  if (alloc_) {
    try {
      alloc_->release();
    } catch (...) {
      // the device is gone or faulted: its memory goes with the context
    }
  }
  alloc_.reset();
  memory_.reset();
  if (cublas_) cublasDestroy(handle(cublas_));
  cublas_ = nullptr;
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void* CudaBackend::raw_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = alloc_->allocate(bytes);
  stats_.on_alloc(bytes, MemCategoryScope::current());
  return p;
}
void CudaBackend::raw_free(void* p, size_t bytes) {
  if (!p) return;
  // No wait: kernels still queued on the one stream finish before any later
  // user of the block runs (device_allocator.h).
  alloc_->free(p);
  stats_.on_free(bytes);
}
void CudaBackend::copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // Synchronous: the host buffer may be reused as soon as this returns.
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy host to device");
  check_cuda(cudaStreamSynchronize(stream_), "copy host to device");
}
void CudaBackend::copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy device to host");
  check_cuda(cudaStreamSynchronize(stream_), "copy device to host");
}
void CudaBackend::copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy device to device");
}
void CudaBackend::synchronize() { check_cuda(cudaStreamSynchronize(stream_), "synchronize"); }

void CudaBackend::elementwise(cuda::EwOp op, const Tensor* a, const Tensor* b, Tensor& y, float alpha, float beta,
                              int64_t b_div, int64_t b_mod) {
  cuda::launch_elementwise(op, a ? a->data() : nullptr, b ? b->data() : nullptr, y.data(), alpha, beta, y.numel(),
                           b_div, b_mod, stream_);
}

// fill is a memory op, called directly (no public op checks it): a host
// tensor here would hand the kernel an illegal address.
void CudaBackend::fill(Tensor& x, float value) {
  MDPS_CHECK(x.device() == Device::CUDA, "fill: tensor ", x.describe(), " is not on the CUDA device");
  elementwise(cuda::EwOp::Fill, nullptr, nullptr, x, value, 0.f, 1, 1);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
// operands and the roles of M and N.
void CudaBackend::gemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                            int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                            float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  OpRange range("gemm");
  if (M == 0 || N == 0 || batch == 0) return;
  // cuBLAS takes int sizes, and leading dimensions of at least 1 even where
  // K = 0 leaves the operands unread (then C = beta C, as on the CPU).
  const int m = to_int(M, "gemm M"), n = to_int(N, "gemm N"), k = to_int(K, "gemm K"),
            nb = to_int(batch, "gemm batch");
  const int ld_a = to_int(std::max<int64_t>(1, lda), "gemm lda"), ld_b = to_int(std::max<int64_t>(1, ldb), "gemm ldb"),
            ld_c = to_int(ldc, "gemm ldc");
  if (precision_ == Precision::BF16 && K > 0) {
    // Both operands cast to bfloat16 over the extent the batch reads (the
    // strides may be 0: one operand shared by every product), then one
    // bf16 x bf16 -> float32 product with float accumulation.
    using cuda::gemm_operand_extent;
    const int64_t ea = trans_a ? gemm_operand_extent(K, M, lda, stride_a, batch)
                               : gemm_operand_extent(M, K, lda, stride_a, batch);
    const int64_t eb = trans_b ? gemm_operand_extent(N, K, ldb, stride_b, batch)
                               : gemm_operand_extent(K, N, ldb, stride_b, batch);
    Scratch<uint16_t> a16(*alloc_, size_t(ea)), b16(*alloc_, size_t(eb));
    cuda::launch_float_to_bf16(A, a16.get(), ea, stream_);
    cuda::launch_float_to_bf16(B, b16.get(), eb, stream_);
    check_cublas(cublasGemmStridedBatchedEx(handle(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b16.get(),
                                            CUDA_R_16BF, ld_b, stride_b, a16.get(), CUDA_R_16BF, ld_a, stride_a,
                                            &beta, C, CUDA_R_32F, ld_c, stride_c, nb, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT),
                 "bf16 gemm");
    return;
  }
  check_cublas(cublasSgemmStridedBatched(handle(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ld_b, stride_b, A,
                                         ld_a, stride_a, &beta, C, ld_c, stride_c, nb),
               "sgemm");
}

void CudaBackend::linear_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  OpRange range("linear");
  // Leading dimensions of x are rows, as on the CPU.
  const int64_t in = w.dim(1), out = w.dim(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const int64_t ldi = std::max<int64_t>(1, in), ldo = std::max<int64_t>(1, out);
  gemm(false, true, rows, out, in, 1.f, x.data(), ldi, 0, w.data(), ldi, 0, 0.f, y.data(), ldo, 0, 1);
  if (b) elementwise(cuda::EwOp::Add, &y, b, y, 0.f, 0.f, 1, ldo);
}
// Leading dimensions of x are rows, as on the CPU: dx = dy w, dw = dy^T x,
// db = column sums of dy.
void CudaBackend::linear_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                       Tensor* db) {
  OpRange range("linear_backward");
  const int64_t in = w.dim(1), out = w.dim(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const int64_t ldi = std::max<int64_t>(1, in), ldo = std::max<int64_t>(1, out);
  if (dx) {
    if (out == 0) fill(*dx, 0.f);
    else gemm(false, false, rows, in, out, 1.f, dy.data(), ldo, 0, w.data(), ldi, 0, 0.f, dx->data(), ldi, 0, 1);
  }
  if (dw) {
    if (rows == 0) fill(*dw, 0.f);
    else gemm(true, false, out, in, rows, 1.f, dy.data(), ldo, 0, x.data(), ldi, 0, 0.f, dw->data(), ldi, 0, 1);
  }
  if (db) {
    cuda::launch_column_sum(dy.data(), db->data(), rows, out, stream_);
  }
}

void CudaBackend::conv_shape(const Tensor& x, const Tensor& w, ConvGeom g, const char* op, cuda::ConvShape& s) const {
  const int64_t Ho = conv_out_size(x.dim(2), w.dim(2), g), Wo = conv_out_size(x.dim(3), w.dim(3), g);
  // cuDNN rejects empty descriptors; a convolution without input channels
  // has no use in the U-Net.
  MDPS_CHECK(x.dim(1) > 0, op, ": zero input channels are not supported on CUDA");
  MDPS_CHECK(w.dim(2) > 0 && w.dim(3) > 0, op, ": empty kernel ", shape_str(w.shape()), " is not supported on CUDA");
  s = {to_int(x.dim(0), op),
       to_int(x.dim(1), op),
       to_int(x.dim(2), op),
       to_int(x.dim(3), op),
       to_int(w.dim(0), op),
       to_int(w.dim(2), op),
       to_int(w.dim(3), op),
       to_int(Ho, op),
       to_int(Wo, op),
       g.stride,
       g.pad};
}

void CudaBackend::conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  OpRange range("conv2d");
  cuda::ConvShape s{};
  conv_shape(x, w, g, "conv2d", s);
  if (y.numel() == 0) return;
  conv_->forward(s, x.data(), w.data(), b ? b->data() : nullptr, y.data());
}
void CudaBackend::conv2d_backward_data_impl(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  OpRange range("conv2d_backward_data");
  cuda::ConvShape s{};
  conv_shape(dx, w, g, "conv2d_backward_data", s);
  if (dx.numel() == 0) return;
  if (w.numel() == 0) {  // no output channels: no gradient flows
    fill(dx, 0.f);
    return;
  }
  conv_->backward_data(s, dy.data(), w.data(), dx.data());
}
void CudaBackend::conv2d_backward_weight_impl(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  OpRange range("conv2d_backward_weight");
  cuda::ConvShape s{};
  conv_shape(x, dw, g, "conv2d_backward_weight", s);
  if (dw.numel() == 0) return;
  if (x.numel() == 0) {  // an empty batch: no gradient
    fill(dw, 0.f);
    if (db) fill(*db, 0.f);
    return;
  }
  conv_->backward_filter(s, x.data(), dy.data(), dw.data(), db ? db->data() : nullptr);
}

void CudaBackend::group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                                  bool silu, Tensor& y, Tensor& mean, Tensor& rstd) {
  OpRange range("group_norm");
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  cuda::launch_group_norm(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), N, groups,
                          C / groups, HW, eps, silu, stream_);
}
void CudaBackend::group_norm_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                           const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                           Tensor* dgamma, Tensor* dbeta) {
  OpRange range("group_norm_backward");
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  if (N == 0) {  // no samples: zero parameter gradients
    if (dgamma) fill(*dgamma, 0.f);
    if (dbeta) fill(*dbeta, 0.f);
    return;
  }
  Scratch<double> sums(*alloc_, size_t(2 * N * C));
  cuda::launch_group_norm_backward(dy.data(), x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), N,
                                   groups, C / groups, HW, silu, dx ? dx->data() : nullptr, sums.get(),
                                   sums.get() + N * C, dgamma ? dgamma->data() : nullptr,
                                   dbeta ? dbeta->data() : nullptr, stream_);
}

void CudaBackend::scale_by_inverse_sqrt_impl(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  OpRange range("scale_by_inverse_sqrt");
  // Every element reads b[(i / n) % 1] = sum_sq[0].
  elementwise(cuda::EwOp::ScaleByInverseSqrt, &x, &sum_sq, y, 0.f, 0.f, std::max<int64_t>(1, x.numel()), 1);
}

void CudaBackend::silu_impl(const Tensor& x, Tensor& y) {
  elementwise(cuda::EwOp::Silu, &x, nullptr, y, 0.f, 0.f, 1, 1);
}
void CudaBackend::silu_backward_impl(const Tensor& x, const Tensor& dy, Tensor& dx) {
  elementwise(cuda::EwOp::SiluBackward, &x, &dy, dx, 0.f, 0.f, 1, std::max<int64_t>(1, x.numel()));
}
void CudaBackend::softmax_impl(const Tensor& x, Tensor& y) {
  OpRange range("softmax");
  const int64_t L = x.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax(x.data(), y.data(), x.numel() / L, L, stream_);
}
void CudaBackend::softmax_backward_impl(const Tensor& y, const Tensor& dy, Tensor& dx) {
  OpRange range("softmax_backward");
  const int64_t L = y.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax_backward(y.data(), dy.data(), dx.data(), y.numel() / L, L, stream_);
}

// --precision bf16: qkv (the authors' [channels, tokens] per head, float32) is
// transposed and cast into cuDNN's [tokens, channels] bfloat16 layout, the
// fused SDPA runs, its bf16 output is widened back. The output and, in the
// backward, the gradients are rounded to bf16 once more than on the generic
// path (whose products return float32). A shape cuDNN refuses runs the
// generic path; the refusal is remembered, so it costs one failed plan.
void CudaBackend::attention_impl(const Tensor& qkv, int heads, Tensor& a) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  const cuda::SdpaShape s{d.BH, d.L, d.ch};
  if (precision_ == Precision::BF16 && attn_->ready(s, false)) {
    OpRange range("attention.cudnn_sdpa");
    const int64_t head = d.L * d.ch;
    Scratch<uint16_t> qkv16(*alloc_, size_t(3 * d.BH * head)), o16(*alloc_, size_t(d.BH * head));
    Scratch<float> stats(*alloc_, size_t(d.BH * d.L));
    cuda::launch_transpose_to_bf16(qkv.data(), qkv16.get(), 3 * d.BH, d.ch, d.L, stream_);
    if (attn_->forward(s, d.scale, qkv16.get(), o16.get(), stats.get())) {
      cuda::launch_transpose_from_bf16(o16.get(), a.data(), d.BH, d.L, d.ch, stream_);
      return;
    }
  }
  OpRange range("attention");
  Backend::attention_impl(qkv, heads, a);
}

void CudaBackend::attention_backward_impl(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  const cuda::SdpaShape s{d.BH, d.L, d.ch};
  if (precision_ == Precision::BF16 && attn_->ready(s, false) && attn_->ready(s, true)) {
    OpRange range("attention_backward.cudnn_sdpa");
    const int64_t head = d.L * d.ch;
    Scratch<uint16_t> qkv16(*alloc_, size_t(3 * d.BH * head)), o16(*alloc_, size_t(d.BH * head)),
        do16(*alloc_, size_t(d.BH * head)), dqkv16(*alloc_, size_t(3 * d.BH * head));
    Scratch<float> stats(*alloc_, size_t(d.BH * d.L));
    cuda::launch_transpose_to_bf16(qkv.data(), qkv16.get(), 3 * d.BH, d.ch, d.L, stream_);
    cuda::launch_transpose_to_bf16(da.data(), do16.get(), d.BH, d.ch, d.L, stream_);
    // Nothing is kept from the forward (the Backend contract): recompute
    // the output and the log-sum-exp statistics the backward reads.
    if (attn_->forward(s, d.scale, qkv16.get(), o16.get(), stats.get()) &&
        attn_->backward(s, d.scale, qkv16.get(), o16.get(), do16.get(), stats.get(), dqkv16.get())) {
      cuda::launch_transpose_from_bf16(dqkv16.get(), dqkv.data(), 3 * d.BH, d.L, d.ch, stream_);
      return;
    }
  }
  OpRange range("attention_backward");
  Backend::attention_backward_impl(qkv, da, heads, dqkv);
}

std::string CudaBackend::paths() const {
  if (precision_ != Precision::BF16) return "attention: cuBLAS products + softmax kernel";
  const size_t plans = attn_->plans(), refused = attn_->refused();
  std::string line = cat("attention: cuDNN fused SDPA, ", plans, " plan", plans == 1 ? "" : "s");
  if (refused) line += cat("; ", refused, " refused (cuBLAS + softmax there), latest: ", attn_->last_refusal());
  return line;
}

void CudaBackend::add_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Add, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}
void CudaBackend::sub_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Sub, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}
void CudaBackend::mul_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  elementwise(cuda::EwOp::Mul, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()));
}
void CudaBackend::scale_impl(const Tensor& x, float alpha, Tensor& y) {
  elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1);
}
void CudaBackend::axpby_impl(float alpha, const Tensor& x, float beta, Tensor& y) {
  // As in BLAS (and the CPU), beta == 0 does not read y: it may be a fresh
  // buffer from the cache holding NaN bits, and 0 * NaN is NaN.
  if (beta == 0.f) {
    elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1);
    return;
  }
  elementwise(cuda::EwOp::Axpby, &x, &y, y, alpha, beta, 1, std::max<int64_t>(1, x.numel()));
}
void CudaBackend::add_channel_bias_impl(const Tensor& x, const Tensor& v, Tensor& y) {
  // [N, C, ...] as on the CPU: v[n, c] repeats over the trailing elements.
  const int64_t NC = x.dim(0) * x.dim(1), hw = std::max<int64_t>(1, NC != 0 ? x.numel() / NC : 0);
  elementwise(cuda::EwOp::Add, &x, &v, y, 0.f, 0.f, hw, std::max<int64_t>(1, v.numel()));
}
void CudaBackend::sum_hw_impl(const Tensor& dy, Tensor& dv) {
  OpRange range("sum_hw");
  const int64_t N = dy.dim(0), C = dy.dim(1);
  const int64_t HW = N * C != 0 ? dy.numel() / (N * C) : 0;
  cuda::launch_row_sum(dy.data(), dv.data(), N * C, HW, stream_);
}

void CudaBackend::concat_channels_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("concat_channels");
  const int64_t N = a.dim(0), Ca = a.dim(1), H = a.dim(2), W = a.dim(3), Cb = b.dim(1);
  cuda::launch_copy_channels(const_cast<float*>(a.data()), Ca, y.data(), Ca + Cb, 0, N, H * W, true, stream_);
  cuda::launch_copy_channels(const_cast<float*>(b.data()), Cb, y.data(), Ca + Cb, Ca, N, H * W, true, stream_);
}

void CudaBackend::split_channels_impl(const Tensor& y, Tensor* a, Tensor* b) {
  OpRange range("split_channels");
  const int64_t N = y.dim(0), C = y.dim(1), H = y.dim(2), W = y.dim(3);
  // The public op has matched the outputs' channels to the input's.
  const int64_t Ca = a ? a->dim(1) : C - b->dim(1);
  float* Y = const_cast<float*>(y.data());
  if (a) cuda::launch_copy_channels(a->data(), Ca, Y, C, 0, N, H * W, false, stream_);
  if (b) cuda::launch_copy_channels(b->data(), C - Ca, Y, C, Ca, N, H * W, false, stream_);
}

void CudaBackend::avg_pool2_impl(const Tensor& x, Tensor& y) {
  OpRange range("avg_pool2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  cuda::launch_avg_pool2(x.data(), y.data(), N * C, H, W, stream_);
}
void CudaBackend::avg_pool2_backward_impl(const Tensor& dy, Tensor& dx) {
  OpRange range("avg_pool2_backward");
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  cuda::launch_avg_pool2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}
void CudaBackend::upsample_nearest2_impl(const Tensor& x, Tensor& y) {
  OpRange range("upsample_nearest2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  cuda::launch_upsample_nearest2(x.data(), y.data(), N * C, H, W, stream_);
}
void CudaBackend::upsample_nearest2_backward_impl(const Tensor& dy, Tensor& dx) {
  OpRange range("upsample_nearest2_backward");
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  cuda::launch_upsample_nearest2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}

void CudaBackend::sum_impl(const Tensor& x, Tensor& out) {
  OpRange range("sum");
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), false, partial.get(), out.data(), stream_);
}
void CudaBackend::sum_squares_impl(const Tensor& x, Tensor& out) {
  OpRange range("sum_squares");
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), true, partial.get(), out.data(), stream_);
}

void CudaBackend::timestep_embedding_impl(const Tensor& t, Tensor& y) {
  OpRange range("timestep_embedding");
  cuda::launch_timestep_embedding(t.data(), y.data(), t.dim(0), y.dim(1), stream_);
}

void CudaBackend::adam_update_impl(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                                   int64_t step) {
  OpRange range("adam_update");
  cuda::launch_adam(param.data(), grad.data(), m.data(), v.data(), p, step, param.numel(), stream_);
}

void CudaBackend::mdps_step_impl(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad,
                                 const Tensor* mask, const Tensor* z, const StepCoeffs& c, Tensor& x_next,
                                 Tensor* x0_hat) {
  OpRange range("mdps_step");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_mdps_step(x.data(), y.data(), eps.data(), grad ? grad->data() : nullptr,
                         mask ? mask->data() : nullptr, z ? z->data() : nullptr, c, x_next.data(),
                         x0_hat ? x0_hat->data() : nullptr, x.numel(), x.dim(1) * hw, hw, stream_);
}

void CudaBackend::replace_normal_impl(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask,
                                      float sqrt_a, float sqrt_1ma) {
  OpRange range("replace_normal");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_replace_normal(x.data(), y.data(), z_fixed.data(), mask.data(), sqrt_a, sqrt_1ma, x.numel(),
                              x.dim(1) * hw, hw, stream_);
}

void CudaBackend::philox_normal_impl(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  OpRange range("philox_normal");
  cuda::launch_philox_normal(x.data(), x.numel(), seed, stream_id, offset, stream_);
}

void CudaBackend::relu_impl(const Tensor& x, Tensor& y) {
  OpRange range("relu");
  elementwise(cuda::EwOp::Relu, &x, nullptr, y, 0.f, 0.f, 1, 1);
}

void CudaBackend::max_pool3x3_s2_impl(const Tensor& x, Tensor& y) {
  OpRange range("max_pool3x3_s2");
  const int64_t H = x.dim(2), W = x.dim(3);
  cuda::launch_max_pool3x3_s2(x.data(), y.data(), x.dim(0) * x.dim(1), H, W, stream_);
}

void CudaBackend::imagenet_normalise_impl(const Tensor& x, Tensor& y) {
  OpRange range("imagenet_normalise");
  cuda::launch_imagenet_normalise(x.data(), y.data(), x.dim(0), x.dim(2) * x.dim(3), stream_);
}

void CudaBackend::pixel_distance_impl(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("pixel_distance");
  cuda::launch_pixel_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(2) * a.dim(3), stream_);
}

void CudaBackend::max_impl(const Tensor& x, Tensor& out) {
  OpRange range("max");
  Scratch<float> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_max(x.data(), x.numel(), partial.get(), out.data(), stream_);
}

void CudaBackend::anomaly_mix_impl(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p,
                                   float eta, Tensor& y) {
  OpRange range("anomaly_mix");
  cuda::launch_anomaly_mix(f.data(), p.data(), max_f.data(), max_p.data(), eta, y.data(), y.numel(), stream_);
}

void CudaBackend::pooled_cosine_distance_impl(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  OpRange range("pooled_cosine_distance");
  cuda::launch_pooled_cosine_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(1), a.dim(2), a.dim(3), eps,
                                      stream_);
}

void CudaBackend::gaussian_blur_impl(const Tensor& x, int kernel, float sigma, Tensor& y) {
  OpRange range("gaussian_blur");
  // The taps as the CPU computes them, so both blur with the same floats.
  const std::vector<float> taps = hostops::gaussian_kernel1d(kernel, sigma);
  Scratch<double> tmp(*alloc_, size_t(x.numel()));
  cuda::launch_gaussian_blur(x.data(), tmp.get(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), taps.data(),
                             kernel, stream_);
}

void CudaBackend::resize_bilinear_align_corners_impl(const Tensor& x, Tensor& y) {
  OpRange range("resize_bilinear_align_corners");
  cuda::launch_resize_bilinear(x.data(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), y.dim(2), y.dim(3),
                               stream_);
}

std::vector<double> CudaBackend::image_scores_impl(const Tensor& maps, ImageScoreKind kind, int k) {
  OpRange range("image_scores");
  const int64_t N = maps.dim(0);
  Scratch<double> out(*alloc_, size_t(N));
  cuda::launch_topk_score(maps.data(), N, maps.dim(2) * maps.dim(3), k, kind == ImageScoreKind::Authors, out.get(),
                          stream_);
  std::vector<double> scores(static_cast<size_t>(N));
  check_cuda(cudaMemcpyAsync(scores.data(), out.get(), size_t(N) * sizeof(double), cudaMemcpyDeviceToHost, stream_),
             "image_scores copy");
  check_cuda(cudaStreamSynchronize(stream_), "image_scores synchronize");
  return scores;
}

// One backend per process, created on first use; nullptr when the runtime
// finds no device (silently: `--device auto` then quietly picks the CPU) or
// the device cannot be set up (said once on stderr).
Backend* cuda_backend_instance() {
  static std::once_flag once;
  static std::unique_ptr<CudaBackend> backend;
  std::call_once(once, [] {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      cudaGetLastError();  // clear the sticky "no device" error
      return;
    }
    try {
      backend = std::make_unique<CudaBackend>(0);
    } catch (const Error& err) {
      std::fprintf(stderr, "mdps: CUDA device unusable: %s\n", err.what());
    }
  });
  return backend.get();
}

}  // namespace mdps
