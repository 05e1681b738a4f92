// Playground: one image's 3x3 stride-1 pad-1 convolution, one thread.
//   version 1  production Winograd F(2x2, 3x3) (kernels/cpu/conv_winograd.h:
//              the weight transform, then per band of tile rows the input
//              transform, the 16 products and the output transform), each
//              piece timed on its own too
//   version 2  the backend's convolution with Winograd's pieces called the
//              way conv2d.cpp calls them, through Backend::conv2d (one image:
//              its bands; MDPS_CONV_WINOGRAD=0 makes it the direct kernel)
// Both are validated against a double-precision reference written here
// (relative L2 error of the output, exit 1 above 1e-5), then timed: the
// median of --reps runs, ms per image and GFLOP/s of the direct convolution's
// count (2 per multiply-add of 9 taps: Winograd's products do 16/36 of them).
//   ./conv_winograd [--ci 64] [--co 64] [--size 64] [--rows 0] [--reps 20]
// --rows: tile rows per band (0: winograd_band_rows's choice). The defaults
// are the 64x64 U-Net's costliest convolution. bench/RESULTS.md records what
// it measured.
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include "engine/core/tensor.h"
#include "bench/cpu/playground.h"
#include "kernels/cpu/conv_winograd.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
  int64_t ci = 64, co = 64, size = 64, rows = 0;
  int reps = 20;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&](long lo) -> long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "conv_winograd: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (!end || *end || v < lo || v > 4096) {
        std::fprintf(stderr, "conv_winograd: %s must be an integer in [%ld, 4096], got '%s'\n", k.c_str(), lo, argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (k == "--ci") a.ci = value(1);
    else if (k == "--co") a.co = value(1);
    else if (k == "--size") a.size = value(1);
    else if (k == "--rows") a.rows = value(0);
    else if (k == "--reps") a.reps = int(value(1));
    else {
      std::fprintf(stderr, "conv_winograd: unknown option '%s' (--ci, --co, --size, --rows, --reps)\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

bool report(const char* what, double ms, double gflop, double err) {
  const bool ok = err <= 1e-5 && std::isfinite(err);
  std::printf("  %-44s %8.3f ms  %6.1f GFLOP/s  rel. L2 error %.2e%s\n", what, ms, gflop / ms * 1e3, err,
              ok ? "" : "  FAILED");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int64_t Ci = a.ci, Co = a.co, S = a.size;
  Backend& be = cpu_backend();
  be.set_threads(1);
  Tensor x = Tensor::empty({1, Ci, S, S}), w = Tensor::empty({Co, Ci, 3, 3}), b = Tensor::empty({Co});
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (Tensor* t : {&x, &w, &b})
    for (int64_t i = 0; i < t->numel(); ++i) t->data()[i] = normal(rng);
  // The reference, in double.
  std::vector<double> ref(size_t(Co * S * S));
  for (int64_t co = 0; co < Co; ++co)
    for (int64_t oh = 0; oh < S; ++oh)
      for (int64_t ow = 0; ow < S; ++ow) {
        double s = b.data()[co];
        for (int64_t ci = 0; ci < Ci; ++ci)
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) {
              const int64_t ih = oh + kh - 1, iw = ow + kw - 1;
              if (ih < 0 || ih >= S || iw < 0 || iw >= S) continue;
              s += double(w.data()[((co * Ci + ci) * 3 + kh) * 3 + kw]) * double(x.data()[(ci * S + ih) * S + iw]);
            }
        ref[size_t((co * S + oh) * S + ow)] = s;
      }
  const WinogradGeom g{Ci, S, S, Co, S, S};
  const int64_t Th = g.tile_rows(), rows = a.rows > 0 ? std::min(a.rows, Th) : winograd_band_rows(g);
  const int64_t ldv = winograd_ldv(g, rows), bands = (Th + rows - 1) / rows;
  const double gflop = 2.0 * double(Co * Ci * 9) * double(S * S) * 1e-9;
  std::printf("conv_winograd playground: %lld -> %lld channels, %lldx%lld, 1 thread, %d-float vectors, "
              "bands of %lld tile rows (%lld), median of %d\n",
              static_cast<long long>(Ci), static_cast<long long>(Co), static_cast<long long>(S),
              static_cast<long long>(S), kAttnW, static_cast<long long>(rows), static_cast<long long>(bands), a.reps);
  std::vector<float> U(size_t(g.packed_weight_len()));
  std::vector<float> V(size_t(16 * winograd_v_stride(g, ldv) + 4 * kAttnW)), M(size_t(16 * winograd_m_stride(g, ldv)));
  float* tmp = V.data() + 16 * winograd_v_stride(g, ldv);
  Tensor y = Tensor::full({1, Co, S, S}, NAN);
  auto band = [&](int64_t bi, int part) {  // part: 0 all, 1 input, 2 products, 3 output
    const int64_t ty0 = bi * rows, ty1 = std::min(Th, ty0 + rows);
    if (part == 0 || part == 1) {
      winograd_zero_tail(g, ldv, (ty1 - ty0) * g.tile_cols(), V.data());
      winograd_input_transform(g, x.data(), ty0, ty1, ldv, V.data());
    }
    if (part == 0 || part == 2) winograd_products(g, U.data(), V.data(), ldv, M.data());
    if (part == 0 || part == 3) winograd_output_transform(g, M.data(), ldv, ty0, ty1, b.data(), y.data(), tmp);
  };
  bool ok = true;
  const double t1 = median_ms(a.reps, [&] {
    winograd_pack_weights(g, w.data(), U.data(), 0, g.co_blocks());
    for (int64_t bi = 0; bi < bands; ++bi) band(bi, 0);
  });
  ok &= report("version 1  production Winograd, whole", t1, gflop, rel_l2(y.data(), ref));
  const double tw = median_ms(a.reps, [&] { winograd_pack_weights(g, w.data(), U.data(), 0, g.co_blocks()); });
  const double ti = median_ms(a.reps, [&] {
    for (int64_t bi = 0; bi < bands; ++bi) band(bi, 1);
  });
  const double tp = median_ms(a.reps, [&] {
    for (int64_t bi = 0; bi < bands; ++bi) band(bi, 2);
  });
  const double to = median_ms(a.reps, [&] {
    for (int64_t bi = 0; bi < bands; ++bi) band(bi, 3);
  });
  std::printf("    weight transform %.3f ms, input transform %.3f ms, products %.3f ms (%.1f GFLOP/s of their own "
              "16/36), output transform %.3f ms\n",
              tw, ti, tp, gflop * 16.0 / 36.0 / tp * 1e3, to);
  Tensor y2 = Tensor::full({1, Co, S, S}, NAN);
  const double t2 = median_ms(a.reps, [&] { be.conv2d(x, w, &b, y2, {1, 1}); });
  ok &= report(winograd_enabled() ? "version 2  Backend::conv2d (Winograd)" : "version 2  Backend::conv2d (direct kernel)",
               t2, gflop, rel_l2(y2.data(), ref));
  return ok ? 0 : 1;
}
