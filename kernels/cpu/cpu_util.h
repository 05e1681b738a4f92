// Helpers shared by the CPU op files: work splitting, the BLAS product, and a
// per-thread scratch buffer for im2col.
#pragma once
#include "engine/core/common.h"
#include "engine/core/tensor.h"
#include "engine/core/thread_pool.h"
#include <cblas.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace mdps::cpu {

// Below this many elements a parallel chunk costs more to hand out than to run.
constexpr int64_t kGrain = 16384;

// f(begin, end) over `rows` rows of `row_len` elements each, chunks of >= kGrain elements.
template <typename F>
void parallel_rows(int64_t rows, int64_t row_len, F&& f) {
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, row_len));
  parallel_for(rows, [&](int64_t b, int64_t e) { f(b, e); }, grain);
}

// f(begin, end) over n flat elements.
template <typename F>
void parallel_elems(int64_t n, F&& f) {
  parallel_for(n, [&](int64_t b, int64_t e) { f(b, e); }, kGrain);
}

// Row-major sgemm: C[M,N] = alpha op(A) op(B) + beta C, with bits that do not
// depend on the thread count, the batch or the caller's parallel region.
//
// OpenBLAS always runs on one thread (CpuBackend sets it once); a product is
// cut here into fixed blocks of at most kSgemmBlock x kSgemmBlock outputs,
// each one single-threaded OpenBLAS call, spread over the pool (inline inside
// a pool task). The blocks depend only on M and N, so every output is the
// same call's arithmetic whichever thread runs it. OpenBLAS's own threading
// did not give that: on AMD (Zen 5, where OpenBLAS 0.3.21 takes its Haswell
// kernels) a product split over its 2 threads summed some outputs in another
// order than on 1 thread, so an image convolved alone (its product threaded)
// and in a batch (one product per pool worker) differed in the last bits and
// tests/model/test_unet_batch_invariance.cpp failed there.
constexpr int64_t kSgemmBlock = 256;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  const int64_t mb = (M + kSgemmBlock - 1) / kSgemmBlock, nb = (N + kSgemmBlock - 1) / kSgemmBlock;
  auto block = [&](int64_t i) {
    const int64_t m0 = i / nb * kSgemmBlock, n0 = i % nb * kSgemmBlock;
    const int64_t m = std::min(kSgemmBlock, M - m0), n = std::min(kSgemmBlock, N - n0);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
                int(K), alpha, ta ? A + m0 : A + m0 * lda, int(lda), tb ? B + n0 * ldb : B + n0, int(ldb), beta,
                C + m0 * ldc + n0, int(ldc));
  };
  if (mb * nb == 1) {
    block(0);
    return;
  }
  parallel_for(mb * nb, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) block(i);
  });
}

// A growable buffer owned by the calling thread; reused across calls so the
// large im2col matrices are not faulted in again on every convolution.
// Slots 0 and 1 are per-image buffers (im2col, padded copies), 2 and 3 the
// direct convolution's packed and flipped weights.
inline float* scratch(size_t n, int slot = 0) {
  thread_local std::vector<float> bufs[4];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// The same for the direct convolution's tap offsets.
inline int64_t* scratch_offsets(size_t n) {
  thread_local std::vector<int64_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// exp(r) for the reduced argument r = x - fx ln2 (|r| <= ln2 / 2) by Cephes'
// polynomial, for a float or a GCC vector of floats (attention_tiles.h), so the
// scalar and vector exps share their arithmetic bit for bit.
template <class V>
inline V fast_exp_poly(V r) {
  const V z = r * r;
  V y = r * 1.9875691500e-4f + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  return y * z + r + 1.f;
}

// expf in straight-line arithmetic so that loops calling it auto-vectorise
// (std::exp does not without -ffast-math). Cephes' range reduction and
// polynomial: within 1 ulp of expf for x in [-87.33, 88.37]; below that it
// returns 0 (expf would give a denormal) and above it inf.
inline float fast_exp(float x) {
  const float hi = 88.3762626647949f, lo = -87.3365447504f;
  float xc = std::min(std::max(x, lo), hi);
  // Round to nearest by the 1.5*2^23 trick (std::nearbyint/floor block vectorisation).
  float fx = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float y = fast_exp_poly(r);
  // The exponent is shifted as unsigned: for a NaN input (a diverged model)
  // the signed shift of a negative value was undefined behaviour (UBSan);
  // the result stays NaN, and finite inputs give the same bits as before.
  const int32_t e = int32_t(uint32_t(int32_t(fx) + 127) << 23);
  float scale;
  std::memcpy(&scale, &e, sizeof scale);
  y *= scale;
  y = x < lo ? 0.f : y;
  return x > hi ? INFINITY : y;
}

// Reductions in double with kSumLanes independent accumulators, so the
// compiler keeps them in vector registers without reassociating (no
// -ffast-math needed). 32 lanes are four AVX-512 registers of doubles: with
// 8 (one register) every add waited for the previous one's result (4 cycles),
// and group normalisation's two statistics passes were latency-bound.
constexpr int kSumLanes = 32;
inline double sum_lanes(const double* acc, double s) {
  for (int k = 0; k < kSumLanes; ++k) s += acc[k];
  return s;
}
inline double sum_d(const float* x, int64_t n) {
  double acc[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int k = 0; k < kSumLanes; ++k) acc[k] += double(x[i + k]);
  double s = 0;
  for (; i < n; ++i) s += double(x[i]);
  return sum_lanes(acc, s);
}
// sum (x - mu)^2
inline double sum_sq_dev_d(const float* x, int64_t n, double mu) {
  double acc[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int k = 0; k < kSumLanes; ++k) {
      double t = double(x[i + k]) - mu;
      acc[k] += t * t;
    }
  double s = 0;
  for (; i < n; ++i) {
    double t = double(x[i]) - mu;
    s += t * t;
  }
  return sum_lanes(acc, s);
}
// sum a*b
inline double dot_d(const float* a, const float* b, int64_t n) {
  double acc[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int k = 0; k < kSumLanes; ++k) acc[k] += double(a[i + k]) * double(b[i + k]);
  double s = 0;
  for (; i < n; ++i) s += double(a[i]) * double(b[i]);
  return sum_lanes(acc, s);
}
inline float max_f(const float* x, int64_t n) {
  float acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] = acc[k] > x[i + k] ? acc[k] : x[i + k];
  float m = -INFINITY;
  for (; i < n; ++i) m = m > x[i] ? m : x[i];
  for (int k = 0; k < 16; ++k) m = m > acc[k] ? m : acc[k];
  return m;
}

// One softmax row (y may alias x): max, exp, a double sum, one scale. The
// softmax op and the fused attention share it, so both give the same bits.
inline void softmax_row(const float* x, float* y, int64_t L) {
  const float mx = max_f(x, L);
  for (int64_t i = 0; i < L; ++i) y[i] = fast_exp(x[i] - mx);
  const float inv = float(1.0 / sum_d(y, L));
  for (int64_t i = 0; i < L; ++i) y[i] *= inv;
}
// Its backward for one row: dx = y * (dy - sum(dy * y)); dx may alias dy.
inline void softmax_backward_row(const float* y, const float* dy, float* dx, int64_t L) {
  const float fs = float(dot_d(dy, y, L));
  for (int64_t i = 0; i < L; ++i) dx[i] = y[i] * (dy[i] - fs);
}

inline float sigmoidf(float x) { return 1.f / (1.f + fast_exp(-x)); }
inline float siluf(float x) { return x / (1.f + fast_exp(-x)); }

}  // namespace mdps::cpu
