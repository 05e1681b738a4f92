// Playground: the CPU attention of one head, forward and backward, one thread.
//   forward  version 1  production (kernels/cpu/attention_tiles.h attention_block_t:
//                       transposed score tiles; for heads of up to 16 channels
//                       an online softmax over key blocks of kAttnKB)
//            version 2  the two-pass softmax over whole rows, the weights stored
//                       between the exp and the value product (the path of
//                       wider heads)
//            version 3  the backend's generic path (gemm, softmax, gemm)
//   backward version 1  production for ch <= one vector (attention_backward_tiles.h
//                       attention_backward_head_t)
//            version 2  the backend's generic path
// Every version is validated against a double-precision reference written
// here (relative L2 error of the output, and of dq, dk, dv; exit 1 above
// 1e-5), then timed: the median of --reps runs, ms per head and GFLOP/s
// (2 per multiply-add of the products; the exp is not counted).
//   ./attention [--L 1024] [--ch 16] [--reps 20]
// The defaults are the 64x64 U-Net's 32x32 level, where most of its attention
// time is. bench/RESULTS.md records what it measured.
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include "engine/core/tensor.h"
#include "bench/cpu/playground.h"
#include "kernels/cpu/attention_backward_tiles.h"
#include "kernels/cpu/attention_tiles.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace mdps;
using namespace mdps::cpu;
using mdps::playground::median_ms;
using mdps::playground::rel_l2;

namespace {

struct Args {
  int64_t L = 1024, ch = 16;
  int reps = 20;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attention: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (!end || *end || v < 1 || v > 1 << 16) {
        std::fprintf(stderr, "attention: %s must be an integer in [1, 65536], got '%s'\n", k.c_str(), argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (k == "--L") a.L = value();
    else if (k == "--ch") a.ch = value();
    else if (k == "--reps") a.reps = int(value());
    else {
      std::fprintf(stderr, "attention: unknown option '%s' (--L, --ch, --reps)\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// The reference in double: out = v softmax(scale q^T k)^T and, for g = dL/dout,
// dq, dk, dv (each [ch, L]).
struct Reference {
  std::vector<double> out, dq, dk, dv;
};
Reference reference(const float* q, const float* k, const float* v, const float* g, int64_t L, int64_t ch,
                    double scale) {
  Reference r;
  r.out.assign(size_t(ch * L), 0.0);
  r.dq.assign(size_t(ch * L), 0.0);
  r.dk.assign(size_t(ch * L), 0.0);
  r.dv.assign(size_t(ch * L), 0.0);
  std::vector<double> p(static_cast<size_t>(L)), dp(static_cast<size_t>(L));
  for (int64_t t = 0; t < L; ++t) {
    double mx = -INFINITY, sum = 0;
    for (int64_t s = 0; s < L; ++s) {
      double x = 0;
      for (int64_t c = 0; c < ch; ++c) x += double(q[c * L + t]) * double(k[c * L + s]);
      p[size_t(s)] = x * scale;
      mx = std::max(mx, p[size_t(s)]);
    }
    for (int64_t s = 0; s < L; ++s) sum += (p[size_t(s)] = std::exp(p[size_t(s)] - mx));
    double D = 0;
    for (int64_t s = 0; s < L; ++s) {
      p[size_t(s)] /= sum;
      double d = 0;
      for (int64_t c = 0; c < ch; ++c) {
        r.out[size_t(c * L + t)] += double(v[c * L + s]) * p[size_t(s)];
        d += double(g[c * L + t]) * double(v[c * L + s]);
        r.dv[size_t(c * L + s)] += double(g[c * L + t]) * p[size_t(s)];
      }
      dp[size_t(s)] = d;
      D += d * p[size_t(s)];
    }
    for (int64_t s = 0; s < L; ++s) {
      const double ds = p[size_t(s)] * (dp[size_t(s)] - D) * scale;
      for (int64_t c = 0; c < ch; ++c) {
        r.dq[size_t(c * L + t)] += ds * double(k[c * L + s]);
        r.dk[size_t(c * L + s)] += ds * double(q[c * L + t]);
      }
    }
  }
  return r;
}

bool report(const char* what, int version, double ms, double gflop, double err) {
  const bool ok = err <= 1e-5;
  std::printf("  %-8s version %d  %8.3f ms per head  %6.1f GFLOP/s  rel. L2 error %.2e%s\n", what, version, ms,
              gflop / ms * 1e-6, err, ok ? "" : "  FAILED (above 1e-5)");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int64_t L = a.L, ch = a.ch;
  Backend& be = cpu_backend();
  be.set_threads(1);
  const float scale = float(1.0 / std::sqrt(double(ch)));  // as engine/core/attention_dims.h
  // One head: qkv [1, 3 ch, L] (q, k, v), g [1, ch, L].
  Tensor qkv = Tensor::empty({1, 3 * ch, L}), g = Tensor::empty({1, ch, L});
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t i = 0; i < qkv.numel(); ++i) qkv.data()[i] = 2.f * normal(rng);
  for (int64_t i = 0; i < g.numel(); ++i) g.data()[i] = normal(rng);
  const float* q = qkv.data();
  const float* k = q + ch * L;
  const float* v = k + ch * L;
  const Reference ref = reference(q, k, v, g.data(), L, ch, double(scale));
  const double flop_fwd = 4.0 * double(L) * double(L) * double(ch), flop_bwd = 2.5 * flop_fwd;
  std::printf("attention playground: one head, L %lld, %lld channels, 1 thread, %d-float vectors, median of %d\n",
              static_cast<long long>(L), static_cast<long long>(ch), kAttnW, a.reps);
  bool ok = true;

  const int64_t Tb = attn_forward_query_block(L);
  std::vector<float> fbuf(size_t(AttnForwardBuffers::floats(L, ch, Tb)));
  AttnForwardBuffers fb(fbuf.data(), L, ch, Tb);
  std::vector<float> out(size_t(ch * L));
  const double f1 = median_ms(a.reps, [&] {
    attention_pack_head_t(k, v, L, ch, fb);
    for (int64_t t0 = 0; t0 < L; t0 += Tb) attention_block_t(q, L, ch, scale, t0, std::min(Tb, L - t0), fb, &out[size_t(t0)], L);
  });
  ok &= report("forward", 1, f1, flop_fwd, rel_l2(out.data(), ref.out));
  std::fill(out.begin(), out.end(), 0.f);
  std::vector<float> fbuf2(size_t(AttnForwardBuffers::floats(L, ch, Tb, true)));
  AttnForwardBuffers fb2(fbuf2.data(), L, ch, Tb, true);
  const double f2 = median_ms(a.reps, [&] {
    attention_pack_head_t(k, v, L, ch, fb2);
    for (int64_t t0 = 0; t0 < L; t0 += Tb) {
      const int64_t nb = std::min(Tb, L - t0);
      attn_pack_query_block(q, L, ch, t0, nb, fb2.qb);
      attention_scores_t(fb2.kg, fb2.qb, L, ch, nb, scale, fb2.pt, fb2.ldt, fb2.mx);
      attention_exp_t(fb2.pt, fb2.ldt, L, nb, fb2.mx, fb2.inv);
      attention_values_t(fb2.vt, ch, fb2.pt, fb2.ldt, L, nb, fb2.inv, &out[size_t(t0)], L);
    }
  });
  ok &= report("forward", 2, f2, flop_fwd, rel_l2(out.data(), ref.out));
  Tensor a_generic = Tensor::empty({1, ch, L});
  const double f3 = median_ms(a.reps, [&] { be.attention_generic(qkv, 1, a_generic); });
  ok &= report("forward", 3, f3, flop_fwd, rel_l2(a_generic.data(), ref.out));

  auto grads_error = [&](const float* d) {
    return std::max({rel_l2(d, ref.dq), rel_l2(d + ch * L, ref.dk), rel_l2(d + 2 * ch * L, ref.dv)});
  };
  if (ch <= kAttnW) {
    std::vector<float> bbuf(size_t(AttnBackwardBuffers::floats(L, ch, Tb)));
    AttnBackwardBuffers bb(bbuf.data(), L, ch, Tb, scale);
    std::vector<float> d(size_t(3 * ch * L));
    const double b1 = median_ms(a.reps, [&] {
      attention_backward_head_t(q, k, v, g.data(), L, ch, scale, Tb, bb, d.data(), d.data() + ch * L,
                                d.data() + 2 * ch * L);
    });
    ok &= report("backward", 1, b1, flop_bwd, grads_error(d.data()));
  } else {
    std::printf("  backward version 1  not for %lld channels (at most %d: one vector)\n", static_cast<long long>(ch),
                kAttnW);
  }
  Tensor d_generic = Tensor::empty(qkv.shape());
  const double b2 = median_ms(a.reps, [&] { be.attention_backward_generic(qkv, g, 1, d_generic); });
  ok &= report("backward", 2, b2, flop_bwd, grads_error(d_generic.data()));
  return ok ? 0 : 1;
}
