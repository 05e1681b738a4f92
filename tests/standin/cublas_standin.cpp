// CPU stand-in of the cuBLAS calls the backend makes: handles, streams, math
// modes and the strided-batched products, from the cuBLAS documentation:
// column-major C[i + j ldc + b strideC] = alpha sum_l op(A)(i,l) op(B)(l,j) +
// beta C, op(A) = A[i + l lda] (N) or A[l + i lda] (T); lda >= max(1, m) for
// N, max(1, k) for T (ldb likewise with k, n; ldc >= max(1, m)); beta = 0
// means C is not read. CUBLAS_TF32_TENSOR_OP_MATH rounds the float inputs to
// TF32; cublasGemmStridedBatchedEx takes bf16 A and B (CUDA_R_16BF), float C
// and CUBLAS_COMPUTE_32F, as the backend uses it. Operand ranges outside live
// device memory are a device fault (a GPU would raise an illegal address).
#include "tests/standin/standin.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mutex>
#include <set>
#include <vector>
#include <string>

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

using namespace mdps::standin;

namespace {

std::mutex mu;
std::set<const cublasContext*>& handles() {
  static auto* h = new std::set<const cublasContext*>;
  return *h;
}
bool live(cublasHandle_t h) {
  std::lock_guard<std::mutex> l(mu);
  return h && handles().count(h);
}

cublasStatus_t refuse(const char* fn, cublasStatus_t s, const std::string& why) {
  misuse(fn, why);
  return s;
}

// Elements one operand spans: `batch` matrices `stride` apart, each `cols`
// columns `ld` apart of `rows` used elements.
size_t extent(int rows, int cols, int ld, long long stride, int batch) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  return size_t((long long)(batch - 1) * stride + (long long)(cols - 1) * ld + rows);
}

template <typename T>
struct Operand {
  const T* p;
  int ld;
  long long stride;
  bool trans;
};

// The shared body: Load(p, index) reads one input element as float.
template <typename In, typename Load>
cublasStatus_t gemm(const char* fn, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float* alpha, const In* A, int lda, long long sA, const In* B, int ldb, long long sB,
                    const float* beta, float* C, int ldc, long long sC, int batch, size_t in_bytes, Load load) {
  if (!live(h)) return refuse(fn, CUBLAS_STATUS_NOT_INITIALIZED, "handle not created (or destroyed)");
  auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T; };
  if (!op_ok(ta) || !op_ok(tb)) return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "operation is neither N nor T");
  if (m < 0 || n < 0 || k < 0 || batch < 0)
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "negative m, n, k or batchCount");
  const bool tA = ta == CUBLAS_OP_T, tB = tb == CUBLAS_OP_T;
  const int rowsA = tA ? k : m, colsA = tA ? m : k, rowsB = tB ? n : k, colsB = tB ? k : n;
  if (lda < std::max(1, rowsA))
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "lda " + std::to_string(lda) + " < max(1, " + std::to_string(rowsA) + ")");
  if (ldb < std::max(1, rowsB))
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "ldb " + std::to_string(ldb) + " < max(1, " + std::to_string(rowsB) + ")");
  if (ldc < std::max(1, m))
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "ldc " + std::to_string(ldc) + " < max(1, " + std::to_string(m) + ")");
  if (!alpha || !beta) return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "null alpha or beta");
  if (locate(alpha, 0) != Where::Host || locate(beta, 0) != Where::Host)
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "alpha/beta in device memory under CUBLAS_POINTER_MODE_HOST");
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (faulted()) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (!stream_live(h->stream)) return refuse(fn, CUBLAS_STATUS_EXECUTION_FAILED, "the handle's stream was destroyed");
  const bool reads_ab = k > 0 && *alpha != 0.f;
  std::string why;
  if (reads_ab) {
    if (std::string w = device_range_problem(A, extent(rowsA, colsA, lda, sA, batch) * in_bytes); !w.empty())
      why = "A " + w;
    else if (std::string w2 = device_range_problem(B, extent(rowsB, colsB, ldb, sB, batch) * in_bytes); !w2.empty())
      why = "B " + w2;
  }
  if (why.empty())
    if (std::string w = device_range_problem(C, extent(m, n, ldc, sC, batch) * sizeof(float)); !w.empty()) why = "C " + w;
  if (!why.empty()) {
    device_fault(fn, why);
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  const float a = *alpha, b = *beta;
  // op(A) as m rows of k and op(B) as n rows of k, dense, then dot products
  // summed over l in order.
  std::vector<float> opA(size_t(m) * k), opB(size_t(n) * k);
  for (int bt = 0; bt < batch; ++bt) {
    const In* Ab = A + bt * sA;
    const In* Bb = B + bt * sB;
    float* Cb = C + bt * sC;
    if (reads_ab) {
      for (int i = 0; i < m; ++i)
        for (int l = 0; l < k; ++l) opA[size_t(i) * k + l] = load(Ab, tA ? l + size_t(i) * lda : i + size_t(l) * lda);
      for (int j = 0; j < n; ++j)
        for (int l = 0; l < k; ++l) opB[size_t(j) * k + l] = load(Bb, tB ? j + size_t(l) * ldb : l + size_t(j) * ldb);
    }
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.f;
        if (reads_ab) {
          const float* x = &opA[size_t(i) * k];
          const float* y = &opB[size_t(j) * k];
          for (int l = 0; l < k; ++l) acc += x[l] * y[l];
        }
        float& c = Cb[i + size_t(j) * ldc];
        c = b == 0.f ? a * acc : a * acc + b * c;  // beta 0: C is not read (NaN there stays out)
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  if (!h) return refuse("cublasCreate", CUBLAS_STATUS_INVALID_VALUE, "null handle pointer");
  auto* c = new cublasContext;
  std::lock_guard<std::mutex> l(mu);
  handles().insert(c);
  *h = c;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  {
    std::lock_guard<std::mutex> l(mu);
    if (!h || !handles().erase(h)) h = nullptr;
  }
  if (!h) return refuse("cublasDestroy", CUBLAS_STATUS_NOT_INITIALIZED, "handle not created (or destroyed twice)");
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  if (!live(h)) return refuse("cublasSetStream", CUBLAS_STATUS_NOT_INITIALIZED, "handle not created");
  if (!stream_live(s)) return refuse("cublasSetStream", CUBLAS_STATUS_INVALID_VALUE, "stream not live");
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!live(h)) return refuse("cublasSetMathMode", CUBLAS_STATUS_NOT_INITIALIZED, "handle not created");
  const unsigned base = unsigned(mode) & ~unsigned(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (base != CUBLAS_DEFAULT_MATH && base != CUBLAS_TENSOR_OP_MATH && base != CUBLAS_PEDANTIC_MATH &&
      base != CUBLAS_TF32_TENSOR_OP_MATH)
    return refuse("cublasSetMathMode", CUBLAS_STATUS_INVALID_VALUE, "unknown math mode");
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sA,
                                         const float* B, int ldb, long long sB, const float* beta, float* C, int ldc,
                                         long long sC, int batch) {
  const bool tf32 = live(h) && (unsigned(h->math) & ~unsigned(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) ==
                                   CUBLAS_TF32_TENSOR_OP_MATH;
  return gemm("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch,
              sizeof(float), [tf32](const float* p, size_t i) { return tf32 ? round_to_tf32(p[i]) : p[i]; });
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                                          long long sA, const void* B, cudaDataType Btype, int ldb, long long sB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  const char* fn = "cublasGemmStridedBatchedEx";
  // The stand-in implements the combination the backend uses (documented as
  // supported): bf16 A and B, float C, float compute and scalars.
  if (Atype != CUDA_R_16BF || Btype != CUDA_R_16BF || Ctype != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return refuse(fn, CUBLAS_STATUS_NOT_SUPPORTED, "type combination other than bf16 x bf16 -> f32, COMPUTE_32F");
  if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)
    return refuse(fn, CUBLAS_STATUS_INVALID_VALUE, "algorithm other than the default");
  return gemm(fn, h, ta, tb, m, n, k, static_cast<const float*>(alpha), static_cast<const uint16_t*>(A), lda, sA,
              static_cast<const uint16_t*>(B), ldb, sB, static_cast<const float*>(beta), static_cast<float*>(C), ldc,
              sC, batch, sizeof(uint16_t), [](const uint16_t* p, size_t i) { return bf16_to_float(p[i]); });
}

}  // extern "C"
