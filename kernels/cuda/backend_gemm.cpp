// The CUDA backend's strided-batched products through cuBLAS (bf16: inputs cast, float
// accumulation); the CPU's are in kernels/cpu/gemm.cpp, the checks every backend shares in
// engine/core/backend_ops.cpp.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_util.h"
#include <algorithm>

namespace mdps {

using cuda::check_cublas;
using cuda::OpRange;
using cuda::Scratch;
using cuda::to_int;
using cuda::cublas_handle;

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
    check_cublas(cublasGemmStridedBatchedEx(cublas_handle(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b16.get(),
                                            CUDA_R_16BF, ld_b, stride_b, a16.get(), CUDA_R_16BF, ld_a, stride_a,
                                            &beta, C, CUDA_R_32F, ld_c, stride_c, nb, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT),
                 "bf16 gemm");
    return;
  }
  check_cublas(cublasSgemmStridedBatched(cublas_handle(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ld_b, stride_b, A,
                                         ld_a, stride_a, &beta, C, ld_c, stride_c, nb),
               "sgemm");
}

}  // namespace mdps
