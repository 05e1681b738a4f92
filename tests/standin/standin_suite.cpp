// The CUDA stand-ins themselves (tests/standin/, -DMDPS_CUDA_STANDIN=ON): that
// they compute what NVIDIA documents (checked against direct loops written
// here) and refuse misuse with the documented error codes, so that a backend
// that misuses the API fails test_cuda_backend instead of passing quietly.
// Also the backend's own paths that the op comparisons do not reach: the
// caching allocator over an exhausted device, the event clock, a second
// backend on the same device, a backend without a device. Every misuse here is
// deliberate; reset_misuse() clears it (and the sticky fault) afterwards.
#include <doctest/doctest.h>
#include "tests/standin/standin.h"
#include "kernels/cuda/cuda_backend.h"
#include "engine/core/backend_registry.h"
#include "kernels/cuda/launchers.h"
#include "engine/core/tensor.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cmath>
#include <cstring>
#include <vector>

using namespace mdps;

namespace {

// Expects exactly one new misuse from `expr`'s call, whose text contains `what`.
struct Misuse {
  int64_t before = standin::misuse_count();
  void expect(const char* what) {
    CHECK(standin::misuse_count() == before + 1);
    CHECK(standin::last_misuse().find(what) != std::string::npos);
    standin::reset_misuse();
    before = 0;
  }
};

void* dmalloc(size_t bytes) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, bytes) == cudaSuccess);
  return p;
}
template <typename T>
void upload(void* d, const std::vector<T>& h) {
  REQUIRE(cudaMemcpyAsync(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice, nullptr) == cudaSuccess);
}
template <typename T>
std::vector<T> download(const void* d, size_t n) {
  std::vector<T> h(n);
  REQUIRE(cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, nullptr) == cudaSuccess);
  return h;
}

}  // namespace

TEST_CASE("stand-in runtime: memory is tracked, and misuse returns the documented errors") {
  standin::reset_misuse();
  const size_t blocks = standin::live_blocks();
  float* d = static_cast<float*>(dmalloc(64 * sizeof(float)));
  CHECK(reinterpret_cast<uintptr_t>(d) % 256 == 0);
  CHECK(std::isnan(download<float>(d, 1)[0]));  // device memory is not cleared
  CHECK(standin::live_blocks() == blocks + 1);
  std::vector<float> host(64, 1.f);
  Misuse m;
  CHECK(cudaMemcpyAsync(d, host.data(), 65 * sizeof(float), cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
  m.expect("past the end");
  CHECK(cudaMemcpyAsync(host.data(), host.data(), 4, cudaMemcpyDeviceToHost, nullptr) == cudaErrorInvalidValue);
  m.expect("host pointer");
  CHECK(cudaMemcpyAsync(d, d, 4, cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);
  m.expect("device memory, the kind says host");
  CHECK(cudaFree(host.data()) == cudaErrorInvalidValue);
  m.expect("host pointer");
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK(cudaFree(d) == cudaErrorInvalidValue);
  m.expect("double free");
  CHECK(cudaMemcpyAsync(d, host.data(), 4, cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);
  m.expect("use after free");
  CHECK(standin::live_blocks() == blocks);

  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle);
  m.expect("not a live stream");
  cudaEvent_t a = nullptr, b = nullptr;
  REQUIRE(cudaEventCreate(&a) == cudaSuccess);
  REQUIRE(cudaEventCreate(&b) == cudaSuccess);
  float ms = 0;
  CHECK(cudaEventRecord(a, nullptr) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorInvalidResourceHandle);
  m.expect("not recorded");
  CHECK(cudaEventRecord(b, nullptr) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
  CHECK(ms >= 0.f);
  CHECK(cudaEventDestroy(a) == cudaSuccess);
  CHECK(cudaEventDestroy(b) == cudaSuccess);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  m.expect("does not exist");

  standin::set_memory_limit(1 << 20);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, size_t(2) << 20) == cudaErrorMemoryAllocation);
  CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
  standin::set_memory_limit(0);
  CHECK(standin::misuse_count() == 0);
}

TEST_CASE("stand-in runtime: a kernel given a host pointer faults, and the fault is sticky") {
  standin::reset_misuse();
  std::vector<float> host(16, 0.f);
  Misuse m;
  // The launcher's check_launch reports it.
  CHECK_THROWS_WITH_AS(
      cuda::launch_elementwise(cuda::EwOp::Fill, nullptr, nullptr, host.data(), 1.f, 0.f, 16, 1, 1, nullptr),
      doctest::Contains("illegal memory access"), Error);
  CHECK(standin::faulted());
  CHECK(host[0] == 0.f);  // the kernel did not run
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorIllegalAddress);  // every later call
  CHECK_THROWS_AS(cuda::check_launch("test"), Error);
  m.expect("pointer argument 4 is not device memory");  // (op, a, b, y, ...)
  CHECK_FALSE(standin::faulted());
  // A launch configuration CUDA refuses.
  float* d = static_cast<float*>(dmalloc(16 * sizeof(float)));
  cuda::launch_transpose_to_bf16(d, reinterpret_cast<uint16_t*>(d), 1, 4, 4, nullptr);  // valid
  CHECK(standin::misuse_count() == 0);
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK_THROWS_AS(cuda::launch_elementwise(cuda::EwOp::Fill, nullptr, nullptr, d, 1.f, 0.f, 16, 1, 1, nullptr), Error);
  m.expect("freed device memory");
}

TEST_CASE("stand-in cuBLAS: column-major strided-batched products as documented, and their checks") {
  standin::reset_misuse();
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  // C (m x n, ldc 5) = A^T (A: k x m, lda 4) B (k x n, ldb 3), two batches.
  const int m = 3, n = 2, k = 2, lda = 4, ldb = 3, ldc = 5, batch = 2;
  const long long sA = 4 * 3 + 1, sB = 3 * 2, sC = 5 * 2;
  std::vector<float> A(size_t(sA * batch)), B(size_t(sB * batch)), C(size_t(sC * batch), 7.f);
  for (size_t i = 0; i < A.size(); ++i) A[i] = float(i % 7) - 3.f;
  for (size_t i = 0; i < B.size(); ++i) B[i] = float(i % 5) * 0.5f;
  float *dA = static_cast<float*>(dmalloc(A.size() * 4)), *dB = static_cast<float*>(dmalloc(B.size() * 4)),
        *dC = static_cast<float*>(dmalloc(C.size() * 4));
  upload(dA, A), upload(dB, B), upload(dC, C);
  const float alpha = 2.f, beta = 0.5f;
  REQUIRE(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &beta, dC,
                                    ldc, sC, batch) == CUBLAS_STATUS_SUCCESS);
  std::vector<float> got = download<float>(dC, C.size());
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0;
        for (int l = 0; l < k; ++l) acc += A[size_t(b * sA + l + i * lda)] * B[size_t(b * sB + l + j * ldb)];
        CHECK(got[size_t(b * sC + i + j * ldc)] == alpha * acc + beta * 7.f);
      }
  CHECK(got[size_t(m)] == 7.f);  // rows past m inside ldc are untouched
  Misuse mu;
  CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, 1, sA, dB, ldb, sB, &beta, dC, ldc,
                                  sC, batch) == CUBLAS_STATUS_INVALID_VALUE);
  mu.expect("lda 1 < max(1, 2)");
  CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &beta, dC, 2,
                                  sC, batch) == CUBLAS_STATUS_INVALID_VALUE);
  mu.expect("ldc 2 < max(1, 3)");
  CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, A.data(), lda, sA, dB, ldb, sB, &beta,
                                  dC, ldc, sC, batch) == CUBLAS_STATUS_EXECUTION_FAILED);
  mu.expect("A not device memory");
  CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &beta, dC,
                                  ldc, sC, batch + 1) == CUBLAS_STATUS_EXECUTION_FAILED);
  mu.expect("runs past the end");
  // beta 0: C is not read, so the NaN of fresh memory does not leak.
  float* fresh = static_cast<float*>(dmalloc(C.size() * 4));
  const float zero = 0.f;
  REQUIRE(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &zero,
                                    fresh, ldc, sC, batch) == CUBLAS_STATUS_SUCCESS);
  CHECK(std::isfinite(download<float>(fresh, 1)[0]));
  // TF32 math rounds the inputs: 1 + 2^-12 becomes 1.
  const float one = 1.f;
  upload(dA, std::vector<float>{1.f + 1.f / 4096.f});
  upload(dB, std::vector<float>{1.f});
  REQUIRE(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, 0, dB, 1, 0, &zero, dC, 1, 0,
                                    1) == CUBLAS_STATUS_SUCCESS);
  CHECK(download<float>(dC, 1)[0] == 1.f);
  REQUIRE(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, 0, dB, 1, 0, &zero, dC, 1, 0,
                                    1) == CUBLAS_STATUS_SUCCESS);
  CHECK(download<float>(dC, 1)[0] == 1.f + 1.f / 4096.f);
  // bf16 inputs: 1.5 x 3 in bf16 bits (0x3fc0, 0x4040).
  upload(dA, std::vector<uint16_t>{0x3fc0});
  upload(dB, std::vector<uint16_t>{0x4040});
  REQUIRE(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, CUDA_R_16BF, 1, 0, dB,
                                     CUDA_R_16BF, 1, 0, &zero, dC, CUDA_R_32F, 1, 0, 1, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(download<float>(dC, 1)[0] == 4.5f);
  CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, CUDA_R_16F, 1, 0, dB, CUDA_R_16BF,
                                   1, 0, &zero, dC, CUDA_R_32F, 1, 0, 1, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  mu.expect("type combination");
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED);
  mu.expect("destroyed twice");
  for (void* p : {(void*)dA, (void*)dB, (void*)dC, (void*)fresh}) CHECK(cudaFree(p) == cudaSuccess);
  CHECK(standin::misuse_count() == 0);
}

TEST_CASE("stand-in cuDNN: a convolution as documented, its workspace and descriptor checks") {
  standin::reset_misuse();
  cudnnHandle_t h = nullptr;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t cv = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateFilterDescriptor(&w) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateConvolutionDescriptor(&cv) == CUDNN_STATUS_SUCCESS);
  // x [1, 2, 5, 4], w [3, 2, 3, 3], stride 2, pad 1 -> y [1, 3, 3, 2].
  REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 5, 4) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 3, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetConvolution2dDescriptor(cv, 1, 1, 2, 2, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetConvolutionMathType(cv, CUDNN_FMA_MATH) == CUDNN_STATUS_SUCCESS);
  int dims[4];
  REQUIRE(cudnnGetConvolution2dForwardOutputDim(cv, x, w, &dims[0], &dims[1], &dims[2], &dims[3]) ==
          CUDNN_STATUS_SUCCESS);
  CHECK((dims[0] == 1 && dims[1] == 3 && dims[2] == 3 && dims[3] == 2));
  Misuse mu;
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 3, 3) == CUDNN_STATUS_SUCCESS);
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int got = 0;
  CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, cv, y, 8, &got, perf) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("output size");
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 3, 2) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, cv, y, 8, &got, perf) == CUDNN_STATUS_SUCCESS);
  REQUIRE(got >= 1);
  const cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
  size_t ws_bytes = 0;
  REQUIRE(cudnnGetConvolutionForwardWorkspaceSize(h, x, w, cv, y, algo, &ws_bytes) == CUDNN_STATUS_SUCCESS);
  REQUIRE(ws_bytes > 0);
  std::vector<float> X(40), W(54);
  for (size_t i = 0; i < X.size(); ++i) X[i] = float(int(i % 9) - 4) * 0.25f;
  for (size_t i = 0; i < W.size(); ++i) W[i] = float(int(i % 5) - 2) * 0.5f;
  void *dx = dmalloc(X.size() * 4), *dw = dmalloc(W.size() * 4), *dy = dmalloc(18 * 4), *ws = dmalloc(ws_bytes);
  upload(dx, X), upload(dw, W);
  const float one = 1.f, zero = 0.f;
  CHECK(cudnnConvolutionForward(h, &one, x, dx, w, dw, cv, algo, ws, ws_bytes - 1, &zero, y, dy) ==
        CUDNN_STATUS_BAD_PARAM);
  mu.expect("workspace of");
  REQUIRE(cudnnConvolutionForward(h, &one, x, dx, w, dw, cv, algo, ws, ws_bytes, &zero, y, dy) == CUDNN_STATUS_SUCCESS);
  std::vector<float> Y = download<float>(dy, 18);
  for (int k = 0; k < 3; ++k)
    for (int p = 0; p < 3; ++p)
      for (int q = 0; q < 2; ++q) {
        float acc = 0;
        for (int c = 0; c < 2; ++c)
          for (int r = 0; r < 3; ++r)
            for (int s = 0; s < 3; ++s) {
              const int hh = 2 * p - 1 + r, ww = 2 * q - 1 + s;
              if (hh >= 0 && hh < 5 && ww >= 0 && ww < 4) acc += X[size_t((c * 5 + hh) * 4 + ww)] * W[size_t(((k * 2 + c) * 3 + r) * 3 + s)];
            }
        CHECK(Y[size_t((k * 3 + p) * 2 + q)] == doctest::Approx(acc).epsilon(1e-6));
      }
  CHECK(cudnnConvolutionForward(h, &one, x, X.data(), w, dw, cv, algo, ws, ws_bytes, &zero, y, dy) ==
        CUDNN_STATUS_EXECUTION_FAILED);
  mu.expect("operand 1 not device memory");
  CHECK(cudnnDestroyTensorDescriptor(x) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyTensorDescriptor(x) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("destroyed twice");
  cudnnDestroyTensorDescriptor(y);
  cudnnDestroyFilterDescriptor(w);
  cudnnDestroyConvolutionDescriptor(cv);
  for (void* p : {dx, dw, dy, ws}) CHECK(cudaFree(p) == cudaSuccess);
  CHECK(cudnnDestroy(h) == CUDNN_STATUS_SUCCESS);
  CHECK(standin::misuse_count() == 0);
}

TEST_CASE("stand-in cuDNN backend API: the descriptor life cycle is enforced") {
  standin::reset_misuse();
  cudnnBackendDescriptor_t t = nullptr;
  REQUIRE(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, &t) == CUDNN_STATUS_SUCCESS);
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16;
  const int64_t dims[4] = {1, 1, 4, 8}, strides[4] = {32, 32, 8, 1}, uid = 1, align = 16;
  Misuse mu;
  CHECK(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_INT64, 1, &uid) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("wrong attribute type");
  CHECK(cudnnBackendSetAttribute(t, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t) ==
        CUDNN_STATUS_BAD_PARAM);
  mu.expect("does not belong");
  REQUIRE(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &bf16) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnBackendFinalize(t) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("missing");
  int64_t n = 0, ws = 0;
  CHECK(cudnnBackendGetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &n, &ws) ==
        CUDNN_STATUS_NOT_INITIALIZED);
  mu.expect("not finalized");
  REQUIRE(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align) ==
          CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendFinalize(t) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid) ==
        CUDNN_STATUS_NOT_INITIALIZED);
  mu.expect("already finalized");
  // An SDPA forward without its v and o: finalize refuses.
  cudnnBackendDescriptor_t op = nullptr;
  REQUIRE(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, &op) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(cudnnBackendFinalize(op) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("missing");
  // An execution with an unfinalized plan.
  cudnnHandle_t h = nullptr;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudnnBackendDescriptor_t plan = nullptr, pack = nullptr;
  REQUIRE(cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnBackendExecute(h, plan, pack) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("plan not a finalized");
  for (auto d : {t, op, plan, pack}) CHECK(cudnnBackendDestroyDescriptor(d) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnBackendDestroyDescriptor(t) == CUDNN_STATUS_BAD_PARAM);
  mu.expect("destroyed twice");
  CHECK(cudnnDestroy(h) == CUDNN_STATUS_SUCCESS);
  CHECK(standin::misuse_count() == 0);
}

TEST_CASE("CUDA backend on the stand-ins: out of device memory, the event clock, a second backend") {
  standin::reset_misuse();
  Backend* be = find_backend("cuda");
  REQUIRE(be != nullptr);
  auto& cb = static_cast<CudaBackend&>(*be);
  // The allocator gives its cache back and retries once, then names the bytes.
  Tensor keep = Tensor::empty({1 << 16}, cb);
  { Tensor t = Tensor::empty({1 << 18}, cb); }
  CHECK(cb.cached_bytes() > 0);
  standin::set_memory_limit(standin::live_bytes() + (size_t(1) << 20));
  Tensor fits = Tensor::empty({1 << 18}, cb);  // only after the cache is returned
  CHECK(cb.cached_bytes() == 0);
  CHECK_THROWS_AS(Tensor::empty({1 << 22}, cb), Error);
  standin::set_memory_limit(0);
  CHECK(standin::misuse_count() == 0);
  // The event clock behind --ops: marks, elapsed times, clear.
  trace::DeviceClock* clock = cb.device_clock();
  REQUIRE(clock != nullptr);
  const int64_t a = clock->mark(), b = clock->mark();
  CHECK(b == a + 1);
  CHECK(clock->elapsed_ns(a, b) >= 0.0);
  CHECK_THROWS_AS(clock->elapsed_ns(b, b + 5), Error);
  clock->clear();
  CHECK(clock->mark() == 0);
  // A second backend on the same device, created and destroyed whole.
  {
    CudaBackend other(0);
    Tensor t = Tensor::empty({100}, other);
    other.fill(t, 3.f);
    CHECK(t.to_vector()[99] == 3.f);
  }
  // A device that does not exist: the constructor refuses and releases what it made.
  CHECK_THROWS_AS(CudaBackend(3), Error);
  standin::reset_misuse();
}
