// CudaBackend: memory, copies, cuBLAS products and the launches of the
// hand-written kernels, with the same shape checks as the CPU backend.
#include "kernels/cuda/cuda_backend.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cstdio>
#include <memory>
#include <mutex>

namespace mdps {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  MDPS_CHECK(e == cudaSuccess, "CUDA ", what, ": ", cudaGetErrorString(e));
}
void check_cublas(cublasStatus_t s, const char* what) {
  MDPS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS ", what, ": status ", int(s));
}
[[noreturn]] void not_yet(const char* op) { throw Error(cat("CUDA op ", op, " not implemented yet")); }

void check_cuda_tensor(const Tensor& t, const char* what) {
  MDPS_CHECK(t.device() == Device::CUDA, what, ": tensor ", t.describe(), " is not on the CUDA device");
}
void check_mask(const Tensor& mask, const Tensor& x, const char* what) {
  const Shape& s = x.shape();
  check_shape(mask, {s[0], 1, s[2], s[3]}, what);
}

cublasHandle_t handle(void* h) { return static_cast<cublasHandle_t>(h); }

}  // namespace

CudaBackend::CudaBackend(int device) : device_(device) {
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate");
  check_cublas(cublasSetStream(h, s), "cublasSetStream");
  cublas_ = h;
}

CudaBackend::~CudaBackend() {
  if (cublas_) cublasDestroy(handle(cublas_));
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaBackend::raw_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  check_cuda(cudaMalloc(&p, bytes), "cudaMalloc");
  stats_.on_alloc(bytes, MemCategoryScope::current());
  return p;
}
void CudaBackend::raw_free(void* p, size_t bytes) {
  if (!p) return;
  // Kernels still queued may use the memory: the stream drains first.
  cudaStreamSynchronize(stream_);
  cudaFree(p);
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
  if (M == 0 || N == 0 || batch == 0) return;
  check_cublas(cublasSgemmStridedBatched(handle(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M), int(K), &alpha, B,
                                         int(ldb), stride_b, A, int(lda), stride_a, &beta, C, int(ldc), stride_c,
                                         int(batch)),
               "sgemm");
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  MDPS_CHECK(x.ndim() == 2 && w.ndim() == 2, "linear: x ", x.describe(), " and w ", w.describe(), " must be 2-D");
  const int64_t N = x.dim(0), in = x.dim(1), out = w.dim(0);
  check_shape(w, {out, in}, "linear weight");
  check_shape(y, {N, out}, "linear output");
  if (b) check_shape(*b, {out}, "linear bias");
  gemm(false, true, N, out, in, 1.f, x.data(), in, 0, w.data(), in, 0, 0.f, y.data(), out, 0, 1);
  if (b) elementwise(cuda::EwOp::Add, &y, b, y, 0.f, 0.f, 1, out, "linear bias");
}
void CudaBackend::linear_backward(const Tensor&, const Tensor&, const Tensor&, Tensor*, Tensor*, Tensor*) {
  not_yet("linear_backward");
}
void CudaBackend::conv2d(const Tensor&, const Tensor&, const Tensor*, Tensor&, ConvGeom) { not_yet("conv2d"); }
void CudaBackend::conv2d_backward_data(const Tensor&, const Tensor&, Tensor&, ConvGeom) {
  not_yet("conv2d_backward_data");
}
void CudaBackend::conv2d_backward_weight(const Tensor&, const Tensor&, Tensor&, Tensor*, ConvGeom) {
  not_yet("conv2d_backward_weight");
}

void CudaBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                             bool silu, Tensor& y, Tensor& mean, Tensor& rstd) {
  check_cuda_tensor(x, "group_norm input");
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
void CudaBackend::group_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                      const Tensor&, int, bool, Tensor*, Tensor*, Tensor*) {
  not_yet("group_norm_backward");
}

void CudaBackend::silu(const Tensor& x, Tensor& y) {
  elementwise(cuda::EwOp::Silu, &x, nullptr, y, 0.f, 0.f, 1, 1, "silu");
}
void CudaBackend::silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_shape(dy, x.shape(), "silu_backward dy");
  elementwise(cuda::EwOp::SiluBackward, &x, &dy, dx, 0.f, 0.f, 1, std::max<int64_t>(1, x.numel()), "silu_backward");
}
void CudaBackend::softmax(const Tensor& x, Tensor& y) {
  check_cuda_tensor(x, "softmax input");
  MDPS_CHECK(x.ndim() >= 1, "softmax: input must have at least one dimension");
  check_shape(y, x.shape(), "softmax output");
  const int64_t L = x.dim(-1);
  if (L == 0) return;
  cuda::launch_softmax(x.data(), y.data(), x.numel() / L, L, stream_);
}
void CudaBackend::softmax_backward(const Tensor&, const Tensor&, Tensor&) { not_yet("softmax_backward"); }

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
  elementwise(cuda::EwOp::Axpby, &x, &y, y, alpha, beta, 1, std::max<int64_t>(1, x.numel()), "axpby");
}
void CudaBackend::add_channel_bias(const Tensor& x, const Tensor& v, Tensor& y) {
  MDPS_CHECK(x.ndim() == 4, "add_channel_bias: x ", x.describe(), " is not NCHW");
  check_shape(v, {x.dim(0), x.dim(1)}, "add_channel_bias v");
  const int64_t hw = std::max<int64_t>(1, x.dim(2) * x.dim(3));
  elementwise(cuda::EwOp::Add, &x, &v, y, 0.f, 0.f, hw, std::max<int64_t>(1, v.numel()), "add_channel_bias");
}
void CudaBackend::sum_hw(const Tensor&, Tensor&) { not_yet("sum_hw"); }

void CudaBackend::concat_channels(const Tensor&, const Tensor&, Tensor&) { not_yet("concat_channels"); }
void CudaBackend::split_channels(const Tensor&, Tensor*, Tensor*) { not_yet("split_channels"); }
void CudaBackend::avg_pool2(const Tensor&, Tensor&) { not_yet("avg_pool2"); }
void CudaBackend::avg_pool2_backward(const Tensor&, Tensor&) { not_yet("avg_pool2_backward"); }
void CudaBackend::upsample_nearest2(const Tensor&, Tensor&) { not_yet("upsample_nearest2"); }
void CudaBackend::upsample_nearest2_backward(const Tensor&, Tensor&) { not_yet("upsample_nearest2_backward"); }
void CudaBackend::sum(const Tensor&, Tensor&) { not_yet("sum"); }
void CudaBackend::sum_squares(const Tensor&, Tensor&) { not_yet("sum_squares"); }
void CudaBackend::timestep_embedding(const Tensor&, Tensor&) { not_yet("timestep_embedding"); }

void CudaBackend::adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                              int64_t step) {
  check_cuda_tensor(param, "adam_update param");
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
  check_cuda_tensor(x, "mdps_step x");
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
  check_cuda_tensor(x, "replace_normal x");
  MDPS_CHECK(x.ndim() == 4, "replace_normal: x ", x.describe(), " is not NCHW");
  check_shape(y, x.shape(), "replace_normal y");
  check_shape(z_fixed, x.shape(), "replace_normal z");
  check_mask(mask, x, "replace_normal mask");
  const int64_t hw = x.dim(2) * x.dim(3);
  cuda::launch_replace_normal(x.data(), y.data(), z_fixed.data(), mask.data(), sqrt_a, sqrt_1ma, x.numel(),
                              x.dim(1) * hw, hw, stream_);
}

void CudaBackend::philox_normal(Tensor& x, uint64_t seed, uint64_t stream_id, uint64_t offset) {
  check_cuda_tensor(x, "philox_normal output");
  cuda::launch_philox_normal(x.data(), x.numel(), seed, stream_id, offset, stream_);
}

// One backend per process, created on first use; nullptr when the runtime
// finds no device (silently: `--device auto` then quietly picks the CPU) or
// the device cannot be set up (said once on stderr).
Backend* cuda_backend() {
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
