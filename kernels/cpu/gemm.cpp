// Strided-batched matrix product through OpenBLAS.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_util.h"
#include "engine/core/trace.h"

namespace mdps {

void CpuBackend::gemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                           float* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  // The public gemm has checked sizes, leading dimensions and pointers, and
  // returned for an empty product; OpenBLAS's sizes are int.
  const int64_t int_max = 0x7fffffff;
  MDPS_CHECK(M <= int_max && N <= int_max && K <= int_max, "gemm: size exceeds the BLAS int range");
  trace::Scope ts("gemm", "kernel");
  if (ts.active())
    ts.num("M", double(M)).num("N", double(N)).num("K", double(K)).num("batch", double(batch))
        .flops(2 * M * N * K * batch).bytes((M * K + K * N + 2 * M * N) * batch * int64_t(sizeof(float)));

  // A batch of small products is split across the pool, a product to a
  // worker; big ones one after another, each spread over the pool by
  // cpu::sgemm's blocks (the bits are the same either way).
  const int nt = ThreadPool::global().threads();
  const bool small = double(M) * double(N) * double(K) < double(1 << 21);
  auto one = [&](int64_t i) {
    cpu::sgemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
               C + i * stride_c, ldc);
  };
  if (nt > 1 && batch > 1 && small) {
    parallel_for(batch, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) one(i);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);
  }
}

}  // namespace mdps
