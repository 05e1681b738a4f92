// The tape and the differentiable ops (engine/core/ops.h): every op's gradient
// against central finite differences through the whole tape, input-only
// versus full mode, and the release of buffers as the backward walks.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/ops.h"
#include <cmath>
#include <functional>

using namespace mdps;

namespace {

using Fn = std::function<Var(const std::vector<Var>&)>;

// L = sum(f(x) * r) for a fixed random r; returns L in double.
double objective(const Fn& f, const std::vector<Tensor>& xs, const Tensor& r) {
  std::vector<Var> vs;
  for (auto& x : xs) vs.push_back(Var(x));
  auto y = f(vs).value.to_vector();
  auto rv = r.to_vector();
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += double(y[i]) * rv[i];
  return s;
}

// Checks d/dx_i of sum(f * r) for every input against central differences.
void check_gradients(const std::string& what, const Fn& f, std::vector<Tensor> xs, float h = 1e-2f,
                     double tol = 2e-3) {
  CAPTURE(what);
  Tape tape;
  std::vector<Var> leaves;
  for (auto& x : xs) leaves.push_back(make_leaf(x.clone(), MemCategory::InputGrad));
  Var y;
  {
    TapeScope rec(tape);
    y = f(leaves);
  }
  Tensor r = Tensor::from_vector(y.shape(), test::random_floats(size_t(y.value.numel()), 99));
  tape.backward(y, r);
  for (size_t k = 0; k < xs.size(); ++k) {
    CAPTURE(k);
    REQUIRE(leaves[k].grad().defined());
    auto analytic = leaves[k].grad().to_vector();
    std::vector<float> numeric(analytic.size());
    for (size_t i = 0; i < analytic.size(); ++i) {
      std::vector<Tensor> plus = xs, minus = xs;
      plus[k] = xs[k].clone();
      minus[k] = xs[k].clone();
      plus[k].data()[i] += h;
      minus[k].data()[i] -= h;
      numeric[i] = float((objective(f, plus, r) - objective(f, minus, r)) / (2.0 * h));
    }
    double e = test::rel_l2(analytic, numeric);
    INFO("rel L2 analytic vs finite differences: " << e);
    CHECK(e < tol);
  }
}

}  // namespace

TEST_CASE("finite differences through the tape, op by op") {
  check_gradients("conv2d 3x3 pad 1 with bias", [](auto& v) { return ops::conv2d(v[0], v[1], &v[2], {1, 1}); },
                  {test::random_tensor({2, 3, 5, 4}, 1), test::random_tensor({4, 3, 3, 3}, 2), test::random_tensor({4}, 3)});
  {
    // A constant weight: only the input and the bias need gradients (the
    // bias-only branch of the conv's backward).
    const Tensor w = test::random_tensor({4, 3, 3, 3}, 32);
    check_gradients("conv2d with a constant weight, input and bias gradients",
                    [w](auto& v) { return ops::conv2d(v[0], Var(w), &v[1], {1, 1}); },
                    {test::random_tensor({2, 3, 5, 4}, 33), test::random_tensor({4}, 34)});
  }
  check_gradients("conv2d_fused (Winograd's epilogue: an 8x8 level)",
                  [](auto& v) { return ops::conv2d_fused(v[0], v[1], &v[2], &v[3], &v[4], {1, 1}); },
                  {test::random_tensor({2, 2, 8, 8}, 35), test::random_tensor({3, 2, 3, 3}, 36),
                   test::random_tensor({3}, 37), test::random_tensor({2, 3}, 38), test::random_tensor({2, 3, 8, 8}, 39)});
  check_gradients("conv2d 1x1 stride 2", [](auto& v) { return ops::conv2d(v[0], v[1], nullptr, {2, 0}); },
                  {test::random_tensor({1, 2, 5, 5}, 4), test::random_tensor({3, 2, 1, 1}, 5)});
  check_gradients("linear", [](auto& v) { return ops::linear(v[0], v[1], &v[2]); },
                  {test::random_tensor({3, 5}, 6), test::random_tensor({4, 5}, 7), test::random_tensor({4}, 8)});
  check_gradients("group_norm + silu",
                  [](auto& v) { return ops::group_norm(v[0], v[1], v[2], 2, 1e-5f, true); },
                  {test::random_tensor({2, 4, 3, 3}, 9), test::random_tensor({4}, 10, 0.5f, 1.5f), test::random_tensor({4}, 11)}, 1e-2f, 5e-3);
  check_gradients("group_norm", [](auto& v) { return ops::group_norm(v[0], v[1], v[2], 4, 1e-5f, false); },
                  {test::random_tensor({1, 4, 2, 3}, 12), test::random_tensor({4}, 13, 0.5f, 1.5f), test::random_tensor({4}, 14)}, 1e-2f, 5e-3);
  check_gradients("silu", [](auto& v) { return ops::silu(v[0]); }, {test::random_tensor({2, 7}, 15, -3, 3)});
  check_gradients("add, sub, mul", [](auto& v) { return ops::mul(ops::add(v[0], v[1]), ops::sub(v[0], v[1])); },
                  {test::random_tensor({2, 3}, 16), test::random_tensor({2, 3}, 17)});
  check_gradients("scale, scale_per_sample",
                  [](auto& v) { return ops::scale_per_sample(ops::scale(v[0], -1.5f), {0.5f, 2.f}); },
                  {test::random_tensor({2, 2, 2, 1}, 18)});
  check_gradients("add_channel_bias", [](auto& v) { return ops::add_channel_bias(v[0], v[1]); },
                  {test::random_tensor({2, 3, 2, 2}, 19), test::random_tensor({2, 3}, 20)});
  check_gradients("concat_channels", [](auto& v) { return ops::concat_channels(v[0], v[1]); },
                  {test::random_tensor({2, 1, 2, 3}, 21), test::random_tensor({2, 2, 2, 3}, 22)});
  check_gradients("avg_pool2 then upsample_nearest2",
                  [](auto& v) { return ops::upsample_nearest2(ops::avg_pool2(v[0])); }, {test::random_tensor({1, 2, 4, 6}, 23)});
  check_gradients("reshape shares the gradient cell",
                  [](auto& v) { return ops::mul(ops::reshape(v[0], {6}), ops::reshape(v[1], {6})); },
                  {test::random_tensor({2, 3}, 24), test::random_tensor({3, 2}, 25)});
  check_gradients("qkv_attention, 2 heads",
                  [](auto& v) { return ops::qkv_attention(v[0], 2); }, {test::random_tensor({2, 12, 5}, 26, -2, 2)}, 1e-2f, 5e-3);
  check_gradients("sse_loss", [](auto& v) { return ops::sse_loss(v[0], v[1]); },
                  {test::random_tensor({2, 3}, 27), test::random_tensor({2, 3}, 28)});
  check_gradients("frobenius_norm", [](auto& v) { return ops::frobenius_norm(v[0]); }, {test::random_tensor({3, 4}, 29)}, 1e-3f);
  check_gradients("squared_norm_per_sample", [](auto& v) { return ops::squared_norm_per_sample(v[0]); },
                  {test::random_tensor({3, 4}, 30)}, 1e-3f);
  check_gradients("sum", [](auto& v) { return ops::sum(ops::mul(v[0], v[0])); }, {test::random_tensor({5}, 31)}, 1e-3f);
}

TEST_CASE("conv2d_fused: the output and every gradient have the bits of conv2d, add_channel_bias and add") {
  const std::vector<Tensor> xs = {test::random_tensor({2, 3, 16, 16}, 40), test::random_tensor({4, 3, 3, 3}, 41),
                                  test::random_tensor({4}, 42), test::random_tensor({2, 4}, 43),
                                  test::random_tensor({2, 4, 16, 16}, 44)};
  auto run = [&](bool fused) {
    Tape tape;
    std::vector<Var> v;
    for (auto& x : xs) v.push_back(make_leaf(x.clone(), MemCategory::InputGrad));
    Var y;
    {
      TapeScope rec(tape);
      y = fused ? ops::conv2d_fused(v[0], v[1], &v[2], &v[3], &v[4], {1, 1})
                : ops::add(v[4], ops::add_channel_bias(ops::conv2d(v[0], v[1], &v[2], {1, 1}), v[3]));
    }
    std::vector<std::vector<float>> out{y.value.to_vector()};
    tape.backward(y, Tensor::from_vector(y.shape(), test::random_floats(size_t(y.value.numel()), 45)));
    for (auto& leaf : v) out.push_back(leaf.grad().to_vector());
    return out;
  };
  const auto a = run(true), b = run(false);
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    CAPTURE(k);  // 0: the output, then x, w, b, the image bias, the residual
    CHECK(a[k] == b[k]);
  }
}

TEST_CASE("a value used twice accumulates both gradients, without aliasing") {
  Tape tape;
  Var x = make_leaf(Tensor::from_vector({3}, {1.f, 2.f, 3.f}), MemCategory::InputGrad);
  Var y;
  {
    TapeScope rec(tape);
    Var a = ops::add(x, x);       // both branches receive the same gradient tensor
    y = ops::sum(ops::add(a, ops::scale(x, 3.f)));
  }
  tape.backward(y);
  CHECK(x.grad().to_vector() == std::vector<float>{5.f, 5.f, 5.f});
}

TEST_CASE("input-only mode computes no weight gradient; full mode gives the same input gradient") {
  Tensor xv = test::random_tensor({2, 3, 4, 4}, 40), wv = test::random_tensor({5, 3, 3, 3}, 41), bv = test::random_tensor({5}, 42);
  auto run = [&](bool full, Tensor& gx, Tensor& gw) {
    Tape tape;
    Var x = make_leaf(xv.clone(), MemCategory::InputGrad);
    Var w = full ? make_leaf(wv, MemCategory::WeightGrad) : Var(wv);
    Var b = full ? make_leaf(bv, MemCategory::WeightGrad) : Var(bv);
    Var y;
    {
      TapeScope rec(tape);
      y = ops::frobenius_norm(ops::silu(ops::conv2d(x, w, &b, {1, 1})));
    }
    tape.backward(y);
    gx = x.grad();
    gw = w.grad();
  };
  auto& stats = cpu_backend().stats();
  auto wg = [&] { return stats.bytes_allocated_by_category[size_t(MemCategory::WeightGrad)].load(); };
  Tensor gx1, gw1, gx2, gw2;
  int64_t before = wg();
  run(false, gx1, gw1);
  CHECK(wg() == before);
  CHECK_FALSE(gw1.defined());
  run(true, gx2, gw2);
  CHECK(wg() > before);
  CHECK(gw2.defined());
  CHECK(gx1.to_vector() == gx2.to_vector());
}

TEST_CASE("the backward releases what it walks past, and clears the tape") {
  Tape tape;
  Var x = make_leaf(test::random_tensor({1, 1, 64, 64}, 50), MemCategory::InputGrad);
  Var y;
  auto& stats = cpu_backend().stats();
  {
    TapeScope rec(tape);
    Var h = x;
    for (int i = 0; i < 8; ++i) h = ops::silu(ops::scale(h, 1.1f));
    y = ops::sum(h);
  }
  CHECK(tape.size() == 17);
  int64_t in_use_before = stats.bytes_in_use.load();
  tape.backward(y);
  CHECK(tape.size() == 0);
  // after the walk only x's gradient (and nothing taped) remains beyond what was live before
  CHECK(stats.bytes_in_use.load() <= in_use_before + int64_t(x.value.bytes()) + 64);
  CHECK(x.grad().defined());
  // without a recording tape, ops record nothing
  Var z = ops::silu(x);
  CHECK_FALSE(z.requires_grad());
  CHECK_THROWS_WITH_AS(tape.backward(z, z.value), doctest::Contains("does not depend"), Error);
}
