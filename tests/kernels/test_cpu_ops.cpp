// CPU backend ops against naive double-precision references written here,
// and every backward op against central finite differences of
// L = sum(y * r) for a random r. Sizes are deliberately awkward (odd,
// non-square, single elements) and the threaded ops run with 1 and 2 threads.
#include <doctest/doctest.h>
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include "engine/core/tensor.h"
#include "engine/core/thread_pool.h"
#include "kernels/cpu/conv_tiles.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/cpu_features.h"
#include "tests/test_util.h"
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <functional>
#include <limits>

using namespace mdps;
using mdps::test::random_floats;

namespace {

Backend& be() { return cpu_backend(); }

// ||a - ref|| / ||ref|| with the reference in double.
double rel(const Tensor& a, const std::vector<double>& ref) {
  REQUIRE(size_t(a.numel()) == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double d = double(a.at(int64_t(i))) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return std::sqrt(num / den);
}
double rel(const Tensor& a, const Tensor& b) {
  std::vector<double> r(size_t(b.numel()));
  for (size_t i = 0; i < r.size(); ++i) r[i] = b.at(int64_t(i));
  return rel(a, r);
}

double dot(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += double(y.at(i)) * double(r.at(i));
  return s;
}

// Central-difference gradient of loss() with respect to every element of x.
std::vector<double> numeric_grad(Tensor& x, const std::function<double()>& loss, float h) {
  std::vector<double> g(size_t(x.numel()));
  float* p = x.data();
  for (size_t i = 0; i < g.size(); ++i) {
    float s = p[i], up = s + h, dn = s - h;
    p[i] = up;
    double lp = loss();
    p[i] = dn;
    double lm = loss();
    p[i] = s;
    g[i] = (lp - lm) / (double(up) - double(dn));
  }
  return g;
}

// Restores the backend's thread count when a test leaves.
struct ThreadsGuard {
  int saved = be().threads();
  ~ThreadsGuard() { be().set_threads(saved); }
};

TEST_CASE("thread pool: back-to-back and spaced-out jobs cover every index once; errors and nesting") {
  ThreadsGuard guard;
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    be().set_threads(threads);
    // Many short jobs in a row (workers still polling), then jobs spaced out
    // past the polling window (workers asleep on the condition variable).
    for (int pause_us : {0, 0, 2000}) {
      for (int job = 0; job < (pause_us ? 20 : 3000); ++job) {
        const int64_t n = 1 + job % 7;
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h = 0;
        parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[size_t(i)] == 1);
        if (pause_us) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
      }
    }
    // An exception in any chunk reaches the caller, and the pool still works.
    CHECK_THROWS_AS(parallel_for(threads, [&](int64_t b, int64_t) {
                      if (b == threads - 1) throw std::runtime_error("chunk failed");
                    }),
                    std::runtime_error);
    std::atomic<int64_t> sum{0};
    parallel_for(100, [&](int64_t b, int64_t e) {
      // A nested call runs inline on the worker.
      parallel_for(e - b, [&](int64_t nb, int64_t ne) { sum += ne - nb; });
    });
    CHECK(sum == 100);
  }
}

// ---- naive references --------------------------------------------------------

struct ConvCase {
  int64_t N, Ci, H, W, Co, KH, KW;
  int s, p;
};

// Direct convolution; also its data and weight gradients for a given dy.
struct ConvRef {
  std::vector<double> y, dx, dw, db;
};
ConvRef conv_ref(const ConvCase& c, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& dy) {
  int64_t Ho = (c.H + 2 * c.p - c.KH) / c.s + 1, Wo = (c.W + 2 * c.p - c.KW) / c.s + 1;
  ConvRef r;
  r.y.assign(size_t(c.N * c.Co * Ho * Wo), 0.0);
  r.dx.assign(size_t(x.numel()), 0.0);
  r.dw.assign(size_t(w.numel()), 0.0);
  r.db.assign(size_t(c.Co), 0.0);
  const float* X = x.data();
  const float* Wt = w.data();
  const float* DY = dy.data();
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t co = 0; co < c.Co; ++co)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          size_t yi = size_t(((n * c.Co + co) * Ho + oh) * Wo + ow);
          double acc = b ? double(b->at(co)) : 0.0;
          double g = DY[yi];
          r.db[size_t(co)] += g;
          for (int64_t ci = 0; ci < c.Ci; ++ci)
            for (int64_t kh = 0; kh < c.KH; ++kh)
              for (int64_t kw = 0; kw < c.KW; ++kw) {
                int64_t ih = oh * c.s - c.p + kh, iw = ow * c.s - c.p + kw;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                size_t xi = size_t(((n * c.Ci + ci) * c.H + ih) * c.W + iw);
                size_t wi = size_t(((co * c.Ci + ci) * c.KH + kh) * c.KW + kw);
                acc += double(X[xi]) * double(Wt[wi]);
                r.dx[xi] += double(Wt[wi]) * g;
                r.dw[wi] += double(X[xi]) * g;
              }
          r.y[yi] = acc;
        }
  return r;
}

struct GnRef {
  std::vector<double> y, mean, rstd;
};
GnRef gn_ref(const Tensor& x, const Tensor& gamma, const Tensor& beta, int G, double eps, bool silu) {
  int64_t N = x.dim(0), C = x.dim(1), HW = x.numel() / (N * C), Cg = C / G, len = Cg * HW;
  GnRef r;
  r.y.resize(size_t(x.numel()));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      int64_t base = (n * C + g * Cg) * HW;
      double m = 0, v = 0;
      for (int64_t i = 0; i < len; ++i) m += x.at(base + i);
      m /= double(len);
      for (int64_t i = 0; i < len; ++i) v += (x.at(base + i) - m) * (x.at(base + i) - m);
      v /= double(len);  // biased, as torch
      double rs = 1.0 / std::sqrt(v + eps);
      r.mean.push_back(m);
      r.rstd.push_back(rs);
      for (int64_t i = 0; i < len; ++i) {
        int64_t c = g * Cg + i / HW;
        double z = (x.at(base + i) - m) * rs * gamma.at(c) + beta.at(c);
        r.y[size_t(base + i)] = silu ? z / (1.0 + std::exp(-z)) : z;
      }
    }
  return r;
}

}  // namespace

// ---- products ------------------------------------------------------------------

TEST_CASE("gemm: all transpose combinations, leading dimensions, strides, batch, alpha/beta") {
  ThreadsGuard guard;
  struct Dims { int64_t M, N, K, batch; };
  // The first sizes are small (split over the batch); the last two large (one product at a time, its
  // blocks over the pool; 300 x 270 crosses cpu::sgemm's block edges in both dimensions).
  for (Dims dm : {Dims{5, 7, 3, 3}, Dims{1, 1, 1, 1}, Dims{4, 1, 9, 2}, Dims{150, 131, 117, 2}, Dims{300, 270, 40, 1}}) {
    for (int threads : {1, 2}) {
      be().set_threads(threads);
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          CAPTURE(dm.M); CAPTURE(dm.N); CAPTURE(dm.K); CAPTURE(ta); CAPTURE(tb); CAPTURE(threads);
          const int64_t M = dm.M, N = dm.N, K = dm.K, B = dm.batch;
          int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
          int64_t lda = a_cols + 2, ldb = b_cols + 1, ldc = N + 3;
          int64_t sa = a_rows * lda + 5, sb = b_rows * ldb + 1, sc = M * ldc + 2;
          Tensor A = test::random_tensor({B * sa}, 1), Bm = test::random_tensor({B * sb}, 2), C = test::random_tensor({B * sc}, 3);
          std::vector<float> c0 = C.to_vector();
          const float alpha = 0.7f, beta = -1.3f;
          be().gemm(ta, tb, M, N, K, alpha, A.data(), lda, sa, Bm.data(), ldb, sb, beta, C.data(), ldc, sc, B);
          double worst = 0;
          for (int64_t bi = 0; bi < B; ++bi)
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) {
                  double a = A.at(bi * sa + (ta ? k * lda + i : i * lda + k));
                  double b = Bm.at(bi * sb + (tb ? j * ldb + k : k * ldb + j));
                  s += a * b;
                }
                size_t ci = size_t(bi * sc + i * ldc + j);
                double want = alpha * s + beta * c0[ci];
                worst = std::max(worst, std::fabs(C.at(int64_t(ci)) - want) / (1.0 + std::fabs(want)));
              }
          CHECK(worst < 1e-5);
          // Padding between rows and matrices is left alone.
          for (int64_t bi = 0; bi < B; ++bi)
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = N; j < ldc && bi * sc + i * ldc + j < B * sc; ++j) {
                int64_t ci = bi * sc + i * ldc + j;
                REQUIRE(C.at(ci) == c0[size_t(ci)]);
              }
        }
    }
  }
}

// cpu::sgemm's blocks depend on the product's shape only: a product's bits are the same on any
// number of threads, alone or as one of a batch (on AMD Zen 5, OpenBLAS's own threads changed them).
TEST_CASE("gemm: a product's bits do not depend on the thread count or the batch") {
  ThreadsGuard guard;
  const int64_t M = 300, N = 530, K = 700;
  Tensor A = test::random_tensor({2 * M * K}, 41), Bm = test::random_tensor({2 * K * N}, 42);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    be().set_threads(threads);
    for (int64_t batch : {1, 2}) {
      CAPTURE(batch);
      Tensor C = Tensor::zeros({2 * M * N});
      be().gemm(false, false, M, N, K, 1.f, A.data(), K, M * K, Bm.data(), N, K * N, 0.f, C.data(), N, M * N, batch);
      const std::vector<float> got(C.data(), C.data() + M * N);
      if (first.empty()) first = got;
      else CHECK(got == first);
    }
  }
}

TEST_CASE("gemm: beta = 0 ignores NaN in C, and bad leading dimensions throw") {
  Tensor A = test::random_tensor({6}, 4), B = test::random_tensor({6}, 5);
  Tensor C = Tensor::full({4}, std::numeric_limits<float>::quiet_NaN());
  be().gemm(false, false, 2, 2, 3, 1.f, A.data(), 3, 0, B.data(), 2, 0, 0.f, C.data(), 2, 0, 1);
  for (int i = 0; i < 4; ++i) CHECK(std::isfinite(C.at(i)));
  CHECK_THROWS_AS(be().gemm(false, false, 2, 2, 3, 1.f, A.data(), 2, 0, B.data(), 2, 0, 0.f, C.data(), 2, 0, 1),
                  Error);
  CHECK_THROWS_AS(be().gemm(false, true, 2, 2, 3, 1.f, A.data(), 3, 0, B.data(), 2, 0, 0.f, C.data(), 2, 0, 1),
                  Error);
}

TEST_CASE("linear: forward against a naive product; dx, dw, db against the naive adjoint and finite differences") {
  // Leading dimensions flatten into rows: products per item through sgemm
  // ([2, 3, 5]), and one vector per item, the loop of dot products ([6, 5]).
  for (Shape xs : {Shape{2, 3, 5}, Shape{6, 5}})
  for (bool with_bias : {true, false}) {
    CAPTURE(with_bias);
    CAPTURE(xs.size());
    Shape ys = xs;
    ys.back() = 4;
    Tensor x = test::random_tensor(xs, 10), w = test::random_tensor({4, 5}, 11), b = test::random_tensor({4}, 12), r = test::random_tensor(ys, 13);
    Tensor y = Tensor::empty(ys);
    be().linear(x, w, with_bias ? &b : nullptr, y);
    std::vector<double> yr(24), dx(30, 0.0), dw(20, 0.0), db(4, 0.0);
    for (int n = 0; n < 6; ++n)
      for (int o = 0; o < 4; ++o) {
        double s = with_bias ? b.at(o) : 0.0;
        for (int i = 0; i < 5; ++i) {
          s += double(x.at(n * 5 + i)) * w.at(o * 5 + i);
          dx[size_t(n * 5 + i)] += double(r.at(n * 4 + o)) * w.at(o * 5 + i);
          dw[size_t(o * 5 + i)] += double(r.at(n * 4 + o)) * x.at(n * 5 + i);
        }
        db[size_t(o)] += r.at(n * 4 + o);
        yr[size_t(n * 4 + o)] = s;
      }
    CHECK(rel(y, yr) < 1e-6);
    Tensor gx = Tensor::empty(xs), gw = Tensor::empty({4, 5}), gb = Tensor::empty({4});
    be().linear_backward(r, x, w, &gx, &gw, &gb);
    CHECK(rel(gx, dx) < 1e-6);
    CHECK(rel(gw, dw) < 1e-6);
    CHECK(rel(gb, db) < 1e-6);
    auto loss = [&] {
      be().linear(x, w, with_bias ? &b : nullptr, y);
      return dot(y, r);
    };
    CHECK(rel(gx, numeric_grad(x, loss, 1e-2f)) < 1e-3);
    CHECK(rel(gw, numeric_grad(w, loss, 1e-2f)) < 1e-3);
    if (with_bias) CHECK(rel(gb, numeric_grad(b, loss, 1e-2f)) < 1e-3);
  }
  Tensor x = test::random_tensor({3, 5}, 1), w = test::random_tensor({4, 6}, 2), y = Tensor::empty({3, 4});
  CHECK_THROWS_AS(be().linear(x, w, nullptr, y), Error);
}

// Every op of the convolution on `cases` against conv_ref, with and without
// bias, on 1 and 2 threads.
void check_conv_cases(const std::vector<ConvCase>& cases, uint64_t seed) {
  ThreadsGuard guard;
  for (const ConvCase& c : cases) {
    int64_t Ho = (c.H + 2 * c.p - c.KH) / c.s + 1, Wo = (c.W + 2 * c.p - c.KW) / c.s + 1;
    Tensor x = test::random_tensor({c.N, c.Ci, c.H, c.W}, seed++), w = test::random_tensor({c.Co, c.Ci, c.KH, c.KW}, seed++);
    Tensor b = test::random_tensor({c.Co}, seed++), dy = test::random_tensor({c.N, c.Co, Ho, Wo}, seed++);
    for (bool with_bias : {true, false}) {
      ConvRef ref = conv_ref(c, x, w, with_bias ? &b : nullptr, dy);
      for (int threads : {1, 2}) {
        be().set_threads(threads);
        CAPTURE(c.N); CAPTURE(c.Ci); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.Co); CAPTURE(c.KH);
        CAPTURE(c.s); CAPTURE(c.p); CAPTURE(threads); CAPTURE(with_bias);
        Tensor y = Tensor::full({c.N, c.Co, Ho, Wo}, 123.f);
        be().conv2d(x, w, with_bias ? &b : nullptr, y, {c.s, c.p});
        CHECK(rel(y, ref.y) < 1e-5);
        Tensor dx = Tensor::full(x.shape(), 7.f), dw = Tensor::full(w.shape(), 7.f), db = Tensor::full({c.Co}, 7.f);
        be().conv2d_backward_data(dy, w, dx, {c.s, c.p});
        be().conv2d_backward_weight(dy, x, dw, &db, {c.s, c.p});
        CHECK(rel(dx, ref.dx) < 1e-5);
        CHECK(rel(dw, ref.dw) < 1e-5);
        CHECK(rel(db, ref.db) < 1e-6);
        be().conv2d_backward_weight(dy, x, dw, nullptr, {c.s, c.p});
        CHECK(rel(dw, ref.dw) < 1e-5);
      }
    }
  }
}

TEST_CASE("conv2d: forward, data and weight gradients against a direct convolution, 1 and 2 threads") {
  // (N, Ci, H, W, Co, KH, KW, stride, pad)
  check_conv_cases({{2, 3, 5, 7, 4, 3, 3, 1, 1},
                    {2, 3, 5, 7, 4, 3, 3, 2, 1},
                    {1, 2, 9, 6, 3, 7, 7, 1, 3},
                    {3, 2, 11, 8, 2, 7, 7, 2, 3},
                    {3, 5, 4, 6, 2, 1, 1, 1, 0},
                    {2, 3, 6, 5, 4, 1, 1, 2, 0},
                    {4, 4, 8, 8, 3, 3, 3, 2, 0},
                    {1, 1, 1, 1, 1, 1, 1, 1, 0},
                    {2, 2, 3, 4, 3, 3, 3, 1, 0},
                    {5, 3, 7, 5, 2, 3, 3, 1, 1}},
                   100);
}

TEST_CASE("conv2d: the direct kernel on wide stride-1 levels, grouped images on narrow ones, blocked im2col") {
  // (N, Ci, H, W, Co, KH, KW, stride, pad)
  check_conv_cases(
      {// Output rows of 16 or more: the direct kernel (conv_direct.h) for the forward and the
       // weight gradient and, where the kernel is square and p <= KH - 1, the data gradient
       // (K = 288 in the last case of the list). Widths that end in a partial
       // vector (19, 31, 42), output channels that end in a partial register tile (1, 5, 7, 13,
       // 32), one image on two threads (its pixels split), three images on two (one at a time).
       {1, 3, 16, 16, 5, 3, 3, 1, 1},
       {2, 4, 17, 19, 7, 3, 3, 1, 1},
       {3, 2, 9, 33, 13, 3, 3, 1, 0},
       {2, 3, 8, 20, 1, 5, 5, 1, 2},
       {2, 2, 6, 18, 3, 1, 3, 1, 1},
       {1, 6, 5, 40, 4, 3, 3, 1, 2},
       {2, 5, 16, 16, 32, 3, 3, 1, 1},
       {4, 3, 3, 24, 2, 3, 3, 1, 1},
       // 1x1 unpadded: the direct kernel's flat layout on the image itself (64 and 256
       // pixels, the latter one image split over two threads) or on a copy (35 pixels).
       {3, 5, 8, 8, 7, 1, 1, 1, 0},
       {1, 4, 16, 16, 20, 1, 1, 1, 0},
       {2, 6, 5, 7, 9, 1, 1, 1, 0},
       // 1x1 with planes 4 KiB apart and more than 64 output channels: the direct kernel on a
       // copy with its planes a vector further apart (conv2d.cpp, aliased_pointwise).
       {2, 16, 32, 32, 72, 1, 1, 1, 0},
       // Narrow levels: 8 wide through the direct kernel's flat layout (AVX-512), 4 wide
       // (and fp32's 1x1 before the direct kernel took them) per-image products.
       {8, 6, 8, 8, 5, 3, 3, 1, 1},
       {8, 4, 4, 4, 3, 3, 3, 1, 1},
       {6, 3, 8, 8, 4, 3, 3, 1, 1},
       {8, 5, 4, 4, 6, 1, 1, 1, 0},
       {2, 32, 40, 40, 2, 3, 3, 1, 0},
       // A col matrix over the L2 budget (288 x 784 floats): im2col in blocks of output rows.
       {1, 32, 56, 56, 3, 3, 3, 2, 1}},
      300);
}

// Winograd F(2x2, 3x3) (conv_winograd.h), its pieces called directly: every band
// height gives the same bits (each output depends on its tile and its channel sums
// in order only), and those are the reference convolution's within the direct
// kernel's tolerance. Odd heights and widths (partial tiles), tile rows narrower
// than a vector (8 tiles) and wider, output channels that end in a partial block.
TEST_CASE("conv2d: Winograd F(2x2, 3x3) pieces: any band of tile rows gives the same bits, the reference's values") {
  // (N, Ci, H, W, Co, KH, KW, stride, pad)
  const std::vector<ConvCase> cases = {{1, 5, 16, 16, 7, 3, 3, 1, 1},  {1, 3, 17, 19, 13, 3, 3, 1, 1},
                                       {1, 9, 9, 40, 8, 3, 3, 1, 1},   {1, 4, 21, 64, 17, 3, 3, 1, 1},
                                       {1, 2, 6, 5, 3, 3, 3, 1, 1}};
  uint64_t seed = 1200;
  for (const ConvCase& c : cases) {
    CAPTURE(c.Ci); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.Co);
    Tensor x = test::random_tensor({1, c.Ci, c.H, c.W}, seed++), w = test::random_tensor({c.Co, c.Ci, 3, 3}, seed++);
    Tensor b = test::random_tensor({c.Co}, seed++), dy = test::random_tensor({1, c.Co, c.H, c.W}, seed++);
    const ConvRef ref = conv_ref(c, x, w, &b, dy);
    const cpu::WinogradGeom g{c.Ci, c.H, c.W, c.Co, c.H, c.W};
    std::vector<float> U(size_t(g.packed_weight_len()));
    cpu::winograd_pack_weights(g, w.data(), U.data(), 0, g.co_blocks());
    const int64_t Th = g.tile_rows();
    CHECK(cpu::winograd_band_rows(g) >= 1);
    CHECK(cpu::winograd_band_rows(g) <= Th);
    std::vector<float> first;
    for (int64_t rows = 1; rows <= Th; ++rows) {
      CAPTURE(rows);
      const int64_t ldv = cpu::winograd_ldv(g, rows);
      CHECK(ldv % cpu::kAttnW == 0);
      std::vector<float> V(size_t(16 * cpu::winograd_v_stride(g, ldv) + 4 * cpu::kAttnW), NAN);
      std::vector<float> M(size_t(16 * cpu::winograd_m_stride(g, ldv)), NAN);
      Tensor y = Tensor::full({1, c.Co, c.H, c.W}, NAN);
      for (int64_t ty0 = 0; ty0 < Th; ty0 += rows) {
        const int64_t ty1 = std::min(Th, ty0 + rows);
        cpu::winograd_zero_tail(g, ldv, (ty1 - ty0) * g.tile_cols(), V.data());
        cpu::winograd_input_transform(g, x.data(), ty0, ty1, ldv, V.data());
        cpu::winograd_products(g, U.data(), V.data(), ldv, M.data());
        cpu::winograd_output_transform(g, M.data(), ldv, ty0, ty1, b.data(), y.data(),
                                       V.data() + 16 * cpu::winograd_v_stride(g, ldv));
      }
      CHECK(rel(y, ref.y) < 1e-5);  // every output written (NaN otherwise), and right
      std::vector<float> got(y.data(), y.data() + y.numel());
      if (first.empty()) first = got;
      else CHECK(got == first);
    }
  }
}

// The direct kernel's vector units, each capped to in turn (conv_tiles.h's test hook):
// AVX-512's 16-float tiles (8x3, or 6x4 / 4x6 where they pad fewer channels) where this
// CPU has them, AVX2's 4x3 of 8 floats and SSE's 4x3 of 4, each against the reference
// and all giving the same bits (one accumulator per output, taps in order).
TEST_CASE("conv2d: the direct kernel's run-time tiles, every vector unit, against the reference and each other") {
  struct IsaCap {
    ~IsaCap() { cpu::cap_vector_isa(cpu::VectorIsa::avx512); }
  } restore;
  // (N, Ci, H, W, Co, KH, KW, stride, pad): Co 32 and 7 (8x3 on AVX-512), 12 and 5 (6x4),
  // 3 (4x6); partial last vectors at every width (19, 21, 37 wide), one image split over threads.
  // On AVX-512 the 19, 21, 37 and 20 wide cases take the flat layout, the 16 and 42 wide ones
  // rows; the 1x1 case always the flat one (on the image itself: 64 pixels).
  const std::vector<ConvCase> cases = {{2, 5, 16, 16, 32, 3, 3, 1, 1}, {3, 3, 9, 19, 3, 3, 3, 1, 1},
                                       {2, 4, 7, 21, 12, 3, 3, 1, 1}, {1, 6, 6, 37, 7, 3, 3, 1, 1},
                                       {2, 3, 8, 20, 5, 5, 5, 1, 2},  {2, 4, 5, 42, 7, 3, 3, 1, 1},
                                       {2, 5, 8, 8, 12, 1, 1, 1, 0}};
  const cpu::VectorIsa top = cpu::vector_isa();
  // MDPS_CPU_ISA caps the unit (CTest test_cpu_ops_isa_sse runs this case under =sse).
  if (const char* e = std::getenv("MDPS_CPU_ISA"); e && std::strcmp(e, "sse") == 0) CHECK(top == cpu::VectorIsa::sse);
  if (const char* e = std::getenv("MDPS_CPU_ISA"); e && std::strcmp(e, "avx2") == 0)
    CHECK(int(top) <= int(cpu::VectorIsa::avx2));
  std::vector<cpu::VectorIsa> isas = {cpu::VectorIsa::sse};
  if (top != cpu::VectorIsa::sse) isas.push_back(cpu::VectorIsa::avx2);
  if (top == cpu::VectorIsa::avx512) isas.push_back(cpu::VectorIsa::avx512);
  INFO("this CPU and build: " << cpu::vector_isa_name(top));
  uint64_t seed = 900;
  for (const ConvCase& c : cases) {
    const int64_t Ho = c.H + 2 * c.p - c.KH + 1, Wo = c.W + 2 * c.p - c.KW + 1;
    Tensor x = test::random_tensor({c.N, c.Ci, c.H, c.W}, seed++), w = test::random_tensor({c.Co, c.Ci, c.KH, c.KW}, seed++);
    Tensor b = test::random_tensor({c.Co}, seed++);
    std::vector<float> first;
    for (cpu::VectorIsa isa : isas) {
      cpu::cap_vector_isa(isa);
      REQUIRE(cpu::vector_isa() == isa);
      const bool pointwise = c.KH == 1 && c.KW == 1 && c.p == 0;
      const cpu::ConvTile t = cpu::direct_conv_tile(c.Co, Ho, Wo, pointwise);
      CAPTURE(c.Co); CAPTURE(Wo); CAPTURE(cpu::vector_isa_name(isa)); CAPTURE(t.width); CAPTURE(t.co); CAPTURE(t.nv);
      CHECK(t.width == (isa == cpu::VectorIsa::avx512 ? 16 : isa == cpu::VectorIsa::avx2 ? 8 : 4));
      // Flat where whole-vector rows would be more than a quarter padding lanes.
      const int64_t rv = (Wo + t.width - 1) / t.width;
      CHECK(t.flat == (pointwise || rv * t.width * 4 > Wo * 5));
      if (isa == cpu::VectorIsa::avx512) CHECK(t.co == (c.Co == 12 || c.Co == 5 ? 6 : c.Co == 3 ? 4 : 8));
      check_conv_cases({c}, seed);
      Tensor y = Tensor::full({c.N, c.Co, Ho, Wo}, 5.f);
      be().conv2d(x, w, &b, y, {c.s, c.p});
      std::vector<float> got(y.data(), y.data() + y.numel());
      if (first.empty()) first = got;
      else CHECK(got == first);
    }
  }
}

// Backend::conv2d_fused: the bits of conv2d, add_channel_bias and add run
// one after the other, on Winograd's epilogue (whole tile rows a vector, tile
// rows through tmp, an odd size) and on the separate ops' path (1x1, strided).
TEST_CASE("conv2d_fused: the bits of conv2d, then add_channel_bias, then add") {
  struct Case { int64_t N, Ci, H, W, Co, K; int s, p; };
  for (Case c : {Case{2, 4, 32, 32, 5, 3, 1, 1}, Case{3, 3, 16, 16, 7, 3, 1, 1}, Case{2, 5, 13, 11, 6, 3, 1, 1},
                 Case{2, 6, 8, 8, 4, 3, 1, 1}, Case{2, 3, 9, 7, 4, 1, 1, 0}, Case{1, 2, 9, 9, 3, 3, 2, 1}}) {
    CAPTURE(c.H);
    CAPTURE(c.K);
    const int64_t Ho = (c.H + 2 * c.p - c.K) / c.s + 1, Wo = (c.W + 2 * c.p - c.K) / c.s + 1;
    const Tensor x = test::random_tensor({c.N, c.Ci, c.H, c.W}, 970), w = test::random_tensor({c.Co, c.Ci, c.K, c.K}, 971);
    const Tensor b = test::random_tensor({c.Co}, 972), e = test::random_tensor({c.N, c.Co}, 973);
    const Tensor r = test::random_tensor({c.N, c.Co, Ho, Wo}, 974);
    for (int variant = 0; variant < 3; ++variant) {  // both, the image bias alone, the residual alone
      CAPTURE(variant);
      const Tensor* eb = variant == 2 ? nullptr : &e;
      const Tensor* rr = variant == 1 ? nullptr : &r;
      Tensor ref = Tensor::empty({c.N, c.Co, Ho, Wo}), got = Tensor::empty({c.N, c.Co, Ho, Wo});
      be().conv2d(x, w, &b, ref, {c.s, c.p});
      if (eb) be().add_channel_bias(ref, *eb, ref);
      if (rr) be().add(*rr, ref, ref);
      be().conv2d_fused(x, w, &b, eb, rr, got, {c.s, c.p});
      CHECK(got.to_vector() == ref.to_vector());
    }
  }
  // The residual may not be the output (the epilogue reads it as it writes).
  Tensor x = test::random_tensor({1, 2, 8, 8}, 975), w = test::random_tensor({2, 2, 3, 3}, 976);
  Tensor y = Tensor::empty({1, 2, 8, 8});
  CHECK_THROWS_AS(be().conv2d_fused(x, w, nullptr, nullptr, &y, y, {1, 1}), Error);
  // Nor the image bias (the default body adds it to the output in place): a view of y's first floats.
  Tensor view = y.reshape({128}).slice_batch(0, 2).reshape({1, 2});
  CHECK_THROWS_AS(be().conv2d_fused(x, w, nullptr, &view, nullptr, y, {1, 1}), Error);
}

// The convolutions' (direct, Winograd) and the attention forward's sums are per image (per head) and
// per output: an image's rows are the same bits alone or in a batch, on 1 or 2 threads.
TEST_CASE("conv2d (direct kernel, Winograd) and attention: a row's bits do not depend on the batch or the threads") {
  ThreadsGuard guard;
  auto row = [](const Tensor& t, int64_t n) {
    const int64_t per = t.numel() / t.dim(0);
    return std::vector<float>(t.data() + n * per, t.data() + (n + 1) * per);
  };
  auto slice = [](const Tensor& t, int64_t n) {
    Shape s = t.shape();
    s[0] = 1;
    Tensor one = Tensor::empty(s);
    const int64_t per = t.numel() / t.dim(0);
    std::copy(t.data() + n * per, t.data() + (n + 1) * per, one.data());
    return one;
  };
  Tensor x = test::random_tensor({3, 5, 20, 21}, 950), w = test::random_tensor({7, 5, 3, 3}, 951);
  Tensor b = test::random_tensor({7}, 952), qkv = test::random_tensor({3, 2 * 3 * 16, 300}, 953, -2.f, 2.f);
  // An 8x8 level: Winograd with several images side by side in a band (conv_winograd.h
  // winograd_group), a batch of 5 split 2 + 3 over two threads.
  Tensor x8 = test::random_tensor({5, 6, 8, 8}, 954), w8 = test::random_tensor({9, 6, 3, 3}, 955);
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    be().set_threads(threads);
    Tensor y = Tensor::empty({3, 7, 20, 21}), a = Tensor::empty({3, 2 * 16, 300}), y8 = Tensor::empty({5, 9, 8, 8});
    be().conv2d(x, w, &b, y, {1, 1});
    be().attention(qkv, 2, a);
    be().conv2d(x8, w8, nullptr, y8, {1, 1});
    for (int64_t n = 0; n < 3; ++n) {
      CAPTURE(n);
      Tensor y1 = Tensor::empty({1, 7, 20, 21}), a1 = Tensor::empty({1, 2 * 16, 300});
      be().set_threads(3 - threads);  // the image alone on the other thread count
      be().conv2d(slice(x, n), w, &b, y1, {1, 1});
      be().attention(slice(qkv, n), 2, a1);
      be().set_threads(threads);
      CHECK(row(y1, 0) == row(y, n));
      CHECK(row(a1, 0) == row(a, n));
    }
    for (int64_t n = 0; n < 5; ++n) {
      CAPTURE(n);
      Tensor y1 = Tensor::empty({1, 9, 8, 8});
      be().set_threads(3 - threads);
      be().conv2d(slice(x8, n), w8, nullptr, y1, {1, 1});
      be().set_threads(threads);
      CHECK(row(y1, 0) == row(y8, n));
    }
  }
}

TEST_CASE("conv2d: gradients against finite differences") {
  ConvCase c{2, 2, 5, 4, 3, 3, 3, 2, 1};
  int64_t Ho = 3, Wo = 2;
  Tensor x = test::random_tensor({c.N, c.Ci, c.H, c.W}, 1), w = test::random_tensor({c.Co, c.Ci, c.KH, c.KW}, 2), b = test::random_tensor({c.Co}, 3);
  Tensor r = test::random_tensor({c.N, c.Co, Ho, Wo}, 4), y = Tensor::empty({c.N, c.Co, Ho, Wo});
  Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty(w.shape()), db = Tensor::empty({c.Co});
  be().conv2d_backward_data(r, w, dx, {c.s, c.p});
  be().conv2d_backward_weight(r, x, dw, &db, {c.s, c.p});
  auto loss = [&] {
    be().conv2d(x, w, &b, y, {c.s, c.p});
    return dot(y, r);
  };
  CHECK(rel(dx, numeric_grad(x, loss, 1e-2f)) < 1e-3);
  CHECK(rel(dw, numeric_grad(w, loss, 1e-2f)) < 1e-3);
  CHECK(rel(db, numeric_grad(b, loss, 1e-2f)) < 1e-3);
}

TEST_CASE("conv2d: shape errors") {
  Tensor x = test::random_tensor({1, 3, 5, 5}, 1), w = test::random_tensor({2, 4, 3, 3}, 2), y = Tensor::empty({1, 2, 5, 5});
  CHECK_THROWS_AS(be().conv2d(x, w, nullptr, y, {1, 1}), Error);  // channel mismatch
  Tensor w2 = test::random_tensor({2, 3, 3, 3}, 3), bad_y = Tensor::empty({1, 2, 4, 5});
  CHECK_THROWS_AS(be().conv2d(x, w2, nullptr, bad_y, {1, 1}), Error);
  Tensor big = test::random_tensor({2, 3, 9, 9}, 4), y2 = Tensor::empty({1, 2, 1, 1});
  CHECK_THROWS_AS(be().conv2d(x, big, nullptr, y2, {1, 0}), Error);  // kernel larger than input
}

// ---- normalisation and activations -------------------------------------------------

TEST_CASE("group_norm: forward and statistics against a naive reference, with and without SiLU, 1 and 2 threads") {
  ThreadsGuard guard;
  struct Case { int64_t N, C, H, W; int G; };
  for (Case c : {Case{2, 6, 5, 7, 3}, Case{1, 4, 3, 3, 1}, Case{3, 5, 2, 3, 5}, Case{1, 1, 1, 1, 1},
                 Case{2, 64, 16, 16, 32}}) {
    Tensor x = test::random_tensor({c.N, c.C, c.H, c.W}, 20, -2.f, 3.f), gamma = test::random_tensor({c.C}, 21, 0.5f, 1.5f),
           beta = test::random_tensor({c.C}, 22);
    for (bool silu : {false, true}) {
      GnRef ref = gn_ref(x, gamma, beta, c.G, 1e-5, silu);
      for (int threads : {1, 2}) {
        be().set_threads(threads);
        CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.G); CAPTURE(silu); CAPTURE(threads);
        Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({c.N * c.G}), rstd = Tensor::empty({c.N * c.G});
        be().group_norm(x, gamma, beta, c.G, 1e-5f, silu, y, mean, rstd);
        CHECK(rel(y, ref.y) < 1e-5);
        CHECK(rel(mean, ref.mean) < 1e-6);
        CHECK(rel(rstd, ref.rstd) < 1e-6);
      }
    }
  }
}

TEST_CASE("group_norm: eps sits inside the square root (constant groups)") {
  Tensor x = Tensor::full({1, 2, 2, 2}, 3.f), gamma = Tensor::full({2}, 1.f), beta = Tensor::zeros({2});
  Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({1}), rstd = Tensor::empty({1});
  be().group_norm(x, gamma, beta, 1, 0.25f, false, y, mean, rstd);
  CHECK(rstd.at(0) == doctest::Approx(2.0).epsilon(1e-6));
  CHECK(mean.at(0) == doctest::Approx(3.0).epsilon(1e-6));
  for (int i = 0; i < 8; ++i) CHECK(y.at(i) == doctest::Approx(0.0));
}

TEST_CASE("group_norm: dx, dgamma, dbeta against finite differences, with and without SiLU, 1 and 2 threads") {
  ThreadsGuard guard;
  struct Case { int64_t N, C, H, W; int G; };
  for (Case c : {Case{2, 6, 3, 5, 3}, Case{1, 3, 2, 3, 1}, Case{2, 4, 1, 3, 4}}) {
    for (bool silu : {false, true}) {
      for (int threads : {1, 2}) {
        be().set_threads(threads);
        CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.G); CAPTURE(silu); CAPTURE(threads);
        Tensor x = test::random_tensor({c.N, c.C, c.H, c.W}, 30, -2.f, 2.f), gamma = test::random_tensor({c.C}, 31, 0.5f, 1.5f),
               beta = test::random_tensor({c.C}, 32), r = test::random_tensor(x.shape(), 33);
        Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({c.N * c.G}), rstd = Tensor::empty({c.N * c.G});
        be().group_norm(x, gamma, beta, c.G, 1e-5f, silu, y, mean, rstd);
        Tensor dx = Tensor::empty(x.shape()), dg = Tensor::empty({c.C}), dbt = Tensor::empty({c.C});
        be().group_norm_backward(r, x, gamma, beta, mean, rstd, c.G, silu, &dx, &dg, &dbt);
        auto loss = [&] {
          Tensor yy = Tensor::empty(x.shape()), m = Tensor::empty({c.N * c.G}), s = Tensor::empty({c.N * c.G});
          be().group_norm(x, gamma, beta, c.G, 1e-5f, silu, yy, m, s);
          return dot(yy, r);
        };
        CHECK(rel(dx, numeric_grad(x, loss, 3e-3f)) < 1e-3);
        CHECK(rel(dg, numeric_grad(gamma, loss, 3e-3f)) < 1e-3);
        CHECK(rel(dbt, numeric_grad(beta, loss, 3e-3f)) < 1e-3);
        // Optional outputs may be skipped without changing the others.
        Tensor dx2 = Tensor::empty(x.shape());
        be().group_norm_backward(r, x, gamma, beta, mean, rstd, c.G, silu, &dx2, nullptr, nullptr);
        CHECK(rel(dx2, dx) == 0.0);
        Tensor dg2 = Tensor::empty({c.C});
        be().group_norm_backward(r, x, gamma, beta, mean, rstd, c.G, silu, nullptr, &dg2, nullptr);
        CHECK(rel(dg2, dg) == 0.0);
      }
    }
  }
}

TEST_CASE("group_norm: shape errors") {
  Tensor x = test::random_tensor({2, 6, 3, 3}, 1), g = Tensor::full({6}, 1.f), b = Tensor::zeros({6});
  Tensor y = Tensor::empty(x.shape()), m = Tensor::empty({2 * 4}), s = Tensor::empty({2 * 4});
  CHECK_THROWS_AS(be().group_norm(x, g, b, 4, 1e-5f, false, y, m, s), Error);  // 6 channels, 4 groups
  Tensor m3 = Tensor::empty({5}), s3 = Tensor::empty({6});
  CHECK_THROWS_AS(be().group_norm(x, g, b, 3, 1e-5f, false, y, m3, s3), Error);
  Tensor g5 = Tensor::full({5}, 1.f), m6 = Tensor::empty({6});
  CHECK_THROWS_AS(be().group_norm(x, g5, b, 3, 1e-5f, false, y, m6, s3), Error);
}

TEST_CASE("silu: forward against the formula and backward against finite differences") {
  Tensor x = test::random_tensor({3, 5, 7}, 40, -6.f, 6.f), r = test::random_tensor(x.shape(), 41), y = Tensor::empty(x.shape());
  be().silu(x, y);
  std::vector<double> ref(size_t(x.numel()));
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = x.at(int64_t(i)) / (1.0 + std::exp(-double(x.at(int64_t(i)))));
  CHECK(rel(y, ref) < 1e-6);
  Tensor dx = Tensor::empty(x.shape());
  be().silu_backward(x, r, dx);
  auto loss = [&] {
    be().silu(x, y);
    return dot(y, r);
  };
  CHECK(rel(dx, numeric_grad(x, loss, 1e-2f)) < 1e-3);
  // A large tensor exercises the threaded split.
  Tensor xb = test::random_tensor({100003}, 42, -5.f, 5.f), yb = Tensor::empty({100003});
  be().silu(xb, yb);
  for (int64_t i = 0; i < xb.numel(); i += 997)
    CHECK(yb.at(i) == doctest::Approx(xb.at(i) / (1.0 + std::exp(-double(xb.at(i))))).epsilon(1e-5));
}

TEST_CASE("softmax: rows against the formula (large offsets), backward against finite differences") {
  Tensor x = test::random_tensor({2, 3, 7}, 50, -4.f, 4.f);
  x.data()[0] = 200.f;  // would overflow exp without the max shift
  Tensor y = Tensor::empty(x.shape());
  be().softmax(x, y);
  std::vector<double> ref(size_t(x.numel()));
  for (int64_t row = 0; row < 6; ++row) {
    double mx = -1e300, s = 0;
    for (int i = 0; i < 7; ++i) mx = std::max(mx, double(x.at(row * 7 + i)));
    for (int i = 0; i < 7; ++i) s += std::exp(x.at(row * 7 + i) - mx);
    for (int i = 0; i < 7; ++i) ref[size_t(row * 7 + i)] = std::exp(x.at(row * 7 + i) - mx) / s;
  }
  CHECK(rel(y, ref) < 1e-6);
  Tensor xs = test::random_tensor({4, 5}, 51, -2.f, 2.f), r = test::random_tensor({4, 5}, 52), ys = Tensor::empty({4, 5}), dx = Tensor::empty({4, 5});
  be().softmax(xs, ys);
  be().softmax_backward(ys, r, dx);
  auto loss = [&] {
    be().softmax(xs, ys);
    return dot(ys, r);
  };
  CHECK(rel(dx, numeric_grad(xs, loss, 1e-2f)) < 1e-3);
  Tensor one = Tensor::full({3, 1}, 5.f), yo = Tensor::empty({3, 1});
  be().softmax(one, yo);
  for (int i = 0; i < 3; ++i) CHECK(yo.at(i) == 1.f);
}

// a[bh,c,t] = sum_s v[c,s] softmax_s(q[:,t].k[:,s] / sqrt(ch)) in double.
std::vector<double> naive_attention(const Tensor& qkv, int heads) {
  const int64_t B = qkv.dim(0), ch = qkv.dim(1) / (3 * heads), L = qkv.dim(2);
  std::vector<double> out(size_t(B * heads * ch * L));
  for (int64_t bh = 0; bh < B * heads; ++bh) {
    auto at = [&](int64_t part, int64_t c, int64_t i) { return double(qkv.at((bh * 3 * ch + part * ch + c) * L + i)); };
    for (int64_t t = 0; t < L; ++t) {
      std::vector<double> w(static_cast<size_t>(L));
      double mx = -1e300, sum = 0;
      for (int64_t s2 = 0; s2 < L; ++s2) {
        double dotqk = 0;
        for (int64_t c = 0; c < ch; ++c) dotqk += at(0, c, t) * at(1, c, s2);
        w[size_t(s2)] = dotqk / std::sqrt(double(ch));
        mx = std::max(mx, w[size_t(s2)]);
      }
      for (auto& x : w) sum += (x = std::exp(x - mx));
      for (int64_t c = 0; c < ch; ++c) {
        double acc = 0;
        for (int64_t s2 = 0; s2 < L; ++s2) acc += at(2, c, s2) * w[size_t(s2)] / sum;
        out[size_t((bh * ch + c) * L + t)] = acc;
      }
    }
  }
  return out;
}

TEST_CASE("attention: the fused blockwise CPU version against a naive reference and the generic gemm+softmax path") {
  ThreadsGuard guard;
  // L = 300 spans two query blocks (the second partial) and ends in a partial
  // key panel whose last vector is partial too; L = 64 is whole panels; L = 1
  // and 5 fit in one block and no whole vector. ch = 3, 6, 16, 24, 33, 70 give
  // the value product every count of channel vectors (1 to 4 and 4 + 1) with
  // and without a padded last vector. Batch 1 with one head and two threads
  // splits one head's query blocks between tasks.
  for (int64_t L : {int64_t(300), int64_t(64), int64_t(5), int64_t(1)})
  for (int64_t ch : {int64_t(3), int64_t(6), int64_t(16), int64_t(24), int64_t(33), int64_t(70)}) {
    for (int threads : {1, 2}) {
      for (int64_t batch : {int64_t(2), int64_t(1)}) {
        be().set_threads(threads);
        CAPTURE(L);
        CAPTURE(ch);
        CAPTURE(threads);
        CAPTURE(batch);
        const int heads = batch == 2 ? 2 : 1;
        Tensor qkv = test::random_tensor({batch, 3 * heads * ch, L}, 60 + uint64_t(L + ch), -2.f, 2.f);
        Tensor a = Tensor::empty({batch, heads * ch, L}), a_generic = Tensor::empty({batch, heads * ch, L});
        be().attention(qkv, heads, a);
        be().attention_generic(qkv, heads, a_generic);
        CHECK(rel(a, naive_attention(qkv, heads)) < 1e-5);
        CHECK(rel(a, a_generic) < 1e-5);
        Tensor g = test::random_tensor(a.shape(), 70 + uint64_t(L));
        Tensor d = Tensor::empty(qkv.shape()), d_generic = Tensor::empty(qkv.shape());
        be().attention_backward(qkv, g, heads, d);
        be().attention_backward_generic(qkv, g, heads, d_generic);
        CHECK(rel(d, d_generic) < 1e-5);
      }
    }
  }
  // L = 1024 with 16 channels: the 64x64 U-Net's 32x32 level, whose query
  // block (48) takes the narrow backward's compile-time row stride
  // (attention_backward_tiles.h) that the shorter rows above do not.
  for (int threads : {1, 2}) {
    be().set_threads(threads);
    CAPTURE(threads);
    Tensor qkv = test::random_tensor({1, 2 * 3 * 16, 1024}, 90, -2.f, 2.f);
    Tensor a = Tensor::empty({1, 2 * 16, 1024}), a_generic = Tensor::empty({1, 2 * 16, 1024});
    be().attention(qkv, 2, a);
    be().attention_generic(qkv, 2, a_generic);
    CHECK(rel(a, a_generic) < 1e-5);
    Tensor g = test::random_tensor(a.shape(), 91);
    Tensor d = Tensor::empty(qkv.shape()), d_generic = Tensor::empty(qkv.shape());
    be().attention_backward(qkv, g, 2, d);
    be().attention_backward_generic(qkv, g, 2, d_generic);
    CHECK(rel(d, d_generic) < 1e-5);
  }
  // Finite differences of sum(a * r) on a small case with two blocks (L = 300
  // is too slow for them; force a block boundary with a longer row instead).
  Tensor qkv = test::random_tensor({1, 6, 260}, 80, -1.f, 1.f), r = test::random_tensor({1, 2, 260}, 81);
  Tensor a = Tensor::empty({1, 2, 260}), d = Tensor::empty(qkv.shape());
  be().attention_backward(qkv, r, 1, d);
  std::vector<double> num(size_t(qkv.numel()));
  float* p = qkv.data();
  for (int64_t i = 0; i < qkv.numel(); i += 37) {  // a sample of the inputs
    float s0 = p[i];
    p[i] = s0 + 1e-2f;
    be().attention(qkv, 1, a);
    double up = dot(a, r);
    p[i] = s0 - 1e-2f;
    be().attention(qkv, 1, a);
    double dn = dot(a, r);
    p[i] = s0;
    CHECK(std::abs((up - dn) / 2e-2 - double(d.at(i))) < 2e-3 * (1.0 + std::abs(double(d.at(i)))));
  }
  Tensor bad = Tensor::empty({1, 7, 4});
  CHECK_THROWS_WITH_AS(be().attention(bad, 1, a), doctest::Contains("does not split into 3 x 1 heads"), Error);
}

// The online softmax of heads of up to 16 channels (attention_tiles.h) raises
// each query's maximum block by block and rescales what it has summed: keys
// whose scores rise along the row (a new maximum in every block, the first
// blocks' weights underflowing to 0 by the last), fall along it (the first
// block's maximum kept), or rise for some queries and fall for others.
TEST_CASE("attention: the online softmax with maxima rising and falling across key blocks") {
  ThreadsGuard guard;
  be().set_threads(1);
  for (int64_t L : {int64_t(1024), int64_t(300)})
    for (int64_t ch : {int64_t(16), int64_t(5)})
      for (float span : {40.f, 400.f}) {  // score range along a row, in units of the attention's scale
        CAPTURE(L);
        CAPTURE(ch);
        CAPTURE(span);
        Tensor qkv = test::random_tensor({1, 3 * ch, L}, 500 + uint64_t(L + ch), -0.1f, 0.1f);
        float* q = qkv.data();
        float* k = q + ch * L;
        for (int64_t t = 0; t < L; ++t) q[t] = t % 3 == 0 ? 1.f : t % 3 == 1 ? -1.f : 0.25f;  // channel 0
        for (int64_t s2 = 0; s2 < L; ++s2) k[s2] = span * std::sqrt(float(ch)) * float(s2) / float(L);
        Tensor a = Tensor::empty({1, ch, L}), a_generic = Tensor::empty({1, ch, L});
        be().attention(qkv, 1, a);
        be().attention_generic(qkv, 1, a_generic);
        const std::vector<double> want = naive_attention(qkv, 1);
        // A score of 400 carries 400 x 2^-24 = 2.4e-5 of rounding before any
        // exp, in any float softmax: there the bound is the two-pass one's own
        // error (1.0e-5 to 2.0e-5 here), with room for different sums.
        const double err = rel(a, want), err_two_pass = rel(a_generic, want);
        CAPTURE(err_two_pass);
        CHECK(err < (span <= 40.f ? 1e-5 : 1.5 * err_two_pass));
      }
  // A NaN score (a diverged model) reaches every output, as it did through the
  // two-pass softmax, rather than being dropped from the maxima.
  Tensor qkv = test::random_tensor({1, 3 * 16, 300}, 520, -2.f, 2.f);
  qkv.data()[16 * 300 + 5 * 300 + 200] = std::nanf("");  // k[5, 200]
  Tensor a = Tensor::empty({1, 16, 300});
  be().attention(qkv, 1, a);
  int64_t nans = 0;
  for (int64_t i = 0; i < a.numel(); ++i) nans += std::isnan(a.data()[i]) ? 1 : 0;
  CHECK(nans == a.numel());
}

// ---- elementwise ------------------------------------------------------------------

TEST_CASE("elementwise: add, sub, mul, scale, axpby (including aliasing and beta = 0)") {
  const int64_t n = 70001;  // large enough to be split across threads
  Tensor a = test::random_tensor({n}, 60), b = test::random_tensor({n}, 61), y = Tensor::empty({n});
  be().add(a, b, y);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(y.at(i) == a.at(i) + b.at(i));
  be().sub(a, b, y);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(y.at(i) == a.at(i) - b.at(i));
  be().mul(a, b, y);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(y.at(i) == a.at(i) * b.at(i));
  be().scale(a, -2.5f, y);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(y.at(i) == -2.5f * a.at(i));
  Tensor c = a.clone();
  be().add(c, b, c);  // y aliases a
  for (int64_t i = 0; i < n; i += 101) REQUIRE(c.at(i) == a.at(i) + b.at(i));
  Tensor d = b.clone();
  be().sub(a, d, d);  // y aliases b
  for (int64_t i = 0; i < n; i += 101) REQUIRE(d.at(i) == a.at(i) - b.at(i));
  Tensor e = b.clone();
  be().axpby(0.5f, a, 2.f, e);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(e.at(i) == 0.5f * a.at(i) + 2.f * b.at(i));
  Tensor f = Tensor::full({n}, std::numeric_limits<float>::quiet_NaN());
  be().axpby(3.f, a, 0.f, f);
  for (int64_t i = 0; i < n; i += 101) REQUIRE(f.at(i) == 3.f * a.at(i));
  Tensor wrong = Tensor::empty({n - 1});
  CHECK_THROWS_AS(be().add(a, wrong, y), Error);
  CHECK_THROWS_AS(be().mul(a, b, wrong), Error);
  CHECK_THROWS_AS(be().axpby(1.f, a, 1.f, wrong), Error);
}

TEST_CASE("add_channel_bias and sum_hw: naive reference and adjointness") {
  Tensor x = test::random_tensor({2, 3, 5, 7}, 70), v = test::random_tensor({2, 3}, 71), y = Tensor::empty(x.shape());
  be().add_channel_bias(x, v, y);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y.at(i) == x.at(i) + v.at(i / 35));
  Tensor r = test::random_tensor(x.shape(), 72), dv = Tensor::empty({2, 3});
  be().sum_hw(r, dv);
  std::vector<double> ref(6, 0.0);
  for (int64_t i = 0; i < r.numel(); ++i) ref[size_t(i / 35)] += r.at(i);
  CHECK(rel(dv, ref) < 1e-6);
  auto loss = [&] {
    be().add_channel_bias(x, v, y);
    return dot(y, r);
  };
  CHECK(rel(dv, numeric_grad(v, loss, 1e-2f)) < 1e-3);
  Tensor bad = Tensor::empty({3, 2});
  CHECK_THROWS_AS(be().add_channel_bias(x, bad, y), Error);
  CHECK_THROWS_AS(be().sum_hw(r, bad), Error);
}

// ---- layout ------------------------------------------------------------------------

TEST_CASE("concat_channels and split_channels: element placement and round trip") {
  Tensor a = test::random_tensor({2, 3, 5, 7}, 80), b = test::random_tensor({2, 1, 5, 7}, 81), y = Tensor::empty({2, 4, 5, 7});
  be().concat_channels(a, b, y);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t i = 0; i < 35; ++i) {
        float want = c < 3 ? a.at((n * 3 + c) * 35 + i) : b.at((n * 1 + c - 3) * 35 + i);
        REQUIRE(y.at((n * 4 + c) * 35 + i) == want);
      }
  Tensor a2 = Tensor::empty(a.shape()), b2 = Tensor::empty(b.shape());
  be().split_channels(y, &a2, &b2);
  CHECK(rel(a2, a) == 0.0);
  CHECK(rel(b2, b) == 0.0);
  Tensor b3 = Tensor::empty(b.shape());
  be().split_channels(y, nullptr, &b3);
  CHECK(rel(b3, b) == 0.0);
  Tensor a3 = Tensor::empty(a.shape());
  be().split_channels(y, &a3, nullptr);
  CHECK(rel(a3, a) == 0.0);
  Tensor wrong = Tensor::empty({2, 2, 5, 7});
  CHECK_THROWS_AS(be().split_channels(y, &wrong, &b2), Error);
  Tensor bad_hw = Tensor::empty({2, 1, 5, 6});
  CHECK_THROWS_AS(be().concat_channels(a, bad_hw, y), Error);
}

TEST_CASE("avg_pool2 (odd sizes floor) and upsample_nearest2: naive reference and finite differences") {
  for (Shape s : {Shape{2, 3, 5, 7}, Shape{1, 2, 4, 6}, Shape{1, 1, 1, 1}}) {
    CAPTURE(shape_str(s));
    int64_t N = s[0], C = s[1], H = s[2], W = s[3], Ho = H / 2, Wo = W / 2;
    Tensor x = test::random_tensor(s, 90), y = Tensor::empty({N, C, Ho, Wo});
    be().avg_pool2(x, y);
    std::vector<double> ref(size_t(N * C * Ho * Wo));
    for (int64_t r = 0; r < N * C; ++r)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          double t = 0;
          for (int di = 0; di < 2; ++di)
            for (int dj = 0; dj < 2; ++dj) t += x.at(r * H * W + (2 * i + di) * W + 2 * j + dj);
          ref[size_t((r * Ho + i) * Wo + j)] = t / 4;
        }
    CHECK(rel(y, ref) < 1e-6);
    if (Ho > 0 && Wo > 0) {
      Tensor r = test::random_tensor(y.shape(), 91), dx = Tensor::full(s, 9.f);
      be().avg_pool2_backward(r, dx);
      auto loss = [&] {
        be().avg_pool2(x, y);
        return dot(y, r);
      };
      CHECK(rel(dx, numeric_grad(x, loss, 1e-2f)) < 1e-3);
    }

    Tensor u = Tensor::empty({N, C, 2 * H, 2 * W});
    be().upsample_nearest2(x, u);
    for (int64_t r = 0; r < N * C; ++r)
      for (int64_t i = 0; i < 2 * H; ++i)
        for (int64_t j = 0; j < 2 * W; ++j)
          REQUIRE(u.at((r * 2 * H + i) * 2 * W + j) == x.at((r * H + i / 2) * W + j / 2));
    Tensor ru = test::random_tensor(u.shape(), 92), dxu = Tensor::full(s, 9.f);
    be().upsample_nearest2_backward(ru, dxu);
    auto uloss = [&] {
      be().upsample_nearest2(x, u);
      return dot(u, ru);
    };
    CHECK(rel(dxu, numeric_grad(x, uloss, 1e-2f)) < 1e-3);
  }
  Tensor x = test::random_tensor({1, 1, 4, 4}, 1), bad = Tensor::empty({1, 1, 3, 2});
  CHECK_THROWS_AS(be().avg_pool2(x, bad), Error);
  CHECK_THROWS_AS(be().upsample_nearest2(x, bad), Error);
}

// ---- reductions ----------------------------------------------------------------------

TEST_CASE("sum and sum_squares: double accumulation into one element") {
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(200003)}) {
    Tensor x = test::random_tensor({n}, 100, -1.f, 2.f), out = Tensor::empty({1});
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; ++i) {
      s += x.at(i);
      q += double(x.at(i)) * x.at(i);
    }
    be().sum(x, out);
    CHECK(out.at(0) == doctest::Approx(s).epsilon(1e-6));
    be().sum_squares(x, out);
    CHECK(out.at(0) == doctest::Approx(q).epsilon(1e-6));
  }
  // 1 + many tiny values: float accumulation would drop every one of them.
  Tensor x = Tensor::full({1 << 20}, 1e-8f), out = Tensor::empty({1});
  x.data()[0] = 1.f;
  be().sum(x, out);
  CHECK(out.at(0) == doctest::Approx(1.0 + 1e-8 * ((1 << 20) - 1)).epsilon(1e-7));
  Tensor two = Tensor::empty({2});
  CHECK_THROWS_AS(be().sum(x, two), Error);
}

// ---- diffusion-specific ------------------------------------------------------------

TEST_CASE("timestep_embedding: sin then cos of t * exp(-ln(10000) i / half), float32 steps as torch") {
  Tensor t = Tensor::from_vector({4}, {0.f, 1.f, 37.5f, 999.f});
  for (int64_t dim : {int64_t(8), int64_t(13), int64_t(128)}) {
    CAPTURE(dim);
    Tensor y = Tensor::empty({4, dim});
    be().timestep_embedding(t, y);
    int64_t half = dim / 2;
    for (int64_t n = 0; n < 4; ++n) {
      for (int64_t i = 0; i < half; ++i) {
        // torch: float32 exp(-log(10000) * arange(half) / half), then t * freqs in float32
        float f = float(std::exp(double(float(-std::log(10000.0)) * float(i) / float(half))));
        float arg = t.at(n) * f;
        CHECK(y.at(n * dim + i) == doctest::Approx(std::sin(double(arg))).epsilon(1e-6).scale(1.0));
        CHECK(y.at(n * dim + half + i) == doctest::Approx(std::cos(double(arg))).epsilon(1e-6).scale(1.0));
        if (t.at(n) < 2.f) {  // small t: float rounding of the phase is negligible
          double exact = t.at(n) * std::exp(-std::log(10000.0) * double(i) / double(half));
          CHECK(y.at(n * dim + i) == doctest::Approx(std::sin(exact)).epsilon(1e-6).scale(1.0));
        }
      }
      if (dim % 2) CHECK(y.at(n * dim + dim - 1) == 0.f);
    }
  }
  Tensor bad = Tensor::empty({3, 8});
  CHECK_THROWS_AS(be().timestep_embedding(t, bad), Error);
}

TEST_CASE("adam_update: two steps against the torch.optim.Adam / AdamW formulas") {
  for (bool decoupled : {false, true}) {
    for (float wd : {0.f, 0.05f}) {
      CAPTURE(decoupled); CAPTURE(wd);
      const int64_t n = 37;
      AdamParams hp;
      hp.lr = 1e-2f;
      hp.beta1 = 0.8f;
      hp.beta2 = 0.99f;
      hp.eps = 1e-6f;
      hp.weight_decay = wd;
      hp.decoupled = decoupled;
      Tensor p = test::random_tensor({n}, 110), m = Tensor::zeros({n}), v = Tensor::zeros({n});
      std::vector<float> p0 = p.to_vector();
      std::vector<double> rp(p0.begin(), p0.end()), rm(n, 0.0), rv(n, 0.0);
      for (int64_t step = 1; step <= 2; ++step) {
        Tensor g = test::random_tensor({n}, 110 + uint64_t(step), -0.5f, 0.5f);
        be().adam_update(p, g, m, v, hp, step);
        double b1 = hp.beta1, b2 = hp.beta2, lr = hp.lr;
        for (int64_t i = 0; i < n; ++i) {
          double gi = g.at(i);
          double& pi = rp[size_t(i)];
          if (decoupled) pi *= 1.0 - lr * wd;
          else gi += wd * pi;
          rm[size_t(i)] = b1 * rm[size_t(i)] + (1 - b1) * gi;
          rv[size_t(i)] = b2 * rv[size_t(i)] + (1 - b2) * gi * gi;
          double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
          double denom = std::sqrt(rv[size_t(i)]) / std::sqrt(bc2) + hp.eps;
          pi -= lr / bc1 * rm[size_t(i)] / denom;
        }
        CAPTURE(step);
        CHECK(rel(m, rm) < 1e-6);
        CHECK(rel(v, rv) < 1e-6);
        double worst = 0;
        for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(p.at(i) - rp[size_t(i)]));
        CHECK(worst < 1e-6);
      }
    }
  }
  // Weight decay changes the result only through the chosen path.
  AdamParams a, w;
  a.weight_decay = w.weight_decay = 0.1f;
  w.decoupled = true;
  Tensor p1 = Tensor::full({1}, 2.f), p2 = Tensor::full({1}, 2.f), g = Tensor::full({1}, 0.f);
  Tensor m1 = Tensor::zeros({1}), v1 = Tensor::zeros({1}), m2 = Tensor::zeros({1}), v2 = Tensor::zeros({1});
  be().adam_update(p1, g, m1, v1, a, 1);  // coupled: g' = 0.2, one normalised step of size lr
  be().adam_update(p2, g, m2, v2, w, 1);  // decoupled: only the shrink
  CHECK(p1.at(0) == doctest::Approx(2.0 - a.lr).epsilon(1e-6));
  CHECK(p2.at(0) == doctest::Approx(2.0 * (1.0 - w.lr * 0.1)).epsilon(1e-7));
  Tensor bad = Tensor::zeros({2});
  CHECK_THROWS_AS(be().adam_update(p1, g, bad, v1, a, 1), Error);
  CHECK_THROWS_AS(be().adam_update(p1, g, m1, v1, a, 0), Error);
}

// ---- precision -------------------------------------------------------------------------

TEST_CASE("precision: names parse; the CPU backend takes fp32, refuses tf32, and bf16 without AVX512-BF16") {
  CHECK(parse_precision("fp32") == Precision::FP32);
  CHECK(parse_precision("tf32") == Precision::TF32);
  CHECK(parse_precision("bf16") == Precision::BF16);
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16})
    CHECK(parse_precision(precision_name(p)) == p);
  CHECK_THROWS_WITH_AS(parse_precision("fp16"), doctest::Contains("unknown precision 'fp16'"), Error);
  CHECK(&backend_by_name("cpu", Precision::FP32) == &cpu_backend());
  CHECK_THROWS_WITH_AS(backend_by_name("cpu", Precision::TF32),
                       doctest::Contains("--precision tf32: the cpu backend computes in fp32 or bf16 only"), Error);
  CHECK(be().precision() == Precision::FP32);  // a refused setting leaves the old one
  {
    // A CPU without the instructions, whatever this one has (the dispatch's test hook).
    struct NoBf16 {
      NoBf16() { cpu::force_no_avx512_bf16(true); }
      ~NoBf16() { cpu::force_no_avx512_bf16(false); }
    } no_bf16;
    CHECK_FALSE(cpu::has_avx512_bf16());
    CHECK_THROWS_WITH_AS(backend_by_name("cpu", Precision::BF16),
                         doctest::Contains("--precision bf16 on the CPU needs AVX512-BF16; this CPU has none"), Error);
    CHECK(be().precision() == Precision::FP32);
  }
  if (cpu::has_avx512_bf16()) {
    CHECK(&backend_by_name("cpu", Precision::BF16) == &cpu_backend());
    CHECK(be().precision() == Precision::BF16);
    be().set_precision(Precision::FP32);
  }
}

// ---- the backend registry (engine/core/backend_registry.h) ------------------------------

TEST_CASE("backend registry: cpu always and first, cuda as the build has it, --device errors that say why") {
  const std::vector<std::string> names = built_backends();
  REQUIRE(!names.empty());
  CHECK(names.front() == "cpu");
  CHECK(backend_built("cpu"));
  CHECK(find_backend("cpu") == &cpu_backend());
  REQUIRE(!available_backends().empty());
  CHECK(available_backends().front() == &cpu_backend());
  CHECK(backend_unavailable_reason("cpu").empty());
  CHECK_FALSE(backend_built("tpu"));
  CHECK(find_backend("tpu") == nullptr);
  CHECK_THROWS_WITH_AS(backend_by_name("tpu"), doctest::Contains("unknown device 'tpu' (expected cpu, cuda or auto)"),
                       Error);
  if (!backend_built("cuda")) {
    CHECK(find_backend("cuda") == nullptr);
    CHECK(available_backends().size() == 1);
    CHECK_THROWS_WITH_AS(backend_by_name("cuda"),
                         doctest::Contains("--device cuda: this build has no CUDA backend (configure with -DMDPS_CUDA=ON)"),
                         Error);
    CHECK(&backend_by_name("auto") == &cpu_backend());
  } else if (!find_backend("cuda")) {
    CHECK_THROWS_WITH_AS(backend_by_name("cuda"), doctest::Contains("--device cuda: no CUDA device is present"), Error);
    CHECK(&backend_by_name("auto") == &cpu_backend());
  } else {
    CHECK(backend_unavailable_reason("cuda").empty());
    CHECK(&backend_by_name("auto") == find_backend("cuda"));
    CHECK(&backend_by_name("cpu") == &cpu_backend());  // the trace's clock back to none
  }
  // A registry refuses a name twice and a missing getter.
  BackendRegistry r;
  r.add("x", []() -> Backend* { return nullptr; });
  CHECK_THROWS_WITH_AS(r.add("x", []() -> Backend* { return nullptr; }), doctest::Contains("'x' registered twice"), Error);
  CHECK_THROWS_AS(r.add("y", nullptr), Error);
  CHECK(r.entries().size() == 1);
}
