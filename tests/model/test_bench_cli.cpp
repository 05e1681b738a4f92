// `mdps bench`'s own behaviour, which needs no PyTorch: clear errors before
// any timing (--vs-pytorch without an interpreter, --device cuda without a
// device, bf16 without AVX512-BF16), the FMA peak and the forward's share of
// it, the per-op report, and `bench train`'s figures. The twin's side of
// --vs-pytorch is in test_pytorch_twin.cpp, which needs Debian's
// python3-torch and is skipped without it; these cases run everywhere.
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include "engine/core/json_mini.h"
#include "kernels/cpu/cpu_features.h"
#include <map>
#include <string>

using namespace mdps;

namespace {

struct Run {
  int status = -1;
  std::string out;  // stdout and stderr
};

Run run(const std::string& cmd) {
  Run r;
  r.status = test::run_command(cmd, r.out);
  return r;
}

json::Value last_json_line(const std::string& out) { return test::last_json_line(out); }
double number(const json::Value& v, const char* key) { return test::json_number(v, key); }

}  // namespace

TEST_CASE("bench --vs-pytorch: a missing interpreter is a clear error before any timing") {
  Run r = run(test::binary_dir() + "/mdps bench unet --vs-pytorch --python /nonexistent/python3 --image-size 32");
  CHECK(r.status == 1);
  CHECK(r.out.find("mdps: error: --python '/nonexistent/python3'") != std::string::npos);
  CHECK(r.out.find("forward") == std::string::npos);  // nothing was timed
}

TEST_CASE("bench --device: cuda runs on the device where one exists, else a clear error before any timing") {
  for (const char* sub : {"unet --runs 1", "sampler"}) {
    CAPTURE(sub);
    Run r = run(test::binary_dir() + "/mdps bench " + sub + " --device cuda --image-size 16 --batch 1");
    CAPTURE(r.out);
    if (r.status == 0) {
      // A GPU machine: the figures are the device's.
      CHECK(r.out.find(std::string(sub).rfind("unet", 0) == 0 ? "device           cuda" : "device cuda") !=
            std::string::npos);
      // The per-op times come from the device's clock (CUDA events).
      Run ops = run(test::binary_dir() + "/mdps bench " + sub + " --device cuda --ops --image-size 16 --batch 1");
      CHECK(ops.status == 0);
      CHECK(ops.out.find("device clock: CUDA events around each op") != std::string::npos);
    } else {
      CHECK(r.status == 1);
      const bool no_device = r.out.find("mdps: error: --device cuda: no CUDA device is present") != std::string::npos;
      const bool no_build = r.out.find("mdps: error: --device cuda: this build has no CUDA backend") != std::string::npos;
      CHECK((no_device || no_build));
      CHECK(r.out.find("forward") == std::string::npos);
    }
  }
}

TEST_CASE("bench --precision bf16 on the CPU: timed against the BF16 peak where the CPU has AVX512-BF16, else refused") {
  Run r = run(test::binary_dir() + "/mdps bench unet --device cpu --precision bf16 --json --runs 1 --image-size 16 "
              "--base-channels 32 --batch 1 --threads 1");
  CAPTURE(r.out);
  if (!cpu::has_avx512_bf16()) {
    CHECK(r.status == 1);
    CHECK(r.out.find("mdps: error: --precision bf16 on the CPU needs AVX512-BF16; this CPU has none") !=
          std::string::npos);
    CHECK(r.out.find("forward") == std::string::npos);
    return;
  }
  REQUIRE(r.status == 0);
  json::Value j = last_json_line(r.out);
  CHECK(j.find("precision")->str == "bf16");
  CHECK(number(j, "bf16_peak_gflops") > 0);
  CHECK(number(j, "forward_of_peak") ==
        doctest::Approx(number(j, "forward_gflops") / number(j, "bf16_peak_gflops")).epsilon(1e-3));
  CHECK(r.out.find("of the BF16 peak") != std::string::npos);
}

TEST_CASE("bench --vs-pytorch: MDPS_BENCH_PYTHON names the interpreter when --python is not given") {
  Run r = run("MDPS_BENCH_PYTHON=/nonexistent/py3 " + test::binary_dir() +
              "/mdps bench unet --vs-pytorch --image-size 16 --batch 1");
  CHECK(r.status == 1);
  CHECK(r.out.find("mdps: error: MDPS_BENCH_PYTHON '/nonexistent/py3': not found") != std::string::npos);
  // --python wins over the variable.
  Run p = run("MDPS_BENCH_PYTHON=/nonexistent/py3 " + test::binary_dir() +
              "/mdps bench unet --vs-pytorch --python /nonexistent/other --image-size 16 --batch 1");
  CHECK(p.status == 1);
  CHECK(p.out.find("mdps: error: --python '/nonexistent/other'") != std::string::npos);
}

TEST_CASE("bench peak: the FMA peak on 1 and N threads, and the forward's fraction of it") {
  Run p = run(test::binary_dir() + "/mdps bench peak --threads 2 --json");
  CAPTURE(p.out);
  REQUIRE(p.status == 0);
  json::Value j = last_json_line(p.out);
  const std::string isa = j.find("isa")->str;
  CHECK((isa == "avx512" || isa == "avx2" || isa == "scalar"));
  // The unit measured is the CPU's widest, capped at the build's: an AVX-512
  // CPU running a build for AVX2 is measured on AVX2, and a note says why.
  const std::string cpu_isa = j.find("cpu_isa")->str;
  CHECK((cpu_isa == "avx512" || cpu_isa == "avx2" || cpu_isa == "scalar"));
#if defined(__AVX512F__)
  CHECK(isa == cpu_isa);
#elif defined(__AVX2__) && defined(__FMA__)
  CHECK(isa == (cpu_isa == "avx512" ? "avx2" : cpu_isa));
#endif
  CHECK((isa == cpu_isa) == (p.out.find("this build's kernels stop at") == std::string::npos));
  CHECK(number(j, "threads") == 2);
  CHECK(number(j, "fp32_peak_gflops_1") > 0);
  CHECK(number(j, "fp32_peak_gflops") > 0);
  const json::Value* bf16 = j.find("bf16_peak_gflops");
  REQUIRE(bf16);
  if (bf16->kind != json::Kind::Null) CHECK(bf16->number > 0);  // null: the CPU has no AVX512-BF16
  const json::Value* amx = j.find("amx_bf16_peak_gflops");
  REQUIRE(amx);
  CHECK((amx->kind == json::Kind::Null) == !cpu::has_amx_bf16());
  if (amx->kind != json::Kind::Null) CHECK(amx->number > 0);
  Run u = run(test::binary_dir() + "/mdps bench unet --json --runs 1 --image-size 16 --base-channels 32 --batch 1 "
              "--threads 1");
  CAPTURE(u.out);
  REQUIRE(u.status == 0);
  json::Value ju = last_json_line(u.out);
  // forward_of_peak is the forward's GFLOP/s over the measured peak of the same threads.
  CHECK(number(ju, "forward_of_peak") > 0);
  CHECK(number(ju, "forward_of_peak") ==
        doctest::Approx(number(ju, "forward_gflops") / number(ju, "fp32_peak_gflops")).epsilon(1e-3));
  CHECK(u.out.find("of the FMA peak") != std::string::npos);
}

TEST_CASE("bench --ops: the time per op of each phase, in text and JSON, the FLOPs adding up") {
  Run r = run(test::binary_dir() +
              "/mdps bench unet --ops --json --runs 1 --image-size 16 --base-channels 32 --batch 2 --threads 1");
  CAPTURE(r.out);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("forward, per op (one traced run, batch 2; host clock)") != std::string::npos);
  CHECK(r.out.find("train_step, per op") != std::string::npos);
  json::Value j = last_json_line(r.out);
  const json::Value* ops = j.find("ops");
  REQUIRE(ops);
  REQUIRE(ops->kind == json::Kind::Array);
  std::map<std::string, double> share, flops_s;
  std::map<std::string, int> conv_calls;
  for (const json::Value& o : ops->items) {
    const std::string phase = o.find("phase")->str, op = o.find("op")->str;
    CHECK(o.find("clock")->str == "host");  // the CPU: no device clock
    CHECK(number(o, "ms") >= 0);
    share[phase] += number(o, "share");
    flops_s[phase] += number(o, "gflops") * number(o, "ms") / 1e3;  // GFLOP of the op
    if (op == "conv2d") conv_calls[phase] = int(number(o, "calls"));
  }
  for (const char* phase : {"forward", "guidance", "train_step"}) {
    CAPTURE(phase);
    CHECK(share[phase] == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(conv_calls[phase] > 0);
    CHECK(conv_calls[phase] == conv_calls["forward"]);  // one forward in each
  }
  // The forward's ops carry the FLOPs the bench counts per image.
  CHECK(flops_s["forward"] == doctest::Approx(number(j, "gflop_per_image") * 2).epsilon(1e-3));
  Run both = run(test::binary_dir() + "/mdps bench unet --ops --vs-pytorch --image-size 16");
  CHECK(both.status != 0);
  CHECK(both.out.find("--ops and --vs-pytorch") != std::string::npos);
  Run sampler = run(test::binary_dir() + "/mdps bench sampler --ops --image-size 16 --batch 1 --threads 1");
  CAPTURE(sampler.out);
  CHECK(sampler.status == 0);
  CHECK(sampler.out.find("sampler, per op (one traced run, per image; host clock)") != std::string::npos);
  CHECK(sampler.out.find("mdps_step") != std::string::npos);
}

TEST_CASE("bench train: images per second of the training loop on generated PNGs") {
  const std::string args = " --image-size 16 --base-channels 32 --batch 2 --steps 2 --images 3 --source-size 24 "
                           "--heads 2 --res-blocks 1 --threads 1 --json";
  Run r = run(test::binary_dir() + "/mdps bench train" + args);
  CAPTURE(r.out);
  REQUIRE(r.status == 0);
  json::Value j = last_json_line(r.out);
  CHECK(number(j, "images_per_s") > 0);
  CHECK(number(j, "loop_images_per_s") >= number(j, "images_per_s"));  // the loop alone is at least as fast
  CHECK(number(j, "steps") == 2);
  CHECK(number(j, "images") == 3);
  CHECK_FALSE(j.find("pytorch_images_per_s"));
}

