// Every public op of the Backend interface from one table of cases, run on
// every backend the registry has (after ggml's tests/test-backend-ops.cpp).
// A case names the op, the shapes of its random inputs and of its outputs, a
// function that runs it through the public API, and the relative L2 distance
// to the CPU's outputs the other backends must stay within.
//
// - On the CPU (always): outputs start as NaN, so an element the op forgets
//   shows; every output is finite and a second run gives the same bits.
// - On every other available backend (CUDA on a GPU, or on the CPU stand-ins
//   in the -DMDPS_CUDA_STANDIN=ON build): the outputs match the CPU's within
//   the case's tolerance, from the same host inputs.
// - On every backend: an output one sample too many is refused with an error
//   that names the op (the public op's check, engine/core/backend_ops.cpp).
// A backend this build lacks or this machine cannot run is reported as
// SKIPPED with the registry's reason, never counted as a pass.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/backend.h"
#include "engine/core/backend_registry.h"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <functional>
#include <string>
#include <vector>

using namespace mdps;

namespace {

using Tensors = std::vector<Tensor>;

struct OpCase {
  std::string op;          // the public op
  std::vector<Shape> in;   // random inputs, in [lo, hi]
  std::vector<Shape> out;  // outputs: NaN before the op, or random when inout
  std::function<void(Backend&, Tensors& in, Tensors& out)> run;
  double tol = 1e-5;  // relative L2 to the CPU's outputs on other backends
  float lo = -1.f, hi = 1.f;
  bool inout = false;           // the outputs are read too (in-place ops): random, not NaN
  bool refuses_bad_out = true;  // an output one sample too many must be refused
  std::string error_name = "";  // how the op's errors name it (default: op up to " (")
};

std::string error_name_of(const OpCase& c) {
  return c.error_name.empty() ? c.op.substr(0, c.op.find(" (")) : c.error_name;
}

// A {0, 1} mask from random values: the ops read masks as "keep where 1".
Tensor binarised(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  for (float& x : v) x = x > 0.f ? 1.f : 0.f;
  return Tensor::from_vector(t.shape(), v).to(t.backend());
}

StepCoeffs step_coeffs() {
  StepCoeffs c;
  c.sqrt_a = 0.8f;
  c.sqrt_1ma = 0.6f;
  c.sqrt_a_next = 0.9f;
  c.dir = 0.35f;
  c.sigma = 0.25f;
  c.guidance = 0.4f;
  return c;
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> t;
  // ---- products
  t.push_back({"gemm", {{5, 9}, {7, 9}}, {{5, 7}}, [](Backend& be, Tensors& i, Tensors& o) {
                 be.gemm(false, true, 5, 7, 9, 0.5f, i[0].data(), 9, 0, i[1].data(), 9, 0, 0.f, o[0].data(), 7, 0, 1);
               }});
  t.back().refuses_bad_out = false;  // raw pointers: no shapes to check
  t.push_back({"gemm (batched, transposed A, beta)", {{2, 9, 5}, {2, 9, 7}}, {{2, 5, 7}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 be.gemm(true, false, 5, 7, 9, 1.f, i[0].data(), 5, 45, i[1].data(), 7, 63, 0.5f, o[0].data(), 7, 35,
                         2);
               }});
  t.back().inout = true;
  t.back().refuses_bad_out = false;
  t.push_back({"linear", {{4, 6}, {3, 6}, {3}}, {{4, 3}},
               [](Backend& be, Tensors& i, Tensors& o) { be.linear(i[0], i[1], &i[2], o[0]); }});
  t.push_back({"linear_backward", {{4, 3}, {4, 6}, {3, 6}}, {{4, 6}, {3, 6}, {3}},
               [](Backend& be, Tensors& i, Tensors& o) { be.linear_backward(i[0], i[1], i[2], &o[0], &o[1], &o[2]); }});
  t.push_back({"conv2d", {{2, 3, 6, 5}, {4, 3, 3, 3}, {4}}, {{2, 4, 6, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.conv2d(i[0], i[1], &i[2], o[0], {1, 1}); }});
  t.push_back({"conv2d (stride 2)", {{1, 2, 7, 7}, {3, 2, 3, 3}}, {{1, 3, 4, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.conv2d(i[0], i[1], nullptr, o[0], {2, 1}); }});
  // The CPU's Winograd epilogue (a 16-wide level: whole tile rows), and the
  // separate ops' path (a 1x1 kernel, the residual alone).
  t.push_back({"conv2d_fused", {{2, 4, 16, 16}, {5, 4, 3, 3}, {5}, {2, 5}, {2, 5, 16, 16}}, {{2, 5, 16, 16}},
               [](Backend& be, Tensors& i, Tensors& o) { be.conv2d_fused(i[0], i[1], &i[2], &i[3], &i[4], o[0], {1, 1}); }});
  t.push_back({"conv2d_fused (1x1, residual only)", {{2, 3, 5, 4}, {4, 3, 1, 1}, {2, 4, 5, 4}}, {{2, 4, 5, 4}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 be.conv2d_fused(i[0], i[1], nullptr, nullptr, &i[2], o[0], {1, 0});
               }});
  t.push_back({"conv2d_backward_data", {{2, 4, 6, 5}, {4, 3, 3, 3}}, {{2, 3, 6, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.conv2d_backward_data(i[0], i[1], o[0], {1, 1}); }});
  t.push_back({"conv2d_backward_weight", {{2, 4, 6, 5}, {2, 3, 6, 5}}, {{4, 3, 3, 3}, {4}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 be.conv2d_backward_weight(i[0], i[1], o[0], &o[1], {1, 1});
               }});
  // ---- normalisation and activations
  for (bool silu : {false, true}) {
    t.push_back({silu ? "group_norm (+SiLU)" : "group_norm", {{2, 4, 3, 3}, {4}, {4}}, {{2, 4, 3, 3}, {4}, {4}},
                 [silu](Backend& be, Tensors& i, Tensors& o) {
                   be.group_norm(i[0], i[1], i[2], 2, 1e-5f, silu, o[0], o[1], o[2]);
                 }});
    t.push_back({silu ? "group_norm_backward (+SiLU)" : "group_norm_backward", {{2, 4, 3, 3}, {2, 4, 3, 3}, {4}, {4}},
                 {{2, 4, 3, 3}, {4}, {4}}, [silu](Backend& be, Tensors& i, Tensors& o) {
                   Tensor y = Tensor::empty(i[1].shape(), be), mean = Tensor::empty({4}, be),
                          rstd = Tensor::empty({4}, be);
                   be.group_norm(i[1], i[2], i[3], 2, 1e-5f, silu, y, mean, rstd);
                   be.group_norm_backward(i[0], i[1], i[2], i[3], mean, rstd, 2, silu, &o[0], &o[1], &o[2]);
                 }});
  }
  t.push_back({"silu", {{2, 3, 4}}, {{2, 3, 4}}, [](Backend& be, Tensors& i, Tensors& o) { be.silu(i[0], o[0]); }});
  t.push_back({"silu_backward", {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.silu_backward(i[0], i[1], o[0]); }});
  t.push_back({"softmax", {{3, 7}}, {{3, 7}}, [](Backend& be, Tensors& i, Tensors& o) { be.softmax(i[0], o[0]); }});
  t.back().lo = -4.f, t.back().hi = 4.f;
  t.push_back({"softmax_backward", {{3, 7}, {3, 7}}, {{3, 7}}, [](Backend& be, Tensors& i, Tensors& o) {
                 Tensor y = Tensor::empty(i[0].shape(), be);
                 be.softmax(i[0], y);
                 be.softmax_backward(y, i[1], o[0]);
               }});
  t.back().error_name = "softmax";  // its errors may come from the softmax it runs first
  t.push_back({"attention", {{2, 24, 5}}, {{2, 8, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.attention(i[0], 2, o[0]); }});
  t.push_back({"attention_backward", {{2, 24, 5}, {2, 8, 5}}, {{2, 24, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.attention_backward(i[0], i[1], 2, o[0]); }});
  // ---- elementwise
  t.push_back({"add", {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.add(i[0], i[1], o[0]); }, 0.0});
  t.push_back({"sub", {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.sub(i[0], i[1], o[0]); }, 0.0});
  t.push_back({"mul", {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.mul(i[0], i[1], o[0]); }, 0.0});
  t.push_back({"scale", {{2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.scale(i[0], 0.7f, o[0]); }, 0.0});
  t.push_back({"axpby", {{2, 3, 4}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.axpby(0.7f, i[0], -1.3f, o[0]); }, 1e-6});
  t.back().inout = true;
  t.push_back({"scale_by_inverse_sqrt", {{2, 3, 4}, {1}}, {{2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.scale_by_inverse_sqrt(i[0], i[1], o[0]); }, 1e-6});
  t.back().lo = 0.25f, t.back().hi = 2.f;
  t.push_back({"add_channel_bias", {{2, 3, 4, 5}, {2, 3}}, {{2, 3, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.add_channel_bias(i[0], i[1], o[0]); }, 0.0});
  t.push_back({"sum_hw", {{2, 3, 4, 5}}, {{2, 3}}, [](Backend& be, Tensors& i, Tensors& o) { be.sum_hw(i[0], o[0]); }});
  // ---- layout
  t.push_back({"concat_channels", {{2, 3, 4, 5}, {2, 2, 4, 5}}, {{2, 5, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.concat_channels(i[0], i[1], o[0]); }, 0.0});
  t.push_back({"split_channels", {{2, 5, 4, 5}}, {{2, 3, 4, 5}, {2, 2, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.split_channels(i[0], &o[0], &o[1]); }, 0.0});
  t.push_back({"split_channels (second only)", {{2, 5, 4, 5}}, {{2, 2, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.split_channels(i[0], nullptr, &o[0]); }, 0.0});
  t.push_back({"avg_pool2", {{2, 3, 6, 5}}, {{2, 3, 3, 2}},
               [](Backend& be, Tensors& i, Tensors& o) { be.avg_pool2(i[0], o[0]); }, 1e-6});
  t.push_back({"avg_pool2_backward", {{2, 3, 3, 2}}, {{2, 3, 6, 5}},
               [](Backend& be, Tensors& i, Tensors& o) { be.avg_pool2_backward(i[0], o[0]); }, 1e-6});
  t.push_back({"upsample_nearest2", {{2, 3, 3, 2}}, {{2, 3, 6, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.upsample_nearest2(i[0], o[0]); }, 0.0});
  t.push_back({"upsample_nearest2_backward", {{2, 3, 6, 4}}, {{2, 3, 3, 2}},
               [](Backend& be, Tensors& i, Tensors& o) { be.upsample_nearest2_backward(i[0], o[0]); }, 1e-6});
  // ---- reductions
  t.push_back({"sum", {{3, 50}}, {{1}}, [](Backend& be, Tensors& i, Tensors& o) { be.sum(i[0], o[0]); }});
  t.push_back({"sum_squares", {{3, 50}}, {{1}},
               [](Backend& be, Tensors& i, Tensors& o) { be.sum_squares(i[0], o[0]); }});
  // ---- diffusion-specific
  t.push_back({"timestep_embedding", {{3}}, {{3, 16}},
               [](Backend& be, Tensors& i, Tensors& o) { be.timestep_embedding(i[0], o[0]); }});
  t.back().lo = 0.f, t.back().hi = 999.f;
  t.push_back({"adam_update", {{2, 3, 4}}, {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 AdamParams p;
                 p.lr = 1e-2f;
                 p.weight_decay = 0.1f;
                 be.adam_update(o[0], i[0], o[1], o[2], p, 3);
               }, 1e-6});
  t.back().inout = true;
  t.back().lo = 0.f;  // the second moment is non-negative
  t.push_back({"mdps_step", {{2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}, {2, 1, 4, 5}, {2, 3, 4, 5}},
               {{2, 3, 4, 5}, {2, 3, 4, 5}}, [](Backend& be, Tensors& i, Tensors& o) {
                 Tensor mask = binarised(i[4]);
                 be.mdps_step(i[0], i[1], i[2], &i[3], &mask, &i[5], step_coeffs(), o[0], &o[1]);
               }, 1e-6});
  t.push_back({"mdps_step (no guidance, mask or noise)", {{2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}}, {{2, 3, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 be.mdps_step(i[0], i[1], i[2], nullptr, nullptr, nullptr, step_coeffs(), o[0], nullptr);
               }, 1e-6});
  t.push_back({"replace_normal", {{2, 3, 4, 5}, {2, 3, 4, 5}, {2, 1, 4, 5}}, {{2, 3, 4, 5}},
               [](Backend& be, Tensors& i, Tensors& o) {
                 Tensor mask = binarised(i[2]);
                 be.replace_normal(o[0], i[0], i[1], mask, 0.6f, 0.8f);
               }, 1e-6});
  t.back().inout = true;
  t.push_back({"philox_normal", {}, {{1000}},
               [](Backend& be, Tensors&, Tensors& o) { be.philox_normal(o[0], 1234, 7, 99); }, 1e-6});
  t.back().refuses_bad_out = false;  // any shape holds normals
  // ---- the feature extractor's and the anomaly map's image ops
  t.push_back({"relu", {{2, 3, 4}}, {{2, 3, 4}}, [](Backend& be, Tensors& i, Tensors& o) { be.relu(i[0], o[0]); },
               0.0});
  t.push_back({"max_pool3x3_s2", {{2, 3, 7, 6}}, {{2, 3, 4, 3}},
               [](Backend& be, Tensors& i, Tensors& o) { be.max_pool3x3_s2(i[0], o[0]); }, 0.0});
  t.push_back({"imagenet_normalise", {{2, 3, 5, 4}}, {{2, 3, 5, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.imagenet_normalise(i[0], o[0]); }, 1e-6});
  t.push_back({"pixel_distance", {{2, 3, 5, 4}, {2, 3, 5, 4}}, {{2, 1, 5, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.pixel_distance(i[0], i[1], o[0]); }, 1e-6});
  t.push_back({"pooled_cosine_distance", {{2, 8, 5, 4}, {2, 8, 5, 4}}, {{2, 1, 5, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.pooled_cosine_distance(i[0], i[1], o[0], 1e-8f); }});
  t.push_back({"resize_bilinear_align_corners", {{2, 1, 5, 4}}, {{2, 1, 9, 7}},
               [](Backend& be, Tensors& i, Tensors& o) { be.resize_bilinear_align_corners(i[0], o[0]); }, 1e-6});
  t.back().error_name = "resize_bilinear";
  t.push_back({"gaussian_blur", {{2, 1, 9, 8}}, {{2, 1, 9, 8}},
               [](Backend& be, Tensors& i, Tensors& o) { be.gaussian_blur(i[0], 5, 1.5f, o[0]); }, 1e-6});
  t.push_back({"max", {{3, 40}}, {{1}}, [](Backend& be, Tensors& i, Tensors& o) { be.max(i[0], o[0]); }, 0.0});
  t.push_back({"anomaly_mix", {{2, 1, 5, 4}, {2, 1, 5, 4}, {1}, {1}}, {{2, 1, 5, 4}},
               [](Backend& be, Tensors& i, Tensors& o) { be.anomaly_mix(i[0], i[1], i[2], i[3], 0.5f, o[0]); },
               1e-6});
  t.back().lo = 0.1f;  // maps and their maxima are positive
  for (ImageScoreKind kind : {ImageScoreKind::Authors, ImageScoreKind::TopKMean}) {
    t.push_back({kind == ImageScoreKind::Authors ? "image_scores (authors)" : "image_scores (top-k mean)",
                 {{3, 1, 6, 5}}, {{3}}, [kind](Backend& be, Tensors& i, Tensors& o) {
                   std::vector<double> s = be.image_scores(i[0], kind, 4);
                   REQUIRE(s.size() == 3);
                   o[0].copy_from(Tensor::from_vector({3}, std::vector<float>(s.begin(), s.end())));
                 }, 1e-6});
    t.back().refuses_bad_out = false;  // the scores come back as a vector
  }
  return t;
}

// The case's inputs (and, for in-place ops, outputs) as host tensors, the same for every backend.
struct HostOperands {
  Tensors in, out;
};
HostOperands host_operands(const OpCase& c, uint64_t seed) {
  HostOperands h;
  for (const Shape& s : c.in) h.in.push_back(test::random_tensor(s, seed++, c.lo, c.hi));
  for (const Shape& s : c.out)
    h.out.push_back(c.inout ? test::random_tensor(s, seed++, c.lo, c.hi) : Tensor::full(s, NAN));
  return h;
}

// Runs the case on `be` from the host operands; returns its outputs on the host.
Tensors run_on(const OpCase& c, Backend& be, const HostOperands& h) {
  Tensors in, out;
  for (const Tensor& t : h.in) in.push_back(t.to(be));
  for (const Tensor& t : h.out) out.push_back(t.to(be));
  c.run(be, in, out);
  Tensors host;
  for (const Tensor& t : out) host.push_back(t.to(cpu_backend()));
  return host;
}

bool all_finite(const Tensor& t) {
  for (float v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
}

// An output one sample too many is refused, naming the op.
void check_refuses_bad_output(const OpCase& c, Backend& be, const HostOperands& h) {
  if (!c.refuses_bad_out) return;
  HostOperands bad = h;
  Shape s = bad.out[0].shape();
  s[0] += 1;
  bad.out[0] = c.inout ? test::random_tensor(s, 5, c.lo, c.hi) : Tensor::full(s, NAN);
  CHECK_THROWS_WITH_AS(run_on(c, be, bad), doctest::Contains(error_name_of(c).c_str()), Error);
}

}  // namespace

TEST_CASE("backend ops: the table covers every op of the Backend interface") {
  // Every protected <op>_impl declared in engine/core/backend.h has a case: a
  // new op without one fails here.
  std::ifstream header(std::string(MDPS_SOURCE_DIR) + "/engine/core/backend.h");
  REQUIRE(header.good());
  const std::string text((std::istreambuf_iterator<char>(header)), std::istreambuf_iterator<char>());
  const std::regex impl(R"(virtual [^;]*?\b(\w+)_impl\()");
  const std::vector<OpCase> cases = op_cases();
  int ops = 0;
  for (auto m = std::sregex_iterator(text.begin(), text.end(), impl); m != std::sregex_iterator(); ++m) {
    const std::string op = (*m)[1];
    CAPTURE(op);
    ++ops;
    bool found = false;
    for (const OpCase& c : cases) found |= c.op == op || c.op.rfind(op + " (", 0) == 0;
    CHECK(found);
  }
  CHECK(ops >= 45);  // the header was read and its ops found
}

TEST_CASE("backend ops: on the CPU every output is written, finite and the same on a second run") {
  Backend& cpu = cpu_backend();
  uint64_t seed = 100;
  for (const OpCase& c : op_cases()) {
    CAPTURE(c.op);
    const HostOperands h = host_operands(c, seed += 16);
    const Tensors a = run_on(c, cpu, h), b = run_on(c, cpu, h);
    REQUIRE(a.size() == c.out.size());
    for (size_t k = 0; k < a.size(); ++k) {
      CAPTURE(k);
      CHECK(all_finite(a[k]));
      CHECK(same_bits(a[k], b[k]));
    }
    check_refuses_bad_output(c, cpu, h);
  }
}

TEST_CASE("backend ops: every other backend the registry has matches the CPU, case by case") {
  int ran = 0;
  std::vector<std::string> names = built_backends();
  if (!backend_built("cuda")) names.push_back("cuda");  // to say why it did not run
  for (const std::string& name : names) {
    if (name == "cpu") continue;
    Backend* be = find_backend(name);
    if (!be) {
      // Never a pass: said on the output, and the CPU case above is what ran.
      std::printf("SKIPPED: backend ops on %s: %s\n", name.c_str(), backend_unavailable_reason(name).c_str());
      continue;
    }
    std::printf("backend ops on %s (%s)\n", name.c_str(), be->paths().c_str());
    uint64_t seed = 100;
    for (const OpCase& c : op_cases()) {
      CAPTURE(name);
      CAPTURE(c.op);
      const HostOperands h = host_operands(c, seed += 16);
      const Tensors ref = run_on(c, cpu_backend(), h), got = run_on(c, *be, h);
      REQUIRE(got.size() == ref.size());
      for (size_t k = 0; k < got.size(); ++k) {
        CAPTURE(k);
        CHECK(all_finite(got[k]));
        CHECK(test::rel_l2(got[k].to_vector(), ref[k].to_vector()) <= c.tol);
      }
      check_refuses_bad_output(c, *be, h);
      // An operand on another backend is refused, naming the op: a host
      // pointer handed to a device kernel would be an illegal address.
      if (!h.in.empty() && c.op.rfind("gemm", 0) != 0) {  // gemm takes raw pointers
        Tensors in, out;
        for (const Tensor& t : h.in) in.push_back(t.to(*be));
        for (const Tensor& t : h.out) out.push_back(t.to(*be));
        in[0] = h.in[0];  // still on the CPU
        CHECK_THROWS_WITH_AS(c.run(*be, in, out), doctest::Contains(error_name_of(c).c_str()), Error);
      }
    }
    ++ran;
  }
  if (ran == 0) std::printf("SKIPPED: backend ops: no backend but the CPU in this build or on this machine\n");
}
