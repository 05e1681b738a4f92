// Strided-batched matrix product through OpenBLAS.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/core/trace.h"

namespace mdps {

void CpuBackend::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                      float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  MDPS_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, "gemm: negative size (M ", M, ", N ", N, ", K ", K,
             ", batch ", batch, ")");
  const int64_t int_max = 0x7fffffff;
  MDPS_CHECK(M <= int_max && N <= int_max && K <= int_max, "gemm: size exceeds the BLAS int range");
  int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  MDPS_CHECK(lda >= std::max<int64_t>(1, a_cols), "gemm: lda ", lda, " < ", a_cols, " (columns of stored A)");
  MDPS_CHECK(ldb >= std::max<int64_t>(1, b_cols), "gemm: ldb ", ldb, " < ", b_cols, " (columns of stored B)");
  MDPS_CHECK(ldc >= std::max<int64_t>(1, N), "gemm: ldc ", ldc, " < N ", N);
  if (batch == 0 || M == 0 || N == 0) return;
  MDPS_CHECK(C && (K == 0 || (A && B)), "gemm: null matrix pointer");
  trace::Scope ts("gemm", "kernel");
  if (ts.active())
    ts.num("M", double(M)).num("N", double(N)).num("K", double(K)).num("batch", double(batch))
        .flops(2 * M * N * K * batch).bytes((M * K + K * N + 2 * M * N) * batch * int64_t(sizeof(float)));

  // Small products leave OpenBLAS's own threads idle, so a batch of them is
  // split across the pool with BLAS single-threaded; big ones use BLAS threads.
  const int nt = ThreadPool::global().threads();
  const bool small = double(M) * double(N) * double(K) < double(1 << 21);
  auto one = [&](int64_t i) {
    cpu::sgemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
               C + i * stride_c, ldc);
  };
  if (nt > 1 && batch > 1 && small) {
    cpu::BlasSingleThread single;
    parallel_for(batch, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) one(i);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);
  }
}

}  // namespace mdps
