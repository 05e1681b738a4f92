// The attention softmax's exp for non-positive arguments (attn_exp_nonpos,
// kernels/cpu/attention_tiles.h) against the general vector exp (attn_exp)
// and the scalar fast_exp: the same bits for every argument the softmax can
// give it (x - max <= 0, -inf from a padded key, NaN from a diverged model),
// so the faster form changes the speed and never a result.
#include <doctest/doctest.h>
#include "kernels/cpu/attention_tiles.h"
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

using namespace mdps::cpu;

namespace {

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// Runs the floats through both vector forms and the scalar one, a vector at a
// time; returns the number of lanes whose bits differ (NaN equal to NaN).
int64_t mismatches(const std::vector<float>& xs) {
  int64_t bad = 0;
  for (size_t i = 0; i < xs.size(); i += kAttnW) {
    attn_vec x{};
    for (int l = 0; l < kAttnW; ++l) x[l] = i + l < xs.size() ? xs[i + l] : 0.f;
    const attn_vec a = attn_exp(x), b = attn_exp_nonpos(x);
    for (int l = 0; l < kAttnW; ++l) {
      const float s = fast_exp(x[l]);
      const bool nan = std::isnan(a[l]) && std::isnan(b[l]) && std::isnan(s);
      if (!nan && (bits(a[l]) != bits(b[l]) || bits(a[l]) != bits(s))) {
        if (bad < 5) MESSAGE("x = " << x[l] << ": attn_exp " << a[l] << ", nonpos " << b[l] << ", scalar " << s);
        ++bad;
      }
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("attention exp: attn_exp_nonpos has attn_exp's and fast_exp's bits for x <= 0") {
  const float inf = std::numeric_limits<float>::infinity();
  // The special values and the underflow boundary (-87.3365) with its neighbours.
  std::vector<float> xs = {0.f, -0.f, -inf, std::nanf(""), -std::nanf(""), -87.3365447504f, -1e-45f, -1e-38f, -88.f,
                           -87.f, -103.97f, -104.f, -1e30f, -std::numeric_limits<float>::max()};
  for (int d = -64; d <= 64; ++d) xs.push_back(from_bits(uint32_t(int64_t(bits(-87.3365447504f)) + d)));
  // Every 251st non-positive float (-0 up to -inf: all exponents, mantissa
  // patterns at an odd stride), and every 101st of [-20, 0], where the
  // softmax weights above 2e-9 come from. (Every one of the 2^31 was checked
  // once, 2026-12-06, Emerald Rapids: no difference; 4 s, too long for the
  // sanitizer stage.)
  for (uint64_t b = 0x80000000u; b <= 0xFF800000u; b += 251) xs.push_back(from_bits(uint32_t(b)));
  for (uint32_t b = 0x80000000u; b <= bits(-20.f); b += 101) xs.push_back(from_bits(b));
  CHECK(xs.size() > 15000000);
  CHECK(mismatches(xs) == 0);
}
