// qkv_attention computes its weights a block of query rows at a time
// (engine/ops.h). Every block size, including ones that do not divide the
// length, gives the one-block result (the whole [BH, L, L] at once, which
// test_autograd checks against finite differences) up to rounding: the
// output and the gradient of every input.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/ops.h"

using namespace mdps;

namespace {

struct Result {
  std::vector<float> out, grad;
};

Result run(const Tensor& qkv, int heads, int64_t block_rows, const Tensor& seed) {
  Tape tape;
  Var x = make_leaf(qkv.clone(), MemCategory::InputGrad);
  Var y;
  {
    TapeScope rec(tape);
    y = ops::qkv_attention(x, heads, block_rows);
  }
  Result r;
  r.out = y.value.to_vector();
  tape.backward(y, seed);
  r.grad = x.grad().to_vector();
  return r;
}

void check_blocks(int64_t B, int heads, int64_t ch, int64_t L, std::vector<int64_t> blocks) {
  CAPTURE(L);
  Tensor qkv = Tensor::from_vector({B, 3 * heads * ch, L}, test::random_floats(size_t(B * 3 * heads * ch * L), 7, -2, 2));
  Tensor seed = Tensor::from_vector({B, heads * ch, L}, test::random_floats(size_t(B * heads * ch * L), 8));
  Result whole = run(qkv, heads, L, seed);
  for (int64_t b : blocks) {
    CAPTURE(b);
    Result r = run(qkv, heads, b, seed);
    CHECK(test::rel_l2(r.out, whole.out) < 1e-6);
    CHECK(test::rel_l2(r.grad, whole.grad) < 1e-6);
  }
}

}  // namespace

TEST_CASE("qkv_attention: every block of query rows gives the one-block result") {
  check_blocks(2, 2, 3, 5, {1, 2, 3, 4, 0});
  check_blocks(1, 4, 4, 64, {7, 16, 63, 0});
}

TEST_CASE("qkv_attention: the automatic block bounds the weights held, and is used at U-Net sizes") {
  CHECK(ops::attention_block_rows(32, 1024) == 32);     // 32 x 32 x 1024 floats: 4 MiB
  CHECK(ops::attention_block_rows(8, 64) == 64);        // small: one block
  CHECK(ops::attention_block_rows(1 << 22, 1024) == 1); // never zero
  // A 32x32 attention at batch 2, 4 heads: several blocks (the golden U-Net's shape).
  CHECK(ops::attention_block_rows(8, 1024) < 1024);
  check_blocks(2, 4, 4, 1024, {0});
}

TEST_CASE("qkv_attention: a negative block size is an error") {
  Tensor qkv = Tensor::zeros({1, 6, 4});
  CHECK_THROWS_AS(ops::qkv_attention(Var(qkv), 2, -1), Error);
}
