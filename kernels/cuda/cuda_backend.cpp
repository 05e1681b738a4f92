// CudaBackend: memory, copies, cuBLAS products, cuDNN convolutions and the
// launches of the hand-written kernels, with the same shape checks as the CPU
// backend. Every op is an NVTX range (when the header-only NVTX 3 is present)
// so Nsight Systems shows the op names on the timeline.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/launch.h"
#include "engine/core/attention_dims.h"
#include "kernels/cpu/cpu_image_ops.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <climits>
#include <initializer_list>
#include <cstdio>
#include <memory>
#include <mutex>

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

void check_cuda_tensor(const Tensor& t, const char* what) {
  MDPS_CHECK(t.device() == Device::CUDA, what, ": tensor ", t.describe(), " is not on the CUDA device");
}
// Every operand (null: absent) on this device: a host pointer handed to a
// kernel or library would be an illegal address, sticky for the whole
// context, instead of this clear error.
void check_operands(const char* op, std::initializer_list<const Tensor*> operands) {
  int i = 0;
  for (const Tensor* t : operands) {
    ++i;
    if (t) MDPS_CHECK(t->device() == Device::CUDA, op, ": operand ", i, " ", t->describe(), " is not on the CUDA device");
  }
}
void check_nchw(const Tensor& t, const char* what) {
  check_cuda_tensor(t, what);
  MDPS_CHECK(t.ndim() == 4, what, ": expected [N, C, H, W], got ", shape_str(t.shape()));
}
int to_int(int64_t v, const char* what) {
  MDPS_CHECK(v >= 0 && v <= INT_MAX, what, ": ", v, " exceeds the int range of cuDNN/cuBLAS");
  return int(v);
}
void check_mask(const Tensor& mask, const Tensor& x, const char* what) {
  const Shape& s = x.shape();
  check_shape(mask, {s[0], 1, s[2], s[3]}, what);
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
                              int64_t b_div, int64_t b_mod, const char* what) {
  check_cuda_tensor(y, what);
  if (a) check_cuda_tensor(*a, cat(what, " input").c_str());
  if (b) check_cuda_tensor(*b, cat(what, " second input").c_str());
  if (a) check_shape(y, a->shape(), cat(what, " output"));
  cuda::launch_elementwise(op, a ? a->data() : nullptr, b ? b->data() : nullptr, y.data(), alpha, beta, y.numel(),
                           b_div, b_mod, stream_);
}

void CudaBackend::fill(Tensor& x, float value) {
  elementwise(cuda::EwOp::Fill, nullptr, nullptr, x, value, 0.f, 1, 1, "fill");
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
// operands and the roles of M and N.
void CudaBackend::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
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

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  OpRange range("linear");
  check_operands("linear", {&x, &w, b, &y});
  MDPS_CHECK(x.ndim() == 2 && w.ndim() == 2, "linear: x ", x.describe(), " and w ", w.describe(), " must be 2-D");
  const int64_t N = x.dim(0), in = x.dim(1), out = w.dim(0);
  check_shape(w, {out, in}, "linear weight");
  check_shape(y, {N, out}, "linear output");
  if (b) check_shape(*b, {out}, "linear bias");
  gemm(false, true, N, out, in, 1.f, x.data(), in, 0, w.data(), in, 0, 0.f, y.data(), out, 0, 1);
  if (b) elementwise(cuda::EwOp::Add, &y, b, y, 0.f, 0.f, 1, out, "linear bias");
}
// Leading dimensions of x are rows, as on the CPU: dx = dy w, dw = dy^T x,
// db = column sums of dy.
void CudaBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                  Tensor* db) {
  OpRange range("linear_backward");
  check_operands("linear_backward", {&dy, &x, &w, dx, dw, db});
  MDPS_CHECK(w.ndim() == 2, "linear_backward: weight must be [out, in], got ", shape_str(w.shape()));
  MDPS_CHECK(x.ndim() >= 1 && x.dim(-1) == w.dim(1), "linear_backward: input ", shape_str(x.shape()),
             " does not end in in_features ", w.dim(1), " of weight ", shape_str(w.shape()));
  const int64_t in = w.dim(1), out = w.dim(0), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Shape ys = x.shape();
  ys.back() = out;
  check_shape(dy, ys, "linear_backward dy");
  const int64_t ldi = std::max<int64_t>(1, in), ldo = std::max<int64_t>(1, out);
  if (dx) {
    check_shape(*dx, x.shape(), "linear_backward dx");
    if (out == 0) fill(*dx, 0.f);
    else gemm(false, false, rows, in, out, 1.f, dy.data(), ldo, 0, w.data(), ldi, 0, 0.f, dx->data(), ldi, 0, 1);
  }
  if (dw) {
    check_shape(*dw, w.shape(), "linear_backward dw");
    if (rows == 0) fill(*dw, 0.f);
    else gemm(true, false, out, in, rows, 1.f, dy.data(), ldo, 0, x.data(), ldi, 0, 0.f, dw->data(), ldi, 0, 1);
  }
  if (db) {
    check_shape(*db, {out}, "linear_backward db");
    cuda::launch_column_sum(dy.data(), db->data(), rows, out, stream_);
  }
}

void CudaBackend::conv_shape(const Tensor& x, const Tensor& w, const Shape& y, ConvGeom g, const char* op,
                             cuda::ConvShape& s) const {
  check_cuda_tensor(w, op);
  MDPS_CHECK(x.ndim() == 4, op, ": input must be [N, C, H, W], got ", shape_str(x.shape()));
  MDPS_CHECK(w.ndim() == 4, op, ": weight must be [Co, Ci, KH, KW], got ", shape_str(w.shape()));
  MDPS_CHECK(g.stride >= 1 && g.pad >= 0, op, ": invalid stride ", g.stride, " / padding ", g.pad);
  MDPS_CHECK(w.dim(1) == x.dim(1), op, ": weight ", shape_str(w.shape()), " expects ", w.dim(1),
             " input channels, input ", shape_str(x.shape()), " has ", x.dim(1));
  const int64_t Ho = conv_out_size(x.dim(2), w.dim(2), g), Wo = conv_out_size(x.dim(3), w.dim(3), g);
  MDPS_CHECK(x.dim(2) + 2 * g.pad >= w.dim(2) && x.dim(3) + 2 * g.pad >= w.dim(3) && Ho > 0 && Wo > 0, op,
             ": kernel ", w.dim(2), "x", w.dim(3), " larger than padded input ", shape_str(x.shape()));
  // cuDNN rejects empty descriptors; a convolution without input channels
  // has no use in the U-Net.
  MDPS_CHECK(x.dim(1) > 0, op, ": zero input channels are not supported on CUDA");
  MDPS_CHECK(w.dim(2) > 0 && w.dim(3) > 0, op, ": empty kernel ", shape_str(w.shape()), " is not supported on CUDA");
  s = {to_int(x.dim(0), op), to_int(x.dim(1), op), to_int(x.dim(2), op), to_int(x.dim(3), op),
       to_int(w.dim(0), op), to_int(w.dim(2), op), to_int(w.dim(3), op), to_int(Ho, op), to_int(Wo, op), g.stride,
       g.pad};
  const Shape expect_y{x.dim(0), w.dim(0), Ho, Wo};
  MDPS_CHECK(y == expect_y, op, ": output/gradient is ", shape_str(y), ", expected ", shape_str(expect_y));
}

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, ConvGeom g) {
  OpRange range("conv2d");
  check_operands("conv2d", {&x, &w, b, &y});
  cuda::ConvShape s{};
  conv_shape(x, w, y.shape(), g, "conv2d", s);
  if (b) check_shape(*b, {w.dim(0)}, "conv2d bias");
  if (y.numel() == 0) return;
  conv_->forward(s, x.data(), w.data(), b ? b->data() : nullptr, y.data());
}
void CudaBackend::conv2d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, ConvGeom g) {
  OpRange range("conv2d_backward_data");
  check_operands("conv2d_backward_data", {&dy, &w, &dx});
  cuda::ConvShape s{};
  conv_shape(dx, w, dy.shape(), g, "conv2d_backward_data", s);
  if (dx.numel() == 0) return;
  if (w.numel() == 0) {  // no output channels: no gradient flows
    fill(dx, 0.f);
    return;
  }
  conv_->backward_data(s, dy.data(), w.data(), dx.data());
}
void CudaBackend::conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, ConvGeom g) {
  OpRange range("conv2d_backward_weight");
  check_operands("conv2d_backward_weight", {&dy, &x, &dw, db});
  cuda::ConvShape s{};
  conv_shape(x, dw, dy.shape(), g, "conv2d_backward_weight", s);
  if (db) check_shape(*db, {dw.dim(0)}, "conv2d_backward_weight db");
  if (dw.numel() == 0) return;
  if (x.numel() == 0) {  // an empty batch: no gradient
    fill(dw, 0.f);
    if (db) fill(*db, 0.f);
    return;
  }
  conv_->backward_filter(s, x.data(), dy.data(), dw.data(), db ? db->data() : nullptr);
}

void CudaBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                             bool silu, Tensor& y, Tensor& mean, Tensor& rstd) {
  OpRange range("group_norm");
  check_operands("group_norm", {&x, &gamma, &beta, &y, &mean, &rstd});
  MDPS_CHECK(x.ndim() >= 2, "group_norm: input must be [N, C, ...], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1);
  MDPS_CHECK(groups >= 1 && C % groups == 0, "group_norm: ", C, " channels do not split into ", groups, " groups");
  check_shape(gamma, {C}, "group_norm gamma");
  check_shape(beta, {C}, "group_norm beta");
  check_shape(y, x.shape(), "group_norm output");
  check_shape(mean, {N * groups}, "group_norm mean");
  check_shape(rstd, {N * groups}, "group_norm rstd");
  MDPS_CHECK(eps >= 0.f, "group_norm: negative eps ", eps);
  const int64_t HW = N * C != 0 ? x.numel() / (N * C) : 0;
  cuda::launch_group_norm(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), N, groups,
                          C / groups, HW, eps, silu, stream_);
}
void CudaBackend::group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& mean, const Tensor& rstd, int groups, bool silu, Tensor* dx,
                                      Tensor* dgamma, Tensor* dbeta) {
  OpRange range("group_norm_backward");
  check_operands("group_norm_backward", {&dy, &x, &gamma, &beta, &mean, &rstd, dx, dgamma, dbeta});
  MDPS_CHECK(x.ndim() >= 2, "group_norm_backward: input must be [N, C, ...], got ", shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1);
  MDPS_CHECK(groups >= 1 && C % groups == 0, "group_norm_backward: ", C, " channels do not split into ", groups,
             " groups");
  check_shape(gamma, {C}, "group_norm_backward gamma");
  check_shape(beta, {C}, "group_norm_backward beta");
  check_shape(dy, x.shape(), "group_norm_backward dy");
  check_shape(mean, {N * groups}, "group_norm_backward mean");
  check_shape(rstd, {N * groups}, "group_norm_backward rstd");
  if (dx) check_shape(*dx, x.shape(), "group_norm_backward dx");
  if (dgamma) check_shape(*dgamma, {C}, "group_norm_backward dgamma");
  if (dbeta) check_shape(*dbeta, {C}, "group_norm_backward dbeta");
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

void CudaBackend::scale_by_inverse_sqrt(const Tensor& x, const Tensor& sum_sq, Tensor& y) {
  OpRange range("scale_by_inverse_sqrt");
  MDPS_CHECK(sum_sq.numel() == 1, "scale_by_inverse_sqrt: the sum of squares must hold one element, got ",
             shape_str(sum_sq.shape()));
  // Every element reads b[(i / n) % 1] = sum_sq[0].
  elementwise(cuda::EwOp::ScaleByInverseSqrt, &x, &sum_sq, y, 0.f, 0.f, std::max<int64_t>(1, x.numel()), 1,
              "scale_by_inverse_sqrt");
}

void CudaBackend::silu(const Tensor& x, Tensor& y) {
  elementwise(cuda::EwOp::Silu, &x, nullptr, y, 0.f, 0.f, 1, 1, "silu");
}
void CudaBackend::silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_shape(dy, x.shape(), "silu_backward dy");
  elementwise(cuda::EwOp::SiluBackward, &x, &dy, dx, 0.f, 0.f, 1, std::max<int64_t>(1, x.numel()), "silu_backward");
}
void CudaBackend::softmax(const Tensor& x, Tensor& y) {
  OpRange range("softmax");
  check_operands("softmax", {&x, &y});
  MDPS_CHECK(x.ndim() >= 1, "softmax: input must have at least one dimension");
  check_shape(y, x.shape(), "softmax output");
  const int64_t L = x.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax(x.data(), y.data(), x.numel() / L, L, stream_);
}
void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  OpRange range("softmax_backward");
  check_operands("softmax_backward", {&y, &dy, &dx});
  MDPS_CHECK(y.ndim() >= 1, "softmax_backward: y must have at least one dimension");
  check_shape(dy, y.shape(), "softmax_backward dy");
  check_shape(dx, y.shape(), "softmax_backward dx");
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
void CudaBackend::attention(const Tensor& qkv, int heads, Tensor& a) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention");
  check_operands("attention", {&qkv, &a});
  check_shape(a, attention_out_shape(qkv.shape(), heads), "attention output");
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
  Backend::attention(qkv, heads, a);
}

void CudaBackend::attention_backward(const Tensor& qkv, const Tensor& da, int heads, Tensor& dqkv) {
  const AttentionDims d = attention_dims(qkv.shape(), heads, "attention_backward");
  check_operands("attention_backward", {&qkv, &da, &dqkv});
  check_shape(da, attention_out_shape(qkv.shape(), heads), "attention_backward da");
  check_shape(dqkv, qkv.shape(), "attention_backward dqkv");
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
  Backend::attention_backward(qkv, da, heads, dqkv);
}

std::string CudaBackend::paths() const {
  if (precision_ != Precision::BF16) return "attention: cuBLAS products + softmax kernel";
  const size_t plans = attn_->plans(), refused = attn_->refused();
  std::string line = cat("attention: cuDNN fused SDPA, ", plans, " plan", plans == 1 ? "" : "s");
  if (refused) line += cat("; ", refused, " refused (cuBLAS + softmax there), latest: ", attn_->last_refusal());
  return line;
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  check_shape(b, a.shape(), "add second operand");
  elementwise(cuda::EwOp::Add, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()), "add");
}
void CudaBackend::sub(const Tensor& a, const Tensor& b, Tensor& y) {
  check_shape(b, a.shape(), "sub second operand");
  elementwise(cuda::EwOp::Sub, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()), "sub");
}
void CudaBackend::mul(const Tensor& a, const Tensor& b, Tensor& y) {
  check_shape(b, a.shape(), "mul second operand");
  elementwise(cuda::EwOp::Mul, &a, &b, y, 0.f, 0.f, 1, std::max<int64_t>(1, a.numel()), "mul");
}
void CudaBackend::scale(const Tensor& x, float alpha, Tensor& y) {
  elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1, "scale");
}
void CudaBackend::axpby(float alpha, const Tensor& x, float beta, Tensor& y) {
  check_shape(y, x.shape(), "axpby y");
  // As in BLAS (and the CPU), beta == 0 does not read y: it may be a fresh
  // buffer from the cache holding NaN bits, and 0 * NaN is NaN.
  if (beta == 0.f) {
    elementwise(cuda::EwOp::Scale, &x, nullptr, y, alpha, 0.f, 1, 1, "axpby");
    return;
  }
  elementwise(cuda::EwOp::Axpby, &x, &y, y, alpha, beta, 1, std::max<int64_t>(1, x.numel()), "axpby");
}
void CudaBackend::add_channel_bias(const Tensor& x, const Tensor& v, Tensor& y) {
  MDPS_CHECK(x.ndim() == 4, "add_channel_bias: x ", x.describe(), " is not NCHW");
  check_shape(v, {x.dim(0), x.dim(1)}, "add_channel_bias v");
  const int64_t hw = std::max<int64_t>(1, x.dim(2) * x.dim(3));
  elementwise(cuda::EwOp::Add, &x, &v, y, 0.f, 0.f, hw, std::max<int64_t>(1, v.numel()), "add_channel_bias");
}
void CudaBackend::sum_hw(const Tensor& dy, Tensor& dv) {
  OpRange range("sum_hw");
  check_operands("sum_hw", {&dy, &dv});
  MDPS_CHECK(dy.ndim() >= 2, "sum_hw: input must be [N, C, ...], got ", shape_str(dy.shape()));
  const int64_t N = dy.dim(0), C = dy.dim(1);
  check_shape(dv, {N, C}, "sum_hw output");
  const int64_t HW = N * C != 0 ? dy.numel() / (N * C) : 0;
  cuda::launch_row_sum(dy.data(), dv.data(), N * C, HW, stream_);
}

void CudaBackend::concat_channels(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("concat_channels");
  check_nchw(a, "concat_channels first input");
  check_nchw(b, "concat_channels second input");
  const int64_t N = a.dim(0), Ca = a.dim(1), H = a.dim(2), W = a.dim(3), Cb = b.dim(1);
  check_shape(b, {N, Cb, H, W}, "concat_channels second input");
  check_shape(y, {N, Ca + Cb, H, W}, "concat_channels output");
  cuda::launch_copy_channels(const_cast<float*>(a.data()), Ca, y.data(), Ca + Cb, 0, N, H * W, true, stream_);
  cuda::launch_copy_channels(const_cast<float*>(b.data()), Cb, y.data(), Ca + Cb, Ca, N, H * W, true, stream_);
}

void CudaBackend::split_channels(const Tensor& y, Tensor* a, Tensor* b) {
  OpRange range("split_channels");
  check_nchw(y, "split_channels input");
  const int64_t N = y.dim(0), C = y.dim(1), H = y.dim(2), W = y.dim(3);
  MDPS_CHECK(a || b, "split_channels: both outputs are null");
  int64_t Ca = -1, Cb = -1;
  if (a) {
    check_nchw(*a, "split_channels first output");
    Ca = a->dim(1);
  }
  if (b) {
    check_nchw(*b, "split_channels second output");
    Cb = b->dim(1);
  }
  if (Ca < 0) Ca = C - Cb;
  if (Cb < 0) Cb = C - Ca;
  MDPS_CHECK(Ca >= 0 && Cb >= 0 && Ca + Cb == C, "split_channels: output channels ", Ca, " + ", Cb,
             " do not add up to the input's ", C);
  float* Y = const_cast<float*>(y.data());
  if (a) {
    check_shape(*a, {N, Ca, H, W}, "split_channels first output");
    cuda::launch_copy_channels(a->data(), Ca, Y, C, 0, N, H * W, false, stream_);
  }
  if (b) {
    check_shape(*b, {N, Cb, H, W}, "split_channels second output");
    cuda::launch_copy_channels(b->data(), Cb, Y, C, Ca, N, H * W, false, stream_);
  }
}

void CudaBackend::avg_pool2(const Tensor& x, Tensor& y) {
  OpRange range("avg_pool2");
  check_nchw(x, "avg_pool2 input");
  check_operands("avg_pool2", {&y});
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  check_shape(y, {N, C, H / 2, W / 2}, "avg_pool2 output");
  cuda::launch_avg_pool2(x.data(), y.data(), N * C, H, W, stream_);
}
void CudaBackend::avg_pool2_backward(const Tensor& dy, Tensor& dx) {
  OpRange range("avg_pool2_backward");
  check_nchw(dx, "avg_pool2_backward dx");
  check_operands("avg_pool2_backward", {&dy});
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  check_shape(dy, {N, C, H / 2, W / 2}, "avg_pool2_backward dy");
  cuda::launch_avg_pool2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}
void CudaBackend::upsample_nearest2(const Tensor& x, Tensor& y) {
  OpRange range("upsample_nearest2");
  check_nchw(x, "upsample_nearest2 input");
  check_operands("upsample_nearest2", {&y});
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  check_shape(y, {N, C, 2 * H, 2 * W}, "upsample_nearest2 output");
  cuda::launch_upsample_nearest2(x.data(), y.data(), N * C, H, W, stream_);
}
void CudaBackend::upsample_nearest2_backward(const Tensor& dy, Tensor& dx) {
  OpRange range("upsample_nearest2_backward");
  check_nchw(dx, "upsample_nearest2_backward dx");
  check_operands("upsample_nearest2_backward", {&dy});
  const int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  check_shape(dy, {N, C, 2 * H, 2 * W}, "upsample_nearest2_backward dy");
  cuda::launch_upsample_nearest2_backward(dy.data(), dx.data(), N * C, H, W, stream_);
}

void CudaBackend::sum(const Tensor& x, Tensor& out) {
  OpRange range("sum");
  check_cuda_tensor(x, "sum input");
  check_cuda_tensor(out, "sum output");
  MDPS_CHECK(out.numel() == 1, "sum: output must hold one element, got ", shape_str(out.shape()));
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), false, partial.get(), out.data(), stream_);
}
void CudaBackend::sum_squares(const Tensor& x, Tensor& out) {
  OpRange range("sum_squares");
  check_cuda_tensor(x, "sum_squares input");
  check_cuda_tensor(out, "sum_squares output");
  MDPS_CHECK(out.numel() == 1, "sum_squares: output must hold one element, got ", shape_str(out.shape()));
  Scratch<double> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_sum(x.data(), x.numel(), true, partial.get(), out.data(), stream_);
}

void CudaBackend::timestep_embedding(const Tensor& t, Tensor& y) {
  OpRange range("timestep_embedding");
  check_cuda_tensor(t, "timestep_embedding t");
  MDPS_CHECK(t.ndim() == 1, "timestep_embedding: t must be [N], got ", shape_str(t.shape()));
  check_cuda_tensor(y, "timestep_embedding output");
  MDPS_CHECK(y.ndim() == 2 && y.dim(0) == t.dim(0), "timestep_embedding: output must be [", t.dim(0),
             ", dim], got ", shape_str(y.shape()));
  cuda::launch_timestep_embedding(t.data(), y.data(), t.dim(0), y.dim(1), stream_);
}

void CudaBackend::adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                              int64_t step) {
  OpRange range("adam_update");
  check_operands("adam_update", {&param, &grad, &m, &v});
  check_shape(grad, param.shape(), "adam_update grad");
  check_shape(m, param.shape(), "adam_update first moment");
  check_shape(v, param.shape(), "adam_update second moment");
  MDPS_CHECK(step >= 1, "adam_update: step must count from 1, got ", step);
  MDPS_CHECK(p.beta1 >= 0.f && p.beta1 < 1.f && p.beta2 >= 0.f && p.beta2 < 1.f, "adam_update: betas (", p.beta1,
             ", ", p.beta2, ") must lie in [0, 1)");
  cuda::launch_adam(param.data(), grad.data(), m.data(), v.data(), p, step, param.numel(), stream_);
}

void CudaBackend::mdps_step(const Tensor& x, const Tensor& y, const Tensor& eps, const Tensor* grad,
                            const Tensor* mask, const Tensor* z, const StepCoeffs& c, Tensor& x_next,
                            Tensor* x0_hat) {
  OpRange range("mdps_step");
  check_operands("mdps_step", {&x, &y, &eps, grad, mask, z, &x_next, x0_hat});
  MDPS_CHECK(x.ndim() == 4, "mdps_step: x ", x.describe(), " is not NCHW");
  check_shape(y, x.shape(), "mdps_step y");
  check_shape(eps, x.shape(), "mdps_step eps");
  check_shape(x_next, x.shape(), "mdps_step x_next");
  if (grad) check_shape(*grad, x.shape(), "mdps_step grad");
  if (z) check_shape(*z, x.shape(), "mdps_step z");
  if (x0_hat) check_shape(*x0_hat, x.shape(), "mdps_step x0_hat");
  if (mask) check_mask(*mask, x, "mdps_step mask");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_mdps_step(x.data(), y.data(), eps.data(), grad ? grad->data() : nullptr,
                         mask ? mask->data() : nullptr, z ? z->data() : nullptr, c, x_next.data(),
                         x0_hat ? x0_hat->data() : nullptr, x.numel(), x.dim(1) * hw, hw, stream_);
}

void CudaBackend::replace_normal(Tensor& x, const Tensor& y, const Tensor& z_fixed, const Tensor& mask,
                                 float sqrt_a, float sqrt_1ma) {
  OpRange range("replace_normal");
  check_operands("replace_normal", {&x, &y, &z_fixed, &mask});
  MDPS_CHECK(x.ndim() == 4, "replace_normal: x ", x.describe(), " is not NCHW");
  check_shape(y, x.shape(), "replace_normal y");
  check_shape(z_fixed, x.shape(), "replace_normal z");
  check_mask(mask, x, "replace_normal mask");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_replace_normal(x.data(), y.data(), z_fixed.data(), mask.data(), sqrt_a, sqrt_1ma, x.numel(),
                              x.dim(1) * hw, hw, stream_);
}

void CudaBackend::philox_normal(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  OpRange range("philox_normal");
  check_cuda_tensor(x, "philox_normal output");
  cuda::launch_philox_normal(x.data(), x.numel(), seed, stream_id, offset, stream_);
}

void CudaBackend::relu(const Tensor& x, Tensor& y) {
  OpRange range("relu");
  elementwise(cuda::EwOp::Relu, &x, nullptr, y, 0.f, 0.f, 1, 1, "relu");
}

void CudaBackend::max_pool3x3_s2(const Tensor& x, Tensor& y) {
  OpRange range("max_pool3x3_s2");
  check_nchw(x, "max_pool3x3_s2 input");
  check_cuda_tensor(y, "max_pool3x3_s2 output");
  const int64_t H = x.dim(2), W = x.dim(3);
  check_shape(y, {x.dim(0), x.dim(1), (H - 1) / 2 + 1, (W - 1) / 2 + 1}, "max_pool3x3_s2 output");
  MDPS_CHECK(H > 0 && W > 0, "max_pool3x3_s2: input ", x.describe(), " is empty");
  cuda::launch_max_pool3x3_s2(x.data(), y.data(), x.dim(0) * x.dim(1), H, W, stream_);
}

void CudaBackend::imagenet_normalise(const Tensor& x, Tensor& y) {
  OpRange range("imagenet_normalise");
  check_nchw(x, "imagenet_normalise input");
  MDPS_CHECK(x.dim(1) == 3, "imagenet_normalise: images ", x.describe(), " are not [N,3,H,W]");
  check_cuda_tensor(y, "imagenet_normalise output");
  check_shape(y, x.shape(), "imagenet_normalise output");
  cuda::launch_imagenet_normalise(x.data(), y.data(), x.dim(0), x.dim(2) * x.dim(3), stream_);
}

void CudaBackend::pixel_distance(const Tensor& a, const Tensor& b, Tensor& y) {
  OpRange range("pixel_distance");
  check_nchw(a, "pixel_distance a");
  MDPS_CHECK(a.dim(1) == 3, "pixel_distance: images ", a.describe(), " are not [N,3,H,W]");
  check_cuda_tensor(b, "pixel_distance b");
  check_shape(b, a.shape(), "pixel_distance b");
  check_cuda_tensor(y, "pixel_distance output");
  check_shape(y, {a.dim(0), 1, a.dim(2), a.dim(3)}, "pixel_distance output");
  cuda::launch_pixel_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(2) * a.dim(3), stream_);
}

void CudaBackend::max(const Tensor& x, Tensor& out) {
  OpRange range("max");
  check_cuda_tensor(x, "max input");
  check_cuda_tensor(out, "max output");
  MDPS_CHECK(out.numel() == 1, "max: output must hold one element, got ", shape_str(out.shape()));
  MDPS_CHECK(x.numel() > 0, "max: input ", x.describe(), " is empty");
  Scratch<float> partial(*alloc_, cuda::sum_partial_blocks(x.numel()));
  cuda::launch_max(x.data(), x.numel(), partial.get(), out.data(), stream_);
}

void CudaBackend::anomaly_mix(const Tensor& f, const Tensor& p, const Tensor& max_f, const Tensor& max_p, float eta,
                              Tensor& y) {
  OpRange range("anomaly_mix");
  for (const Tensor* t : {&f, &p, &max_f, &max_p, static_cast<const Tensor*>(&y)})
    check_cuda_tensor(*t, "anomaly_mix operand");
  check_shape(p, f.shape(), "anomaly_mix pixel term");
  check_shape(y, f.shape(), "anomaly_mix output");
  MDPS_CHECK(max_f.numel() == 1 && max_p.numel() == 1, "anomaly_mix: the maxima must hold one element each, got ",
             shape_str(max_f.shape()), " and ", shape_str(max_p.shape()));
  cuda::launch_anomaly_mix(f.data(), p.data(), max_f.data(), max_p.data(), eta, y.data(), y.numel(), stream_);
}

void CudaBackend::pooled_cosine_distance(const Tensor& a, const Tensor& b, Tensor& y, float eps) {
  OpRange range("pooled_cosine_distance");
  check_nchw(a, "pooled_cosine_distance a");
  check_shape(b, a.shape(), "pooled_cosine_distance b");
  check_cuda_tensor(b, "pooled_cosine_distance b");
  check_cuda_tensor(y, "pooled_cosine_distance output");
  check_shape(y, {a.dim(0), 1, a.dim(2), a.dim(3)}, "pooled_cosine_distance output");
  cuda::launch_pooled_cosine_distance(a.data(), b.data(), y.data(), a.dim(0), a.dim(1), a.dim(2), a.dim(3), eps,
                                      stream_);
}

void CudaBackend::gaussian_blur(const Tensor& x, int kernel, float sigma, Tensor& y) {
  OpRange range("gaussian_blur");
  check_nchw(x, "gaussian_blur input");
  check_cuda_tensor(y, "gaussian_blur output");
  check_shape(y, x.shape(), "gaussian_blur output");
  // The taps as the CPU computes them, so both blur with the same floats.
  const std::vector<float> taps = hostops::gaussian_kernel1d(kernel, sigma);
  Scratch<double> tmp(*alloc_, size_t(x.numel()));
  cuda::launch_gaussian_blur(x.data(), tmp.get(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), taps.data(),
                             kernel, stream_);
}

void CudaBackend::resize_bilinear_align_corners(const Tensor& x, Tensor& y) {
  OpRange range("resize_bilinear_align_corners");
  check_nchw(x, "resize_bilinear input");
  check_nchw(y, "resize_bilinear output");
  MDPS_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1), "resize_bilinear: output ", y.describe(),
             " does not match the input's N and C ", x.describe());
  cuda::launch_resize_bilinear(x.data(), y.data(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), y.dim(2), y.dim(3),
                               stream_);
}

std::vector<double> CudaBackend::image_scores(const Tensor& maps, ImageScoreKind kind, int k) {
  OpRange range("image_scores");
  check_nchw(maps, "image_scores maps");
  MDPS_CHECK(maps.dim(1) == 1 && maps.numel() > 0, "image score: maps ", maps.describe(), " are not [N,1,H,W]");
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
