// Philox4x32-10 against Random123's published known answers, the uniform and
// normal conversions, and the NoiseSource classes built on them.
#include <doctest/doctest.h>
#include "engine/core/backend.h"
#include "engine/diffusion/noise.h"
#include "kernels/shared/philox.h"
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

using namespace mdps;

namespace {

void check_kat(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key, std::array<uint32_t, 4> want) {
  philox::U32x4 got = philox::philox4x32_10(ctr.data(), key.data());
  for (int i = 0; i < 4; ++i) CHECK(got.v[i] == want[i]);
}

}  // namespace

TEST_CASE("philox4x32_10 matches Random123 kat_vectors") {
  // Random123 examples/kat_vectors, the three "philox4x32 10" lines
  // (counter[4], key[2] -> output[4]).
  check_kat({0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  check_kat({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
            {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  check_kat({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
            {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("block addressing: key is the seed, counter is (block, stream)") {
  // seed 0x299f31d0'a4093822, stream 0x03707344'13198a2e, block 0x85a308d3'243f6a88
  // is exactly the third KAT input.
  philox::U32x4 b = philox::block_at(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
  CHECK(b.v[0] == 0xd16cfe09u);
  CHECK(b.v[3] == 0x24126ea1u);
  // Element indices address lanes of blocks (64-bit indices reach blocks < 2^62).
  const uint64_t block = 0x05a308d3243f6a88ull;
  philox::U32x4 c = philox::block_at(7, 8, block);
  for (uint64_t k = 0; k < 4; ++k) CHECK(philox::bits_at(7, 8, 4 * block + k) == c.v[k]);
  CHECK(philox::uniform_at(7, 8, 4 * block + 1) == philox::u01(c.v[1]));
}

TEST_CASE("u01 maps to the open interval (0, 1)") {
  CHECK(philox::u01(0u) == std::ldexp(1.0f, -24));
  CHECK(philox::u01(0xffffffffu) == 1.0f - std::ldexp(1.0f, -24));
  CHECK(philox::u01(0x80000000u) == 0.5f + std::ldexp(1.0f, -24));
  const int n = 1000000;
  double sum = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    float u = philox::uniform_at(7, 1, uint64_t(i));
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
  }
  CHECK(lo > 0.0f);
  CHECK(hi < 1.0f);
  // Mean 1/2 with standard error sqrt(1/12 / n); allow 5 standard errors.
  CHECK(std::fabs(sum / n - 0.5) < 5 * std::sqrt(1.0 / 12.0 / n));
}

TEST_CASE("normals have mean 0, variance 1, the right tails") {
  const int n = 1000000;
  std::vector<float> z(n);
  philox_fill_normal(z.data(), n, 12345, 0, 0);
  double s1 = 0, s2 = 0, s4 = 0;
  int64_t within1 = 0;
  for (float v : z) {
    REQUIRE(std::isfinite(v));
    s1 += v;
    s2 += double(v) * v;
    s4 += double(v) * v * v * v;
    within1 += std::fabs(v) < 1.0f;
  }
  const double mean = s1 / n, var = s2 / n - mean * mean, m4 = s4 / n;
  // Standard errors for N(0,1): mean 1/sqrt(n); variance sqrt(2/n);
  // fourth moment sqrt((E z^8 - 9) / n) = sqrt(96/n); P(|z|<1) sqrt(p(1-p)/n).
  CHECK(std::fabs(mean) < 5 / std::sqrt(double(n)));
  CHECK(std::fabs(var - 1) < 5 * std::sqrt(2.0 / n));
  CHECK(std::fabs(m4 - 3) < 5 * std::sqrt(96.0 / n));
  const double p = 0.6826894921370859;
  CHECK(std::fabs(double(within1) / n - p) < 5 * std::sqrt(p * (1 - p) / n));
}

TEST_CASE("draws are pure functions of (seed, stream, index)") {
  std::vector<float> a(1001), b(1001);
  philox_fill_normal(a.data(), 1001, 42, 3, 17);
  philox_fill_normal(b.data(), 1001, 42, 3, 17);
  CHECK(a == b);
  for (int i = 0; i < 1001; ++i) REQUIRE(a[size_t(i)] == philox::normal_at(42, 3, 17 + uint64_t(i)));

  std::vector<float> other_stream(1001), other_seed(1001);
  philox_fill_normal(other_stream.data(), 1001, 42, 4, 17);
  philox_fill_normal(other_seed.data(), 1001, 43, 3, 17);
  int same_stream = 0, same_seed = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    same_stream += a[i] == other_stream[i];
    same_seed += a[i] == other_seed[i];
  }
  CHECK(same_stream == 0);
  CHECK(same_seed == 0);
  // The high halves of seed and stream matter too.
  CHECK(philox::bits_at(42, 3, 0) != philox::bits_at(42 + (1ull << 32), 3, 0));
  CHECK(philox::bits_at(42, 3, 0) != philox::bits_at(42, 3 + (1ull << 32), 0));
}

TEST_CASE("PhiloxNoise: two partial fills equal one fill; positions resume") {
  // 37 elements split 13 + 24 so both fills start and end off block boundaries.
  PhiloxNoise whole(9, 2);
  Tensor all = Tensor::empty({37});
  whole.normal(all);
  CHECK(whole.position() == 37);

  PhiloxNoise parts(9, 2);
  Tensor first = Tensor::empty({13}), second = Tensor::empty({2, 3, 4});
  parts.normal(first);
  parts.normal(second);
  CHECK(parts.position() == 37);
  for (int i = 0; i < 13; ++i) CHECK(all.at(i) == first.at(i));
  for (int i = 0; i < 24; ++i) CHECK(all.at(13 + i) == second.at(i));

  PhiloxNoise resumed(9, 2);
  resumed.set_position(13);
  Tensor again = Tensor::empty({24});
  resumed.normal(again);
  CHECK(again.to_vector() == second.to_vector());

  // A different stream is a different sequence.
  PhiloxNoise other(9, 3);
  Tensor o = Tensor::empty({37});
  other.normal(o);
  CHECK(o.to_vector() != all.to_vector());
}

TEST_CASE("the backend's philox_normal: element i is normal_at(offset + i) on any thread count") {
  // Large enough to be split over the pool (chunks that start inside a block
  // of four), with an offset off a block boundary.
  Backend& cpu = cpu_backend();
  const int saved = cpu.threads();
  const int64_t n = 100003;
  const uint64_t offset = 5;
  std::vector<float> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) want[size_t(i)] = philox::normal_at(77, 4, offset + uint64_t(i));
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    cpu.set_threads(threads);
    Tensor x = Tensor::empty({n});
    cpu.philox_normal(x, 77, 4, offset);
    CHECK(x.to_vector() == want);
  }
  cpu.set_threads(saved);
  Tensor empty = Tensor::empty({0});
  cpu.philox_normal(empty, 1, 2, 3);  // nothing to draw, no error
}

TEST_CASE("RecordedNoise replays in order and rejects misuse") {
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector({3}, {5, 6, 7});
  RecordedNoise rec({a, b});
  Tensor out = Tensor::empty({2, 2});
  rec.normal(out);
  CHECK(out.to_vector() == a.to_vector());
  CHECK(rec.used() == 1);

  Tensor wrong = Tensor::empty({4});
  CHECK_THROWS_WITH_AS(rec.normal(wrong), doctest::Contains("shape"), Error);
  Tensor right = Tensor::empty({3});
  rec.normal(right);
  CHECK(right.to_vector() == b.to_vector());
  CHECK_THROWS_WITH_AS(rec.normal(right), doctest::Contains("used"), Error);
}

TEST_CASE("philox_uniform_int covers [0, n) evenly") {
  const uint64_t n = 10;
  const int draws = 100000;
  std::vector<int> count(n, 0);
  for (int i = 0; i < draws; ++i) {
    uint64_t k = philox_uniform_int(5, 11, uint64_t(i), n);
    REQUIRE(k < n);
    ++count[k];
  }
  // Each bin is Binomial(draws, 1/10): standard error sqrt(draws * 0.1 * 0.9).
  const double expect = draws / double(n), se = std::sqrt(draws * 0.1 * 0.9);
  for (uint64_t k = 0; k < n; ++k) CHECK(std::fabs(count[k] - expect) < 5 * se);
  CHECK(philox_uniform_int(5, 11, 0, 1) == 0);
  CHECK(philox_uniform_int(5, 11, 3, uint64_t(1) << 32) == philox::bits_at(5, 11, 3));
  CHECK_THROWS_AS(philox_uniform_int(5, 11, 0, 0), Error);
  CHECK_THROWS_AS(philox_uniform_int(5, 11, 0, (uint64_t(1) << 32) + 1), Error);
}
