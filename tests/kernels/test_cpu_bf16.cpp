// The CPU's --precision bf16 (kernels/cpu/conv_bf16.h): the convolutions'
// products on bfloat16 inputs with float32 accumulation through AVX512-BF16.
// On a CPU without the instructions the suite exits 77 (CTest: skipped, never
// passed); the refusal itself is tested on every CPU in test_cpu_ops.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/autograd.h"
#include "engine/core/backend.h"
#include "engine/model/unet.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/shared/bf16.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace mdps;

namespace {

Backend& be() {
  // MDPS_TEST_FORCE_NO_BF16=1 plays a CPU without the instructions (the
  // dispatch's hook), to check that the suite then reports skipped.
  if (const char* e = std::getenv("MDPS_TEST_FORCE_NO_BF16"); e && *e == '1') cpu::force_no_avx512_bf16(true);
  if (!cpu::has_avx512_bf16()) {
    std::printf("SKIPPED: this CPU has no AVX512-BF16\n");
    std::fflush(stdout);
    std::exit(77);
  }
  return cpu_backend();
}

// Back to fp32 however the test case leaves.
struct Bf16Scope {
  Bf16Scope() { be().set_precision(Precision::BF16); }
  ~Bf16Scope() { cpu_backend().set_precision(Precision::FP32); }
};

Tensor bf16_values(Tensor t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = float_from_bf16(bf16_from_float(t.data()[i]));
  return t;
}
Tensor abs_values(Tensor t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::fabs(t.data()[i]);
  return t;
}

// The largest |got - ref| relative to the sum of the terms' magnitudes
// (scale): what accumulation order alone can change.
double order_error(const Tensor& got, const Tensor& ref, const Tensor& scale) {
  double worst = 0;
  for (int64_t i = 0; i < got.numel(); ++i)
    worst = std::max(worst, std::fabs(double(got.data()[i]) - ref.data()[i]) / (double(scale.data()[i]) + 1e-30));
  return worst;
}

// Each test runs on the AMX path (where the CPU has it) and on the
// AVX512-BF16 path (AMX forced off).
struct NoAmx {
  explicit NoAmx(bool off) { cpu::force_no_amx(off); }
  ~NoAmx() { cpu::force_no_amx(false); }
};
std::vector<bool> amx_passes() {
  return cpu::has_amx_bf16() ? std::vector<bool>{false, true} : std::vector<bool>{true};
}

struct ConvCase {
  int64_t N, Ci, H, W, Co, K;
  int stride, pad;
  const char* what;
};

// One of each path of conv2d.cpp under bf16.
const ConvCase kCases[] = {
    {2, 32, 32, 32, 32, 3, 1, 1, "3x3 direct, 32x32"},
    {8, 3, 64, 64, 32, 3, 1, 1, "3x3 direct, 3 input channels (odd)"},
    {1, 7, 20, 21, 13, 3, 1, 1, "3x3 direct, ragged widths and channel tiles"},
    {3, 16, 18, 17, 11, 5, 1, 2, "5x5 direct"},
    {8, 64, 8, 8, 64, 3, 1, 1, "3x3 on 8x8, grouped im2col"},
    {8, 64, 4, 4, 96, 3, 1, 1, "3x3 on 4x4, grouped im2col"},
    {4, 32, 32, 32, 64, 1, 1, 0, "1x1"},
    {2, 32, 32, 32, 32, 3, 2, 1, "3x3 stride 2, im2col"},
    {3, 5, 9, 7, 3, 3, 2, 0, "3x3 stride 2, unpadded, odd sizes"},
};

}  // namespace

TEST_CASE("bf16 convolution = fp32 convolution of bf16-rounded inputs, up to accumulation order") {
  Backend& b = be();
  for (bool no_amx : amx_passes())
  for (const ConvCase& c : kCases) {
    NoAmx path(no_amx);
    INFO(c.what << (no_amx ? " (AVX512-BF16)" : " (AMX)"));
    const ConvGeom g{c.stride, c.pad};
    const int64_t Ho = conv_out_size(c.H, c.K, g), Wo = conv_out_size(c.W, c.K, g);
    Tensor x = test::random_tensor({c.N, c.Ci, c.H, c.W}, 1), w = test::random_tensor({c.Co, c.Ci, c.K, c.K}, 2),
           bias = test::random_tensor({c.Co}, 3);
    Tensor got = Tensor::empty({c.N, c.Co, Ho, Wo}, b), ref = got.clone(), scale = got.clone(), plain = got.clone();
    {
      Bf16Scope bf16;
      b.conv2d(x, w, &bias, got, g);
    }
    const Tensor xr = bf16_values(x.clone()), wr = bf16_values(w.clone());
    b.conv2d(xr, wr, &bias, ref, g);
    b.conv2d(abs_values(xr.clone()), abs_values(wr.clone()), nullptr, scale, g);
    b.conv2d(x, w, &bias, plain, g);
    const double order = order_error(got, ref, scale);
    const double vs_fp32 = test::rel_l2(got.to_vector(), plain.to_vector());
    INFO("accumulation-order error " << order << ", rel L2 to fp32 " << vs_fp32);
    CHECK(order < 1e-5);
    CHECK(vs_fp32 < 1e-2);
    CHECK(vs_fp32 > 1e-4);  // the inputs were rounded: the bf16 path ran
  }
}

TEST_CASE("bf16: AMX and AVX512-BF16 are different paths to the same sums") {
  Backend& b = be();
  if (!cpu::has_amx_bf16()) {
    MESSAGE("no AMX on this CPU: the AVX512-BF16 path alone ran");
    return;
  }
  const ConvGeom g{1, 1};
  Tensor x = test::random_tensor({2, 32, 16, 16}, 8), w = test::random_tensor({32, 32, 3, 3}, 9);
  Tensor amx = Tensor::empty({2, 32, 16, 16}, b), avx = amx.clone();
  Bf16Scope bf16;
  b.conv2d(x, w, nullptr, amx, g);
  {
    NoAmx off(true);
    b.conv2d(x, w, nullptr, avx, g);
  }
  CHECK_FALSE(test::same_bits(amx, avx));  // the accumulation orders differ: AMX ran
  CHECK(test::rel_l2(amx.to_vector(), avx.to_vector()) < 1e-5);
}

TEST_CASE("bf16 data gradient of the direct convolution = fp32 on rounded inputs, up to accumulation order") {
  Backend& b = be();
  for (bool no_amx : amx_passes())
  for (const ConvCase& c : kCases) {
    NoAmx path(no_amx);
    INFO(c.what << (no_amx ? " (AVX512-BF16)" : " (AMX)"));
    const ConvGeom g{c.stride, c.pad};
    const int64_t Ho = conv_out_size(c.H, c.K, g), Wo = conv_out_size(c.W, c.K, g);
    Tensor dy = test::random_tensor({c.N, c.Co, Ho, Wo}, 4), w = test::random_tensor({c.Co, c.Ci, c.K, c.K}, 5);
    Tensor got = Tensor::empty({c.N, c.Ci, c.H, c.W}, b), ref = got.clone(), scale = got.clone(),
           plain = got.clone();
    {
      Bf16Scope bf16;
      b.conv2d_backward_data(dy, w, got, g);
    }
    b.conv2d_backward_data(dy, w, plain, g);
    // Only the direct kernel's shapes (stride 1, output 16 or more wide) take
    // bf16 in the backward; the others stay fp32 bit for bit.
    const bool direct = c.stride == 1 && c.W >= 16 && c.K > 1;
    if (!direct) {
      CHECK(test::same_bits(got, plain));
      continue;
    }
    const Tensor dyr = bf16_values(dy.clone()), wr = bf16_values(w.clone());
    b.conv2d_backward_data(dyr, wr, ref, g);
    b.conv2d_backward_data(abs_values(dyr.clone()), abs_values(wr.clone()), scale, g);
    const double order = order_error(got, ref, scale);
    const double vs_fp32 = test::rel_l2(got.to_vector(), plain.to_vector());
    INFO("accumulation-order error " << order << ", rel L2 to fp32 " << vs_fp32);
    CHECK(order < 1e-5);
    CHECK(vs_fp32 < 1e-2);
    CHECK(vs_fp32 > 1e-4);
  }
}

// The whole network compounds the rounding: every convolution's inputs move by
// up to 2^-9 relative (about 0.3% on its output) and the forward chains 20 of
// them through residual sums and group norms. Measured on this random 32x32
// net: forward 1.3e-2, input gradient 2.4e-2 (printed below); the bound is
// about twice that, far below what a wrong kernel gives (order 1).
TEST_CASE("bf16 U-Net forward and input gradient stay within 3e-2 of fp32 (relative L2)") {
  Backend& b = be();
  UNetConfig cfg;
  cfg.image_size = 32;
  cfg.base_channels = 32;
  cfg.channel_mults = {1, 2, 2};
  cfg.res_blocks = 1;
  cfg.heads = 2;
  cfg.attention_resolutions = {16, 8};
  UNet net(cfg, b);
  net.init_random(3);
  const Tensor x = test::random_tensor({2, 3, 32, 32}, 6), seed = test::random_tensor({2, 3, 32, 32}, 7);
  Tensor t = Tensor::empty({2}, b);
  t.data()[0] = 20.f;
  t.data()[1] = 700.f;
  auto run = [&](Precision p, Tensor& grad) {
    b.set_precision(p);
    Var xv = make_leaf(x.clone(), MemCategory::InputGrad);
    Tape tape;
    Var y;
    {
      TapeScope scope(tape);
      y = net.forward(xv, t);
    }
    tape.backward(y, seed);
    grad = xv.grad().clone();
    b.set_precision(Precision::FP32);
    return y.value.clone();
  };
  Tensor g32, g16;
  const Tensor y32 = run(Precision::FP32, g32);
  const Tensor y16 = run(Precision::BF16, g16);
  const double fwd = test::rel_l2(y16.to_vector(), y32.to_vector());
  const double grad = test::rel_l2(g16.to_vector(), g32.to_vector());
  std::printf("bf16 vs fp32, 32x32 U-Net (random weights): forward rel L2 %.3g, input gradient rel L2 %.3g\n", fwd,
              grad);
  CHECK(fwd < 3e-2);
  CHECK(grad < 5e-2);
  CHECK(fwd > 1e-5);  // bf16 ran
}
